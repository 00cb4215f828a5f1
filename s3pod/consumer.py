"""The daemon's side of the Redis layout: claim, ack, delay, dead-letter, put back, reap.

Every job stays in Redis until it is settled: BLMOVE moves it atomically from the queue
into this worker's processing list, and it leaves that list only in the same atomic step
(a Lua script in ``s3pod/lua``) that acknowledges, delays, dead-letters or puts it back
(https://redis.io/commands/blmove/, "Pattern: Reliable queue"). Workers heartbeat into
``<prefix>:workers``; any worker reaps the processing lists of workers whose heartbeat is
older than the timeout; that sorted set is how workers are found (no SCAN). Times
(heartbeats, due times) come from the Redis server's clock, so hosts whose clocks differ
still agree. No step searches the queue or the whole dead list: each costs the same with a
backlog of millions.

Each script names every key it touches in KEYS, so with a hash-tagged prefix such as
``{s3po}`` every step stays atomic on Redis Cluster too.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import redis
from redis.commands.core import Script

from s3po_client.admin import load_script, server_time, worker_beats
from s3po_client.keys import QueueKeys
from s3po_client.redis_url import check_prefix

logger = logging.getLogger(__name__)

#: Most delayed jobs one promote call moves, so no call holds Redis for long.
PROMOTE_BATCH = 500

SCRIPTS = ("claim", "ack", "delay", "dead", "put_back", "promote", "heartbeat", "requeue")

#: How many of the newest dead entries a repeated dead-letter step looks through for its own.
DEAD_LOOKBACK = 100

#: How long a reaped worker that holds nothing stays in the workers set (see requeue.lua).
FORGET_WORKER_AFTER_S = 3600.0


#: How long a stored marker lives: long enough for any later copy of its job (put back by a
#: reaper, pushed twice, waiting in a backlog, retried by an admin) to find it.
STORED_MARKER_TTL_S = 7 * 24 * 3600

#: How long a stored marker outlives the acknowledgement of the job that set it: long
#: enough for the duplicates producers make (a push repeated after a timeout, a durable
#: enqueue retried), short enough that a busy queue keeps no marker per job for days.
STORED_AFTER_ACK_TTL_S = 3600


def raw_text(raw: bytes) -> str:
    """Return ``raw`` as text that JSON can hold and :func:`raw_bytes` turns back exactly."""
    return raw.decode("utf-8", "surrogateescape")


def raw_bytes(text: str) -> bytes:
    """Return the exact bytes that :func:`raw_text` was given."""
    return text.encode("utf-8", "surrogateescape")


def dead_entry(raw: bytes, error: str, attempts: int, worker_id: str) -> str:
    """Return the dead-list entry for a job: the job exactly as pushed, why, how often, when, who."""
    entry = {
        "job": raw_text(raw),
        "error": error,
        "attempts": attempts,
        "failed_at": time.time(),
        "worker": worker_id,
    }
    return json.dumps(entry, separators=(",", ":"))


def load_scripts(client: redis.Redis) -> dict[str, Script]:
    """Return every Lua script of the queue protocol registered on ``client``."""
    return {name: load_script(client, name, "s3pod") for name in SCRIPTS}


def _as_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Consumer:
    """One worker's handle on the queue: the Redis client, the keys and its processing list."""

    def __init__(self, client: redis.Redis, keys: QueueKeys, worker_id: str, heartbeat_timeout_s: float = 30.0) -> None:
        check_prefix(client, keys.prefix)
        self.client = client
        self.keys = keys
        self.worker_id = worker_id
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.scripts = load_scripts(client)

    @property
    def processing(self) -> str:
        return self.keys.processing(self.worker_id)

    # -- one job -------------------------------------------------------------------------

    def claim(self, timeout_s: float) -> bytes | None:
        """Move the oldest pending job into this worker's processing list and return it, or None."""
        raw = self.client.blmove(self.keys.queue, self.processing, timeout_s, "RIGHT", "LEFT")  # type: ignore[arg-type]  # Redis takes fractional seconds
        return None if raw is None else _as_bytes(raw)

    def take(self, most: int, takers: int = 1) -> list[bytes]:
        """Move up to ``most`` of the oldest pending jobs into this worker's processing list without waiting.

        Never more than this caller's share of the queue (its length over ``takers``,
        rounded up), so a short queue is spread over every taker. Returns them, oldest first.
        """
        if most > 1:
            moved = self.scripts["claim"](keys=[self.keys.queue, self.processing], args=[most, max(1, takers)])
            return [_as_bytes(raw) for raw in moved]
        raw = self.client.lmove(self.keys.queue, self.processing, "RIGHT", "LEFT")
        return [] if raw is None else [_as_bytes(raw)]

    def claim_many(self, timeout_s: float, most: int, takers: int = 1) -> list[bytes]:
        """Move up to ``most`` of the oldest pending jobs into this worker's processing list; return them, oldest first.

        One round trip for the lot while the queue is deep (see :meth:`take`). When the
        queue is empty it blocks like :meth:`claim` for one job (an empty list after
        ``timeout_s``).
        """
        if most > 1:
            moved = self.take(most, takers)
            if moved:
                return moved
        raw = self.claim(timeout_s)
        return [] if raw is None else [raw]

    def ack(self, raw: bytes, job_id: str) -> tuple[bool, bool]:
        """Forget a job that is done; return (held, upload recorded).

        ``held`` is False if this worker no longer held the job (a reaper put it back).
        ``upload recorded`` says a multipart upload of the job is still recorded (an
        earlier run's), for the caller to abort. The job's stored marker is left to expire:
        a later copy of the job finds its file gone and the marker says it is stored.
        """
        return self.ack_many([(raw, job_id)])[0]

    def ack_many(self, jobs: Sequence[tuple[bytes, str]]) -> list[tuple[bool, bool]]:
        """:meth:`ack` for several ``(job as claimed, job id)`` in one atomic step; the answers in order."""
        if not jobs:
            return []
        keys = [self.processing]
        for _, job_id in jobs:
            keys += [self.keys.upload(job_id), self.keys.stored(job_id)]
        found = self.scripts["ack"](keys=keys, args=[*(raw for raw, _ in jobs), STORED_AFTER_ACK_TTL_S])
        return [(bool(int(n) & 1), bool(int(n) & 2)) for n in found]

    def holds(self, raw: bytes) -> bool:
        """Whether this worker's processing list still holds ``raw`` (a reaper may have put it back)."""
        return self.client.lpos(self.processing, raw) is not None  # type: ignore[arg-type]

    def mark_stored(self, job_id: str, ttl_s: int = STORED_MARKER_TTL_S) -> None:
        """Record that a job's object is stored and verified, before its local file is deleted."""
        self.mark_stored_many([job_id], ttl_s)

    def mark_stored_many(self, job_ids: Sequence[str], ttl_s: int = STORED_MARKER_TTL_S) -> None:
        """:meth:`mark_stored` for several jobs in one round trip (each SET stands alone: none needs the others)."""
        if len(job_ids) == 1:
            self.client.set(self.keys.stored(job_ids[0]), self.worker_id, ex=ttl_s)
            return
        pipe = self.client.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.set(self.keys.stored(job_id), self.worker_id, ex=ttl_s)
        pipe.execute()

    def was_stored(self, job_id: str) -> bool:
        """Return whether an earlier run stored this job's object (and may have deleted its file)."""
        return bool(self.client.exists(self.keys.stored(job_id)))

    def forget_stored(self, job_id: str) -> None:
        """Drop the stored marker of a job whose file changed after it was stored (it is uploaded again)."""
        self.client.delete(self.keys.stored(job_id))

    def delay(self, raw: bytes, next_raw: bytes | str, delay_s: float) -> float:
        """Schedule ``next_raw`` (the job's next attempt) ``delay_s`` from now; return its due time."""
        due = self.scripts["delay"](
            keys=[self.processing, self.keys.delayed], args=[raw, next_raw, repr(float(delay_s))]
        )
        return float(_as_text(due))

    def dead_letter(self, raw: bytes, entry: str) -> bool:
        """Record a job as failed for good (``entry`` from :func:`dead_entry`); False if already recorded."""
        pushed = self.scripts["dead"](keys=[self.processing, self.keys.dead], args=[raw, entry, DEAD_LOOKBACK])
        return bool(pushed)

    def put_back(self, raw: bytes) -> bool:
        """Return a job this worker holds to the taking end of the queue; False if it did not hold it."""
        return bool(self.scripts["put_back"](keys=[self.processing, self.keys.queue], args=[raw]))

    def held(self) -> list[bytes]:
        """Return the jobs in this worker's processing list."""
        return [_as_bytes(raw) for raw in self.client.lrange(self.processing, 0, -1)]

    # -- upkeep --------------------------------------------------------------------------

    def heartbeat(self) -> int:
        """Record that this worker is alive; 0 first beat, 1 fresh, 2 silent past the timeout (maybe reaped)."""
        return int(
            self.scripts["heartbeat"](
                keys=[self.keys.workers], args=[self.worker_id, repr(float(self.heartbeat_timeout_s))]
            )
        )

    def promote(self) -> int:
        """Move delayed jobs that are due back onto the queue; return how many moved."""
        moved = 0
        while True:
            n = int(self.scripts["promote"](keys=[self.keys.delayed, self.keys.queue], args=[PROMOTE_BATCH]))
            moved += n
            if n < PROMOTE_BATCH:
                return moved

    def requeue(self, worker_id: str, timeout_s: float) -> int:
        """Put back every job ``worker_id`` holds unless it beat within ``timeout_s`` (then -1).

        A negative ``timeout_s`` puts them back whatever the heartbeat says.
        """
        keys = [self.keys.workers, self.keys.processing(worker_id), self.keys.queue]
        return int(
            self.scripts["requeue"](keys=keys, args=[worker_id, repr(float(timeout_s)), repr(FORGET_WORKER_AFTER_S)])
        )

    def retire(self) -> int:
        """Put back every job this worker still holds and leave the workers set; return how many."""
        return self.requeue(self.worker_id, -1)

    def reap(self, timeout_s: float) -> dict[str, int]:
        """Put back the jobs of every worker whose heartbeat is older than ``timeout_s``.

        Returns ``{worker id: jobs put back}`` for the workers that held any. Candidates come
        from the workers set (every worker beats before its first claim); the script checks
        the heartbeat again inside its atomic step.
        """
        now = server_time(self.client, self.keys)
        stale = [
            w
            for w, beat in worker_beats(self.client, self.keys).items()
            if now - beat >= timeout_s and w != self.worker_id
        ]
        reaped: dict[str, int] = {}
        for worker_id in sorted(stale):
            moved = self.requeue(worker_id, timeout_s)
            if moved > 0:
                reaped[worker_id] = moved
        return reaped
