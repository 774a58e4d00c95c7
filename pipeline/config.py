"""Settings: one frozen object, built once at the entry point from the environment."""
from __future__ import annotations

import dataclasses
import math
import os
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from .errors import ConfigError

TLC_TEMPLATE = "https://d37ci6vzurychx.cloudfront.net/trip-data/fhv_tripdata_{month}.parquet"
DATA_ALIASES = {"tlc": TLC_TEMPLATE}
DEFAULT_DATA_URL = "demo"
DEFAULT_HOME = ".fhv"


@dataclass(frozen=True)
class Settings:
    home: Path
    data_url: str = DEFAULT_DATA_URL
    download_timeout: float = 60.0  # seconds without a byte before a download attempt gives up
    download_deadline: float = 1800.0  # seconds a whole download attempt may take (0: no deadline)
    solver: str = "exact"  # "exact" (closed-form least squares) or "lsqr" (scikit-learn's iterative fit)
    notify: tuple[str, ...] = ()  # Apprise URLs told of failures, lateness, gates and promotions (FHV_NOTIFY)
    notify_late_after: float = 3600.0  # seconds a LATE run waits past its slot before it is told
    notify_timeout: float = 10.0  # seconds one delivery attempt may take
    extra: Mapping[str, str] = field(default_factory=dict)
    database_url: str | None = None  # FHV_DATABASE_URL: the history on PostgreSQL instead of db_path

    @property
    def db_path(self) -> Path:
        return self.home / "history.db"

    @property
    def history(self) -> Path | str:
        """Where the run history is: the FHV_DATABASE_URL (PostgreSQL), else the SQLite file db_path."""
        return self.database_url or self.db_path

    @property
    def history_label(self) -> str:
        """The history as messages show it: the file, or the URL without its password."""
        if not self.database_url:
            return str(self.db_path)
        return masked_url(self.database_url)

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"

    @property
    def is_synthetic(self) -> bool:
        return is_synthetic(self.data_url)

    @property
    def lock_path(self) -> Path:
        return self.home / "scheduler.lock"

    def with_data_url(self, data_url: str | None) -> "Settings":
        if not data_url:
            return self
        return dataclasses.replace(self, data_url=normalize_data_url(data_url))

    def ensure_dirs(self) -> "Settings":
        for folder in (self.home, self.cache_dir, self.artifacts_dir):
            folder.mkdir(parents=True, exist_ok=True)
        return self


def normalize_data_url(data_url: str) -> str:
    """Expand aliases (``tlc``) and check that a template names ``{month}``."""
    text = str(data_url).strip()
    text = DATA_ALIASES.get(text.lower(), text)
    if text == "demo" or text.startswith("demo:"):
        _check_demo(text)
        return text
    _check_scheme(text, data_url)
    if "{month}" in text and "://" not in text.replace("file://", "", 1):
        _check_template_folder(text, data_url)
    if "{month}" not in text and not _is_folder(text):
        raise ConfigError(
            f"The data URL {data_url!r} has no {{month}} placeholder and is not a folder; "
            "use a template like https://host/fhv_tripdata_{month}.parquet, a folder, 'tlc' or 'demo'."
        )
    return text


def _check_scheme(text: str, data_url: str) -> None:
    scheme = text.split("://", 1)[0].lower() if "://" in text else None
    if scheme not in (None, "http", "https", "file"):
        raise ConfigError(f"The data URL {data_url!r} uses the scheme {scheme!r}, which is not supported; "
                          "use http(s)://, file://, a folder, 'tlc' or 'demo'.")
    if scheme in ("http", "https"):
        _check_host(text, data_url)


_HOST = re.compile(r"^[a-z0-9._:-]+$")  # what urlsplit leaves of a name, an IPv4 or an IPv6 address


def _check_host(text: str, data_url: str) -> None:
    """An http(s) template that no request could ever reach is refused now, not retried as if the network were down."""
    try:
        host = urllib.parse.urlsplit(text.replace("{month}", "2021-01")).hostname
    except ValueError as error:  # 'http://[::1/...': an unclosed IPv6 address
        raise ConfigError(f"The data URL {data_url!r} is not a valid URL: {error}.") from None
    if not host:
        raise ConfigError(f"The data URL {data_url!r} names no host; use one like "
                          "https://host/fhv_tripdata_{month}.parquet.")
    if not _HOST.match(host):
        raise ConfigError(f"The data URL {data_url!r} has the host {host!r}, which is not a host name "
                          "(letters, digits, '-' and '.') or an IP address.")


def _check_template_folder(text: str, data_url: str) -> None:
    """A local template's folder must exist: a typo should fail now, not wait for data for days."""
    path = text[len("file://"):] if text.startswith("file://") else text
    folder = Path(path.split("{month}", 1)[0] + "x").expanduser().parent
    if not folder.is_dir():
        raise ConfigError(f"The data folder {folder} does not exist (data URL {data_url!r}).")


def _is_folder(text: str) -> bool:
    path = text[len("file://"):] if text.startswith("file://") else text
    return "://" not in path and Path(path).is_dir()


MAX_DEMO_ROWS = 25_000_000


def _check_demo(text: str) -> None:
    if text == "demo":
        return
    rows = text.split(":", 1)[1]
    if not (rows.isascii() and rows.isdigit()) or not 10 <= int(rows) <= MAX_DEMO_ROWS:
        raise ConfigError(f"The demo size in {text!r} must be a whole number of rows of at least 10 and at most "
                          f"{MAX_DEMO_ROWS:,} (the size of the largest real months), like demo:50000.")


def _solver(name: str) -> str:
    if name not in ("exact", "lsqr"):
        raise ConfigError(f"FHV_SOLVER={name!r} is not a solver; use 'exact' (default) or 'lsqr'.")
    return name


ZERO_MEANS = {"FHV_DOWNLOAD_DEADLINE": "no deadline"}  # the settings in seconds where 0 switches the limit off
MAX_SECONDS = 7 * 86_400  # a week: more is a typo, and a socket timeout overflows past about 1e10 s


def _float_env(env: Mapping[str, str], name: str, default: float) -> float:
    """Seconds from the environment: above 0 and at most a week (or 0, where ZERO_MEANS says what it means)."""
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number; use a number of seconds, like {default:g}.") from None
    if value == 0 and name in ZERO_MEANS:
        return value
    if not (math.isfinite(value) and 0 < value <= MAX_SECONDS):
        zero = f" (or 0 for {ZERO_MEANS[name]})" if name in ZERO_MEANS else ""
        raise ConfigError(f"{name}={raw!r} is not valid; use a number of seconds above 0 and at most "
                          f"{MAX_SECONDS} (a week){zero}, like {default:g}.")
    return value


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    home = Path(env.get("FHV_HOME") or DEFAULT_HOME).expanduser().absolute()
    return Settings(
        home=home,
        data_url=normalize_data_url(env.get("FHV_DATA_URL") or DEFAULT_DATA_URL),
        download_timeout=_float_env(env, "FHV_DOWNLOAD_TIMEOUT", 60.0),
        download_deadline=_float_env(env, "FHV_DOWNLOAD_DEADLINE", 1800.0),
        solver=_solver(env.get("FHV_SOLVER") or "exact"),
        notify=notify_urls(env.get("FHV_NOTIFY") or ""),
        notify_late_after=_float_env(env, "FHV_NOTIFY_LATE_AFTER", 3600.0),
        notify_timeout=_float_env(env, "FHV_NOTIFY_TIMEOUT", 10.0),
        extra={k: v for k, v in env.items() if k.startswith("FHV_")},
        database_url=database_url(env.get("FHV_DATABASE_URL") or ""),
    )


def database_url(text: str) -> str | None:
    """FHV_DATABASE_URL: a postgresql:// URL, or nothing (the history stays $FHV_HOME/history.db)."""
    text = text.strip()
    if not text:
        return None
    if not text.startswith(("postgresql://", "postgres://")):
        shown = text.split("://", 1)[0] + "://..." if "://" in text else text
        raise ConfigError(f"FHV_DATABASE_URL={shown!r} is not a PostgreSQL URL; use postgresql://user@host:port/"
                          "database, or leave it unset to keep the history in $FHV_HOME/history.db.")
    check_user_info(text)
    return text


def _user_info(url: str) -> str:
    """What stands between ``//`` and the host's ``@`` (the last one before any ``?``): user[:password]."""
    head = url.partition("://")[2].partition("?")[0]
    return head.rpartition("@")[0]


def masked_url(url: str) -> str:
    """The URL with its password hidden, whatever it holds (an '@' or '/' not percent-encoded too)."""
    info = _user_info(url)
    if ":" not in info:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{info.partition(':')[0]}:***{rest[len(info):]}"


def check_user_info(url: str) -> None:
    """PostgreSQL reads a URL's user name and password up to the first '@' or '/': one left unencoded would
    send the rest of the password to the server as its host name (and show it in every error)."""
    if "@" in _user_info(url) or "/" in _user_info(url):
        raise ConfigError(f"FHV_DATABASE_URL={masked_url(url).partition('?')[0]!r} has an '@' or '/' in its user "
                          "name or password that is not percent-encoded: write '@' as %40 and '/' as %2F.")


_URL_GAP = re.compile(r"\s+|,\s*(?=[A-Za-z][A-Za-z0-9+.-]*://)")


def notify_urls(text: str) -> tuple[str, ...]:
    """FHV_NOTIFY: Apprise URLs separated by spaces, new lines or commas (a comma inside a URL stays)."""
    return tuple(url for url in _URL_GAP.split(text.strip()) if url)


def is_synthetic(data_url: str) -> bool:
    return data_url == "demo" or data_url.startswith("demo:")
