"""``python -m pipeline``: the command line. Each command group lives in its own module."""
from __future__ import annotations

import argparse
import logging
from typing import Callable, Sequence

from ..config import load_settings
from ..errors import PipelineError
from . import runs
from .render import err_console

GROUPS = [runs]


def _optional_groups() -> list:
    """Command groups of the scheduler, when present."""
    try:
        from . import scheduling
    except ImportError:
        return []
    return [scheduling]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="Monthly retraining of the NYC FHV trip-duration model, with a run history.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logs")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS + _optional_groups():
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable = args.handler
    try:
        settings = load_settings()
        _configure_logging(args.verbose)
        return int(handler(args, settings) or 0)
    except PipelineError as error:
        err_console.print(f"[bold red]error:[/] {error}", markup=True, highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err_console.print("Interrupted.")
        return 130


def _configure_logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    root = logging.getLogger("pipeline")
    if not any(isinstance(h, RichHandler) for h in root.handlers):
        root.addHandler(RichHandler(console=err_console, show_path=False, markup=False,
                                    log_time_format="%H:%M:%S"))
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
