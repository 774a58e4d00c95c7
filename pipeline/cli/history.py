"""``history copy --to URL``: move a SQLite history onto PostgreSQL."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..config import Settings
from ..errors import ConfigError
from ..store import Store
from ..store.base import is_database_url
from ..store.transfer import copy_history, open_source
from .render import console


def register(commands: argparse._SubParsersAction) -> None:
    group = commands.add_parser("history", help="the run history itself (copy it onto PostgreSQL)").add_subparsers(
        dest="history_command", required=True, metavar="ACTION")
    copy = group.add_parser("copy", help="copy the SQLite history into an empty PostgreSQL database")
    copy.add_argument("--to", required=True, metavar="URL", help="postgresql://user@host:port/database (empty)")
    copy.add_argument("--from", dest="source", type=Path, metavar="FILE",
                      help="the SQLite history to copy (default: $FHV_HOME/history.db)")
    copy.set_defaults(handler=cmd_copy)


def cmd_copy(args: argparse.Namespace, settings: Settings) -> int:
    url = args.to.strip()
    if not is_database_url(url):
        shown = url.split("://", 1)[0] + "://..." if "://" in url else url
        raise ConfigError(f"--to {shown!r} is not a PostgreSQL URL; use postgresql://user@host:5432/database.")
    source = Store(open_source(args.source or settings.db_path))
    target = Store(url, migrate=False)
    try:
        counts = copy_history(source, target)
    finally:
        source.close()
        target.close()
    console.print(f"Copied {source.path} into {target.path}:", markup=False, highlight=False)
    for table, count in counts.items():
        console.print(f"  {table:<24} {count:>8,} rows", markup=False, highlight=False)
    console.print("Set FHV_DATABASE_URL to that URL on every host to use it.", markup=False, highlight=False)
    return 0
