"""Sharded queues: one logical queue spread over several prefixes, for more than one Redis slot can take.

A prefix option holding several prefixes separated by commas (``{s3po0},{s3po1}``) names
a sharded queue. Each shard is a whole queue of its own (queue, processing lists,
workers, delayed, dead), so every atomic step stays within one shard, which on Redis
Cluster is one slot when each shard has its own hash tag. Producers put each job on the
shard its bucket and key hash to (:func:`shard_index`), so uploads of one object keep to
one shard and its order; a daemon claims from every shard in turn (:class:`ShardedConsumer`).
Every producer and daemon of a sharded queue must use the same list in the same order.

One prefix stays the default: sharding is for when one slot is the bottleneck.
"""

from __future__ import annotations

import itertools
import threading
import zlib
from collections.abc import Callable, Sequence
from typing import TypeVar

import redis

from s3po_client.errors import JobError
from s3po_client.job import Job
from s3po_client.keys import QueueKeys
from s3po_client.redis_url import split_prefixes

from .consumer import STORED_MARKER_TTL_S, Consumer, _as_bytes

T = TypeVar("T")

__all__ = ["ShardedConsumer", "consumer_for"]


def _stable_index(text: str | bytes, shards: int) -> int:
    return zlib.crc32(text.encode() if isinstance(text, str) else text) % shards


class ShardedConsumer(Consumer):
    """One worker's handle on every shard of a sharded queue; the same interface as :class:`Consumer`.

    A claim tries the shards in turn, starting one further each time, with a non-blocking
    ``LMOVE`` each; only when all are empty does it block (``BLMOVE``) on one of them for
    the claim timeout, so an idle daemon costs one blocking call per claim timeout and a
    few quick ones, never a busy loop. Each settle step runs on the shard the job was
    claimed from, and a job's stored marker lives in that shard too (a job never leaves
    its shard, so the daemon that runs it next looks there; the acknowledgement drops the
    marker in the same atomic step, which on Redis Cluster needs both keys in one slot).
    The heartbeat, promotion and reaping run on every shard.
    """

    def __init__(
        self, client: redis.Redis, prefixes: list[str], worker_id: str, heartbeat_timeout_s: float = 30.0
    ) -> None:
        self.shards = [Consumer(client, QueueKeys(p), worker_id, heartbeat_timeout_s) for p in prefixes]
        super().__init__(client, self.shards[0].keys, worker_id, heartbeat_timeout_s)
        self._turn = itertools.count()
        self._claimed: dict[bytes, list[int]] = {}  # job as claimed -> shards it was claimed from
        self._job_ids: dict[bytes, str] = {}  # job as claimed -> its id
        self._id_shard: dict[str, int] = {}  # job id -> the shard it was claimed from
        self._lock = threading.Lock()

    @property
    def processing(self) -> str:
        return ", ".join(shard.processing for shard in self.shards)

    # -- one job -------------------------------------------------------------------------

    def claim(self, timeout_s: float) -> bytes | None:
        start = next(self._turn) % len(self.shards)
        order = list(range(start, len(self.shards))) + list(range(start))
        for i in order:
            shard = self.shards[i]
            raw = self.client.lmove(shard.keys.queue, shard.processing, "RIGHT", "LEFT")
            if raw is not None:
                return self._took(i, _as_bytes(raw))
        raw = self.shards[start].claim(timeout_s)
        return None if raw is None else self._took(start, raw)

    def claim_many(self, timeout_s: float, most: int, takers: int = 1) -> list[bytes]:
        start = next(self._turn) % len(self.shards)
        if most > 1:
            for i in list(range(start, len(self.shards))) + list(range(start)):
                shard = self.shards[i]
                moved = shard.scripts["claim"](keys=[shard.keys.queue, shard.processing], args=[most, max(1, takers)])
                if moved:
                    return [self._took(i, _as_bytes(raw)) for raw in moved]
        else:
            for i in list(range(start, len(self.shards))) + list(range(start)):
                shard = self.shards[i]
                raw = self.client.lmove(shard.keys.queue, shard.processing, "RIGHT", "LEFT")
                if raw is not None:
                    return [self._took(i, _as_bytes(raw))]
        raw = self.shards[start].claim(timeout_s)
        return [] if raw is None else [self._took(start, raw)]

    def _took(self, i: int, raw: bytes) -> bytes:
        try:
            job_id: str | None = Job.from_json(raw).id
        except JobError:  # dead-lettered by the worker; it never gets a stored marker
            job_id = None
        with self._lock:
            self._claimed.setdefault(raw, []).append(i)
            if job_id is not None:
                self._job_ids[raw] = job_id
                self._id_shard[job_id] = i
        return raw

    def _on(self, raw: bytes, step: Callable[[Consumer], T]) -> T:
        """Run ``step`` on the shard ``raw`` was claimed from, then forget that claim."""
        with self._lock:
            known = self._claimed.get(raw)
            i = known[0] if known else None
        if i is None:
            i = self._holder(raw)
        result = step(self.shards[i])
        with self._lock:
            self._forget(raw, i)
        return result

    def _holder(self, raw: bytes) -> int:
        """The shard whose processing list holds ``raw`` (a job no thread claimed: the keeper's sweep)."""
        for i, shard in enumerate(self.shards):
            if raw in shard.held():
                return i
        return _stable_index(raw, len(self.shards))

    def ack(self, raw: bytes, job_id: str) -> tuple[bool, bool]:
        return self._on(raw, lambda shard: shard.ack(raw, job_id))

    def ack_many(self, jobs: Sequence[tuple[bytes, str]]) -> list[tuple[bool, bool]]:
        """One atomic step per shard the jobs were claimed from (a job claimed twice here goes alone)."""
        groups: dict[int, list[int]] = {}
        alone: list[int] = []
        with self._lock:
            for n, (raw, _) in enumerate(jobs):
                known = self._claimed.get(raw)
                if known and len(known) == 1 and not any(jobs[m][0] == raw for m in groups.get(known[0], ())):
                    groups.setdefault(known[0], []).append(n)
                else:
                    alone.append(n)
        answers: list[tuple[bool, bool]] = [(False, False)] * len(jobs)
        for i, members in groups.items():
            for n, answer in zip(members, self.shards[i].ack_many([jobs[n] for n in members])):
                answers[n] = answer
            with self._lock:
                for n in members:
                    self._forget(jobs[n][0], i)
        for n in alone:
            answers[n] = self.ack(*jobs[n])
        return answers

    def _forget(self, raw: bytes, i: int) -> None:
        known = self._claimed.get(raw)
        if known and i in known:
            known.remove(i)
            if not known:
                del self._claimed[raw]
                self._id_shard.pop(self._job_ids.pop(raw, ""), None)

    def delay(self, raw: bytes, next_raw: bytes | str, delay_s: float) -> float:
        return self._on(raw, lambda shard: shard.delay(raw, next_raw, delay_s))

    def dead_letter(self, raw: bytes, entry: str) -> bool:
        return self._on(raw, lambda shard: shard.dead_letter(raw, entry))

    def put_back(self, raw: bytes) -> bool:
        return self._on(raw, lambda shard: shard.put_back(raw))

    def _shard_of_id(self, job_id: str) -> Consumer | None:
        with self._lock:
            i = self._id_shard.get(job_id)
        return None if i is None else self.shards[i]

    def holds(self, raw: bytes) -> bool:
        with self._lock:
            known = list(self._claimed.get(raw, ()))
        return any(self.shards[i].holds(raw) for i in (known or range(len(self.shards))))

    def keys_for(self, job_id: str) -> QueueKeys:
        return (self._shard_of_id(job_id) or self.shards[_stable_index(job_id, len(self.shards))]).keys

    def mark_stored(self, job_id: str, ttl_s: int = STORED_MARKER_TTL_S) -> None:
        shard = self._shard_of_id(job_id) or self.shards[_stable_index(job_id, len(self.shards))]
        shard.mark_stored(job_id, ttl_s)

    def mark_stored_many(self, job_ids: Sequence[str], ttl_s: int = STORED_MARKER_TTL_S) -> None:
        groups: dict[int, list[str]] = {}
        for job_id in job_ids:
            shard = self._shard_of_id(job_id) or self.shards[_stable_index(job_id, len(self.shards))]
            groups.setdefault(self.shards.index(shard), []).append(job_id)
        for i, ids in groups.items():
            self.shards[i].mark_stored_many(ids, ttl_s)

    def was_stored(self, job_id: str) -> bool:
        shard = self._shard_of_id(job_id)
        if shard is not None:
            return shard.was_stored(job_id)
        return any(shard.was_stored(job_id) for shard in self.shards)

    def forget_stored(self, job_id: str) -> None:
        shard = self._shard_of_id(job_id)
        for each in [shard] if shard is not None else self.shards:
            each.forget_stored(job_id)

    def held(self) -> list[bytes]:
        return [raw for shard in self.shards for raw in shard.held()]

    # -- upkeep --------------------------------------------------------------------------

    def heartbeat(self) -> int:
        """Beat on every shard; 2 if any shard found this worker silent past the timeout, 0 if new anywhere."""
        states = [shard.heartbeat() for shard in self.shards]
        return 2 if 2 in states else 0 if 0 in states else 1

    def promote(self) -> int:
        return sum(shard.promote() for shard in self.shards)

    def requeue(self, worker_id: str, timeout_s: float) -> int:
        moved = [shard.requeue(worker_id, timeout_s) for shard in self.shards]
        return -1 if all(n < 0 for n in moved) else sum(n for n in moved if n > 0)

    def reap(self, timeout_s: float) -> dict[str, int]:
        reaped: dict[str, int] = {}
        for shard in self.shards:
            for worker_id, moved in shard.reap(timeout_s).items():
                reaped[worker_id] = reaped.get(worker_id, 0) + moved
        return reaped


def consumer_for(client: redis.Redis, prefix: str, worker_id: str, heartbeat_timeout_s: float = 30.0) -> Consumer:
    """Return the consumer for a prefix option: a :class:`Consumer`, or a :class:`ShardedConsumer` for several."""
    prefixes = split_prefixes(prefix)
    if len(prefixes) == 1:
        return Consumer(client, QueueKeys(prefixes[0]), worker_id, heartbeat_timeout_s)
    return ShardedConsumer(client, prefixes, worker_id, heartbeat_timeout_s)
