"""Running many transfers at once (``--jobs N``), and stopping them cleanly on Ctrl-C.

Every transfer runs in a worker thread; the main thread only waits, so Ctrl-C
(``KeyboardInterrupt``, which Python raises in the main thread alone) always lands there.
It sets a cancel flag, and each transfer in flight stops at its next progress report
(at most a part later): :class:`Interrupted` is raised inside the engine, which aborts a
multipart upload and removes a partial download as it does for any exception, and the
transfer is reported as interrupted. Transfers not started yet are not started. A second
Ctrl-C quits at once.
"""

from __future__ import annotations

import logging
import signal
import threading
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from .output import Outcome, ProgressCallback, Reporter, Status

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Interrupted(BaseException):
    """Raised in a transfer's progress callback after Ctrl-C, to stop that transfer.

    A BaseException, like KeyboardInterrupt: the engine's retries (which catch Exception)
    let it through, and its clean-up (which catches BaseException) runs.
    """


@dataclass(frozen=True, slots=True)
class Task(Generic[T]):
    """One transfer to run: what it works on, its bar's label and size, and its result if stopped."""

    item: T
    label: str
    total: int | None
    #: the outcome to report when Ctrl-C stops this transfer midway
    interrupted: Callable[[], Outcome]


@dataclass
class Summary:
    """What a batch did: outcomes by status, and whether it was interrupted."""

    outcomes: list[Outcome] = field(default_factory=list)
    interrupted: bool = False

    def count(self, status: Status) -> int:
        return sum(1 for o in self.outcomes if o.status is status)

    @property
    def failed(self) -> int:
        return sum(1 for o in self.outcomes if o.error is not None)

    def bytes_read(self) -> int:
        return sum(o.bytes_read or 0 for o in self.outcomes)

    def bytes_stored(self) -> int:
        return sum(o.bytes_stored or 0 for o in self.outcomes)


def run_batch(
    tasks: Sequence[Task[T]],
    work: Callable[[T, ProgressCallback], Outcome],
    *,
    jobs: int,
    reporter: Reporter,
    cancel: threading.Event | None = None,
) -> Summary:
    """Run ``work(item, progress)`` for every task, ``jobs`` at a time; report each outcome.

    ``work`` returns the outcome of its item (a failure too); an exception escaping it is
    a bug, reported as that file's failure. Raises KeyboardInterrupt after Ctrl-C, once
    every transfer in flight has stopped. ``cancel`` is set on Ctrl-C: give the same event
    to the retry loops of ``work`` (``RetryPolicy.call(stop=...)``) so a backoff ends at once.
    """
    summary = Summary()
    cancel = cancel if cancel is not None else threading.Event()
    lock = threading.Lock()

    def run(task: Task[T]) -> None:
        if cancel.is_set():
            return
        outcome = run_one(task, work, reporter, cancel)
        with lock:
            summary.outcomes.append(outcome)
            reporter.record(outcome)

    pool = ThreadPoolExecutor(max_workers=max(1, min(jobs, len(tasks) or 1)), thread_name_prefix="s3po-job")
    futures: set[Future[None]] = set()
    try:
        futures = {pool.submit(run, task) for task in tasks}
        pending = set(futures)
        while pending:
            _, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
    except KeyboardInterrupt:
        cancel.set()
        summary.interrupted = True
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # a second Ctrl-C ends the process at once
        in_flight = sum(1 for f in futures if f.running())
        reporter.notice(f"interrupted: stopping {in_flight} transfer(s) in flight; Ctrl-C again to quit at once")
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)
    for f in futures:
        f.result()  # run() reports its own failures; this only re-raises a bug in reporting
    return summary


def run_one(
    task: Task[T], work: Callable[[T, ProgressCallback], Outcome], reporter: Reporter, cancel: threading.Event
) -> Outcome:
    """Return the outcome of one transfer, with its progress bar; interrupted once ``cancel`` is set."""
    bar = reporter.bar(task.label, task.total)

    def progress(done: int, total: int | None) -> None:
        if cancel.is_set():
            raise Interrupted()
        bar.update(done, total)

    try:
        return work(task.item, progress)
    except Interrupted:
        return task.interrupted()
    except Exception as exc:  # noqa: BLE001 - a bug in one transfer must not stop the others
        if reporter.debug:
            reporter.write_err(traceback.format_exc().rstrip())
        failed = task.interrupted()
        return Outcome(
            path=failed.path,
            bucket=failed.bucket,
            key=failed.key,
            status=Status.FAILED,
            error=f"{type(exc).__name__}: {exc}" + ("" if reporter.debug else " (--debug for the traceback)"),
        )
    finally:
        bar.close()


__all__ = ["Interrupted", "Summary", "Task", "run_batch"]
