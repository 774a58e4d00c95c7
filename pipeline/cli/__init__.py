"""``python -m pipeline``: the command line. Each command group lives in its own module.

Only the group of the command given is imported (all of them for ``--help`` or an unknown command), and a
group imports what a command needs when it runs: a light command (``runs ls``, ``deployment ls``,
``models ls``, ...) imports neither pyarrow nor scikit-learn (``tests/test_cli_light.py``).
"""
from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import logging
import os
import sqlite3
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable, Sequence

from ..config import load_settings
from ..errors import PipelineError
from ..flows import load_flows
from ..store.base import storage_error

GROUPS = ("runs", "score", "users", "models", "notify", "history", "scheduling", "workers")  # in --help's order
COMMANDS = {"run": "runs", "runs": "runs", "score": "score", "users": "users", "models": "models",
            "notify": "notify", "notifications": "notify", "history": "history", "scheduler": "scheduling",
            "schedule": "scheduling", "deployment": "scheduling", "work-queue": "scheduling",
            "trigger": "scheduling", "backfill": "scheduling", "worker": "workers", "workers": "workers"}


def _groups(argv: Sequence[str] | None) -> list[ModuleType]:
    """The command groups to declare: the one of the command ``argv`` names, else every one (``--help``, no
    command or an unknown one: argparse lists them all)."""
    tokens = list(argv or ())
    command = next((token for token in tokens if not token.startswith("-")), None)
    before = tokens[:tokens.index(command)] if command in COMMANDS else tokens
    names = GROUPS if argv is None or command not in COMMANDS or {"-h", "--help"} & set(before) else \
        [COMMANDS[command]]
    return [importlib.import_module(f"{__name__}.{name}") for name in names]


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser of the command line ``argv`` (every command when None)."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="Monthly retraining of the NYC FHV trip-duration model, with a run history.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logs")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in _groups(argv):
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; bad input or a storage fault gives one sentence on stderr and exit code 2."""
    _closed_streams_to_devnull()
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = _parse(parser, argv)
    undecodable = _undecodable(args)
    if undecodable is not None:
        return _fail(f"The argument '{undecodable}' is not UTF-8 text; names, run ids, dates and URLs must be.")
    handler: Callable = args.handler
    settings = None
    try:
        settings = load_settings()
        load_flows()
        _configure_logging(args.verbose)
        return int(handler(args, settings) or 0)
    except PipelineError as error:
        return _fail(str(error))
    except sqlite3.Error as error:  # the store names its faults; this is the last resort
        return _fail(str(storage_error(error, settings.db_path if settings else "file")))
    except BrokenPipeError:  # `runs ls | head`: the reader left; nothing to say
        _silence_stdout()
        return 141
    except OSError as error:
        return _fail(_os_sentence(error, settings.home if settings else None))
    except KeyboardInterrupt:
        from .render import err_console

        err_console.print("Interrupted.")
        return 130


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; an unknown option names the command's closest one (``--limt``: did you mean ``--limit``?)."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        command = _command_parser(parser, argv)
        known = [s for action in command._actions for s in action.option_strings]
        option = extra[0].split("=")[0]
        close = difflib.get_close_matches(option, known, n=1) if option.startswith("-") else []
        if close:
            command.error(f"unrecognized option {option}; did you mean {close[0]}?")
        command.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _command_parser(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.ArgumentParser:
    """The parser of the (sub)command ``argv`` names, e.g. ``runs ls``'s."""
    for token in argv:
        commands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if commands and token in commands[0].choices:
            parser = commands[0].choices[token]
    return parser


def _closed_streams_to_devnull() -> None:
    """``runs ls >&-``: a closed stdout (or stderr) swallows what is printed, as /dev/null would."""
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))


def _undecodable(args: argparse.Namespace) -> str | None:
    """The first argument given as bytes that are not UTF-8 (shown with escapes), else None; a Path may be any bytes."""
    for value in vars(args).values():
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str) and not text.isascii() and _has_surrogates(text):
                return os.fsencode(text).decode("utf-8", "backslashreplace")
    return None


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _fail(sentence: str) -> int:
    from rich.markup import escape

    from .render import err_console

    err_console.print(f"[bold red]error:[/] {escape(sentence)}", markup=True, highlight=False, soft_wrap=True)
    return 2


def _os_sentence(error: OSError, home: Path | None) -> str:
    """'Could not use /x/y (in FHV_HOME): Permission denied.' from any OSError, whatever it carries."""
    where = f" {error.filename}" if error.filename else ""
    if home and error.filename and Path(os.fsdecode(error.filename)) in (home, *home.parents):
        where += " (FHV_HOME)"
    elif home and error.filename and home in Path(os.fsdecode(error.filename)).parents:
        where += " (in FHV_HOME)"
    reason = error.strerror or str(error) or type(error).__name__
    return f"Could not use{where}: {reason}."


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that Python's flush at exit does not complain about the closed pipe."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _configure_logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    from .render import err_console

    root = logging.getLogger("pipeline")
    if not any(isinstance(h, RichHandler) for h in root.handlers):
        root.addHandler(RichHandler(console=err_console, show_path=False, markup=False,
                                    log_time_format="%H:%M:%S"))
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
