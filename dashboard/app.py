"""The dashboard's frame: page config, navigation over ``app_pages/``, the shared sidebar.

Start it from the repository root: ``streamlit run dashboard/app.py`` (FHV_HOME names the
history). It reads the history through ``pipeline.store`` and writes only small requests;
training and scheduling run in ``python -m pipeline scheduler``, never here.
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # so that `import pipeline` and `import dashboard` work

import streamlit as st  # noqa: E402

from dashboard import widgets  # noqa: E402

st.set_page_config(page_title="FHV retraining", page_icon=":material/local_taxi:", layout="wide")

page = st.navigation({
    "Runs": [
        st.Page("app_pages/overview.py", title="Overview", icon=":material/dashboard:", default=True),
        st.Page("app_pages/runs.py", title="Runs", icon=":material/list:", url_path="runs"),
        st.Page("app_pages/run_detail.py", title="Run detail", icon=":material/article:", url_path="run"),
        st.Page("app_pages/upcoming.py", title="Upcoming", icon=":material/event_upcoming:", url_path="upcoming"),
    ],
    "Model": [
        st.Page("app_pages/trends.py", title="Trends", icon=":material/show_chart:", url_path="trends"),
        st.Page("app_pages/trigger.py", title="Trigger", icon=":material/play_circle:", url_path="trigger"),
    ],
})
widgets.sidebar()
page.run()
