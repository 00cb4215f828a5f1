"""The daemon's side of the Redis layout: claim, ack, dead-letter, put back.

Every job stays in Redis until it is settled: BLMOVE moves it atomically from the queue
into this worker's processing list, and it leaves that list only in the same transaction
that acknowledges, dead-letters or puts it back (https://redis.io/commands/blmove/,
"Pattern: Reliable queue").
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

import redis

from s3po_client.queue import QueueKeys

logger = logging.getLogger(__name__)


def raw_text(raw: bytes) -> str:
    """Return ``raw`` as text that JSON can hold and :func:`raw_bytes` turns back exactly."""
    return raw.decode("utf-8", "surrogateescape")


def raw_bytes(text: str) -> bytes:
    """Return the exact bytes that :func:`raw_text` was given."""
    return text.encode("utf-8", "surrogateescape")


@dataclass(slots=True)
class Consumer:
    """One worker's handle on the queue: the Redis client, the keys and its processing list."""

    client: redis.Redis
    keys: QueueKeys
    worker_id: str

    @property
    def processing(self) -> str:
        return self.keys.processing(self.worker_id)

    def claim(self, timeout_s: float) -> bytes | None:
        """Move the oldest pending job into this worker's processing list and return it, or None."""
        raw = self.client.blmove(self.keys.queue, self.processing, timeout_s, "RIGHT", "LEFT")
        return raw if raw is None or isinstance(raw, bytes) else str(raw).encode()

    def ack(self, raw: bytes) -> None:
        """Forget a job that is done: remove it from this worker's processing list."""
        self.client.lrem(self.processing, 1, raw)

    def dead_letter(self, raw: bytes, error: str, attempts: int) -> None:
        """Record a job as failed for good (kept exactly as pushed) and drop it from processing."""
        entry = {
            "job": raw_text(raw),
            "error": error,
            "attempts": attempts,
            "failed_at": time.time(),
            "worker": self.worker_id,
        }
        pipe = self.client.pipeline(transaction=True)
        pipe.lpush(self.keys.dead, json.dumps(entry, separators=(",", ":")))
        pipe.lrem(self.processing, 1, raw)
        pipe.execute()

    def put_back(self, raw: bytes) -> None:
        """Return a job to the taking end of the queue, so it is the next one claimed."""
        pipe = self.client.pipeline(transaction=True)
        pipe.rpush(self.keys.queue, raw)
        pipe.lrem(self.processing, 1, raw)
        pipe.execute()

    def put_back_all(self) -> int:
        """Return every job still in this worker's processing list to the queue, oldest next; count them."""
        moved = 0
        # The list's head holds the newest claim: moving head-first onto the queue's taking
        # end leaves the oldest claim there, so jobs are taken again in their first order.
        while self.client.lmove(self.processing, self.keys.queue, "LEFT", "RIGHT") is not None:
            moved += 1
        return moved
