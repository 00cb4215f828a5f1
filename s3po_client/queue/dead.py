"""The dead-letter list ``<prefix>:dead``: read it, send jobs back to the queue, purge it.

Each entry is a JSON object ``{job, error, attempts, failed_at, worker}`` pushed by s3pod,
newest first; ``job`` is the job's text exactly as it was queued.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from typing import Any

import redis

from ..errors import JobError
from ..job import Job
from .client import check_prefix, split_prefixes
from .consumer import load_script
from .keys import DEFAULT_PREFIX, QueueKeys


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
    keys = QueueKeys(prefix)
    check_prefix(client, prefix)
    retry = load_script(client, "retry_dead")
    wanted = None if ids is None else set(ids)
    queued: list[str] = []
    invalid: list[DeadEntry] = []
    for entry in reversed(list_dead(client, prefix)):  # oldest first: they are queued in failure order
        job = entry.job
        if job is None:
            if wanted is None:
                invalid.append(entry)
            continue
        if wanted is not None and job.id not in wanted:
            continue
        if retry(keys=[keys.dead, keys.queue], args=[entry.stored, replace(job, attempt=0).to_json()]):
            queued.append(job.id)
    not_found = sorted((wanted or set()) - set(queued))
    return RetryReport(queued=queued, invalid=invalid, not_found=not_found)


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
