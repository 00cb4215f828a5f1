"""The daemon loop: claim a job, upload it, delete the local file, settle the job.

One :class:`Worker` per ``s3pod`` process: ``concurrency`` job threads that each claim a
job, upload it (one attempt) and settle it — acknowledged, scheduled for a later attempt in
``<prefix>:delayed``, or dead-lettered — and a :class:`~s3pod.keeper.Keeper` thread for the
heartbeat, the promotion of due retries and the reaping of dead workers. No thread sleeps
through a backoff.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from types import FrameType

import redis

from s3po_client import __version__
from s3po_client.errors import JobError, S3poError, SourceChangedError, TransferError
from s3po_client.job import Job
from s3po_client.redaction import redact_url
from s3po_client.redis_url import connect
from s3po_client.retry import SERVER_RETRY, RetryPolicy
from s3po_client.settings import S3Settings, TransferSettings
from s3po_client.settle import check_unchanged, delete_uploaded
from s3po_client.transfer import TransferEngine, UploadResult
from s3po_client.transfer.resume import abandon_saved_upload
from s3pod.consumer import dead_entry
from s3pod.sharded import consumer_for
from s3pod.uploads import JobUploads, SmallFileUploads

from .budget import MemoryBudget
from .config import WorkerConfig
from .events import Listener, Outcome, OutcomeKind
from .keeper import Keeper
from .reachability import RedisWatch, s3_answers

logger = logging.getLogger(__name__)

#: How long the stop keeps trying to put jobs back while Redis is away.
RETIRE_TRY_S = 10.0


@dataclass(frozen=True, slots=True)
class Uploaded:
    """A job whose object is stored and verified, waiting to be settled (file deleted, acknowledged)."""

    raw: bytes
    job: Job
    result: UploadResult
    started: float


class Worker:
    """Consumes ``<prefix>:queue`` with ``concurrency`` threads until stopped.

    ``run(burst=True)`` drains the queue and returns, so tests can run it in-process.
    ``listeners`` hear one :class:`~s3pod.events.Outcome` per job transition (uploaded,
    retry, dead, invalid); a listener that raises is logged and ignored.
    """

    def __init__(
        self,
        client: redis.Redis,
        engine: TransferEngine,
        config: WorkerConfig,
        listeners: Sequence[Listener] = (),
    ) -> None:
        self.client = client
        self.engine = engine
        self.config = config
        self.listeners = tuple(listeners)
        self.consumer = consumer_for(client, config.prefix, config.worker_id, config.heartbeat_timeout_s)
        self.watch = RedisWatch()
        self.budget = MemoryBudget(config.max_memory_bytes, engine.settings)
        self.stopping = threading.Event()  # warm stop: take no more jobs
        self.hurry = threading.Event()  # cold stop: put back the jobs in flight now
        self._hand: Counter[bytes] = Counter()
        self._hand_lock = threading.Lock()
        # Set once the stop has put this worker's jobs back: settle steps then give up.
        # No lock orders a file's deletion against that: the stored marker (set before the
        # deletion, kept unless the ack finds the job) makes a put-back job whose file is
        # gone an acknowledgement, not a dead letter.
        self._abandoned = False

    # -- lifecycle -----------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        """First SIGTERM/SIGINT: finish the jobs in hand, then stop. Second: put them back now."""

        def handle(signum: int, frame: FrameType | None) -> None:
            name = signal.Signals(signum).name
            if self.stopping.is_set():
                logger.warning("second %s: cold stop, jobs in flight go back to the queue", name)
            else:
                logger.info(
                    "%s: warm stop, finishing the jobs in flight (at most %.0fs)", name, self.config.shutdown_timeout_s
                )
            self.stop(cold=self.stopping.is_set())

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def stop(self, cold: bool = False) -> None:
        """Ask :meth:`run` to return: warm (finish the jobs in flight) or cold (put them back)."""
        self.stopping.set()
        if cold:
            self.hurry.set()

    def run(self, burst: bool = False) -> int:
        """Work until stopped (or, with ``burst``, until the queue is empty); return an exit status.

        0 when every job this worker held was settled or put back; 1 when Redis stayed
        away during the stop (the jobs stay in its processing list until a reaper frees them).
        """
        config = self.config
        if not self._wait_until_ready():
            return 0
        self._call(self.consumer.heartbeat, "first heartbeat")  # before any claim: see Consumer.reap
        _ = self.engine.client  # build boto3's client (about half a second) before the first job, not during it
        keeper = Keeper(
            self.consumer,
            self.watch,
            self._held,
            heartbeat_timeout_s=config.heartbeat_timeout_s,
            promote_interval_s=config.promote_interval_s,
            tick_interval_s=config.tick_interval_s,
            on_tick=config.on_tick,
        )
        threads = [
            threading.Thread(target=self._work, args=(burst,), name=f"s3pod-{i}", daemon=True)
            for i in range(config.concurrency)
        ]
        keeper.start()
        for t in threads:
            t.start()
        logger.info(
            "worker %s ready: prefix=%s concurrency=%d heartbeat_timeout=%.0fs",
            config.worker_id,
            config.prefix,
            config.concurrency,
            config.heartbeat_timeout_s,
        )
        self._call(config.on_ready, "on_ready")
        deadline: float | None = None
        try:
            while any(t.is_alive() for t in threads):
                if self.stopping.is_set():
                    if deadline is None:
                        deadline = time.monotonic() + config.shutdown_timeout_s
                        self._call(config.on_stopping, "on_stopping")
                    if self.hurry.is_set() or time.monotonic() >= deadline:
                        break
                next(t for t in threads if t.is_alive()).join(timeout=0.1)
        finally:
            self.stopping.set()
            keeper.stop()
            clean = self._retire(sum(t.is_alive() for t in threads))
        logger.info("worker %s stopped", config.worker_id)
        return 0 if clean else 1

    def _wait_until_ready(self) -> bool:
        """Wait until Redis and the S3 endpoint answer; False if asked to stop first."""
        backoff = RetryPolicy(base_s=0.2, max_s=10.0).backoff()
        said = None
        while not self.stopping.is_set():
            problem = self._readiness_problem()
            if problem is None:
                if said is not None:
                    logger.info("Redis and S3 answer now")
                return True
            if problem.split(":")[0] != said:
                logger.warning("not ready, retrying: %s", problem)
                said = problem.split(":")[0]
            self.stopping.wait(backoff.step())
        return False

    def _readiness_problem(self) -> str | None:
        try:
            self.client.ping()
        except redis.RedisError as exc:
            return f"Redis: {exc}"
        if self.config.s3_probe_url:
            why = s3_answers(self.config.s3_probe_url)
            if why is not None:
                return f"S3 endpoint {self.config.s3_probe_url}: {why}"
        return None

    def _retire(self, in_flight: int) -> bool:
        """Put back every job still held (those in flight if the stop timed out); False if Redis refused."""
        if in_flight:
            logger.warning("%d job(s) still in flight at the stop: putting them back on the queue", in_flight)
        self._abandoned = True
        deadline = time.monotonic() + RETIRE_TRY_S
        backoff = SERVER_RETRY.backoff()
        while True:
            try:
                moved = self.consumer.retire()
                break
            except redis.RedisError as exc:
                if time.monotonic() > deadline:
                    logger.error(
                        "could not put back the jobs in hand (they stay in %s until a reaper frees them): %s",
                        self.consumer.processing,
                        exc,
                    )
                    return False
                time.sleep(backoff.step())
        if moved:
            logger.warning("put %d unfinished job(s) back on the queue", moved)
        return True

    # -- job threads ---------------------------------------------------------------------

    def _work(self, burst: bool) -> None:
        backoff = SERVER_RETRY.backoff()
        config = self.config
        while not self.stopping.is_set():
            try:
                batch = self.consumer.claim_many(config.claim_timeout_s, config.claim_batch, config.concurrency)
            except redis.RedisError as exc:
                self.watch.failed(exc)
                self.stopping.wait(backoff.step())
                continue
            self.watch.answered()
            backoff.reset()
            if not batch:
                if burst:
                    return
                continue
            with self._holding(batch):
                if not self._run_batch(batch):
                    return

    def _run_batch(self, batch: list[bytes]) -> bool:
        """Run the jobs of one claim in turn, settling the uploaded ones together; False once stopping.

        The uploaded jobs of a batch are settled in one go (their stored markers in one
        round trip, then their files deleted, then one acknowledgement). A batch is for
        small files: before a large file's upload (multipart) the ones uploaded are settled
        and the ones after it go back to the queue, for any thread of any daemon to take,
        so a long upload holds back no other job. Jobs not started when the stop comes go
        back to the queue too.
        """
        uploaded: list[Uploaded] = []
        end = [len(batch)]  # where this thread stops in the batch (moved by a large file)

        def before_long(n: int) -> None:
            self._flush(uploaded)
            for left in reversed(batch[n + 1 : end[0]]):  # the oldest back at the taking end
                self._put_back(left)
            end[0] = n + 1

        for n, raw in enumerate(batch):
            if n >= end[0]:
                break
            if self.stopping.is_set():  # claimed as the stop came: not ours to start
                self._guarded(lambda: self._finish_all(uploaded), batch)
                for left in reversed(batch[n : end[0]]):  # the oldest back at the taking end
                    self._put_back(left)
                return False
            try:
                step = self._upload(raw, before_long=functools.partial(before_long, n))
            except Exception:  # noqa: BLE001 - a bug in one job never ends a job thread
                # The job stays in this worker's list; the keeper's sweep puts it back.
                logger.exception("bug while settling a job: it stays held until put back: %.200r", raw)
                continue
            if isinstance(step, Uploaded):
                uploaded.append(step)
        self._guarded(lambda: self._finish_all(uploaded), batch)
        return True

    def _put_back(self, raw: bytes) -> None:
        self._settle(lambda: self.consumer.put_back(raw))

    def _flush(self, uploaded: list[Uploaded]) -> None:
        """Settle the jobs uploaded so far in this batch (before a long upload starts)."""
        done = list(uploaded)
        uploaded.clear()
        self._finish_all(done)

    def _guarded(self, settle: Callable[[], object], batch: list[bytes]) -> None:
        try:
            settle()
        except Exception:  # noqa: BLE001 - a bug in one job never ends a job thread
            logger.exception("bug while settling jobs: they stay held until put back: %.200r", batch)

    @contextmanager
    def _holding(self, batch: list[bytes]) -> Iterator[None]:
        with self._hand_lock:
            self._hand.update(batch)
        try:
            yield
        finally:
            with self._hand_lock:
                self._hand.subtract(batch)
                for raw in batch:
                    if self._hand[raw] <= 0:
                        del self._hand[raw]

    def _held(self) -> Counter[bytes]:
        with self._hand_lock:
            return Counter(self._hand)

    # -- one job -------------------------------------------------------------------------

    def process(self, raw: bytes) -> Outcome:
        """Settle one claimed job: acknowledged, delayed for another attempt, or dead-lettered."""
        step = self._upload(raw)
        if isinstance(step, Uploaded):
            return self._finish_all([step])[0]
        return step

    def _upload(self, raw: bytes, before_long: Callable[[], None] | None = None) -> Outcome | Uploaded:
        """Upload one claimed job; return its outcome if settled already (failed, dead), else what to settle."""
        started = time.monotonic()
        try:
            job = Job.from_json(raw)
        except JobError as exc:
            return self._dead_letter(raw, None, f"invalid job: {exc}", started, OutcomeKind.INVALID)
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
            opened = self.config.paths.open(job.path)  # checked on the descriptor that is read
        except JobError as exc:
            if job.delete and not os.path.lexists(job.path) and self._was_stored(job):
                return self._already_stored(raw, job, started)
            if self._taken_over_and_gone(raw, job):
                return self._drop(job, str(exc), started)
            return self._dead_letter(raw, job, str(exc), started, OutcomeKind.INVALID)
        file, path = opened
        try:
            size = os.fstat(file.fileno()).st_size
            small = size < self.engine.settings.multipart_threshold_bytes
            if not small and before_long is not None:
                before_long()
            reserved = self.budget.estimate(size)
            if not self.budget.acquire(reserved, self.stopping):  # stopping while waiting for memory
                self._settle(lambda: self.consumer.put_back(raw))
                return Outcome(OutcomeKind.RETRY, job.id, job.bucket, job.key, attempt=job.attempt, error="stopping")
        except BaseException:
            file.close()
            raise
        try:
            # One attempt (retries=0): the next one is scheduled in Redis, not slept through here.
            result = self.engine.upload_file(
                job.bucket,
                job.key,
                path,
                headers=job.headers,
                compress=job.compress,
                retries=0,
                allow_dirs=self.config.paths.allow_dirs,
                opened=opened,
                multipart_state=self._uploads(job, small),
            )
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
                check_unchanged(result)
        except Exception as exc:  # noqa: BLE001 - every failure settles the job, none ends the worker
            return self._failed(raw, job, exc, started)
        finally:
            file.close()
            self.budget.release(reserved)
        return Uploaded(raw, job, result, started)

    def _finish_all(self, uploaded: list[Uploaded]) -> list[Outcome]:
        """Settle uploaded jobs: stored markers (one round trip), files deleted, one acknowledgement."""
        if not uploaded:
            return []
        if self._abandoned:
            for each in uploaded:
                logger.warning("uploaded job=%s after the stop put it back: it will run again", each.job.id)
            return [self._uploaded(each) for each in uploaded]
        marked = [each.job.id for each in uploaded if each.job.delete]
        # The marker outlives the file: if this worker dies (or was reaped) before the ack,
        # the job's next run finds it and acknowledges instead of failing.
        if marked and not self._settle(lambda: self.consumer.mark_stored_many(marked)):
            for each in uploaded:  # the stop put them back meanwhile: their files stay for the next run
                logger.warning("uploaded job=%s after the stop put it back: it will run again", each.job.id)
            return [self._uploaded(each) for each in uploaded]
        outcomes: list[Outcome] = []
        settled: list[Uploaded] = []
        for each in uploaded:
            raw, job, result = each.raw, each.job, each.result
            if job.delete:
                try:
                    delete_uploaded(result, job_id=job.id)
                except SourceChangedError as exc:
                    if os.path.lexists(result.source_path or job.path):  # changed: upload it again
                        self._call(functools.partial(self.consumer.forget_stored, job.id), "forget stored marker")
                        outcomes.append(self._failed(raw, job, exc, each.started))
                        continue
                    # Vanished between the check and the unlink (another copy of the job, run
                    # at least once, deleted it): the object stored is the file's last version.
                    logger.warning("file of job=%s vanished after its verified upload: acknowledged", job.id)
            settled.append(each)
        answers = self._acknowledge_all([(each.raw, each.job) for each in settled])
        for each, _held in zip(settled, answers):
            outcomes.append(self._uploaded(each))
        return outcomes

    def _uploaded(self, each: Uploaded) -> Outcome:
        return self._emit(
            Outcome(
                OutcomeKind.UPLOADED,
                each.job.id,
                each.job.bucket,
                each.job.key,
                each.result.bytes_sent,
                time.monotonic() - each.started,
                each.job.attempt,
            )
        )

    def _acknowledge_all(self, jobs: list[tuple[bytes, Job]]) -> list[bool]:
        """Ack jobs in one step; drop each stored marker only if this worker still held the job.

        When the ack finds nothing, a reaper put the job back while this worker ran it (it
        was paused, or cut off from Redis): another copy runs or waits, and the marker tells
        that copy its object is stored. Returns whether each was held.
        """
        if not jobs:
            return []
        acked: list[list[tuple[bool, bool]]] = []
        self._settle(lambda: acked.append(self.consumer.ack_many([(raw, job.id) for raw, job in jobs])))
        answers = acked[-1] if acked else [(True, False)] * len(jobs)
        for (_raw, job), (held, upload_recorded) in zip(jobs, answers):
            if held and upload_recorded:  # an earlier run's upload; a copy put back may be resuming it otherwise
                self._abandon_upload(job)
            if not held:
                logger.warning(
                    "acknowledged job=%s that this worker no longer held (taken for dead): "
                    "its stored marker stays for the copy put back",
                    job.id,
                )
        return [held for held, _ in answers]

    def _acknowledge(self, raw: bytes, job: Job) -> None:
        self._acknowledge_all([(raw, job)])

    def _was_stored(self, job: Job) -> bool:
        """Whether the job's stored marker is set, asked until Redis answers.

        Guessing "no" while Redis is away dead-letters a job whose object is stored (its
        file deleted by the run that stored it): the fault suite's Redis network scenario
        caught that. False only once the stop put the jobs back (nothing is settled then).
        """
        answer: list[bool] = []
        if not self._settle(lambda: answer.append(self.consumer.was_stored(job.id))):
            return False
        return answer[-1]

    def _already_stored(self, raw: bytes, job: Job, started: float) -> Outcome:
        """Acknowledge a job whose object an earlier run stored before dying, its file deleted."""
        logger.warning(
            "uploaded job=%s bucket=%s key=%s already: an earlier run stored it and deleted its file "
            "but died before acknowledging it",
            job.id,
            job.bucket,
            job.key,
        )
        self._acknowledge(raw, job)
        return self._emit(
            Outcome(OutcomeKind.UPLOADED, job.id, job.bucket, job.key, 0, time.monotonic() - started, job.attempt)
        )

    def _failed(self, raw: bytes, job: Job, exc: Exception, started: float) -> Outcome:
        if not isinstance(exc, S3poError):
            logger.exception("bug while uploading job=%s", job.id)
        error = str(exc) or type(exc).__name__
        if not self._still_held(raw):  # taken over: the copy put back runs it (see _drop)
            return self._drop(job, error, started)
        if isinstance(exc, JobError):  # e.g. a header the engine cannot map: no attempt will help
            return self._dead_letter(raw, job, error, started, OutcomeKind.INVALID)
        if not self.config.retry.should_retry(job.attempt, job.retries, exc):
            return self._dead_letter(raw, job, error, started, OutcomeKind.DEAD)
        delay_s = self.config.retry.delay_s(job.attempt)
        next_raw = job.next_attempt().to_json()
        self._settle(lambda: self.consumer.delay(raw, next_raw, delay_s))
        logger.warning(
            "retry job=%s bucket=%s key=%s attempt=%d in=%.2fs error=%s",
            job.id,
            job.bucket,
            job.key,
            job.attempt + 1,
            delay_s,
            error,
        )
        return self._emit(
            Outcome(OutcomeKind.RETRY, job.id, job.bucket, job.key, 0, time.monotonic() - started, job.attempt, error)
        )

    def _dead_letter(self, raw: bytes, job: Job | None, error: str, started: float, kind: OutcomeKind) -> Outcome:
        attempts = 0 if job is None else job.attempt + (kind is OutcomeKind.DEAD)
        entry = dead_entry(raw, error, attempts, self.config.worker_id)
        self._settle(lambda: self.consumer.dead_letter(raw, entry))
        if job is not None:
            self._abandon_upload(job)
        log = logger.info if job is not None and job.silent else logger.error
        log(
            "dead job=%s bucket=%s key=%s attempts=%d error=%s",
            job.id if job else "?",
            job.bucket if job else "?",
            job.key if job else "?",
            attempts,
            error,
        )
        return self._emit(
            Outcome(
                kind,
                job.id if job else None,
                job.bucket if job else None,
                job.key if job else None,
                0,
                time.monotonic() - started,
                job.attempt if job else 0,
                error,
            )
        )

    def _settle(self, action: Callable[[], object]) -> bool:
        """Run a Redis settle step, retrying while Redis is away so no outcome is lost.

        Gives up (False) only once the stop has put this worker's jobs back.
        """
        backoff = SERVER_RETRY.backoff()
        while True:
            try:
                action()
            except redis.RedisError as exc:
                self.watch.failed(exc)
                if self._abandoned:
                    return False
                time.sleep(backoff.step())
                continue
            self.watch.answered()
            return True

    def _taken_over_and_gone(self, raw: bytes, job: Job) -> bool:
        """True when a reaper put this job back while this worker ran it and its file is gone.

        The copy put back settles the job then (it most likely stored the file and deleted
        it); a retry or dead letter from here would only be a false alarm. Nobody can upload
        a file that is gone, so dropping this copy loses nothing, even if Redis lost the copy.
        """
        return not os.path.lexists(job.path) and not self._still_held(raw)

    def _still_held(self, raw: bytes) -> bool:
        """Whether this worker's processing list still holds ``raw`` (True when Redis cannot say)."""
        try:
            return self.consumer.holds(raw)
        except redis.RedisError:
            return True

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
        return self._emit(
            Outcome(OutcomeKind.RETRY, job.id, job.bucket, job.key, 0, time.monotonic() - started, job.attempt, error)
        )

    # -- multipart uploads a killed run left (see s3pod/uploads.py) ----------

    def _uploads(self, job: Job, small: bool = False) -> JobUploads:
        """The job's multipart record; for a file too small for multipart, one that reads nothing first.

        A small file goes in one PUT, which needs no record: an earlier run's record is
        aborted when the job is settled (the ack and the dead letter report it), so the
        read before the upload is saved (see :class:`~s3pod.uploads.SmallFileUploads`).
        """
        keys = self.consumer.keys_for(job.id)
        return SmallFileUploads(self.client, keys, job.id) if small else JobUploads(self.client, keys, job.id)

    def _abandon_upload(self, job: Job) -> None:
        """Abort the multipart upload a settled job still has recorded (an earlier run's), if any."""
        self._call(
            lambda: abandon_saved_upload(self.engine.client, self.engine.settings, self._uploads(job)),
            "abort the job's recorded multipart upload",
        )

    def _emit(self, outcome: Outcome) -> Outcome:
        for listener in self.listeners:
            try:
                listener.on_outcome(outcome)
            except Exception:  # noqa: BLE001 - an observer must never break the worker
                logger.exception("listener %r failed on %s", listener, outcome.kind.value)
        return outcome

    def _call(self, hook: Callable[[], object] | None, what: str) -> None:
        if hook is None:
            return
        try:
            hook()
        except redis.RedisError as exc:
            self.watch.failed(exc)
        except Exception:  # noqa: BLE001 - a hook must never break the worker
            logger.exception("%s failed", what)


def probe_url(s3: S3Settings) -> str:
    """Return the URL whose HTTP answer means the S3 endpoint is reachable."""
    if s3.endpoint_url:
        return s3.endpoint_url
    return f"https://s3.{s3.region or 'us-east-1'}.amazonaws.com"


def serve(
    s3: S3Settings,
    redis_url: str,
    config: WorkerConfig,
    *,
    burst: bool = False,
    listeners: Sequence[Listener] = (),
    signals: bool = True,
) -> int:
    """Run the daemon until SIGTERM/SIGINT (or, with ``burst``, until the queue is empty); return its exit status.

    Connects to Redis (with socket timeouts, so a silent network cannot hang a thread),
    builds the transfer engine, warns when no ``--allow-dir`` limits the files, and runs
    one :class:`Worker`.
    """
    client = connect(
        redis_url, socket_timeout=config.claim_timeout_s + 10, socket_connect_timeout=5, health_check_interval=30
    )
    if not config.paths.allow_dirs:
        logger.warning(
            "no --allow-dir given: any process able to write to Redis can make s3pod "
            "read, upload and delete any file it can access"
        )
    if config.s3_probe_url is None:
        config.s3_probe_url = probe_url(s3)
    logger.info(
        "s3pod %s: worker=%s redis=%s endpoint=%s",
        __version__,
        config.worker_id,
        redact_url(redis_url),
        s3.endpoint_url or "AWS",
    )
    # Enough pooled connections for every job in flight to send all its parts at once.
    transfer = TransferSettings()
    transfer = replace(
        transfer, max_pool_connections=max(transfer.max_pool_connections, config.concurrency * transfer.max_concurrency)
    )
    worker = Worker(client, TransferEngine(s3, transfer), config, listeners)
    if signals:
        worker.install_signal_handlers()
    try:
        return worker.run(burst=burst)
    finally:
        client.close()
