"""What the queue's daemons are doing, as the dashboard and ``s3po top`` show it: one read.

s3pod keeps, beside the queue, a bounded record of its activity (written by
:mod:`s3pod.service.activity`); every daemon of the queue writes to the same keys, so a
restart or a second daemon adds to it instead of blanking it:

============================== ====== ======================================================
key (prefix ``P``)             type   holds
============================== ====== ======================================================
``P:activity:<minute>``        hash   that minute's totals: uploaded, bytes, retry, dead,
                                      invalid, upload_ms (expires after an hour)
``P:failures``                 list   the last failed attempts (JSON), newest first, capped
``P:inflight:<worker id>``     hash   job id -> JSON of one upload in flight (expires when
                                      its daemon stops refreshing it)
``P:worker-info:<worker id>``  hash   host, pid, version, started_at (expires likewise)
============================== ====== ======================================================

Reading is a fixed number of round trips whatever the backlog: the counts are LLEN and
ZCARD (:func:`s3po_client.admin.count_jobs`), never a scan of the queue. On a sharded
prefix the activity is that of the first shard's keys, where the daemon records it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from .admin import QueueCounts, count_jobs
from .keys import QueueKeys
from .redis_url import split_prefixes

#: The chart's span: this many minutes are kept and read.
HISTORY_MINUTES = 60
#: A minute's totals outlive the chart by a little, so the oldest bar is never half gone.
MINUTE_TTL_S = (HISTORY_MINUTES + 2) * 60
#: Failed attempts kept in ``P:failures``.
FAILURES_KEPT = 100
#: How long a daemon's in-flight record and worker info outlive its last refresh.
LIVE_TTL_S = 30
#: The counters of one minute; ``failed`` is their sum of retry, dead and invalid.
MINUTE_FIELDS = ("uploaded", "bytes", "retry", "dead", "invalid", "upload_ms")


def minute_key(keys: QueueKeys, minute: int) -> str:
    """Hash of one minute's totals; ``minute`` is Unix time // 60."""
    return f"{keys.prefix}:activity:{minute}"


def failures_key(keys: QueueKeys) -> str:
    """Capped list of the last failed attempts, newest first."""
    return f"{keys.prefix}:failures"


def inflight_key(keys: QueueKeys, worker_id: str) -> str:
    """Hash of the uploads one worker has in flight: job id -> JSON."""
    return f"{keys.prefix}:inflight:{worker_id}"


def worker_info_key(keys: QueueKeys, worker_id: str) -> str:
    """Hash saying which process a worker is: host, pid, version, started_at."""
    return f"{keys.prefix}:worker-info:{worker_id}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True, slots=True)
class Minute:
    """One minute's totals, over every daemon of the queue."""

    at: float  # the minute's start, Unix seconds
    uploaded: int = 0
    bytes: int = 0
    retry: int = 0
    dead: int = 0
    invalid: int = 0
    upload_ms: int = 0

    @property
    def failed(self) -> int:
        return self.retry + self.dead + self.invalid


@dataclass(frozen=True, slots=True)
class Upload:
    """One upload in flight: which file, where to, how far, how fast."""

    job_id: str
    worker: str
    bucket: str
    key: str
    path: str
    total_bytes: int
    done_bytes: int
    rate_bps: float
    started_at: float

    @classmethod
    def parse(cls, worker: str, raw: bytes | str) -> Upload | None:
        try:
            data = json.loads(raw)
            return cls(worker=worker, **{name: data[name] for name in _UPLOAD_FIELDS})
        except (ValueError, KeyError, TypeError):
            return None  # written by another version: leave it out rather than fail the page

    @property
    def fraction(self) -> float:
        return min(1.0, self.done_bytes / self.total_bytes) if self.total_bytes > 0 else 0.0


_UPLOAD_FIELDS = ("job_id", "bucket", "key", "path", "total_bytes", "done_bytes", "rate_bps", "started_at")


@dataclass(frozen=True, slots=True)
class Worker:
    """A worker of the queue: its process, its last heartbeat, the jobs it holds."""

    id: str
    heartbeat_age_s: float
    alive: bool
    holding: int
    host: str | None = None
    pid: int | None = None
    version: str | None = None
    started_at: float | None = None


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed attempt: retried, dead-lettered, or refused as invalid."""

    at: float
    kind: str
    job_id: str | None
    bucket: str | None
    key: str | None
    error: str
    attempt: int
    worker: str

    @classmethod
    def parse(cls, raw: bytes | str) -> Failure | None:
        try:
            data = json.loads(raw)
            return cls(**{name: data[name] for name in cls.__dataclass_fields__})
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True, slots=True)
class Activity:
    """The queue's counts, its workers, the uploads in flight, the last hour and the last failures."""

    counts: QueueCounts
    workers: list[Worker]
    uploads: list[Upload]
    history: list[Minute]  # oldest first, one per minute, the current minute last
    failures: list[Failure] = field(default_factory=list)
    failures_total: int = 0  # how many ``P:failures`` keeps: the rest are a page away
    read_at: float = 0.0

    def rates(self, minutes: int = 5) -> dict[str, float]:
        """Jobs and bytes per second, and failures, over the last ``minutes`` (the current one as far as it went)."""
        recent = self.history[-minutes:]
        if not recent:
            return {"window_s": 0.0, "jobs_per_s": 0.0, "bytes_per_s": 0.0, "failures": 0}
        window_s = max(60.0, self.read_at - recent[0].at)
        return {
            "window_s": round(window_s, 1),
            "jobs_per_s": sum(m.uploaded for m in recent) / window_s,
            "bytes_per_s": sum(m.bytes for m in recent) / window_s,
            "failures": sum(m.failed for m in recent),
        }

    def to_dict(self) -> dict[str, Any]:
        counts = self.counts
        return {
            "counts": {
                "pending": counts.pending,
                "delayed": counts.delayed,
                "dead": counts.dead,
                "in_flight": counts.processing,
                "workers_alive": sum(w.alive for w in self.workers),
            },
            "workers": [asdict(w) for w in self.workers],
            "uploads": [asdict(u) for u in self.uploads],
            "history": [{**asdict(m), "failed": m.failed} for m in self.history],
            "rates": self.rates(),
            "failures": [asdict(f) for f in self.failures],
            "failures_total": self.failures_total,
            "read_at": self.read_at,
        }


def read_activity(
    client: redis.Redis, prefix: str, *, worker_ttl_s: float = 30.0, failures: int = 20, now: float | None = None
) -> Activity:
    """Return what the queue under ``prefix`` is doing now: three round trips, whatever its length."""
    counts = count_jobs(client, prefix)
    keys = QueueKeys(split_prefixes(prefix)[0])
    now = time.time() if now is None else now
    ids = sorted(counts.heartbeat_age_s)
    minutes = [int(now // 60) - HISTORY_MINUTES + 1 + i for i in range(HISTORY_MINUTES)]
    pipe = client.pipeline(transaction=False)
    for worker in ids:
        pipe.hgetall(worker_info_key(keys, worker))
        pipe.hgetall(inflight_key(keys, worker))
    for minute in minutes:
        pipe.hgetall(minute_key(keys, minute))
    pipe.lrange(failures_key(keys), 0, failures - 1)
    pipe.llen(failures_key(keys))
    *replies, failures_total = pipe.execute()
    workers, uploads = [], []
    for index, worker in enumerate(ids):
        info = {_text(k): _text(v) for k, v in replies[2 * index].items()}
        age = counts.heartbeat_age_s[worker]
        workers.append(_worker(worker, info, age, age <= worker_ttl_s, counts.processing_by_worker.get(worker, 0)))
        uploads += [u for raw in replies[2 * index + 1].values() if (u := Upload.parse(worker, raw)) is not None]
    history = [
        Minute(minute * 60.0, **{_text(k): int(v) for k, v in totals.items() if _text(k) in MINUTE_FIELDS})
        for minute, totals in zip(minutes, replies[2 * len(ids) : -1])
    ]
    recent = [f for raw in replies[-1] if (f := Failure.parse(raw)) is not None]
    uploads.sort(key=lambda u: u.started_at)
    return Activity(counts, workers, uploads, history, recent, int(failures_total), read_at=now)


def read_failures(client: redis.Redis, prefix: str, offset: int = 0, limit: int = 20) -> tuple[int, list[Failure]]:
    """Return how many failed attempts are kept, and ``limit`` of them from ``offset`` (newest first)."""
    key = failures_key(QueueKeys(split_prefixes(prefix)[0]))
    pipe = client.pipeline(transaction=False)
    pipe.llen(key)
    pipe.lrange(key, offset, offset + limit - 1)
    total, raws = pipe.execute()
    return int(total), [f for raw in raws if (f := Failure.parse(raw)) is not None]


def _worker(worker_id: str, info: dict[str, str], age: float, alive: bool, holding: int) -> Worker:
    def number(name: str) -> float | None:
        try:
            return float(info[name])
        except (KeyError, ValueError):
            return None

    pid = number("pid")
    return Worker(
        id=worker_id,
        heartbeat_age_s=round(age, 3),
        alive=alive,
        holding=holding,
        host=info.get("host"),
        pid=int(pid) if pid is not None else None,
        version=info.get("version"),
        started_at=number("started_at"),
    )


__all__ = [
    "FAILURES_KEPT",
    "HISTORY_MINUTES",
    "LIVE_TTL_S",
    "MINUTE_FIELDS",
    "MINUTE_TTL_S",
    "Activity",
    "Failure",
    "Minute",
    "Upload",
    "Worker",
    "failures_key",
    "inflight_key",
    "minute_key",
    "read_activity",
    "read_failures",
    "worker_info_key",
]
