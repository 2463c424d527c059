"""The worker's on-disk queue of usage batches not yet acknowledged by the control plane.

A directory of JSON files, one batch per file, named ``<sequence>-<batch_id>.json`` so that sorting
the names gives the order they were cut in.  Each file is written atomically (temp file, fsync,
rename, fsync of the directory): after a crash a batch is either entirely there or not there.  A
file is deleted only after the control plane acknowledged it.  Batches the control plane refuses
as malformed (or files that cannot be parsed) are moved to ``rejected/`` for an operator instead of
blocking the queue forever.

One process owns a spool directory at a time (an ``flock`` on ``.lock``): two workers sharing one
would send each other's batches concurrently and out of order.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from pathlib import Path
from typing import Any

from data_plane.errors import SpoolInUse

log = logging.getLogger("tollgate.usage")


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = open(directory / ".lock", "a+b")  # noqa: SIM115 - held for the spool's lifetime
        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise SpoolInUse(f"usage spool {directory} is in use by another process") from None
        for stale in directory.glob(".*.tmp"):
            stale.unlink(missing_ok=True)  # a write interrupted by a crash: never renamed, never counted
        files = self.pending()
        self._seq = int(files[-1].name.split("-", 1)[0]) + 1 if files else 1

    def pending(self) -> list[Path]:
        """Spooled batches, oldest first."""
        return sorted(p for p in self.directory.glob("*.json") if p.name[0].isdigit())

    def write(self, batch: dict[str, Any]) -> Path:
        path = self.directory / f"{self._seq:012d}-{batch['batch_id']}.json"
        self._seq += 1
        tmp = self.directory / f".{path.name}.tmp"
        with open(tmp, "wb") as f:
            f.write(json.dumps(batch, separators=(",", ":")).encode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        self._fsync_dir()
        return path

    def read(self, path: Path) -> dict[str, Any] | None:
        """The batch in ``path``, or None when the file is unreadable (moved to ``rejected/``)."""
        try:
            batch = json.loads(path.read_bytes())
            if not isinstance(batch, dict) or "batch_id" not in batch:
                raise ValueError("not a usage batch")
            return batch
        except (OSError, ValueError) as exc:
            log.error("usage spool file %s is unreadable (%s); moving it to rejected/", path, exc)
            self.reject(path)
            return None

    def remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)

    def reject(self, path: Path) -> None:
        rejected = self.directory / "rejected"
        rejected.mkdir(exist_ok=True)
        os.replace(path, rejected / path.name)

    def _fsync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        if not self._lock.closed:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
            self._lock.close()
