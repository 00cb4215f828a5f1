"""The queue a daemon consumes: one or more shards, each a whole queue of its own; a claimed job carries its shard.

A prefix option holding several prefixes separated by commas (``{s3po0},{s3po1}``) names
a sharded queue; one prefix is a queue of one shard. Each shard is a whole queue of its
own (queue, processing lists, workers, delayed, dead, stored markers, multipart records),
so every atomic step stays within one shard, which on Redis Cluster is one slot when each
shard has its own hash tag. Producers put each job on the shard its bucket and key hash to
(:func:`~s3po_client.producer.shard_index`), so uploads of one object keep to one shard
and its order; a daemon claims from every shard in turn (:class:`ShardedConsumer`).
Every producer and daemon of a sharded queue must use the same list in the same order.

A claim returns :class:`Claimed` values: the job as claimed and the shard's
:class:`~s3pod.consumer.Consumer`. Every later step for that job — ack, delay, dead
letter, put back, its stored marker, its multipart record — goes through that consumer,
so nothing about a job is remembered here and nothing is guessed from its id.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from s3po_client.keys import QueueKeys
from s3po_client.redis_url import split_prefixes

from .consumer import Consumer

__all__ = ["Claimed", "ShardedConsumer", "consumer_for"]


@dataclass(frozen=True, slots=True)
class Claimed:
    """A job as claimed (the exact bytes), and the consumer of the shard that holds it."""

    raw: bytes
    shard: Consumer


class ShardedConsumer:
    """One worker's handle on every shard of a queue (one prefix: one shard).

    A claim tries the shards in turn, starting one further each time, without waiting on
    any; only when all are empty does it block (``BLMOVE``) on one of them for the claim
    timeout, so an idle daemon costs one blocking call per claim timeout and a few quick
    ones, never a busy loop. The heartbeat, promotion, reaping and the final put-back run
    on every shard.
    """

    def __init__(
        self, client: redis.Redis, prefixes: Sequence[str], worker_id: str, heartbeat_timeout_s: float = 30.0
    ) -> None:
        self.client = client
        self.worker_id = worker_id
        self.shards = tuple(Consumer(client, QueueKeys(p), worker_id, heartbeat_timeout_s) for p in prefixes)
        self._turn = itertools.count()

    @property
    def processing(self) -> str:
        """This worker's processing lists, for messages."""
        return ", ".join(shard.processing for shard in self.shards)

    def _in_turn(self) -> list[Consumer]:
        start = next(self._turn) % len(self.shards)
        return [*self.shards[start:], *self.shards[:start]]

    # -- claims --------------------------------------------------------------------------

    def claim(self, timeout_s: float) -> Claimed | None:
        """Claim the oldest job of the next shard that has one, or wait on one shard; None after ``timeout_s``."""
        claimed = self.claim_many(timeout_s, 1)
        return claimed[0] if claimed else None

    def claim_many(self, timeout_s: float, most: int, takers: int = 1) -> list[Claimed]:
        """Claim up to ``most`` jobs from one shard (see :meth:`Consumer.claim_many`), oldest first."""
        if len(self.shards) == 1:
            shard = self.shards[0]
            return [Claimed(raw, shard) for raw in shard.claim_many(timeout_s, most, takers)]
        order = self._in_turn()
        for shard in order:
            moved = shard.take(most, takers)
            if moved:
                return [Claimed(raw, shard) for raw in moved]
        raw = order[0].claim(timeout_s)
        return [] if raw is None else [Claimed(raw, order[0])]

    def held(self) -> list[Claimed]:
        """Return the jobs in this worker's processing lists."""
        return [Claimed(raw, shard) for shard in self.shards for raw in shard.held()]

    # -- upkeep --------------------------------------------------------------------------

    def heartbeat(self) -> int:
        """Beat on every shard; 2 if any shard found this worker silent past the timeout, 0 if new anywhere."""
        states = [shard.heartbeat() for shard in self.shards]
        return 2 if 2 in states else 0 if 0 in states else 1

    def promote(self) -> int:
        """Move the due delayed jobs of every shard onto its queue; return how many moved."""
        return sum(shard.promote() for shard in self.shards)

    def requeue(self, worker_id: str, timeout_s: float) -> int:
        """:meth:`Consumer.requeue` on every shard: how many moved, or -1 if every shard found its heartbeat fresh."""
        moved = [shard.requeue(worker_id, timeout_s) for shard in self.shards]
        return -1 if all(n < 0 for n in moved) else sum(n for n in moved if n > 0)

    def retire(self) -> int:
        """Put back every job this worker still holds, in every shard, and leave the workers sets."""
        return self.requeue(self.worker_id, -1)

    def reap(self, timeout_s: float) -> dict[str, int]:
        """Put back the jobs of every worker silent for ``timeout_s``, in every shard: ``{worker id: jobs}``."""
        reaped: dict[str, int] = {}
        for shard in self.shards:
            for worker_id, moved in shard.reap(timeout_s).items():
                reaped[worker_id] = reaped.get(worker_id, 0) + moved
        return reaped


def consumer_for(
    client: redis.Redis, prefix: str, worker_id: str, heartbeat_timeout_s: float = 30.0
) -> ShardedConsumer:
    """Return the consumer for a prefix option: one shard per prefix in it."""
    return ShardedConsumer(client, split_prefixes(prefix), worker_id, heartbeat_timeout_s)
