"""Spool directories: a file written or moved into a watched directory is queued for upload.

:class:`Spool` is one thread that turns each complete file under the watched directories
into a normal job on the queue (so retries, dead letters and metrics apply as to any job).
A file is complete when it was closed after writing (``IN_CLOSE_WRITE``) or moved in
(``IN_MOVED_TO``); a file found by a scan (at start, after an inotify queue overflow, or
every ``--watch-poll`` seconds where inotify is not used) is complete once its size and
mtime stayed the same for the quiet period.

A file is queued once: its job id is a hash of its path and identity (device, inode, size,
mtime), and ``lua/watched.lua`` pushes the job only if it can set the "queued" marker
(:meth:`~s3po_client.keys.QueueKeys.watched`) in the same step. A rescan, a restart or a
rename storm queues nothing twice; a rewritten file has a new identity and is queued again.

Why ``inotify_simple``: it hands over the raw inotify events (the close-after-write and
moved-in events this needs, and ``IN_Q_OVERFLOW``), is a small ctypes wrapper read from a
plain blocking thread like the daemon's others, and has no compiled part. ``watchfiles``
reports only "changed", which cannot tell a file still open for writing from a closed one;
``watchdog`` and ``asyncinotify`` wrap the same events in an observer or an event loop the
daemon does not use. Without it (or where inotify cannot start) the watcher scans instead.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

import redis

from s3po_client.admin import load_script
from s3po_client.errors import JobError
from s3po_client.job import Job
from s3po_client.keys import QueueKeys
from s3po_client.producer import group_by_shard, make_job

from .spoolfiles import Settler, entries, lstat, prune_empty_dirs, relpath, watch_job_id
from .watchspec import SpoolSettings, WatchSpec

logger = logging.getLogger(__name__)

#: How long a "queued" marker lives: a file kept after its upload (``--watch-keep``) and
#: found again by a scan later than this is queued again.
WATCHED_TTL_S = 30 * 24 * 3600
#: Most files queued in one round trip.
BATCH_FILES = 500
#: Longest wait for inotify events before the watcher checks its stop flag and pending files.
TICK_S = 0.5
#: Scan interval where inotify is unavailable and no ``--watch-poll`` was given.
FALLBACK_POLL_S = 2.0

try:
    from inotify_simple import INotify, flags  # type: ignore[import-untyped,import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - a dependency; scanning still works without it
    INotify = None

Found = tuple[WatchSpec, str]


@dataclass
class WatchCounts:
    """What the watchers of one daemon did, for the metrics: moved by the watcher's thread only."""

    #: files queued (one per version of a file: a rescan finding it again does not count)
    files_queued: int = 0
    #: full scans of every watched directory: at start, after an overflow, each poll, after a reload
    rescans: int = 0
    #: inotify queue overflows
    overflows: int = 0


class Spool:
    """The watcher thread: :meth:`start` it, :meth:`close` it at the stop.

    ``settings`` must be checked (:meth:`SpoolSettings.checked`); ``prefix`` is the queue's
    (several, comma-separated, for a sharded queue: each job goes to its shard).
    """

    def __init__(
        self, client: redis.Redis, settings: SpoolSettings, *, prefix: str, counts: WatchCounts | None = None
    ) -> None:
        self.client = client
        self.settings = settings
        self.counts = counts if counts is not None else WatchCounts()
        self._next: SpoolSettings | None = None  # watches a reload gave, taken up by the thread's next turn
        self._next_lock = threading.Lock()
        self.prefix = prefix
        self.poll_s = settings.poll_s
        self._script = load_script(client, "watched", package="s3pod")
        self._settler = Settler(settings.quiet_s)
        self._stop = threading.Event()
        self._inotify: Any = None
        self._dirs: dict[int, tuple[WatchSpec, str]] = {}
        self._rescan_due = True  # the first turn scans, setting the watches before any event is read
        self._announced = False
        self._skipped: set[str] = set()
        self._upkept_at = 0.0
        self._thread = threading.Thread(target=self._run, name="s3pod-spool", daemon=True)

    def start(self) -> None:
        """Start watching (inotify where it can start, else a scan every poll interval)."""
        if self.poll_s is None:
            try:
                if INotify is None:
                    raise OSError("the inotify_simple package is not installed")
                self._inotify = INotify()
            except OSError as exc:
                logger.warning("inotify unavailable (%s): scanning every %.1fs instead", exc, FALLBACK_POLL_S)
                self.poll_s = FALLBACK_POLL_S
        self._thread.start()

    def reconfigure(self, settings: SpoolSettings) -> None:
        """Watch ``settings.watches`` from the thread's next turn on (checked settings; their poll setting is kept).

        Every directory is watched anew and scanned: a file of a new watch is taken, one of a
        removed watch no longer is; a file queued already is not queued again.
        """
        with self._next_lock:
            self._next = settings

    def close(self) -> None:
        """Stop the thread and release inotify; files not yet queued are found by the next start's scan."""
        self._stop.set()
        self._thread.join(timeout=10)
        if self._inotify is not None:
            self._inotify.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except redis.RedisError as exc:
                logger.warning("spool: cannot queue on Redis (%s): rescanning in a second", exc)
                self._rescan_due = True
                self._stop.wait(1.0)
            except Exception:
                logger.exception("spool: unexpected error: rescanning in a second")
                self._rescan_due = True
                self._stop.wait(1.0)

    def _step(self) -> None:
        """One turn: new watches if a reload gave some, rescan when due, read events (or wait), settle pending files."""
        with self._next_lock:
            new, self._next = self._next, None
        if new is not None:
            self._replace_watches(new)
        if self._rescan_due:
            self._rescan()
        if self._inotify is not None:
            self._handle(self._inotify.read(timeout=int(TICK_S * 1000)))
        else:
            self._stop.wait(self.poll_s)
            self._rescan_due = True
        self._settle_pending()
        self._upkeep_if_due()

    def _replace_watches(self, new: SpoolSettings) -> None:
        """Drop every inotify watch, take ``new``'s watches, and rescan them (which watches their directories)."""
        if self._inotify is not None:
            for wd in list(self._dirs):
                try:
                    self._inotify.rm_watch(wd)
                except OSError:  # the directory went away meanwhile
                    pass
        self._dirs.clear()
        self.settings = replace(new, poll_s=self.settings.poll_s)
        self._announced = False
        self._rescan_due = True

    def _rescan(self) -> None:
        self._rescan_due = False
        self.counts.rescans += 1
        for spec in self.settings.watches:
            self._scan(spec, spec.directory)
        if not self._announced:  # once the first scan has set every watch
            self._announced = True
            for spec in self.settings.watches:
                logger.info("watching %s (%s)", spec, "inotify" if self._inotify else f"a scan every {self.poll_s}s")

    def _handle(self, events: Any) -> None:
        found: list[Found] = []
        for event in events:
            if event.mask & flags.Q_OVERFLOW:
                logger.warning("spool: inotify queue overflowed: rescanning every watched directory")
                self.counts.overflows += 1
                self._rescan_due = True
                continue
            where = self._dirs.get(event.wd)
            if where is None:
                continue
            spec, directory = where
            if event.mask & (flags.IGNORED | flags.MOVE_SELF):
                self._gone(event.wd, spec, directory)
                continue
            path = os.path.join(directory, event.name)
            if not event.mask & flags.ISDIR:
                if event.mask & (flags.CLOSE_WRITE | flags.MOVED_TO):
                    found.append((spec, path))
            elif event.mask & flags.MOVED_FROM:
                self._unwatch(path)
            elif event.mask & (flags.CREATE | flags.MOVED_TO) and not spec.ignores_dir(event.name):
                self._scan(spec, path)
        self._queue(found)

    def _scan(self, spec: WatchSpec, top: str) -> None:
        """Watch every directory under ``top`` (inotify), and queue each complete file under it.

        Each directory is watched before it is listed: a file made between the two is then
        reported by an event, whereas listing first would leave it to neither.
        """
        now = time.time()
        found: list[Found] = []
        directories = [top]
        while directories and not self._stop.is_set():  # at a stop, the next start's scan finds the rest
            directory = directories.pop()
            if self._inotify is not None:
                self._watch_dir(spec, directory)
            for entry in entries(directory):
                if entry.is_dir(follow_symlinks=False):
                    if not spec.ignores_dir(entry.name):
                        directories.append(entry.path)
                elif self._takes(spec, entry, now):
                    found.append((spec, entry.path))
            if len(found) >= BATCH_FILES:
                self._queue(found)
                found = []
        self._queue(found)

    def _takes(self, spec: WatchSpec, entry: os.DirEntry[str], now: float) -> bool:
        """Return whether a scan takes this file now (wanted, regular, complete)."""
        if not spec.wants(relpath(spec, entry.path)):
            return False
        st = lstat(entry.path)
        if st is None:
            return False
        if not stat.S_ISREG(st.st_mode):
            self._skip(entry.path, st)
            return False
        return self._settler.look(entry.path, st, now)

    def _watch_dir(self, spec: WatchSpec, directory: str) -> None:
        mask = (
            flags.CLOSE_WRITE
            | flags.MOVED_TO
            | flags.MOVED_FROM
            | flags.MOVE_SELF
            | flags.CREATE
            | flags.DONT_FOLLOW
            | flags.ONLYDIR
            | flags.EXCL_UNLINK
        )
        try:
            self._dirs[self._inotify.add_watch(directory, mask)] = (spec, directory)
        except OSError as exc:  # ENOSPC: past fs.inotify.max_user_watches; a rescan still finds its files
            logger.warning("spool: cannot watch %s: %s", directory, exc.strerror)

    def _gone(self, wd: int, spec: WatchSpec, directory: str) -> None:
        """Forget a directory removed or moved (a move's new name was reported by its parent)."""
        if directory == spec.directory:
            logger.warning("spool: watched directory %s was removed or moved away", directory)
            self._unwatch(directory)
        else:
            self._dirs.pop(wd, None)

    def _unwatch(self, path: str) -> None:
        """Stop watching a directory moved away (and those under it): moved back in, it is watched anew."""
        below = path + os.sep
        for wd, (_spec, directory) in list(self._dirs.items()):
            if directory == path or directory.startswith(below):
                del self._dirs[wd]
                try:
                    self._inotify.rm_watch(wd)
                except OSError:
                    pass

    def _settle_pending(self) -> None:
        now = time.time()
        found: list[Found] = []
        for path in self._settler.pending():
            st = lstat(path)
            spec = self._spec_of(path)
            if st is None or spec is None or not stat.S_ISREG(st.st_mode):
                self._settler.forget(path)
            elif self._settler.look(path, st, now):
                found.append((spec, path))
        self._queue(found)

    def _spec_of(self, path: str) -> WatchSpec | None:
        for spec in self.settings.watches:
            if path.startswith(spec.directory + os.sep):
                return spec
        return None

    def _queue(self, found: list[Found]) -> None:
        """Queue a job for each file found that a watch takes and that was not queued before."""
        jobs = [job for job in (self._job_for(spec, path) for spec, path in found) if job is not None]
        for start in range(0, len(jobs), BATCH_FILES):
            chunk = jobs[start : start + BATCH_FILES]
            for shard, shard_jobs in group_by_shard(chunk, self.prefix, lambda job: (job.bucket, job.key)).items():
                self._push(QueueKeys(shard), shard_jobs)

    def _push(self, keys: QueueKeys, jobs: list[Job]) -> None:
        pushed = self._script(
            keys=[keys.queue, *(keys.watched(job.id) for job in jobs)],
            args=[WATCHED_TTL_S, *(job.to_json() for job in jobs)],
            client=self.client,
        )
        self.counts.files_queued += len(pushed)
        for index in pushed:
            job = jobs[int(index) - 1]
            logger.info("watch queued job=%s path=%s bucket=%s key=%s", job.id, job.path, job.bucket, job.key)

    def _job_for(self, spec: WatchSpec, path: str) -> Job | None:
        """Return the job for the file at ``path``, or None if the watch does not take it (now)."""
        self._settler.forget(path)
        below = relpath(spec, path)
        st = lstat(path)
        if st is None or not spec.wants(below):
            return None
        if not stat.S_ISREG(st.st_mode):
            self._skip(path, st)
            return None
        try:
            job = make_job(
                spec.bucket,
                spec.key_for(below),
                path,
                headers=dict(spec.headers),
                compress=spec.compress,
                delete=spec.delete,
                destination=spec.destination,
            )
        except JobError:  # gone, or not a regular file, since the event
            return None
        return replace(job, id=watch_job_id(path, st))

    def _skip(self, path: str, st: os.stat_result) -> None:
        """Say once that a symlink (or another non-regular file) is left alone: a watch never follows one."""
        if path not in self._skipped:
            self._skipped.add(path)
            what = "symlink" if stat.S_ISLNK(st.st_mode) else "non-regular file"
            logger.warning(
                "spool: skipped %s %s: a watch takes regular files only, never through a symlink", what, path
            )

    def _upkeep_if_due(self) -> None:
        """Now and then: prune empty directories, and watch again a watched directory that came back."""
        now = time.time()
        if now - self._upkept_at < max(self.settings.quiet_s, 1.0):
            return
        self._upkept_at = now
        for spec in self.settings.watches:
            if spec.prune_empty_dirs:
                prune_empty_dirs(spec.directory, self.settings.quiet_s, now)
        if self._inotify is not None:
            watched = {directory for _spec, directory in self._dirs.values()}
            for spec in self.settings.watches:
                if spec.directory not in watched and os.path.isdir(spec.directory):
                    logger.warning("spool: watched directory %s is back: watching it again", spec.directory)
                    self._scan(spec, spec.directory)
