"""``users add|rm|ls``: the dashboard's login users (see ``pipeline.users``)."""
from __future__ import annotations

import argparse
import getpass
import sys

from .. import users
from ..config import Settings
from ..errors import ConfigError
from .render import console


def register(commands: argparse._SubParsersAction) -> None:
    group = commands.add_parser("users", help="dashboard login users (viewer or operator)").add_subparsers(
        dest="users_command", required=True, metavar="ACTION")
    add = group.add_parser("add", help="add a user or set a user's password and role")
    add.add_argument("name")
    add.add_argument("--role", choices=users.ROLES, default="viewer")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    add.set_defaults(handler=cmd_add)
    rm = group.add_parser("rm", help="remove a user")
    rm.add_argument("name")
    rm.set_defaults(handler=cmd_rm)
    ls = group.add_parser("ls", help="list the users and their roles")
    ls.set_defaults(handler=cmd_ls)


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    if not sys.stdin.isatty():
        raise ConfigError("No terminal to ask for the password; pass it with --password-stdin.")
    first, second = getpass.getpass("Password: "), getpass.getpass("Again: ")
    if first != second:
        raise ConfigError("The two passwords differ; nothing was changed.")
    return first


def cmd_add(args: argparse.Namespace, settings: Settings) -> int:
    path = users.users_path(settings.home)
    user = users.add(path, args.name, _password(args), args.role)
    console.print(f"User {user.name} ({user.role}) saved in {path} (password stored as an argon2id hash).",
                  markup=False, highlight=False)
    return 0


def cmd_rm(args: argparse.Namespace, settings: Settings) -> int:
    path = users.users_path(settings.home)
    users.remove(path, args.name)
    console.print(f"User {args.name} removed from {path}.", markup=False, highlight=False)
    return 0


def cmd_ls(args: argparse.Namespace, settings: Settings) -> int:
    path = users.users_path(settings.home)
    found = users.load(path)
    if not found:
        console.print(f"No dashboard user in {path}: the dashboard needs no login.", markup=False)
    for name, entry in sorted(found.items()):
        console.print(f"{name}\t{entry.get('role')}", markup=False, highlight=False)
    return 0
