"""Background upload threads in the calling process: what ``Connection.run_loop()`` starts.

This is the in-process alternative to the daemon, for programs that do not run ``s3pod``.
It needs no Redis and keeps no state anywhere but memory: uploads still waiting when the
process dies (a crash, ``kill -9``, a power cut) are lost. At a normal interpreter exit
the uploads queued or in hand are finished first; if that wait is interrupted (a second
Ctrl-C), each upload left behind is logged at ERROR with its path, so none disappears
without a word.

Each thread makes one attempt per job. A failed attempt that may be retried goes to a
timer heap, due after the policy's backoff: no thread sleeps through a backoff, so four
failing uploads with a 60 s base do not stall a pool of four. A retry still waiting when
the interpreter exits is not waited for (the exit is not held up for minutes): it is
logged as abandoned, its file kept.
"""

from __future__ import annotations

import atexit
import collections
import heapq
import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from .errors import S3poError
from .job import Job
from .retry import RetryPolicy

logger = logging.getLogger(__name__)

DEFAULT_THREADS = 4
#: The most failures :meth:`UploadThreads.failures` keeps (the newest): a long-running program
#: whose uploads keep failing must not grow without bound.
MAX_FAILURES_KEPT = 1000


@dataclass(frozen=True, slots=True)
class UploadFailure:
    """An upload the background threads gave up on: the job, the final error and when.

    ``error`` carries no traceback (nor do its causes): the frames of a failed upload hold
    its buffers (a whole part, a whole small file), which a kept traceback would pin in memory.
    """

    job: Job
    error: BaseException
    failed_at: float

    @property
    def bucket(self) -> str:
        return self.job.bucket

    @property
    def key(self) -> str:
        return self.job.key

    @property
    def path(self) -> str:
        return self.job.path


class UploadThreads:
    """A pool of threads making one attempt of ``upload(job)`` for each submitted job, in submission order.

    ``upload`` raises on failure. When ``retry`` allows another attempt, the job's next
    attempt is scheduled on a timer heap after ``retry.delay_s``; otherwise the failure is
    logged (at INFO for a ``silent`` job, else ERROR) and kept for :meth:`failures`.
    """

    def __init__(
        self,
        upload: Callable[[Job], object],
        *,
        threads: int = DEFAULT_THREADS,
        name: str = "s3po-upload",
        retry: RetryPolicy | None = None,
    ) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self._upload = upload
        self._name = name
        self._retry = retry
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True) for i in range(threads)]
        self._timer = threading.Thread(target=self._release_due, name=f"{name}-timer", daemon=True)
        self._changed = threading.Condition()
        self._unfinished: dict[str, Job] = {}  # submitted and not yet settled, by job id
        self._waiting: list[tuple[float, int, Job]] = []  # (due, order, next attempt): the timer heap
        self._order = 0
        self._failures: collections.deque[UploadFailure] = collections.deque(maxlen=MAX_FAILURES_KEPT)
        self._stopped = False
        self._exiting = False

    def start(self) -> UploadThreads:
        """Start the threads and arrange for pending uploads to be finished at interpreter exit."""
        for thread in self._threads:
            thread.start()
        self._timer.start()
        _finish_at_exit(self)
        return self

    # -- the caller's side ---------------------------------------------------------------

    def submit(self, job: Job) -> None:
        """Hand ``job`` to the threads; returns at once."""
        with self._changed:
            if self._stopped:
                raise S3poError("the background upload threads are stopped (the connection was closed)")
            self._unfinished[job.id] = job
        self._queue.put(job)

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until every job submitted so far is settled (retries included); False if ``timeout_s`` ran out."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._unfinished, timeout_s)

    def close(self) -> None:
        """Wait for every submitted job, then stop the threads. Later submissions raise."""
        with self._changed:
            if self._stopped:
                return
        self.wait()
        with self._changed:
            self._stopped = True
            self._changed.notify_all()
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()
        self._timer.join()

    def failures(self) -> list[UploadFailure]:
        """Return the uploads that failed for good so far (the newest ``MAX_FAILURES_KEPT``), oldest first."""
        with self._changed:
            return list(self._failures)

    @property
    def pending(self) -> list[Job]:
        """The jobs submitted and not yet settled (queued, in hand, or waiting for a retry)."""
        with self._changed:
            return list(self._unfinished.values())

    # -- the threads' side ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                self._upload(job)
            except Exception as exc:  # noqa: BLE001 - a failed upload never ends a thread
                if self._schedule_retry(job, exc):
                    continue
                self._fail(job, exc)
            with self._changed:
                self._unfinished.pop(job.id, None)
                self._changed.notify_all()

    def _schedule_retry(self, job: Job, exc: Exception) -> bool:
        """Put the job's next attempt on the timer heap if the policy allows one; True if it did."""
        delay_s = None if self._retry is None else self._retry.next_delay_s(job.attempt, job.retries, exc)
        if delay_s is None:
            return False
        following = job.next_attempt()
        with self._changed:
            if self._exiting:
                return False
            self._order += 1
            heapq.heappush(self._waiting, (time.monotonic() + delay_s, self._order, following))
            self._unfinished[job.id] = following
            self._changed.notify_all()
        logger.warning(
            "retry job=%s bucket=%s key=%s attempt=%d in=%.2fs error=%s",
            job.id,
            job.bucket,
            job.key,
            following.attempt,
            delay_s,
            str(exc) or type(exc).__name__,
        )
        return True

    def _release_due(self) -> None:
        """The timer: hand each scheduled attempt to the threads when it is due."""
        with self._changed:
            while not self._stopped:
                if self._exiting or not self._waiting:
                    self._changed.wait()
                    continue
                due, _, job = self._waiting[0]
                left = due - time.monotonic()
                if left > 0:
                    self._changed.wait(left)
                    continue
                heapq.heappop(self._waiting)
                self._queue.put(job)

    def _fail(self, job: Job, exc: Exception) -> None:
        if not isinstance(exc, S3poError):
            logger.exception("bug while uploading job=%s", job.id)
        log = logger.info if job.silent else logger.error
        log(
            "failed job=%s bucket=%s key=%s path=%s error=%s",
            job.id,
            job.bucket,
            job.key,
            job.path,
            str(exc) or type(exc).__name__,
        )
        with self._changed:
            self._failures.append(UploadFailure(job=job, error=without_frames(exc), failed_at=time.time()))

    def _finish_at_exit(self) -> None:
        """Finish the uploads queued or in hand; log those abandoned (waiting retries, or on Ctrl-C)."""
        with self._changed:
            if self._stopped or not self._unfinished:
                return
            self._exiting = True  # no more retries are scheduled or released
            self._changed.notify_all()
            waiting = {job.id for _, _, job in self._waiting}
            count = len(self._unfinished) - len(waiting)
        try:
            # inside the try: a Ctrl-C while this line is written still abandons them as told
            if count:
                logger.warning("finishing %d pending upload(s) before exit (Ctrl-C to abandon them)", count)
            with self._changed:
                self._changed.wait_for(lambda: set(self._unfinished) <= {j.id for _, _, j in self._waiting})
        except KeyboardInterrupt:
            pass
        for job in self.pending:
            logger.error(
                "abandoned job=%s bucket=%s key=%s path=%s: not uploaded, the local file is kept",
                job.id,
                job.bucket,
                job.key,
                job.path,
            )


def without_frames(exc: BaseException) -> BaseException:
    """Return ``exc`` with the tracebacks of it and of its causes and contexts dropped (their frames freed)."""
    seen: set[int] = set()
    each: BaseException | None = exc
    while each is not None and id(each) not in seen:
        seen.add(id(each))
        each.__traceback__ = None
        if each.__cause__ is not None and id(each.__cause__) not in seen:
            without_frames(each.__cause__)
        each = each.__context__
    return exc


def _finish_at_exit(threads: UploadThreads) -> None:
    """Run ``threads._finish_at_exit`` when the interpreter exits, holding it only weakly.

    ``threading._register_atexit`` hooks run while the main thread ends, before
    ``concurrent.futures`` refuses new work (it registers the same way, and hooks run in
    reverse order), so an upload that uses a thread pool can still finish. Importing
    ``concurrent.futures.thread`` first puts our hook after its one. ``atexit`` is the
    fallback where that private hook is missing.
    """
    import concurrent.futures.thread  # noqa: F401 - registers its exit hook before ours

    ref = weakref.ref(threads)

    def hook() -> None:
        alive = ref()
        if alive is not None:
            alive._finish_at_exit()

    register = getattr(threading, "_register_atexit", None)
    if register is None:
        atexit.register(hook)
        return
    try:
        register(hook)
    except RuntimeError:  # already shutting down
        atexit.register(hook)


__all__ = ["DEFAULT_THREADS", "MAX_FAILURES_KEPT", "UploadFailure", "UploadThreads", "without_frames"]
