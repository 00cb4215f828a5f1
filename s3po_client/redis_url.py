"""Which Redis to talk to, and a client for it: one server, a Redis Cluster, or a Sentinel-watched master.

Three kinds of URL, one client API (redis-py's command methods):

``redis://``, ``rediss://``, ``unix://``
    one Redis server, as redis-py's ``Redis.from_url`` reads them.
``redis+cluster://[user[:password]@]host:port[,host:port...][?option=value...]``
    a Redis Cluster, found from any of the seed nodes listed (redis-py ``RedisCluster``,
    which follows ``MOVED``/``ASK`` and re-reads the slot map after a failover). The queue's
    prefix must carry a hash tag such as ``{s3po}`` (see :func:`check_prefix`).
``redis+sentinel://[user[:password]@]host:port[,host:port...]/service[/db][?option=value...]``
    the master Redis Sentinel names ``service`` (redis-py ``Sentinel.master_for``), asked
    again after each lost connection, so a promoted replica is found by itself. The user
    and password are the data nodes'; ``sentinel_username`` and ``sentinel_password`` in
    the query are the sentinels' own, if they have one.

The query takes redis-py's connection options (``socket_timeout=5``…) in every form.
"""

from __future__ import annotations

import os
import threading
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import parse_url
from redis.exceptions import RedisClusterException
from redis.sentinel import Sentinel

from .errors import ConfigError
from .redaction import redact_url

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
REDIS_URL_ENV = "S3PO_REDIS_URL"

CLUSTER_SCHEME = "redis+cluster"
SENTINEL_SCHEME = "redis+sentinel"


def resolve_redis_url(redis_url: str | None = None) -> str:
    """Return ``redis_url``, else ``$S3PO_REDIS_URL``, else the local default."""
    return redis_url or os.environ.get(REDIS_URL_ENV) or DEFAULT_REDIS_URL


class ClusterClient(RedisCluster):
    """redis-py's cluster client whose every failure is a :class:`redis.RedisError`.

    While a failover is under way redis-py raises ``SlotNotCoveredError`` and other
    ``RedisClusterException`` errors that are not ``RedisError``; s3po's callers retry on
    ``RedisError`` (as they do when a single Redis restarts), so they are turned into
    :class:`redis.ConnectionError` here, for commands and pipelines alike.
    """

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().execute_command(*args, **kwargs)  # type: ignore[no-untyped-call]
        except RedisClusterException as exc:
            raise redis.ConnectionError(f"Redis Cluster: {exc}") from exc

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> Any:
        return _ClusterPipeline(super().pipeline(transaction, shard_hint))  # type: ignore[no-untyped-call]


class _ClusterPipeline:
    """A cluster pipeline whose ``execute`` raises :class:`redis.RedisError` only, as above."""

    def __init__(self, pipe: Any) -> None:
        self._pipe = pipe

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pipe, name)

    def execute(self, raise_on_error: bool = True) -> Any:
        try:
            return self._pipe.execute(raise_on_error)
        except RedisClusterException as exc:
            raise redis.ConnectionError(f"Redis Cluster: {exc}") from exc


def connect(redis_url: str | None = None, **options: Any) -> redis.Redis:
    """Return a client for ``redis_url``: one Redis, a Redis Cluster or a Sentinel's master.

    ``options`` are redis-py connection options (``socket_timeout``…) for every node.
    The cluster client has the same command methods as ``redis.Redis`` (it is typed as one
    here so callers need not tell them apart); :func:`is_cluster` says which it is.
    """
    url = resolve_redis_url(redis_url)
    scheme = url.partition("://")[0].lower()
    try:
        if scheme == CLUSTER_SCHEME:
            return cast(redis.Redis, _connect_cluster(url, options))
        if scheme == SENTINEL_SCHEME:
            return _connect_sentinel(url, options)
        if scheme.endswith(("+cluster", "+sentinel")):
            raise ValueError(
                f"use {CLUSTER_SCHEME}:// or {SENTINEL_SCHEME}:// (TLS to a cluster or sentinels is not supported)"
            )
        return redis.Redis.from_url(url, **options)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"bad Redis URL {redact_url(url)}: {exc}") from None
    except (RedisClusterException, redis.RedisError) as exc:
        raise ConfigError(f"cannot reach the Redis Cluster at {redact_url(url)}: {exc}") from None


#: one client per (process, URL) for the module-level ``enqueue()``: a connection made per
#: call cost 6.8 ms of its 7 (bench: p50 against 0.16 ms for a raw LPUSH)
_shared: dict[tuple[int, str], redis.Redis] = {}
_shared_lock = threading.Lock()


def shared_client(redis_url: str | None = None) -> redis.Redis:
    """Return this process's client for ``redis_url``, built on first use and kept.

    ``enqueue()`` and ``enqueue_many()`` without a client of the caller's use it, so a
    producer that enqueues often keeps its connections. Keyed by process id too: a forked
    child builds its own rather than sharing its parent's sockets.
    """
    url = resolve_redis_url(redis_url)
    key = (os.getpid(), url)
    with _shared_lock:
        client = _shared.get(key)
        if client is None:
            client = _shared[key] = connect(url)
        return client


def _seeds(url: str) -> tuple[str, list[tuple[str, int]], str, str]:
    """Split a multi-host URL into (userinfo, [(host, port)], path, query)."""
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    seeds: list[tuple[str, int]] = []
    for hostport in hosts.split(","):
        host, sep, port = hostport.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"each node must be host:port, got {hostport!r}")
        seeds.append((host.strip("[]"), int(port)))
    return userinfo, seeds, parts.path, parts.query


def _connection_kwargs(userinfo: str, query: str, db_path: str = "") -> dict[str, Any]:
    """Return redis-py's keyword arguments for the user, password and query of a URL."""
    auth = f"{userinfo}@" if userinfo else ""
    url = f"redis://{auth}localhost{db_path}{'?' + query if query else ''}"
    kwargs = dict(parse_url(url))  # type: ignore[no-untyped-call]
    kwargs.pop("host", None)
    kwargs.pop("port", None)
    return kwargs


def _connect_cluster(url: str, options: dict[str, Any]) -> ClusterClient:
    userinfo, seeds, path, query = _seeds(url)
    if path.strip("/") not in ("", "0"):
        raise ValueError("a Redis Cluster has only database 0")
    kwargs = {**_connection_kwargs(userinfo, query), **options}
    kwargs.pop("db", None)
    nodes = [ClusterNode(host, port) for host, port in seeds]  # type: ignore[no-untyped-call]
    return ClusterClient(startup_nodes=nodes, **kwargs)


def _connect_sentinel(url: str, options: dict[str, Any]) -> redis.Redis:
    userinfo, seeds, path, query = _seeds(url)
    service, _, db = path.strip("/").partition("/")
    if not service:
        raise ValueError("name the service after the sentinels: redis+sentinel://host:port/mymaster")
    if db and not db.isdigit():
        raise ValueError(f"database must be a number, got {db!r}")
    kwargs = {**_connection_kwargs(userinfo, query, f"/{db}" if db else ""), **options}
    sentinel_kwargs = {k: v for k, v in kwargs.items() if k.startswith("socket_")}
    for name in ("username", "password"):
        value = kwargs.pop(f"sentinel_{name}", None)
        if value is not None:
            sentinel_kwargs[name] = unquote(str(value))
    sentinel = Sentinel(seeds, sentinel_kwargs=sentinel_kwargs, **kwargs)  # type: ignore[no-untyped-call,unused-ignore]
    master: redis.Redis = sentinel.master_for(service)  # type: ignore[no-untyped-call,unused-ignore]
    return master


def is_cluster(client: Any) -> bool:
    """Return whether ``client`` talks to a Redis Cluster."""
    return isinstance(client, RedisCluster)


def hash_tag(prefix: str) -> str | None:
    """Return the hash tag Redis Cluster reads in keys under ``prefix``, or None if it has none.

    Redis hashes only the part between the first ``{`` and the next ``}`` when it is not
    empty (https://redis.io/docs/reference/cluster-spec/#hash-tags).

    >>> hash_tag("{s3po}"), hash_tag("s3po"), hash_tag("{}s3po")
    ('s3po', None, None)
    """
    start = prefix.find("{")
    end = prefix.find("}", start + 1)
    if start < 0 or end < 0 or end == start + 1:
        return None
    return prefix[start + 1 : end]


def split_prefixes(prefix: str) -> list[str]:
    """Return the prefixes a prefix option names: one, or several separated by commas.

    >>> split_prefixes("{s3po0},{s3po1}")
    ['{s3po0}', '{s3po1}']
    """
    parts = [p.strip() for p in prefix.split(",")]
    if len(parts) > 1 and (not all(parts) or len(set(parts)) != len(parts)):
        raise ConfigError(f"a sharded prefix lists distinct non-empty prefixes separated by commas, got {prefix!r}")
    return parts


def check_prefix(client: Any, prefix: str) -> None:
    """Raise ConfigError if ``client`` is a Redis Cluster and ``prefix`` has no hash tag.

    Without one a queue's keys spread over many slots, and every step that moves a job
    between two of them (BLMOVE, the Lua scripts) fails with ``CROSSSLOT``.
    """
    if is_cluster(client) and hash_tag(prefix) is None:
        raise ConfigError(
            f"on Redis Cluster the prefix must carry a hash tag so every key of the queue "
            f"is in one slot: use '{{{prefix}}}' rather than {prefix!r}"
        )


def node_options(client: Any, key: str) -> dict[str, Any]:
    """Return the keyword arguments that send a keyless command (TIME, INFO) to ``key``'s node.

    On one Redis (or a Sentinel's master) there is one node, and this is ``{}``.
    """
    if is_cluster(client):
        return {"target_nodes": client.get_node_from_key(key)}
    return {}
