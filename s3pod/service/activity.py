"""What a daemon records in Redis for the dashboard and ``s3po top``: its throughput, its failures, its uploads in flight.

Worker threads only touch memory (a lock and a dict); one background thread writes it all
to Redis once a second in one pipelined round trip, so a busy worker costs Redis the same
as an idle one. The keys, shared by every daemon of the queue and each bounded by a TTL or
a cap, are described in :mod:`s3po_client.activity`, which reads them.

Wiring (the composition root)::

    activity = Activity(client, keys, worker_id)    # then activity.start(); activity.close() at exit
    listeners.append(activity.throughput)           # a Listener: on_outcome(Outcome)
    activity.uploads.started(job_id, bucket, key, path, total_bytes)
    activity.uploads.progress(job_id, done_bytes)   # from the transfer's callback, as often as it likes
    activity.uploads.finished(job_id)               # in a finally: whatever the outcome
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass

import redis
from redis.typing import EncodableT, FieldT

from s3po_client import __version__
from s3po_client.activity import (
    FAILURES_KEPT,
    LIVE_TTL_S,
    MINUTE_TTL_S,
    failures_key,
    inflight_key,
    minute_key,
    worker_info_key,
)
from s3po_client.keys import QueueKeys
from s3po_client.redaction import redact

from ..events import Outcome, OutcomeKind

logger = logging.getLogger(__name__)

#: How often the background thread writes to Redis.
FLUSH_EVERY_S = 1.0
#: A failure's reason is cut to this length: the list is a glance, the log has the rest.
ERROR_CHARS = 500

Clock = Callable[[], float]


class ThroughputRecorder:
    """Adds each outcome to its minute's totals and each failure to the recent-failures list.

    A Listener (``on_outcome``) for :mod:`s3pod.events`; ``flush()`` writes what was heard.
    """

    def __init__(self, client: redis.Redis, keys: QueueKeys, worker_id: str, *, clock: Clock = time.time) -> None:
        self.client = client
        self.keys = keys
        self.worker_id = worker_id
        self.clock = clock
        self._lock = threading.Lock()
        self._totals: defaultdict[int, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._failures: list[str] = []

    def on_outcome(self, outcome: Outcome) -> None:
        """Remember one job transition until the next flush."""
        now = self.clock()
        failure = None
        if outcome.kind is not OutcomeKind.UPLOADED:
            failure = json.dumps(
                {
                    "at": now,
                    "kind": outcome.kind.value,
                    "job_id": outcome.job_id,
                    "bucket": outcome.bucket,
                    "key": outcome.key,
                    "error": redact(outcome.error or "")[:ERROR_CHARS],
                    "attempt": outcome.attempt,
                    "worker": self.worker_id,
                }
            )
        with self._lock:
            totals = self._totals[int(now // 60)]
            totals[outcome.kind.value] += 1
            if outcome.kind is OutcomeKind.UPLOADED:
                totals["bytes"] += max(0, outcome.bytes_sent)
                totals["upload_ms"] += max(0, round(outcome.duration_s * 1000))
            if failure is not None:
                self._failures.append(failure)

    def flush(self) -> None:
        """Add what was heard since the last flush to Redis (one round trip; none if nothing)."""
        with self._lock:
            totals, self._totals = self._totals, defaultdict(lambda: defaultdict(int))
            failures, self._failures = self._failures, []
        if not totals and not failures:
            return
        pipe = self.client.pipeline(transaction=False)
        for minute, counters in totals.items():
            key = minute_key(self.keys, minute)
            for name, amount in counters.items():
                pipe.hincrby(key, name, amount)
            pipe.expire(key, MINUTE_TTL_S)
        if failures:
            pipe.lpush(failures_key(self.keys), *failures)  # the last of the batch ends up first
            pipe.ltrim(failures_key(self.keys), 0, FAILURES_KEPT - 1)
        pipe.execute()


@dataclass(slots=True)
class _Upload:
    job_id: str
    bucket: str
    key: str
    path: str
    total_bytes: int
    done_bytes: int
    rate_bps: float
    started_at: float


class WorkerBoard:
    """This worker as the dashboard lists it: which process it is, and its uploads in flight.

    ``progress`` may be called many times a second from upload threads: it only stores a
    number; ``flush()`` writes each upload at most once per call, with its rate since the
    previous one. A killed daemon's entries expire ``LIVE_TTL_S`` after its last flush.
    """

    def __init__(self, client: redis.Redis, keys: QueueKeys, worker_id: str, *, clock: Clock = time.time) -> None:
        self.client = client
        self.worker_id = worker_id
        self.clock = clock
        self.inflight_key = inflight_key(keys, worker_id)
        self.info_key = worker_info_key(keys, worker_id)
        self.info: dict[FieldT, EncodableT] = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "version": __version__,
            "started_at": clock(),
        }
        self._lock = threading.Lock()
        self._uploads: dict[str, _Upload] = {}
        self._flushed: dict[str, tuple[float, int]] = {}  # job id -> (time, done bytes) last written
        self._finished: set[str] = set()

    def started(self, job_id: str, bucket: str, key: str, path: str, total_bytes: int) -> None:
        """An upload begins (``total_bytes``: the file's size, the bar's end)."""
        upload = _Upload(job_id, bucket, key, path, max(0, total_bytes), 0, 0.0, self.clock())
        with self._lock:
            self._uploads[job_id] = upload
            self._finished.discard(job_id)

    def progress(self, job_id: str, done_bytes: int) -> None:
        """``done_bytes`` of the upload are sent so far."""
        upload = self._uploads.get(job_id)
        if upload is not None:
            upload.done_bytes = done_bytes

    def finished(self, job_id: str) -> None:
        """The upload ended, however it ended."""
        with self._lock:
            if self._uploads.pop(job_id, None) is not None:
                self._finished.add(job_id)

    def flush(self) -> None:
        """Write this worker's info and every upload that moved since the last flush; refresh their TTL."""
        now = self.clock()
        with self._lock:
            uploads = list(self._uploads.values())
            finished, self._finished = self._finished, set()
        changed: dict[FieldT, EncodableT] = {}
        for upload in uploads:
            last = self._flushed.get(upload.job_id)
            if last is not None and last[1] == upload.done_bytes and upload.rate_bps == 0:
                continue
            if last is not None and now > last[0]:
                upload.rate_bps = max(0, upload.done_bytes - last[1]) / (now - last[0])
            self._flushed[upload.job_id] = (now, upload.done_bytes)
            changed[upload.job_id] = json.dumps(asdict(upload))
        for job_id in finished:
            self._flushed.pop(job_id, None)
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(self.info_key, mapping=self.info)
        pipe.expire(self.info_key, LIVE_TTL_S)
        if finished:
            pipe.hdel(self.inflight_key, *finished)
        if changed:
            pipe.hset(self.inflight_key, mapping=changed)
        pipe.expire(self.inflight_key, LIVE_TTL_S)
        pipe.execute()

    def clear(self) -> None:
        """Remove this worker's entries now (a clean stop), rather than when they expire."""
        self.client.delete(self.inflight_key, self.info_key)


class Activity:
    """The recorder and the board of one worker, and the thread that flushes them every second."""

    def __init__(
        self,
        client: redis.Redis,
        keys: QueueKeys,
        worker_id: str,
        *,
        flush_every_s: float = FLUSH_EVERY_S,
        clock: Clock = time.time,
    ) -> None:
        self.throughput = ThroughputRecorder(client, keys, worker_id, clock=clock)
        self.uploads = WorkerBoard(client, keys, worker_id, clock=clock)
        self.flush_every_s = flush_every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="s3pod-activity", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def flush(self) -> None:
        """Write both now; a Redis error is logged and the data of that second is dropped (it is only shown)."""
        try:
            self.throughput.flush()
            self.uploads.flush()
        except redis.RedisError as exc:
            logger.warning("activity: cannot record to Redis: %s", exc)

    def close(self) -> None:
        """Stop the thread, write what is left, and take this worker off the board."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.flush()
        try:
            self.uploads.clear()
        except redis.RedisError as exc:
            logger.warning("activity: cannot clear this worker's entries: %s", exc)

    def _run(self) -> None:
        while not self._stop.wait(self.flush_every_s):
            self.flush()


__all__ = ["FLUSH_EVERY_S", "Activity", "ThroughputRecorder", "WorkerBoard"]
