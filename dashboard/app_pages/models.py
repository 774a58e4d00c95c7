"""Models: the champion (the model in use) and its stable copy, the versions with their decisions,
promote and roll back (operators), the promotion history, and two versions side by side."""
from __future__ import annotations

import streamlit as st

from dashboard import models_view, widgets
from pipeline.training import champion

st.title("Models")
st.caption("Each completed training run is a model version; the champion is the one in use. "
           f"{champion.RULE} A version trained on synthetic data never replaces one trained on real data.")
widgets.show_notice()
now = models_view.current()
models_view.champion_section(now)
models_view.rollback_button(now)
models_view.watch_section(models_view.on_new_months())
rows = models_view.versions()
models_view.versions_section(rows)
models_view.history_section(models_view.events())
models_view.compare_section(rows)
