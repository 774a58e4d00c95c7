"""Notification targets: Apprise URLs, checked, masked and keyed; the secrets never leave ``Target.url``."""
from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from typing import Any, Iterable

from ...config import Settings
from ...errors import ConfigError
from ...store import Store

logger = logging.getLogger("pipeline.orchestration.notify")


@dataclass(frozen=True)
class Target:
    """One Apprise URL: ``url`` holds secrets; ``label`` is safe to show and store; ``key`` is unique."""

    url: str
    label: str
    key: str

    def __repr__(self) -> str:
        return f"Target({self.label!r})"


def target(url: str, where: str = "FHV_NOTIFY") -> Target:
    """Check one Apprise URL; a ConfigError names where it came from and its scheme, never its secrets."""
    plugin = _instantiate(url)
    if plugin is None:
        scheme = url.split("://", 1)[0] if "://" in url else url[:12]
        raise ConfigError(f"The notification URL {scheme}://… in {where} is not one Apprise can send to: check "
                          "its scheme and required parts (see https://github.com/caronc/apprise/wiki).")
    return Target(url=url, label=mask(plugin), key=hashlib.sha256(url.encode()).hexdigest()[:32])


def _instantiate(url: str) -> Any:
    import apprise  # imported only where notifications are used (about 0.2 s)

    return apprise.Apprise.instantiate(url.strip(), suppress_exceptions=True) if url.strip() else None


# A path segment that looks like a token (a webhook's secret is often its path: json://host/hooks/T0A1B2C3D4E5)
_TOKEN = re.compile(r"^(?=[^/]*\d)(?=[^/]*[A-Za-z])[\w.~-]{8,}$|^[\w.~-]{16,}$")


def mask(plugin: Any) -> str:
    """Apprise's privacy rendering of the URL, without the query string (it may carry tokens in headers)
    and with token-like path segments hidden too (Apprise shows the path of generic webhooks in full)."""
    shown = plugin.url(privacy=True).split("?", 1)[0].rstrip("/")
    scheme, sep, rest = shown.partition("://")
    host, slash, path = rest.partition("/")
    path = "/".join(f"{part[:2]}****" if _TOKEN.match(part) else part for part in path.split("/"))
    return f"{scheme}{sep}{host}{slash}{path}"


def settings_targets(settings: Settings) -> list[Target]:
    return [target(url, "FHV_NOTIFY") for url in settings.notify]


def deployment_targets(urls: Iterable[str], deployment: str) -> list[Target]:
    return [target(url, f"the notify list of {deployment!r}") for url in urls]


class Targets:
    """Every target, for every event (FHV_NOTIFY) and per deployment (its ``notify``)."""

    def __init__(self, everywhere: list[Target], by_deployment: dict[int, list[Target]]):
        self.everywhere, self.by_deployment = everywhere, by_deployment

    @classmethod
    def load(cls, store: Store, settings: Settings) -> "Targets":
        own: dict[int, list[Target]] = {}
        for deployment_id, urls in store.notify_targets().items():
            own[deployment_id] = [t for t in (_stored_target(url, deployment_id) for url in urls) if t]
        return cls(settings_targets(settings), own)

    def for_deployment(self, deployment_id: int | None) -> list[Target]:
        seen, out = set(), []
        for item in self.everywhere + self.by_deployment.get(deployment_id, []):
            if item.key not in seen:
                seen.add(item.key)
                out.append(item)
        return out

    def all(self) -> list[Target]:
        """Every target once: FHV_NOTIFY's, then the deployments' own."""
        unique: dict[str, Target] = {}
        for item in self.everywhere + [t for own in self.by_deployment.values() for t in own]:
            unique.setdefault(item.key, item)
        return list(unique.values())

    def by_key(self) -> dict[str, Target]:
        return {t.key: t for t in self.all()}

    def __bool__(self) -> bool:
        return bool(self.everywhere or any(self.by_deployment.values()))


def _stored_target(url: str, deployment_id: int) -> Target | None:
    try:
        return target(url, f"deployment {deployment_id}")
    except ConfigError as error:  # checked when registered; an Apprise upgrade may still drop a scheme
        logger.warning("%s", error)
        return None


def scrub(text: str, item: Target) -> str:
    """``text`` without any part of the target's URL that its masked label hides (tokens, passwords, keys)."""
    for part in sorted(set(re.split(r"[/:@?&=#,+]+", item.url)), key=len, reverse=True):
        if len(part) >= 4 and part not in item.label:
            text = text.replace(part, "****")
    return text
