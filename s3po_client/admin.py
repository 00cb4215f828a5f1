"""What an admin asks of a queue: its workers, its counts, and its dead letters (list, retry, purge).

Worker discovery is the ``<prefix>:workers`` sorted set alone (every worker beats into it
before its first claim), never a SCAN of the keyspace: with a million keys a SCAN is a
million steps. Counting is one pipelined round trip.

The dead-letter list ``<prefix>:dead`` holds JSON objects ``{job, error, attempts,
failed_at, worker}`` pushed by s3pod, newest first; ``job`` is the job's text exactly as
it was queued.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any, cast

import redis
from redis.commands.core import Script

from .errors import JobError
from .job import Job
from .keys import DEFAULT_PREFIX, QueueKeys
from .redis_url import check_prefix, is_cluster, node_options, split_prefixes


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


def load_script(client: redis.Redis, name: str, package: str = "s3po_client") -> Script:
    """Return the Lua script ``lua/<name>.lua`` of ``package`` registered on ``client`` (EVALSHA, reloaded after a Redis restart)."""
    return client.register_script((resources.files(package) / "lua" / f"{name}.lua").read_text())


@dataclass(frozen=True, slots=True)
class DeadEntry:
    """One dead-lettered job: what was queued, why it failed, how often, when and where."""

    stored: bytes = field(repr=False)  # the entry exactly as in Redis, to remove it
    job_text: str
    error: str
    attempts: int
    failed_at: float | None
    worker: str | None

    @classmethod
    def parse(cls, stored: bytes) -> DeadEntry:
        try:
            data = json.loads(stored)
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except ValueError:
            return cls(stored, stored.decode("utf-8", "replace"), "unreadable dead entry", 0, None, None)
        return cls(
            stored,
            str(data.get("job", "")),
            str(data.get("error", "")),
            int(data.get("attempts") or 0),
            data.get("failed_at"),
            data.get("worker"),
        )

    @property
    def job(self) -> Job | None:
        """The job, or None if its text is not a valid job (it was dead-lettered as invalid)."""
        try:
            return Job.from_json(self.job_text)
        except JobError:
            return None

    def to_dict(self) -> dict[str, Any]:
        job = self.job
        return {
            "id": job.id if job else None,
            "bucket": job.bucket if job else None,
            "key": job.key if job else None,
            "path": job.path if job else None,
            "job": self.job_text,
            "error": self.error,
            "attempts": self.attempts,
            "failed_at": self.failed_at,
            "worker": self.worker,
        }


@dataclass(frozen=True, slots=True)
class RetryReport:
    """What ``retry_dead`` did: ids queued again, entries it could not retry, ids it did not find."""

    queued: list[str]
    invalid: list[DeadEntry]
    not_found: list[str]


def list_dead(client: redis.Redis, prefix: str = DEFAULT_PREFIX) -> list[DeadEntry]:
    """Return every dead entry, newest first (of every shard, for a sharded prefix)."""
    shards = split_prefixes(prefix)
    if len(shards) > 1:
        entries = [entry for shard in shards for entry in list_dead(client, shard)]
        return sorted(entries, key=lambda entry: entry.failed_at or 0.0, reverse=True)
    check_prefix(client, prefix)
    raws = client.lrange(QueueKeys(prefix).dead, 0, -1)
    return [DeadEntry.parse(raw if isinstance(raw, bytes) else str(raw).encode()) for raw in raws]


def retry_dead(client: redis.Redis, ids: Collection[str] | None, prefix: str = DEFAULT_PREFIX) -> RetryReport:
    """Queue dead jobs again with their attempt count reset; ``ids=None`` retries every valid one.

    A job that is not valid JSON or not a valid job cannot be retried as it is: it is
    reported in ``invalid`` and left in the dead list (fix it and enqueue it anew).
    """
    shards = split_prefixes(prefix)
    if len(shards) > 1:  # each dead job goes back to the queue of its own shard
        reports = [retry_dead(client, ids, shard) for shard in shards]
        found = [job_id for report in reports for job_id in report.queued]
        return RetryReport(
            queued=found,
            invalid=[e for report in reports for e in report.invalid],
            not_found=sorted(set(ids or ()) - set(found)),
        )
    check_prefix(client, prefix)
    return _retry_dead_one(client, QueueKeys(prefix), None if ids is None else set(ids))


#: Dead entries read and moved per round trip by ``retry_dead``: how long Redis is held at once.
RETRY_CHUNK = 1000


def _retry_dead_one(client: redis.Redis, keys: QueueKeys, wanted: set[str] | None) -> RetryReport:
    """Retry the dead jobs of one queue in one pass over its dead list, oldest first, a chunk at a time.

    Each chunk is read off the list's tail, then taken by ``lua/retry_dead.lua``: the jobs
    to retry go to the queue (in failure order), the other entries aside, and back to the
    tail in their order at the end (``lua/restore_dead.lua``), below any entry dead-lettered
    meanwhile. While it runs, ``s3po dead list`` and the dead count leave out the entries
    set aside. Entries a retry set aside and never put back (it was killed) go back first.
    """
    _restore_kept(client, keys)
    retry = load_script(client, "retry_dead")
    queued: list[str] = []
    invalid: list[DeadEntry] = []
    try:
        while tail := client.lrange(keys.dead, -RETRY_CHUNK, -1):
            chunk = [DeadEntry.parse(raw if isinstance(raw, bytes) else str(raw).encode()) for raw in reversed(tail)]
            jobs = [entry.job for entry in chunk]
            chosen = [job if job is not None and (wanted is None or job.id in wanted) else None for job in jobs]
            args: list[bytes | str] = []
            for entry, job in zip(chunk, chosen):
                args += [entry.stored, "" if job is None else replace(job, attempt=0).to_json()]
            # Fewer taken than read: another admin changed the tail; the next round reads it again.
            taken = int(retry(keys=[keys.dead, keys.queue, keys.dead_kept], args=args))
            queued += [job.id for job in chosen[:taken] if job is not None]
            if wanted is None:
                invalid += [entry for entry, job in zip(chunk[:taken], jobs) if job is None]
    finally:
        _restore_kept(client, keys)
    return RetryReport(queued=queued, invalid=invalid, not_found=sorted((wanted or set()) - set(queued)))


def _restore_kept(client: redis.Redis, keys: QueueKeys) -> None:
    """Put every entry a retry set aside back at the dead list's tail, in order, a chunk per call."""
    restore = load_script(client, "restore_dead")
    while int(restore(keys=[keys.dead_kept, keys.dead], args=[RETRY_CHUNK])) == RETRY_CHUNK:
        pass


def purge_dead(client: redis.Redis, prefix: str = DEFAULT_PREFIX) -> int:
    """Delete the dead entries present now (not those pushed meanwhile); return how many."""
    shards = split_prefixes(prefix)
    if len(shards) > 1:
        return sum(purge_dead(client, shard) for shard in shards)
    check_prefix(client, prefix)
    key = QueueKeys(prefix).dead
    count = int(client.llen(key))
    if count:
        # Newest entries are on the left: keep whatever was pushed since we counted.
        client.ltrim(key, 0, -(count + 1))
    return count
