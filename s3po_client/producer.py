"""The producer's side: build a job for a local file and push it onto the queue.

Producers only need this (and redis-py): ``enqueue`` never imports boto3.
"""

from __future__ import annotations

import functools
import os
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import redis

from .errors import ConfigError, JobError
from .job import DEFAULT_RETRIES, Codec, Job
from .keys import DEFAULT_PREFIX, QueueKeys
from .localfile import require_regular_file
from .redaction import redact_url
from .redis_url import check_prefix, is_cluster, resolve_redis_url, shared_client, split_prefixes

#: How long a durable enqueue waits for a replica to confirm it holds the jobs.
DURABLE_TIMEOUT_MS = 1000


def make_job(
    bucket: str,
    key: str,
    path: str | os.PathLike[str],
    *,
    headers: Mapping[str, str] | None = None,
    compress: Codec | None = None,
    retries: int = DEFAULT_RETRIES,
    delete: bool = True,
    silent: bool = False,
    destination: str | None = None,
) -> Job:
    """Return a validated, timestamped job for a local file that exists now.

    A relative path is made absolute; a path that is not an existing regular file raises
    JobError, so a producer hears about a typo at once rather than in the dead-letter list.
    """
    abspath = os.path.abspath(os.fspath(path))
    require_regular_file(abspath)
    job = Job(
        bucket=bucket,
        key=key,
        path=abspath,
        headers=dict(headers or {}),
        compress=compress,
        retries=retries,
        delete=delete,
        silent=silent,
        destination=destination,
        enqueued_at=time.time(),
    )
    return job


def enqueue(
    bucket: str,
    key: str,
    path: str | os.PathLike[str],
    *,
    headers: Mapping[str, str] | None = None,
    compress: Codec | None = None,
    retries: int = DEFAULT_RETRIES,
    delete: bool = True,
    silent: bool = False,
    destination: str | None = None,
    redis_url: str | None = None,
    prefix: str = DEFAULT_PREFIX,
    durable: bool = False,
) -> str:
    """Queue one file for upload by ``s3pod`` and return the job id.

    ``destination`` names one of s3pod's configured destinations (its config file's
    ``[destinations.NAME]``); None uploads to s3pod's own endpoint. Returns once the job is safely in Redis. ``redis_url`` defaults to ``$S3PO_REDIS_URL``,
    else ``redis://127.0.0.1:6379/0``. With ``durable=True`` it returns only once a
    replica holds the job too (Redis ``WAIT``), so a failover right after cannot lose it;
    see :func:`push_jobs`.

    >>> job_id = enqueue("my-bucket", "logs/app.log", "/var/log/app.log", compress="gzip")  # doctest: +SKIP
    """
    job = make_job(
        bucket,
        key,
        path,
        headers=headers,
        compress=compress,
        retries=retries,
        delete=delete,
        silent=silent,
        destination=destination,
    )
    return push_jobs([job], redis_url=redis_url, prefix=prefix, durable=durable)[0]


def enqueue_many(
    jobs: Iterable[Job | Mapping[str, Any]],
    *,
    redis_url: str | None = None,
    prefix: str = DEFAULT_PREFIX,
    durable: bool = False,
) -> list[str]:
    """Queue many files in one pipelined round trip; return their ids in order.

    Each item is a :class:`Job` or a mapping of :func:`enqueue`'s arguments
    (``bucket``, ``key``, ``path`` and the optional ones). Every item is validated before
    anything is sent, so a bad item queues nothing.

    >>> enqueue_many([{"bucket": "b", "key": "a", "path": "a.log"},
    ...               {"bucket": "b", "key": "c", "path": "c.log", "delete": False}])  # doctest: +SKIP
    """
    built: list[Job] = []
    for item in jobs:
        if isinstance(item, Job):
            built.append(item.stamped())
        elif isinstance(item, Mapping):
            try:
                built.append(make_job(**item))
            except TypeError as exc:
                raise JobError(f"bad job arguments {dict(item)!r}: {exc}") from None
        else:
            raise JobError(f"enqueue_many takes Job objects or mappings, got {type(item).__name__}")
    return push_jobs(built, redis_url=redis_url, prefix=prefix, durable=durable)


def push_jobs(
    jobs: list[Job],
    *,
    redis_url: str | None = None,
    prefix: str = DEFAULT_PREFIX,
    client: redis.Redis | None = None,
    durable: bool = False,
) -> list[str]:
    """LPUSH already-validated jobs in one round trip (one per shard); return their ids.

    A sharded ``prefix`` (several, comma-separated: :mod:`.shards`) puts each job on the
    shard its bucket and key hash to.

    Redis replicates asynchronously: a master that dies right after answering may not have
    passed the jobs on, and the replica that takes over never had them. ``durable=True``
    follows the LPUSH with ``WAIT 1`` on the same connection and raises ConfigError unless a
    replica confirms within :data:`DURABLE_TIMEOUT_MS` (the jobs are queued on the master
    even then: a retry may queue them twice, which uploads them twice, harmlessly).
    """
    if not jobs:
        return []
    # One prefix (the usual case): no hash per job to place it; each job is serialised once.
    if "," in prefix:
        grouped = group_by_shard(jobs, prefix, lambda job: (job.bucket, job.key))
        batches = [(shard, [job.to_json() for job in shard_jobs]) for shard, shard_jobs in grouped.items()]
    else:
        batches = [(prefix.strip(), [job.to_json() for job in jobs])]
    r = client if client is not None else shared_client(redis_url)

    def push() -> None:
        for shard, payloads in batches:
            check_prefix(r, shard)
            queue = queue_key(shard)
            if durable:
                _push_replicated(r, queue, payloads)
            else:
                r.lpush(queue, *payloads)

    try:
        try:
            push()
        except (redis.ConnectionError, redis.TimeoutError):
            if client is not None:
                raise
            # A kept connection Redis dropped (a restart since the last enqueue): redis-py
            # has discarded it, and a restarted Redis never ran the command; one more try
            # takes a fresh connection.
            push()
    except redis.RedisError as exc:
        where = "" if client is not None else f" at {redact_url(resolve_redis_url(redis_url))}"
        raise ConfigError(f"cannot enqueue on Redis{where}: {exc}") from exc
    return [job.id for job in jobs]


@functools.lru_cache(maxsize=64)
def queue_key(prefix: str) -> str:
    """Return ``prefix``'s queue key (checked once per prefix, not once per enqueue)."""
    return QueueKeys(prefix).queue


def _push_replicated(client: redis.Redis, queue: str, payloads: list[str]) -> None:
    """LPUSH ``payloads`` and wait for one replica to hold them; ConfigError if none does in time.

    WAIT counts the writes of its own connection, so both go in one pipeline to the node
    that holds the queue (on Redis Cluster, the master of its slot).
    """
    cluster: Any = client
    for attempt in range(3):
        node = client
        if is_cluster(client):
            node = cluster.get_redis_connection(cluster.get_node_from_key(queue))
        pipe = node.pipeline(transaction=False)
        pipe.lpush(queue, *payloads)
        pipe.wait(1, DURABLE_TIMEOUT_MS)
        try:
            _, replicas = pipe.execute()
        except redis.exceptions.MovedError:  # the slot moved (a failover): nothing was written
            if attempt == 2:
                raise
            cluster.nodes_manager.initialize()
            continue
        if int(replicas) < 1:
            raise ConfigError(
                f"queued {len(payloads)} job(s) on the master, but no replica confirmed them "
                f"within {DURABLE_TIMEOUT_MS} ms: a failover now could lose them"
            )
        return


def shard_index(bucket: str, key: str, shards: int) -> int:
    """Return the shard a job for ``bucket``/``key`` goes to: the same for every producer (CRC-32)."""
    return zlib.crc32(f"{bucket}/{key}".encode()) % shards


def group_by_shard(items: list[Any], prefix: str, where: Callable[[Any], tuple[str, str]]) -> dict[str, list[Any]]:
    """Return ``{shard prefix: items}`` for a prefix option, each item placed by its (bucket, key)."""
    prefixes = split_prefixes(prefix)
    grouped: dict[str, list[Any]] = {}
    for item in items:
        bucket, key = where(item)
        grouped.setdefault(prefixes[shard_index(bucket, key, len(prefixes))], []).append(item)
    return grouped
