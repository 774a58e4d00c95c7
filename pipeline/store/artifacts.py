"""Artifacts kept in the history itself: their bytes, by SHA-256, so that any host can read them.

The artifacts are kilobytes (the vectorizer and the model). A run's ``artifacts`` rows name a
local file and its SHA-256; ``artifact_blobs`` holds the bytes once per SHA-256 (the same model
bytes recorded twice are stored once). A host's files are a cache: ``read_artifact`` reads the
local file when it is there and intact, else the history's copy.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

from ..errors import NotFound, StorageError
from .base import to_db
from .parts import StoreParts


class ArtifactStore(StoreParts):
    """The bytes of artifacts (mixed into ``Store``)."""

    def put_artifact_blob(self, sha256: str, data: bytes, *, now: dt.datetime) -> bool:
        """Keep ``data`` under its SHA-256 (checked); False when the history had those bytes already."""
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise ValueError(f"The artifact bytes have the SHA-256 {actual}, not the recorded {sha256}.")
        with self.atomic() as conn:
            return conn.execute("INSERT INTO artifact_blobs (sha256, size, data, created_at) "
                                "VALUES (:sha256, :size, :data, :now) ON CONFLICT DO NOTHING",
                                {"sha256": sha256, "size": len(data), "data": data, "now": to_db(now)}).rowcount == 1

    def artifact(self, artifact_id: int) -> dict[str, Any]:
        """One artifact row, with whether the history holds its bytes (``stored``)."""
        row = self._one("SELECT a.*, CASE WHEN b.sha256 IS NULL THEN 0 ELSE 1 END AS stored FROM artifacts a "
                        "LEFT JOIN artifact_blobs b ON b.sha256 = a.sha256 WHERE a.id = :id", {"id": artifact_id})
        if row is None:
            raise NotFound(f"There is no artifact {artifact_id} in the history.")
        return row

    def read_artifact(self, artifact: dict[str, Any], *, local: bool = True) -> bytes:
        """The artifact's bytes: the local file if it is there with the recorded SHA-256, else the history's
        (``local=False``: the history's only, as the dashboard serves them)."""
        local = _intact_file(Path(artifact["path"]), artifact["sha256"]) if local else None
        if local is not None:
            return local
        row = self.conn.execute("SELECT data FROM artifact_blobs WHERE sha256 = :sha256",
                                {"sha256": artifact["sha256"]}).fetchone()
        if row is None:
            raise NotFound(f"The artifact {artifact['name']} ({artifact['sha256'][:12]}) is neither at "
                           f"{artifact['path']} nor in the history (it was recorded before the history kept "
                           "artifact bytes).")
        data = bytes(row[0])
        if hashlib.sha256(data).hexdigest() != artifact["sha256"]:
            raise StorageError(f"The history's copy of the artifact {artifact['name']} does not match its SHA-256 "
                               f"{artifact['sha256'][:12]}: the history is damaged.")
        return data


def _intact_file(path: Path, sha256: str) -> bytes | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data if hashlib.sha256(data).hexdigest() == sha256 else None
