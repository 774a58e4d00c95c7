"""Dashboard users: a name, a role and a salted password hash, in ``$FHV_HOME/users.json``.

Only the argon2id hash of each password is stored (argon2-cffi's ``PasswordHasher``: a random
salt per hash, parameters inside the hash string). Two roles: ``viewer`` reads; ``operator``
also triggers, backfills, cancels, pauses and resumes. The file is written atomically with
mode 0600. ``python -m pipeline users add NAME --role operator`` asks for the password.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from .errors import ConfigError

ROLES = ("viewer", "operator")
FILE_NAME = "users.json"
MIN_PASSWORD = 8
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_HASHER = PasswordHasher()


@dataclass(frozen=True)
class User:
    name: str
    role: str

    @property
    def operator(self) -> bool:
        return self.role == "operator"


def users_path(home: Path) -> Path:
    return Path(home) / FILE_NAME


def load(path: Path) -> dict[str, dict[str, str]]:
    """``{name: {"role": ..., "hash": ...}}``; empty when the file does not exist."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise ConfigError(f"The users file {path} cannot be read: {error}.") from None
    return dict(data.get("users") or {})


def add(path: Path, name: str, password: str, role: str) -> User:
    """Add or replace a user; the password is kept only as its argon2id hash."""
    check(name, password, role)
    users = load(path)
    users[name] = {"role": role, "hash": _HASHER.hash(password)}
    _write(Path(path), users)
    return User(name, role)


def remove(path: Path, name: str) -> None:
    users = load(path)
    if name not in users:
        raise ConfigError(f"No dashboard user {name!r} in {path}.")
    del users[name]
    _write(Path(path), users)


def verify(path: Path, name: str, password: str) -> User | None:
    """The user when the password matches its stored hash, else None (an unknown name included)."""
    entry = load(path).get(name)
    if not entry:
        _HASHER.hash(password)  # the same work for an unknown name as for a wrong password
        return None
    try:
        _HASHER.verify(entry["hash"], password)
    except (VerificationError, InvalidHashError):
        return None
    return User(name, entry.get("role") if entry.get("role") in ROLES else "viewer")


def check(name: str, password: str, role: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"The user name {name!r} is not valid; use letters, digits, '.', '_', '@' and '-'.")
    if role not in ROLES:
        raise ConfigError(f"The role {role!r} is not valid; use {' or '.join(ROLES)}.")
    if len(password) < MIN_PASSWORD:
        raise ConfigError(f"The password for {name!r} is too short; use at least {MIN_PASSWORD} characters.")


def _write(path: Path, users: dict[str, dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=".users-", suffix=".json")
    try:
        with os.fdopen(handle, "w") as out:
            json.dump({"users": users}, out, indent=2, sort_keys=True)
        os.chmod(temp, 0o600)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
