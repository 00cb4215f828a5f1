"""One claimed job, one attempt: parse → open → reserve memory → upload → one result.

:class:`Runner` touches the file and the store, never the queue: what it returns says what
happened, and :class:`~s3pod.settlement.Settlement` settles the job in Redis from that.
Whatever a producer wrote, and whatever goes wrong, ends as one of the four results: no
exception leaves :meth:`Runner.run`.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import BinaryIO, Protocol

from s3po_client.errors import JobError, S3poError, SourceChangedError, TransferError
from s3po_client.job import Job
from s3po_client.localfile import FileStat
from s3po_client.settle import check_unchanged
from s3po_client.transfer import TransferEngine, UploadResult

from .budget import MemoryBudget
from .config import WorkerConfig
from .destinations import Destinations
from .sharded import Claimed
from .uploads import record_for

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Uploaded:
    """Stored and verified: the file is still to be deleted (if asked) and the job acknowledged."""

    claimed: Claimed
    job: Job
    started: float
    result: UploadResult


@dataclass(frozen=True, slots=True)
class Failed:
    """The attempt failed: retried later, or dead-lettered, as the retry policy says."""

    claimed: Claimed
    job: Job
    started: float
    error: Exception


@dataclass(frozen=True, slots=True)
class Rejected:
    """Not a job the daemon can run (``job`` None: not a job at all); ``missing``: its file is not there."""

    claimed: Claimed
    job: Job | None
    started: float
    error: str
    missing: bool = False


@dataclass(frozen=True, slots=True)
class Stopped:
    """The stop came while the job waited for memory: it goes back to the queue, untouched."""

    claimed: Claimed
    job: Job
    started: float


RunResult = Uploaded | Failed | Rejected | Stopped


def parse(raw: bytes) -> Job | str:
    """Return the job in ``raw``, or why it is not one.

    Any exception counts: a producer can write anything, and JSON nested deeper than the
    interpreter's recursion limit raises RecursionError, not ValueError.
    """
    try:
        return Job.from_json(raw)
    except JobError as exc:
        return f"invalid job: {exc}"
    except Exception as exc:  # noqa: BLE001 - whatever a producer wrote ends as one dead letter
        return f"invalid job: {type(exc).__name__}: {exc}"


class UploadWatcher(Protocol):
    """Hears of each upload in flight (the dashboard's board): its start, its progress, its end."""

    def started(self, job_id: str, bucket: str, key: str, path: str, total_bytes: int) -> None: ...

    def progress(self, job_id: str, done_bytes: int) -> None: ...

    def finished(self, job_id: str) -> None: ...


class Runner:
    """Runs one attempt of a claimed job; ``stopping`` ends a wait for memory; ``watcher`` hears its progress."""

    def __init__(
        self,
        destinations: Destinations,
        config: WorkerConfig,
        budget: MemoryBudget,
        stopping: threading.Event,
        watcher: UploadWatcher | None = None,
    ) -> None:
        self.destinations = destinations
        self.config = config
        self.budget = budget
        self.stopping = stopping
        self.watcher = watcher

    def run(self, claimed: Claimed, before_long: Callable[[], None] | None = None) -> RunResult:
        """Run one attempt of ``claimed``; ``before_long`` is called before a multipart-sized file is read."""
        started = time.monotonic()
        job = parse(claimed.raw)
        if isinstance(job, str):
            return Rejected(claimed, None, started, job)
        # A first attempt's claim is a DEBUG line: its "uploaded" (or "retry", "dead") line follows.
        logger.log(
            logging.INFO if job.attempt else logging.DEBUG,
            "claimed job=%s bucket=%s key=%s attempt=%d",
            job.id,
            job.bucket,
            job.key,
            job.attempt,
        )
        try:
            route = self.destinations.route(job)
        except JobError as exc:
            return Rejected(claimed, job, started, str(exc))
        try:
            opened = self.config.paths.open(job.path)  # checked on the descriptor that is read
        except JobError as exc:
            return Rejected(claimed, job, started, str(exc), missing=not os.path.lexists(job.path))
        # The engine closes the file it reads; a copy of the descriptor tells what became of it.
        witness = os.dup(opened[0].fileno())
        try:
            with opened[0]:
                return self._upload(claimed, job, route, started, opened, witness, before_long)
        except Exception as exc:  # noqa: BLE001 - every failure settles the job, none ends the worker
            if not isinstance(exc, S3poError):
                logger.exception("bug while uploading job=%s", job.id)
            return Failed(claimed, job, started, exc)
        finally:
            os.close(witness)

    def _upload(
        self,
        claimed: Claimed,
        job: Job,
        route: tuple[TransferEngine, Mapping[str, str]],
        started: float,
        opened: tuple[BinaryIO, str],
        witness: int,
        before_long: Callable[[], None] | None,
    ) -> RunResult:
        file, path = opened
        engine, headers = route
        threshold = engine.settings.multipart_threshold_bytes
        size = os.fstat(file.fileno()).st_size
        small = size < threshold
        if not small and before_long is not None:
            before_long()
        reservation = self.destinations.budget_for(job, self.budget).reserve(size, self.stopping)
        if reservation is None:
            return Stopped(claimed, job, started)
        watcher = self.watcher
        progress = None
        if watcher is not None:
            watcher.started(job.id, job.bucket, job.key, job.path, size)
            progress = functools.partial(_report_progress, watcher, job.id)
        try:
            # One attempt (retries=0): the next one is scheduled in Redis, not slept through here.
            result = engine.upload_file(
                job.bucket,
                job.key,
                path,
                headers=headers,
                compress=job.compress,
                retries=0,
                allow_dirs=self.config.paths.allow_dirs,
                opened=opened,
                multipart_state=record_for(
                    claimed.shard, job.id, small=small, on_multipart=lambda: reservation.grow_to(threshold)
                ),
                progress=progress,
            )
        finally:
            reservation.release()
            if watcher is not None:
                watcher.finished(job.id)
        if result is False:  # only with silent=True, which the daemon never asks for
            raise TransferError("the engine returned no result", bucket=job.bucket, key=job.key)
        logger.info(
            "uploaded job=%s bucket=%s key=%s bytes=%d duration=%.3fs attempt=%d",
            job.id,
            job.bucket,
            job.key,
            result.bytes_sent,
            time.monotonic() - started,
            job.attempt,
        )
        if job.delete:
            ensure_kept_or_gone_unchanged(result, witness, job)
        return Uploaded(claimed, job, started, result)


def ensure_kept_or_gone_unchanged(result: UploadResult, witness: int, job: Job) -> None:
    """Raise SourceChangedError unless the file is unchanged, or gone without a change after it was read.

    A file removed right after its verified upload (by another copy of the job, say) is
    stored in its last version when ``witness`` (a descriptor of the file read) shows it
    as it was when the attempt began: uploading it again is impossible and failing the job would end in a
    false dead letter.
    """
    try:
        check_unchanged(result)
    except SourceChangedError:
        if os.path.lexists(result.source_path or job.path) or result.source is None:
            raise
        # The unlink itself moved the inode's ctime (its link count changed): compare the rest.
        now = replace(FileStat.from_stat(os.fstat(witness)), ctime_ns=0)
        if now != replace(result.source, ctime_ns=0):
            raise
        logger.warning("file of job=%s vanished after its verified upload, unchanged: its object is stored", job.id)


def _report_progress(watcher: UploadWatcher, job_id: str, done: int, _total: int) -> None:
    watcher.progress(job_id, done)
