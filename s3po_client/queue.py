"""The Redis side of the contract: key names, connecting, enqueueing, counting.

Producers only need this module (and redis-py): ``enqueue`` never imports boto3.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit

import redis

from .errors import ConfigError, JobError
from .job import DEFAULT_RETRIES, Codec, Job
from .localfile import require_regular_file

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PREFIX = "s3po"
REDIS_URL_ENV = "S3PO_REDIS_URL"


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """Every Redis key s3po uses, derived from one prefix (``{s3po}`` on Redis Cluster).

    >>> QueueKeys("s3po").processing("host-1")
    's3po:processing:host-1'
    """

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not self.prefix or any(c.isspace() for c in self.prefix):
            raise ConfigError(f"prefix must be a non-empty word, got {self.prefix!r}")

    @property
    def queue(self) -> str:
        """List of pending jobs; producers LPUSH, workers take the oldest (right) end."""
        return f"{self.prefix}:queue"

    def processing(self, worker_id: str) -> str:
        """List of the jobs one live worker holds."""
        return f"{self.prefix}:processing:{worker_id}"

    @property
    def processing_pattern(self) -> str:
        """SCAN pattern matching every worker's processing list."""
        return f"{self.prefix}:processing:*"

    @property
    def workers(self) -> str:
        """Sorted set of worker ids scored by their last heartbeat (Unix time)."""
        return f"{self.prefix}:workers"

    @property
    def delayed(self) -> str:
        """Sorted set of jobs waiting for their next attempt, scored by due time."""
        return f"{self.prefix}:delayed"

    def stored(self, job_id: str) -> str:
        """Marker (with a TTL) set just before a job's local file is deleted, cleared by its ack.

        If a daemon dies between deleting the file and acknowledging the job, the job runs
        again and finds its file gone; the marker says the object was stored already.
        """
        return f"{self.prefix}:stored:{job_id}"

    @property
    def dead(self) -> str:
        """List of jobs that failed for good, newest first."""
        return f"{self.prefix}:dead"


def resolve_redis_url(redis_url: str | None = None) -> str:
    """Return ``redis_url``, else ``$S3PO_REDIS_URL``, else the local default."""
    return redis_url or os.environ.get(REDIS_URL_ENV) or DEFAULT_REDIS_URL


def redact_url(url: str) -> str:
    """Return ``url`` with any password (``user:password@`` or ``?password=``) replaced by ``***``.

    >>> redact_url("rediss://app:s3cret@cache:6380/0?password=also")
    'rediss://app:***@cache:6380/0?password=***'
    """
    parts = urlsplit(url)
    if parts.password is not None:
        user = parts.username or ""
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        url = url.replace(parts.netloc, f"{user}:***@{host}", 1)
    return _QUERY_PASSWORD.sub(r"\1***", url)


#: ``password=`` in a URL's query string (redis-py reads it there too)
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def connect(redis_url: str | None = None, **options: Any) -> redis.Redis:
    """Return a Redis client for ``redis_url`` (``redis://``, ``rediss://`` or ``unix://``)."""
    url = resolve_redis_url(redis_url)
    try:
        return redis.Redis.from_url(url, **options)
    except ValueError as exc:
        raise ConfigError(f"bad Redis URL {redact_url(url)}: {exc}") from None


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
    )
    return job.stamped()


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
    redis_url: str | None = None,
    prefix: str = DEFAULT_PREFIX,
) -> str:
    """Queue one file for upload by ``s3pod`` and return the job id.

    Returns once the job is safely in Redis. ``redis_url`` defaults to ``$S3PO_REDIS_URL``,
    else ``redis://127.0.0.1:6379/0``.

    >>> job_id = enqueue("my-bucket", "logs/app.log", "/var/log/app.log", compress="gzip")  # doctest: +SKIP
    """
    job = make_job(
        bucket, key, path,
        headers=headers, compress=compress, retries=retries, delete=delete, silent=silent,
    )
    return push_jobs([job], redis_url=redis_url, prefix=prefix)[0]


def enqueue_many(
    jobs: Iterable[Job | Mapping[str, Any]],
    *,
    redis_url: str | None = None,
    prefix: str = DEFAULT_PREFIX,
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
    return push_jobs(built, redis_url=redis_url, prefix=prefix)


def push_jobs(
    jobs: list[Job],
    *,
    redis_url: str | None = None,
    prefix: str = DEFAULT_PREFIX,
    client: redis.Redis | None = None,
) -> list[str]:
    """LPUSH already-validated jobs in one round trip; return their ids."""
    if not jobs:
        return []
    keys = QueueKeys(prefix)
    r = client if client is not None else connect(redis_url)
    try:
        r.lpush(keys.queue, *(job.to_json() for job in jobs))
    except redis.RedisError as exc:
        where = "" if client is not None else f" at {redact_url(resolve_redis_url(redis_url))}"
        raise ConfigError(f"cannot enqueue on Redis{where}: {exc}") from exc
    finally:
        if client is None:
            r.close()
    return [job.id for job in jobs]


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
    """Return the number of pending, processing, delayed and dead jobs under ``prefix``, and the workers."""
    keys = QueueKeys(prefix)
    marker = keys.processing("")
    by_worker: dict[str, int] = {}
    for name in client.scan_iter(match=keys.processing_pattern, count=500):
        text = name.decode() if isinstance(name, bytes) else name
        by_worker[text[len(marker):]] = int(client.llen(name))
    pipe = client.pipeline(transaction=False)
    pipe.llen(keys.queue)
    pipe.zcard(keys.delayed)
    pipe.llen(keys.dead)
    pipe.zrange(keys.workers, 0, -1, withscores=True)
    pipe.time()
    pending, delayed, dead, beats, (seconds, micros) = pipe.execute()
    now = seconds + micros / 1e6
    ages = {(w.decode() if isinstance(w, bytes) else str(w)): max(0.0, now - float(t)) for w, t in beats}
    return QueueCounts(
        pending=int(pending),
        processing=sum(by_worker.values()),
        delayed=int(delayed),
        dead=int(dead),
        processing_by_worker=by_worker,
        heartbeat_age_s=ages,
    )
