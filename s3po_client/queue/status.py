"""Which workers a queue has, and how many jobs are in each state: what ``s3po status`` and metrics read.

Worker discovery is the ``<prefix>:workers`` sorted set alone (every worker beats into it
before its first claim), never a SCAN of the keyspace: with a million keys a SCAN is a
million steps. Counting is one pipelined round trip.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import redis

from .client import check_prefix, is_cluster, node_options, split_prefixes
from .keys import DEFAULT_PREFIX, QueueKeys


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def server_time(client: redis.Redis, keys: QueueKeys | None = None) -> float:
    """Return the Redis server's clock (Unix seconds): the one clock heartbeats and due times use.

    On Redis Cluster, pass the queue's ``keys``: the clock is then read on the node that
    holds them, the one whose clock the Lua scripts read.
    """
    seconds, micros = client.time(**(node_options(client, keys.workers) if keys is not None else {}))
    return seconds + micros / 1e6


def worker_beats(client: redis.Redis, keys: QueueKeys) -> dict[str, float]:
    """Return ``{worker id: time of its last heartbeat}`` (Redis server clock) for every known worker."""
    scored = cast("list[tuple[bytes, float]]", client.zrange(keys.workers, 0, -1, withscores=True))
    return {_text(w): float(score) for w, score in scored}


def workers_alive(client: redis.Redis, keys: QueueKeys, timeout_s: float) -> int:
    """Return how many workers beat within ``timeout_s``, judged by the Redis server's clock."""
    return int(client.zcount(keys.workers, server_time(client, keys) - timeout_s, "+inf"))


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """How many jobs are in each state, and which workers beat how long ago, as ``s3po status`` shows."""

    pending: int
    processing: int
    delayed: int
    dead: int
    processing_by_worker: Mapping[str, int]
    #: worker id -> seconds since its last heartbeat (by the Redis server's clock)
    heartbeat_age_s: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pending": self.pending,
            "processing": self.processing,
            "delayed": self.delayed,
            "dead": self.dead,
            "processing_by_worker": dict(self.processing_by_worker),
            "workers": {w: {"heartbeat_age_s": round(age, 3)} for w, age in self.heartbeat_age_s.items()},
        }


def count_jobs(client: redis.Redis, prefix: str = DEFAULT_PREFIX) -> QueueCounts:
    """Return the number of pending, processing, delayed and dead jobs under ``prefix``, and the workers.

    Two round trips whatever the backlog: the workers with the clock, then every length.
    A sharded prefix (several, comma-separated) adds up its shards (two round trips each).
    """
    parts = [_count_one(client, p) for p in split_prefixes(prefix)]
    if len(parts) == 1:
        return parts[0]
    by_worker: dict[str, int] = {}
    ages: dict[str, float] = {}
    for part in parts:
        for worker, n in part.processing_by_worker.items():
            by_worker[worker] = by_worker.get(worker, 0) + n
        for worker, age in part.heartbeat_age_s.items():
            ages[worker] = min(age, ages.get(worker, age))
    return QueueCounts(
        pending=sum(p.pending for p in parts),
        processing=sum(p.processing for p in parts),
        delayed=sum(p.delayed for p in parts),
        dead=sum(p.dead for p in parts),
        processing_by_worker=by_worker,
        heartbeat_age_s=ages,
    )


def _count_one(client: redis.Redis, prefix: str) -> QueueCounts:
    keys = QueueKeys(prefix)
    check_prefix(client, prefix)
    if is_cluster(client):  # a cluster pipeline would read TIME on any node: ask the queue's own
        scored: Any = client.zrange(keys.workers, 0, -1, withscores=True)
        now = server_time(client, keys)
    else:
        pipe = client.pipeline(transaction=False)
        pipe.zrange(keys.workers, 0, -1, withscores=True)
        pipe.time()
        scored, (seconds, micros) = pipe.execute()
        now = seconds + micros / 1e6
    beats = {_text(w): float(t) for w, t in scored}
    workers = sorted(beats)
    pipe = client.pipeline(transaction=False)
    pipe.llen(keys.queue)
    pipe.zcard(keys.delayed)
    pipe.llen(keys.dead)
    for worker in workers:
        pipe.llen(keys.processing(worker))
    pending, delayed, dead, *held = pipe.execute()
    by_worker = {w: int(n) for w, n in zip(workers, held) if n}
    return QueueCounts(
        pending=int(pending),
        processing=sum(by_worker.values()),
        delayed=int(delayed),
        dead=int(dead),
        processing_by_worker=by_worker,
        heartbeat_age_s={w: max(0.0, now - t) for w, t in beats.items()},
    )
