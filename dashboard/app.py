"""The dashboard's frame: page config, an optional login, navigation over ``app_pages/``, the shared sidebar.

Start it from any folder with ``python /path/to/repo/dashboard/serve.py`` (or ``streamlit run
/path/to/repo/dashboard/app.py``): the configuration next to this file (``dashboard/.streamlit/``)
makes it listen on 127.0.0.1 only, headless, without usage statistics. FHV_HOME names the history.
It reads the history through ``pipeline.store`` and writes only small requests, each checked by
``access``; training and scheduling run in ``python -m pipeline scheduler``, never here.
"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # so that `import pipeline` and `import dashboard` work

import streamlit as st  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402

from dashboard import page_head, web  # noqa: E402  (the pages' modules load in the script run, with their caches)

# The web server around the pages: the sign-in page, the session cookie, the origin check (``web``), and what the
# dashboard writes into the head of Streamlit's page (``page_head``).
# ``streamlit run`` finds this ``app`` and serves the script through it; the script below is the page.
app = st.App(__file__, routes=web.ROUTES,
             middleware=[Middleware(web.Guard), Middleware(page_head.PageHead, paths_left_alone=web.OPEN_PATHS)])


def pages() -> dict[str, list]:
    """The pages, by section (made in the script run: ``st.Page`` resolves paths against the script)."""
    return {
        "Runs": [
            st.Page("app_pages/overview.py", title="Overview", icon=":material/dashboard:", default=True),
            st.Page("app_pages/runs.py", title="Runs", icon=":material/list:", url_path="runs"),
            st.Page("app_pages/run_detail.py", title="Run detail", icon=":material/article:", url_path="run"),
            st.Page("app_pages/upcoming.py", title="Upcoming", icon=":material/event_upcoming:", url_path="upcoming"),
        ],
        "Model": [
            st.Page("app_pages/trends.py", title="Trends", icon=":material/show_chart:", url_path="trends"),
            st.Page("app_pages/models.py", title="Models", icon=":material/model_training:", url_path="models"),
            st.Page("app_pages/trigger.py", title="Trigger", icon=":material/play_circle:", url_path="trigger"),
        ],
    }


def main() -> None:
    from dashboard import access, queries, widgets

    # A local icon: a ``:material/...`` page icon makes the browser fetch its SVG from a font server.
    st.set_page_config(page_title="FHV retraining", page_icon=str(HERE / "static" / "icon.png"), layout="wide")
    if not access.gate():
        st.navigation(pages(), position="hidden")
        return
    page = st.navigation(pages())
    problem = queries.history_problem()  # a corrupt, unreadable or newer history: one sentence, no traceback
    if problem:
        st.error(problem, icon=":material/error:")
        st.stop()
    widgets.sidebar()
    page.run()


if __name__ == "__main__":  # the page (Streamlit runs the script as __main__); uvicorn imports ``app``
    main()
