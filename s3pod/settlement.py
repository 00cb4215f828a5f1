"""Settling a job in Redis after its attempt: acknowledged, delayed, dead-lettered or put back.

Each step goes to the shard the job was claimed from (:class:`~s3pod.sharded.Claimed`)
and runs until Redis answers (:func:`until_answered`): guessing while Redis is away would
lose an outcome. A step gives up only once the worker's stop has put its jobs back; the
copy put back is the job then, and settles it.

The stored marker (``<prefix>:stored:<job id>``, with a TTL of
:data:`~s3pod.consumer.STORED_MARKER_TTL_S`) is set before a job's file is deleted and is
never deleted by the acknowledgement: it expires. A job can run more than once — a
reaper puts back the job of a worker that was only paused; a producer pushes the same job
twice (``push_jobs`` after a timeout, a caller retrying a durable enqueue) — and every copy
after the first finds its file deleted. The marker tells such a copy that its object is
stored, so it is acknowledged, never dead-lettered. Only a job whose file is gone reads
the marker, so a job whose file is there again is uploaded again. The cost is one small
key per uploaded ``delete`` job, for an hour after its acknowledgement
(:data:`~s3pod.consumer.STORED_AFTER_ACK_TTL_S`, cut by ack.lua; a job the worker no longer
held keeps its marker whole for the copy put back). The alternative, asking the store whether the
object exists, cannot tell a duplicate from a job whose file never existed under a key
that does, and would acknowledge that producer's mistake.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

import redis

from s3po_client.errors import JobError, SourceChangedError
from s3po_client.job import Job
from s3po_client.retry import RetryPolicy, wait_until_answers
from s3po_client.settle import delete_uploaded
from s3po_client.transfer import TransferEngine

from .consumer import Consumer, dead_entry
from .events import Listener, Outcome, OutcomeKind
from .reachability import RedisWatch
from .runner import Failed, Rejected, Stopped, Uploaded
from .sharded import Claimed
from .uploads import record_for

logger = logging.getLogger(__name__)

T = TypeVar("T")


class GaveUp(Exception):
    """A Redis step was abandoned while Redis was away (the stop put the jobs back, or time ran out)."""


def until_answered(
    step: Callable[[], T], watch: RedisWatch, give_up: Callable[[], bool], stop: threading.Event | None = None
) -> T:
    """Return what ``step`` returns once Redis answers it; raise GaveUp when ``give_up()`` says so after a failure.

    The one retry loop for a server that is expected back (``wait_until_answers``), told
    to ``watch`` so an outage is logged once; ``stop`` ends a wait at once.
    """
    try:
        value = wait_until_answers(
            step, errors=(redis.RedisError,), stop=stop, give_up=give_up, on_failure=watch.failed
        )
    except redis.RedisError as exc:
        raise GaveUp(str(exc)) from exc
    watch.answered()
    return value


def best_effort(action: Callable[[], object] | None, what: str, watch: RedisWatch) -> None:
    """Run ``action``; a failure is logged (Redis's reported to ``watch``), never raised."""
    if action is None:
        return
    try:
        action()
    except redis.RedisError as exc:
        watch.failed(exc)
    except Exception:  # noqa: BLE001 - a hook or a clean-up must never break the worker
        logger.exception("%s failed", what)


def logs_written() -> None:
    """Return once every line logged so far is written: a job's lines are in the log before Redis shows its outcome.

    Whoever watches Redis (a test, an operator's script) then finds the job's lines; with
    nothing left to write this costs one uncontended lock.
    """
    for handler in logging.getLogger().handlers:
        handler.flush()


def by_shard(claims: Sequence[tuple[Claimed, Job]]) -> dict[Consumer, list[tuple[Claimed, Job]]]:
    """Group jobs by the shard they were claimed from, in their order."""
    groups: dict[Consumer, list[tuple[Claimed, Job]]] = {}
    for claimed, job in claims:
        groups.setdefault(claimed.shard, []).append((claimed, job))
    return groups


class Settlement:
    """Settles the results of one worker's attempts and tells ``listeners`` each outcome."""

    def __init__(
        self,
        *,
        worker_id: str,
        engine_for: Callable[[Job | None], TransferEngine],
        retry: RetryPolicy,
        watch: RedisWatch,
        listeners: Sequence[Listener] = (),
        allow_dirs: Sequence[str] = (),
    ) -> None:
        self.worker_id = worker_id
        #: where files may be deleted: the delete walks down from these, never through a symlink
        self.allow_dirs = tuple(allow_dirs)
        #: the engine a job was sent with (its destination's), to abort its multipart upload
        self.engine_for = engine_for
        self.retry = retry
        self.watch = watch
        self.listeners = tuple(listeners)
        #: set once the stop has put this worker's jobs back: settle steps then give up
        self.abandoned = threading.Event()

    def _until_answered(self, step: Callable[[], T]) -> T:
        return until_answered(step, self.watch, self.abandoned.is_set)

    def _settled(self, step: Callable[[], object]) -> bool:
        """Run a settle step until Redis answers; False if abandoned (the copy put back settles the job)."""
        try:
            self._until_answered(step)
        except GaveUp:
            return False
        return True

    # -- what a run returned --------------------------------------------------------------

    def settle(self, result: Failed | Rejected | Stopped) -> Outcome | None:
        """Settle a job that was not uploaded; return its outcome (None for a job put back at the stop)."""
        if isinstance(result, Stopped):
            self.put_back(result.claimed)
            return None
        if isinstance(result, Rejected):
            return self._rejected(result)
        return self._failed(result)

    def put_back(self, claimed: Claimed) -> None:
        """Return a job this worker will not run to the taking end of its queue."""
        self._settled(lambda: claimed.shard.put_back(claimed.raw))

    def settle_uploaded(self, uploaded: Sequence[Uploaded]) -> list[Outcome]:
        """Settle uploaded jobs: stored markers (a round trip a shard), files deleted, one acknowledgement a shard."""
        if not uploaded:
            return []
        marked = [(each.claimed, each.job) for each in uploaded if each.job.delete]
        # The marker outlives the file: if this worker dies (or was reaped) before the ack,
        # or the job was pushed twice, the job's next run finds it and acknowledges.
        if self.abandoned.is_set() or (marked and not self._settled(lambda: self._mark_stored(marked))):
            for each in uploaded:  # the stop put them back meanwhile: their files stay for the next run
                logger.warning("uploaded job=%s after the stop put it back: it will run again", each.job.id)
            return [self._uploaded(each) for each in uploaded]
        outcomes: list[Outcome] = []
        done: list[Uploaded] = []
        for each in uploaded:
            changed = self._delete_file(each) if each.job.delete else None
            if changed is None:
                done.append(each)
            else:
                outcomes.append(self._failed(Failed(each.claimed, each.job, each.started, changed)))
        self._acknowledge([(each.claimed, each.job) for each in done])
        return outcomes + [self._uploaded(each) for each in done]

    # -- the steps -------------------------------------------------------------------------

    def _mark_stored(self, jobs: Sequence[tuple[Claimed, Job]]) -> None:
        for shard, group in by_shard(jobs).items():
            shard.mark_stored_many([job.id for _, job in group])

    def _delete_file(self, each: Uploaded) -> SourceChangedError | None:
        """Delete the uploaded file; return why not when it changed (it is uploaded again)."""
        try:
            delete_uploaded(each.result, job_id=each.job.id, given_path=each.job.path, allow_dirs=self.allow_dirs)
        except SourceChangedError as exc:
            if os.path.lexists(each.result.source_path or each.job.path):
                forget = functools.partial(each.claimed.shard.forget_stored, each.job.id)
                best_effort(forget, "forget stored marker", self.watch)
                return exc
            # Vanished between the check and the unlink (another copy of the job, run at
            # least once, deleted it): the object stored is the file's last version.
            logger.warning("file of job=%s vanished after its verified upload: acknowledged", each.job.id)
        return None

    def _acknowledge(self, jobs: Sequence[tuple[Claimed, Job]]) -> None:
        """Ack jobs, one atomic step a shard; abort the multipart uploads an earlier run left recorded."""
        logs_written()
        for shard, group in by_shard(jobs).items():
            step = functools.partial(shard.ack_many, [(claimed.raw, job.id) for claimed, job in group])
            try:
                answers = self._until_answered(step)
            except GaveUp:
                continue  # put back by the stop: the copy put back finds the stored marker
            for (claimed, job), (held, upload_recorded) in zip(group, answers):
                if held and upload_recorded:  # an earlier run's; a copy put back may be resuming it otherwise
                    self._abandon_upload(claimed, job)
                if not held:
                    logger.warning(
                        "acknowledged job=%s that this worker no longer held (taken for dead): "
                        "the copy put back finds its stored marker",
                        job.id,
                    )

    def _was_stored(self, claimed: Claimed, job: Job) -> bool:
        """Whether the job's stored marker is set, asked until Redis answers.

        Guessing "no" while Redis is away dead-letters a job whose object is stored (its
        file deleted by the run that stored it). False only once the stop put the jobs back.
        """
        try:
            return self._until_answered(functools.partial(claimed.shard.was_stored, job.id))
        except GaveUp:
            return False

    def _still_held(self, claimed: Claimed) -> bool:
        """Whether this worker's processing list still holds the job (True when Redis cannot say)."""
        try:
            return claimed.shard.holds(claimed.raw)
        except redis.RedisError:
            return True

    def _abandon_upload(self, claimed: Claimed, job: Job) -> None:
        """Abort the multipart upload a settled job still has recorded (an earlier run's), if any."""
        best_effort(
            lambda: self.engine_for(job).abandon_upload(record_for(claimed.shard, job.id)),
            "abort the job's recorded multipart upload",
            self.watch,
        )

    # -- outcomes --------------------------------------------------------------------------

    def _rejected(self, result: Rejected) -> Outcome:
        claimed, job = result.claimed, result.job
        if job is not None and result.missing:
            if job.delete and self._was_stored(claimed, job):
                return self._already_stored(result, job)
            if not self._still_held(claimed):  # taken over: the copy put back settles it (see _drop)
                return self._drop(job, result.error, result.started)
        return self._dead_letter(claimed, job, result.error, result.started, OutcomeKind.INVALID)

    def _already_stored(self, result: Rejected, job: Job) -> Outcome:
        """Acknowledge a job whose object an earlier run (or copy) stored, its file deleted."""
        logger.warning(
            "uploaded job=%s bucket=%s key=%s already: an earlier run or copy of it stored it and deleted its file",
            job.id,
            job.bucket,
            job.key,
        )
        self._acknowledge([(result.claimed, job)])
        return self.emit(Outcome.of(OutcomeKind.UPLOADED, job, started=result.started))

    def _failed(self, result: Failed) -> Outcome:
        claimed, job, exc = result.claimed, result.job, result.error
        error = str(exc) or type(exc).__name__
        if not self._still_held(claimed):  # taken over: the copy put back runs it (see _drop)
            return self._drop(job, error, result.started)
        if isinstance(exc, JobError):  # e.g. a header the engine cannot map: no attempt will help
            return self._dead_letter(claimed, job, error, result.started, OutcomeKind.INVALID)
        if not self.retry.should_retry(job.attempt, job.retries, exc):
            return self._dead_letter(claimed, job, error, result.started, OutcomeKind.DEAD)
        delay_s = self.retry.delay_s(job.attempt)
        next_raw = job.next_attempt().to_json()
        logger.warning(
            "retry job=%s bucket=%s key=%s attempt=%d in=%.2fs error=%s",
            job.id,
            job.bucket,
            job.key,
            job.attempt + 1,
            delay_s,
            error,
        )
        logs_written()
        self._settled(lambda: claimed.shard.delay(claimed.raw, next_raw, delay_s))
        return self.emit(Outcome.of(OutcomeKind.RETRY, job, started=result.started, error=error))

    def _dead_letter(self, claimed: Claimed, job: Job | None, error: str, started: float, kind: OutcomeKind) -> Outcome:
        attempts = 0 if job is None else job.attempt + (kind is OutcomeKind.DEAD)
        entry = dead_entry(claimed.raw, error, attempts, self.worker_id)
        log = logger.info if job is not None and job.silent else logger.error
        log(
            "dead job=%s bucket=%s key=%s attempts=%d error=%s",
            job.id if job else "?",
            job.bucket if job else "?",
            job.key if job else "?",
            attempts,
            error,
        )
        logs_written()
        self._settled(lambda: claimed.shard.dead_letter(claimed.raw, entry))
        if job is not None:
            self._abandon_upload(claimed, job)
        return self.emit(Outcome.of(kind, job, started=started, error=error))

    def _drop(self, job: Job, error: str, started: float) -> Outcome:
        """Settle nothing for a job a reaper put back while this worker ran it.

        The copy put back is the job now (in the queue, or run, or done by another worker):
        a retry or dead letter scheduled from here would be a second copy, which finds the
        file deleted by the first and ends as a false dead letter. A reaper moves the job
        atomically, so the copy exists; with a persisted Redis it survives a restart.
        """
        logger.warning(
            "dropped job=%s bucket=%s key=%s: taken over while it ran (the copy put back settles it): %s",
            job.id,
            job.bucket,
            job.key,
            error,
        )
        return self.emit(Outcome.of(OutcomeKind.RETRY, job, started=started, error=error))

    def _uploaded(self, each: Uploaded) -> Outcome:
        return self.emit(
            Outcome.of(OutcomeKind.UPLOADED, each.job, started=each.started, bytes_sent=each.result.bytes_sent)
        )

    def emit(self, outcome: Outcome) -> Outcome:
        """Tell every listener; one that raises is logged and ignored."""
        for listener in self.listeners:
            try:
                listener.on_outcome(outcome)
            except Exception:  # noqa: BLE001 - an observer must never break the worker
                logger.exception("listener %r failed on %s", listener, outcome.kind.value)
        return outcome
