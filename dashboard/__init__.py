"""The Streamlit dashboard over the run history (``streamlit run dashboard/app.py``)."""
