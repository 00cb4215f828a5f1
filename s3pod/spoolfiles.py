"""The files of a spool directory: when one is complete, its job id, the empty directories left behind.

Plain functions and one small class, used by the watcher (:mod:`s3pod.spool`) and tested with
numbers and real files.
"""

from __future__ import annotations

import hashlib
import logging
import os

from .watchspec import WatchSpec

logger = logging.getLogger("s3pod.spool")


def watch_job_id(path: str, st: os.stat_result) -> str:
    """Return the job id of one version of a watched file: 32 hex digits of a BLAKE2b of its path and identity."""
    identity = f"{path}\0{st.st_dev}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}"
    return hashlib.blake2b(identity.encode(errors="surrogateescape"), digest_size=16).hexdigest()


class Settler:
    """Files found by a scan, each taken once its size and mtime stayed the same for ``quiet_s``."""

    def __init__(self, quiet_s: float) -> None:
        self.quiet_s = quiet_s
        self._seen: dict[str, tuple[int, int, float]] = {}

    def look(self, path: str, st: os.stat_result, now: float) -> bool:
        """Return whether the file is complete now; remember it otherwise, to look again later."""
        version = (st.st_size, st.st_mtime_ns)
        before = self._seen.get(path)
        if now - st.st_mtime >= self.quiet_s or (
            before is not None and before[:2] == version and now - before[2] >= self.quiet_s
        ):
            self._seen.pop(path, None)
            return True
        if before is None or before[:2] != version:
            self._seen[path] = (*version, now)
        return False

    def forget(self, path: str) -> None:
        self._seen.pop(path, None)

    def pending(self) -> list[str]:
        return list(self._seen)


def prune_empty_dirs(top: str, quiet_s: float, now: float) -> None:
    """Remove each empty directory below ``top`` (never ``top``) unchanged for ``quiet_s``.

    The quiet period leaves a directory a program just made, and is about to write into, alone.
    """
    for directory, _subdirs, files in os.walk(top, topdown=False):
        if directory == top or files:
            continue
        st = lstat(directory)
        if st is None or now - st.st_mtime < quiet_s:
            continue
        try:
            os.rmdir(directory)  # fails, harmlessly, if something was put in since the walk
        except OSError:
            continue
        logger.info("spool: removed empty directory %s", directory)


def relpath(spec: WatchSpec, path: str) -> str:
    """Return ``path`` relative to the watched directory, ``/``-separated (the key's tail)."""
    return os.path.relpath(path, spec.directory).replace(os.sep, "/")


def lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None


def entries(directory: str) -> list[os.DirEntry[str]]:
    """Return the entries of ``directory``, or none (with a warning) if it cannot be listed."""
    try:
        with os.scandir(directory) as entries:
            return list(entries)
    except OSError as exc:
        logger.warning("spool: cannot scan %s: %s", directory, exc.strerror)
        return []


__all__ = ["Settler", "entries", "lstat", "prune_empty_dirs", "relpath", "watch_job_id"]
