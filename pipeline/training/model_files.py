"""A model version's files: its two artifacts loaded as a user would, and the stable copy of the
champion's in ``$FHV_HOME/models/current/`` (``dv.b``, ``model.bin`` and ``card.json``), swapped in
atomically for batch jobs, which ``load_current`` reads without the history."""
from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import json
import logging
import os
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from ..config import Settings
from ..errors import DataError, NotFound
from ..store.interfaces import ModelFiles
from .job import FLOW_NAME

log = logging.getLogger("pipeline.training.champion")

CARD = "card.json"
FILES = {"vectorizer": "dv.b", "model": "model.bin"}  # artifact name -> its file in models/current/
CARD_METRICS = ("train_rows", "val_rows", "feature_count", "train_mse", "train_rmse", "val_mse", "val_rmse")


# -- the champion's artifacts, loaded as a user would --------------------------------------------
def artifact_files(store: ModelFiles, run_id: str) -> dict[str, dict[str, Any]]:
    """The run's vectorizer and model artifacts (by their kind); a sentence when one is missing."""
    found = {a["kind"] or a["name"]: a for a in store.artifacts(run_id) if (a["kind"] or a["name"]) in FILES}
    missing = [name for name in FILES if name not in found]
    if missing:
        raise NotFound(f"The run {run_id[:8]} has no {' and no '.join(missing)} artifact: it is not a model version.")
    return found


def artifact_bytes(store: ModelFiles, artifact: dict[str, Any]) -> bytes:
    """An artifact's bytes, checked against the SHA-256 its run recorded: its file when intact, else the
    history's copy (``Store.read_artifact``); NotFound with a sentence when neither is there."""
    return store.read_artifact(artifact)


def load_model(store: ModelFiles, run_id: str) -> tuple[Any, Any]:
    """The run's fitted DictVectorizer and LinearRegression, unpickled from its artifacts; DataError with
    a sentence when one does not unpickle."""
    files = artifact_files(store, run_id)
    return tuple(_unpickle(artifact_bytes(store, files[name]), run_id, name) for name in ("vectorizer", "model"))


def _unpickle(payload: bytes, run_id: str, name: str) -> Any:
    try:
        return pickle.loads(payload)
    except Exception as error:  # noqa: BLE001 - pickle.loads may raise any error (ImportError, EOFError, ...)
        raise DataError(f"The {name} of run {run_id[:8]} does not unpickle ({type(error).__name__}: "
                        f"{error})") from None


# -- the stable folder models/current/ -------------------------------------------------------------
def current_dir(settings: Settings) -> Path:
    return settings.home / "models" / "current"


def publish_current(store: ModelFiles, settings: Settings, *, flow: str = FLOW_NAME) -> dict[str, Any] | None:
    """Copy the champion's artifacts and its card to ``models/current/`` atomically; the card, or None
    when there is no champion. Under a lock, so the last to publish publishes the latest champion."""
    folder = current_dir(settings)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _locked(folder.parent / ".current.lock"):
        champion = store.champion(flow)
        if champion is None:
            return None
        card = champion_card(store, champion)
        if holds(folder, card):
            return card
        files = {FILES[name]: artifact_bytes(store, artifact) for name, artifact in
                 artifact_files(store, champion["id"]).items()}
        _swap_in(folder, files, card)
    log.info("Published %s (%s) to %s.", champion["name"], champion["id"][:8], folder)
    return card


def champion_card(store: ModelFiles, champion: dict[str, Any]) -> dict[str, Any]:
    """What ``models/current/card.json`` says: the run, its months, metrics and the files' checksums."""
    metrics = champion.get("metrics") or {}
    artifacts = artifact_files(store, champion["id"])
    return {
        "run_id": champion["id"], "name": champion["name"], "run_date": champion["run_date"],
        "train_month": champion.get("train_month"), "val_month": champion.get("val_month"),
        "synthetic": bool(champion.get("synthetic")), "data_source": champion.get("data_source"),
        "metrics": {k: metrics.get(k) for k in CARD_METRICS},
        "files": {name: {"file": FILES[name], "sha256": a["sha256"], "size": a["size"],
                         "source": a["path"]} for name, a in artifacts.items()},
        "champion_since": champion["event_at"], "action": champion["event_action"], "by": champion["event_actor"],
        "reason": champion["event_reason"],
    }


def read_card(settings: Settings) -> dict[str, Any] | None:
    return _card_of(current_dir(settings))


def load_current(folder: Path | str, tries: int = 5) -> tuple[dict[str, Any], Any, Any]:
    """The card, DictVectorizer and LinearRegression in ``folder`` (``$FHV_HOME/models/current``), for a
    batch job: the files are checked against the card's SHA-256 and read again if a publication swapped
    the folder between two reads. No history needed."""
    folder = Path(folder)
    for _ in range(tries):
        card = _card_of(folder)
        if card is None:
            raise NotFound(f"{folder} holds no champion (no readable {CARD}).")
        with contextlib.suppress(OSError):
            payloads = {name: (folder / f["file"]).read_bytes() for name, f in card["files"].items()}
            if all(hashlib.sha256(payloads[name]).hexdigest() == f["sha256"] for name, f in card["files"].items()):
                return card, pickle.loads(payloads["vectorizer"]), pickle.loads(payloads["model"])
    raise DataError(f"The files in {folder} do not match the checksums of its {CARD}: the next completed run, "
                    "promotion or rollback writes them again.")


def holds(folder: Path, card: dict[str, Any]) -> bool:
    """Whether ``folder`` holds this card and files with the card's checksums."""
    if _card_of(folder) != card:
        return False
    try:
        return all(hashlib.sha256((folder / f["file"]).read_bytes()).hexdigest() == f["sha256"]
                   for f in card["files"].values())
    except OSError:
        return False


def _card_of(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / CARD).read_text())
    except (OSError, ValueError):
        return None


def _swap_in(folder: Path, files: dict[str, bytes], card: dict[str, Any]) -> None:
    """Write a temp folder next to ``folder``, fsync it, then swap it in with one rename."""
    temp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".current-"))
    try:
        temp.chmod(0o755)  # mkdtemp's 0700 would hide the folder from a batch job run by another user
        for name, payload in {**files, CARD: json.dumps(card, indent=2).encode()}.items():
            _write_synced(temp / name, payload)
        _fsync_dir(temp)
        _exchange(temp, folder)
        _fsync_dir(folder.parent)
    finally:
        shutil.rmtree(temp, ignore_errors=True)  # after the swap: the old folder


def _write_synced(path: Path, payload: bytes) -> None:
    with open(path, "wb") as out:
        out.write(payload)
        out.flush()
        os.fsync(out.fileno())


def _fsync_dir(folder: Path) -> None:
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


_RENAME_EXCHANGE, _AT_FDCWD = 2, -100


def _exchange(new: Path, folder: Path) -> None:
    """Put ``new`` at ``folder`` in one step: renameat2(RENAME_EXCHANGE) on Linux swaps the two folders
    (``new`` then holds the old one, for the caller to remove); the first time, a plain rename."""
    if not folder.exists():
        os.rename(new, folder)
        return
    if _renameat2_exchange(new, folder):
        return
    old = new.with_name(new.name + "-old")  # no atomic swap here: the shortest window without a folder
    os.rename(folder, old)
    os.rename(new, folder)
    os.rename(old, new)


def _renameat2_exchange(a: Path, b: Path) -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    call = getattr(libc, "renameat2", None)
    if call is None:
        return False
    done = call(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if done == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
