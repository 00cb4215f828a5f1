"""The queue protocol: one home for everything s3po keeps in Redis.

Both halves use it: producers (``enqueue``), the ``s3po`` command (status, dead letters)
and the daemon (claim and settle). Every Lua script lives in ``lua/`` beside the Python
that runs it.

==============  ===============================================================
``keys``        every key name, from one prefix (:class:`QueueKeys`)
``client``      which Redis, and a client for it (:func:`connect`)
``producer``    build and push jobs (:func:`enqueue`, :func:`enqueue_many`)
``consumer``    a worker's claim, ack, delay, dead-letter, put back, heartbeat, reap
``status``      worker discovery and the counts ``s3po status`` and metrics show
``dead``        the dead-letter list: list, retry, purge
==============  ===============================================================

Importing this package loads redis-py and the standard library only, never boto3.
"""

from __future__ import annotations

from ..localfile import require_regular_file
from ..redaction import redact_url
from .client import DEFAULT_REDIS_URL, REDIS_URL_ENV, connect, resolve_redis_url
from .keys import DEFAULT_PREFIX, QueueKeys
from .producer import enqueue, enqueue_many, make_job, push_jobs
from .status import QueueCounts, count_jobs, server_time, worker_beats, workers_alive

__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_REDIS_URL",
    "REDIS_URL_ENV",
    "QueueCounts",
    "QueueKeys",
    "connect",
    "count_jobs",
    "enqueue",
    "enqueue_many",
    "make_job",
    "push_jobs",
    "redact_url",
    "require_regular_file",
    "resolve_redis_url",
    "server_time",
    "worker_beats",
    "workers_alive",
]
