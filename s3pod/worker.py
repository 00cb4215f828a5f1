"""The daemon loop: claim a job, upload it, delete the local file, settle the job."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from types import FrameType
from typing import Callable

import redis

from s3po_client.errors import JobError, S3poError, SourceChangedError, TransferError
from s3po_client.job import Job
from s3po_client.queue import QueueKeys
from s3po_client.retry import RetryPolicy
from s3po_client.transfer import FileStat, TransferEngine

from .consumer import Consumer
from .safety import PathPolicy

logger = logging.getLogger(__name__)

CLAIM_TIMEOUT_S = 1.0
REDIS_RETRY_MAX_S = 10.0


def new_worker_id() -> str:
    """Return an id naming this daemon: host, pid and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass
class WorkerConfig:
    """What a worker needs besides its Redis client and engine."""

    prefix: str = "s3po"
    worker_id: str = field(default_factory=new_worker_id)
    concurrency: int = 4
    paths: PathPolicy = field(default_factory=PathPolicy)
    retry: RetryPolicy = field(default_factory=RetryPolicy)


class Worker:
    """Consumes ``<prefix>:queue`` with ``concurrency`` threads until stopped.

    ``run(burst=True)`` drains the queue and returns, so tests can run it in-process.
    """

    def __init__(self, client: redis.Redis, engine: TransferEngine, config: WorkerConfig) -> None:
        self.client = client
        self.engine = engine
        self.config = config
        self.consumer = Consumer(client, QueueKeys(config.prefix), config.worker_id)
        self.stopping = threading.Event()
        self._redis_down = False

    # -- lifecycle ---------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        """First SIGTERM/SIGINT: finish the jobs in hand, then stop. Second: stop at once."""
        def handle(signum: int, frame: FrameType | None) -> None:
            if self.stopping.is_set():
                logger.warning("second %s: cold stop, jobs in hand go back to the queue",
                               signal.Signals(signum).name)
                raise SystemExit(1)
            logger.info("%s: warm stop, finishing the jobs in hand", signal.Signals(signum).name)
            self.stopping.set()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def run(self, burst: bool = False) -> None:
        """Work until stopped (or, with ``burst``, until the queue is empty)."""
        logger.info("worker %s started: prefix=%s concurrency=%d", self.config.worker_id,
                    self.config.prefix, self.config.concurrency)
        threads = [
            threading.Thread(target=self._loop, args=(burst,), name=f"s3pod-{i}", daemon=True)
            for i in range(self.config.concurrency)
        ]
        try:
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):
                for t in threads:
                    t.join(timeout=0.2)
        finally:
            self.stopping.set()
            self._teardown()

    def _teardown(self) -> None:
        try:
            moved = self.consumer.put_back_all()
        except redis.RedisError as exc:
            logger.error("could not put jobs in hand back (they stay in %s): %s",
                         self.consumer.processing, exc)
            return
        if moved:
            logger.warning("put %d unfinished job(s) back on the queue", moved)
        logger.info("worker %s stopped", self.config.worker_id)

    def _loop(self, burst: bool) -> None:
        delay_s = 0.5
        while not self.stopping.is_set():
            try:
                raw = self.consumer.claim(CLAIM_TIMEOUT_S)
            except redis.RedisError as exc:
                if not self._redis_down:
                    logger.error("Redis unavailable, retrying: %s", exc)
                    self._redis_down = True
                self.stopping.wait(delay_s)
                delay_s = min(REDIS_RETRY_MAX_S, delay_s * 2)
                continue
            if self._redis_down:
                logger.info("Redis is back")
                self._redis_down = False
            delay_s = 0.5
            if raw is None:
                if burst:
                    return
                continue
            self.process(raw)

    # -- one job -----------------------------------------------------------------------

    def process(self, raw: bytes) -> None:
        """Settle one claimed job: uploaded and acknowledged, or dead-lettered."""
        try:
            job = Job.from_json(raw)
        except JobError as exc:
            logger.error("dead job=? reason=%s", exc)
            self._settle(lambda: self.consumer.dead_letter(raw, f"invalid job: {exc}", 0))
            return
        attempt = job.attempt
        while True:
            try:
                self.upload(job)
            except Exception as exc:  # noqa: BLE001 - every failure settles the job, none ends the worker
                if not isinstance(exc, S3poError):
                    logger.exception("bug while uploading job=%s", job.id)
                error = str(exc) or type(exc).__name__
                if self.config.retry.should_retry(attempt, job.retries, exc):
                    delay = self.config.retry.delay_s(attempt)
                    logger.warning("retry job=%s attempt=%d in=%.1fs error=%s", job.id, attempt + 1, delay, error)
                    attempt += 1
                    if self.stopping.wait(delay):  # asked to stop: the job goes back, not lost
                        self._settle(lambda: self.consumer.put_back(raw))
                        return
                    continue
                log = logger.info if job.silent else logger.error
                log("dead job=%s bucket=%s key=%s attempts=%d error=%s", job.id, job.bucket, job.key,
                    attempt + 1, error)
                self._settle(lambda: self.consumer.dead_letter(raw, error, attempt + 1))
                return
            self._settle(lambda: self.consumer.ack(raw))
            return

    def upload(self, job: Job) -> None:
        """Upload one job's file, then delete it if asked and unchanged."""
        path = self.config.paths.check(job.path)
        started = time.monotonic()
        result = self.engine.upload_file(job.bucket, job.key, path, headers=job.headers, compress=job.compress)
        logger.info("uploaded job=%s bucket=%s key=%s bytes=%d duration=%.3fs attempt=%d",
                    job.id, job.bucket, job.key, result.bytes_read, time.monotonic() - started, job.attempt)
        if job.delete:
            try:
                now = FileStat.of(path)
            except FileNotFoundError:
                raise SourceChangedError(f"{path!r} vanished during upload", bucket=job.bucket, key=job.key) from None
            if result.source is not None and now != result.source:
                raise SourceChangedError(f"{path!r} changed during upload; uploading again",
                                         bucket=job.bucket, key=job.key)
            os.unlink(path)
            logger.info("deleted job=%s path=%s", job.id, path)

    def _settle(self, action: Callable[[], None]) -> None:
        """Run a Redis settle step, retrying while Redis is away so the outcome is not lost."""
        delay_s = 0.2
        while True:
            try:
                action()
                return
            except redis.RedisError as exc:
                logger.error("Redis unavailable while settling a job, retrying: %s", exc)
                time.sleep(delay_s)
                delay_s = min(REDIS_RETRY_MAX_S, delay_s * 2)

