"""Which Redis to talk to, and a client for it."""

from __future__ import annotations

import os
from typing import Any

import redis

from ..errors import ConfigError
from ..redaction import redact_url

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
REDIS_URL_ENV = "S3PO_REDIS_URL"


def resolve_redis_url(redis_url: str | None = None) -> str:
    """Return ``redis_url``, else ``$S3PO_REDIS_URL``, else the local default."""
    return redis_url or os.environ.get(REDIS_URL_ENV) or DEFAULT_REDIS_URL


def connect(redis_url: str | None = None, **options: Any) -> redis.Redis:
    """Return a Redis client for ``redis_url`` (``redis://``, ``rediss://`` or ``unix://``)."""
    url = resolve_redis_url(redis_url)
    try:
        return redis.Redis.from_url(url, **options)
    except ValueError as exc:
        raise ConfigError(f"bad Redis URL {redact_url(url)}: {exc}") from None
