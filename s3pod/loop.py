"""The daemon loop: job threads that claim jobs, run them and settle them, until stopped.

One :class:`Worker` per ``s3pod`` process: ``concurrency`` job threads that each claim a
few jobs, run each one attempt (:class:`~s3pod.runner.Runner`) and settle it
(:class:`~s3pod.settlement.Settlement`) — acknowledged, scheduled for a later attempt in
``<prefix>:delayed``, or dead-lettered — and a :class:`~s3pod.keeper.Keeper` thread for the
heartbeat, the promotion of due retries and the reaping of dead workers. No thread sleeps
through a backoff.
"""

from __future__ import annotations

import functools
import logging
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

import redis

from s3po_client.retry import RetryPolicy, wait_until_answers
from s3po_client.transfer import TransferEngine

from .budget import MemoryBudget
from .config import WorkerConfig, WorkerHooks
from .destinations import Destinations
from .events import Listener
from .keeper import Keeper
from .reachability import RedisWatch, s3_answers
from .runner import Runner, Uploaded, UploadWatcher
from .settlement import GaveUp, Settlement, best_effort, until_answered
from .sharded import Claimed, consumer_for

logger = logging.getLogger(__name__)

#: How long the stop keeps trying to put jobs back while Redis is away.
RETIRE_TRY_S = 10.0


#: How start-up waits for Redis and the S3 endpoint: 0.2 s doubling to 10 s, jittered.
READINESS_RETRY = RetryPolicy(base_s=0.2, max_s=10.0)


class NotReady(Exception):
    """Redis or the S3 endpoint does not answer yet (the message says which)."""


class Worker:
    """Consumes ``<prefix>:queue`` with ``concurrency`` threads until stopped.

    ``run(burst=True)`` drains the queue and returns, so tests can run it in-process.
    ``listeners`` hear one :class:`~s3pod.events.Outcome` per job transition (uploaded,
    retry, dead, invalid); a listener that raises is logged and ignored. ``hooks`` run at
    the worker's turning points (:class:`~s3pod.config.WorkerHooks`).
    """

    def __init__(
        self,
        client: redis.Redis,
        engine: TransferEngine,
        config: WorkerConfig,
        listeners: Sequence[Listener] = (),
        hooks: WorkerHooks | None = None,
        watcher: UploadWatcher | None = None,
        destinations: Destinations | None = None,
    ) -> None:
        self.client = client
        self.engine = engine
        #: the engine of each job: ``engine`` for jobs naming no destination
        self.destinations = destinations or Destinations(engine)
        self.config = config
        self.hooks = hooks or WorkerHooks()
        self.queue = consumer_for(client, config.prefix, config.worker_id, config.heartbeat_timeout_s)
        self.watch = RedisWatch()
        self.budget = MemoryBudget(config.max_memory_bytes, engine.settings)
        self.stopping = threading.Event()  # warm stop: take no more jobs
        self.cold_stop = threading.Event()  # put back the jobs in flight now
        self.settlement = Settlement(
            worker_id=config.worker_id,
            engine_for=self.destinations.engine_for,
            retry=config.retry,
            watch=self.watch,
            listeners=listeners,
            allow_dirs=config.paths.allow_dirs,
        )
        self.runner = Runner(self.destinations, config, self.budget, self.stopping, watcher)
        self._held_jobs: Counter[Claimed] = Counter()
        self._held_jobs_lock = threading.Lock()
        self._thread_died = threading.Event()

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
            self.cold_stop.set()

    def run(self, burst: bool = False) -> int:
        """Work until stopped (or, with ``burst``, until the queue is empty); return an exit status.

        0 when every job this worker held was settled or put back; 1 when Redis stayed
        away during the stop (the jobs stay in its processing list until a reaper frees
        them) or a job thread died (a supervisor should start the daemon again).
        """
        config = self.config
        if not self._wait_until_ready():
            return 0
        best_effort(self.queue.heartbeat, "first heartbeat", self.watch)  # before any claim: see Consumer.reap
        self.engine.warm_up()  # before the first job, not during it
        keeper = Keeper(
            self.queue,
            self.watch,
            self._held,
            heartbeat_timeout_s=config.heartbeat_timeout_s,
            promote_interval_s=config.promote_interval_s,
            tick_interval_s=config.tick_interval_s,
            on_tick=self.hooks.on_tick,
        )
        threads = [
            threading.Thread(target=self._job_thread, args=(burst,), name=f"s3pod-{i}", daemon=True)
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
        best_effort(self.hooks.on_ready, "on_ready", self.watch)
        try:
            self._wait_for(threads)
        finally:
            self.stopping.set()
            keeper.stop()
            clean = self._retire(sum(t.is_alive() for t in threads))
        logger.info("worker %s stopped", config.worker_id)
        return 0 if clean and not self._thread_died.is_set() else 1

    def _wait_for(self, threads: list[threading.Thread]) -> None:
        """Return when every job thread ended, or a cold stop came, or the stop's time is up."""
        deadline: float | None = None
        while any(t.is_alive() for t in threads):
            if self.stopping.is_set():
                if deadline is None:
                    deadline = time.monotonic() + self.config.shutdown_timeout_s
                    best_effort(self.hooks.on_stopping, "on_stopping", self.watch)
                if self.cold_stop.is_set() or time.monotonic() >= deadline:
                    return
            next(t for t in threads if t.is_alive()).join(timeout=0.1)

    def _wait_until_ready(self) -> bool:
        """Wait until Redis and the S3 endpoint answer; False if asked to stop first."""
        said: list[str] = []  # what is not ready, each told once

        def tell(problem: Exception) -> None:
            what = str(problem).split(":")[0]
            if not said or said[-1] != what:
                logger.warning("not ready, retrying: %s", problem)
                said.append(what)

        try:
            wait_until_answers(
                self._check_ready, errors=(NotReady,), stop=self.stopping, on_failure=tell, policy=READINESS_RETRY
            )
        except NotReady:
            return False
        if said:
            logger.info("Redis and S3 answer now")
        return True

    def _check_ready(self) -> None:
        """Return if Redis and the S3 endpoint answer; raise NotReady naming what does not."""
        try:
            self.client.ping()
        except redis.RedisError as exc:
            raise NotReady(f"Redis: {exc}") from exc
        if self.config.s3_probe_url:
            why = s3_answers(self.config.s3_probe_url, ca_bundle=self.config.s3_probe_ca_bundle)
            if why is not None:
                raise NotReady(f"S3 endpoint {self.config.s3_probe_url}: {why}")

    def _retire(self, in_flight: int) -> bool:
        """Put back every job still held (those in flight if the stop timed out); False if Redis refused."""
        if in_flight:
            logger.warning("%d job(s) still in flight at the stop: putting them back on the queue", in_flight)
        self.settlement.abandoned.set()
        deadline = time.monotonic() + RETIRE_TRY_S
        try:
            moved = until_answered(self.queue.retire, self.watch, lambda: time.monotonic() > deadline)
        except GaveUp as exc:
            logger.error(
                "could not put back the jobs in hand (they stay in %s until a reaper frees them): %s",
                self.queue.processing,
                exc,
            )
            return False
        if moved:
            logger.warning("put %d unfinished job(s) back on the queue", moved)
        return True

    # -- job threads ---------------------------------------------------------------------

    def _job_thread(self, burst: bool) -> None:
        try:
            self._work(burst)
        except BaseException:  # noqa: BLE001 - said once, then the whole worker stops with status 1
            logger.critical("job thread died: stopping, exit status 1 (a supervisor starts s3pod again)", exc_info=True)
            self._thread_died.set()
            self.stop()

    def _work(self, burst: bool) -> None:
        config = self.config
        claim = functools.partial(self.queue.claim_many, config.claim_timeout_s, config.claim_batch, config.concurrency)
        while not self.stopping.is_set():
            try:
                batch = until_answered(claim, self.watch, self.stopping.is_set, stop=self.stopping)
            except GaveUp:
                return
            if not batch:
                if burst:
                    return
                continue
            with self._holding(batch):
                if not self._run_batch(batch):
                    return

    def _run_batch(self, batch: list[Claimed]) -> bool:
        """Run the jobs of one claim in turn, settling the uploaded ones together; False once stopping.

        The uploaded jobs of a batch are settled in one go (their stored markers in one
        round trip, then their files deleted, then one acknowledgement). A batch is for
        small files: before a large file's upload (multipart) the ones uploaded are settled
        and the ones after it go back to the queue, for any thread of any daemon to take,
        so a long upload holds back no other job. Jobs not started when the stop comes go
        back to the queue too.
        """
        todo = deque(batch)
        uploaded: list[Uploaded] = []

        def hand_back_the_rest() -> None:
            self._settle_uploaded(uploaded)
            self._put_back(todo)

        while todo:
            if self.stopping.is_set():  # claimed as the stop came: not ours to start
                hand_back_the_rest()
                return False
            claimed = todo.popleft()
            try:
                result = self.runner.run(claimed, before_long=hand_back_the_rest)
                if isinstance(result, Uploaded):
                    uploaded.append(result)
                else:
                    self.settlement.settle(result)
            except Exception:  # noqa: BLE001 - a bug in one job never ends a job thread
                # The job stays in this worker's list; the keeper's sweep puts it back.
                logger.exception("bug while settling a job: it stays held until put back: %.200r", claimed.raw)
        self._settle_uploaded(uploaded)
        return True

    def _settle_uploaded(self, uploaded: list[Uploaded]) -> None:
        """Settle (and forget) the jobs uploaded so far in a batch."""
        done = list(uploaded)
        uploaded.clear()
        try:
            self.settlement.settle_uploaded(done)
        except Exception:  # noqa: BLE001 - a bug in one job never ends a job thread
            logger.exception("bug while settling jobs: they stay held until put back: %.200r", done)

    def _put_back(self, todo: deque[Claimed]) -> None:
        """Put back (and forget) the jobs not started, the oldest at the taking end."""
        while todo:
            self.settlement.put_back(todo.pop())

    @contextmanager
    def _holding(self, batch: list[Claimed]) -> Iterator[None]:
        with self._held_jobs_lock:
            self._held_jobs.update(batch)
        try:
            yield
        finally:
            with self._held_jobs_lock:
                self._held_jobs.subtract(batch)
                for claimed in batch:
                    if self._held_jobs[claimed] <= 0:
                        self._held_jobs.pop(claimed, None)

    def _held(self) -> Counter[Claimed]:
        with self._held_jobs_lock:
            return Counter(self._held_jobs)
