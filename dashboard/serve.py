"""Start the dashboard from any folder: ``python /path/to/repo/dashboard/serve.py [streamlit options]``.

It runs ``streamlit run`` on this folder's ``app.py`` with the interpreter that runs this file
(use the repository's ``.venv/bin/python``), so the configuration next to it applies: 127.0.0.1
only, headless, no usage statistics. Extra options go to Streamlit (``--server.port 8502``).
Listening beyond this machine (``--server.address 0.0.0.0``) makes every action refused until an
operator exists: ``python -m pipeline users add NAME --role operator``.
"""
import os
import sys
from pathlib import Path

APP = Path(__file__).resolve().parent / "app.py"


def command(argv: list[str]) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", str(APP), *argv]


if __name__ == "__main__":
    os.execv(sys.executable, command(sys.argv[1:]))
