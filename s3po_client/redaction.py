"""Secrets out of text: the one place that knows how a password looks in a URL or a log line.

Used by every message that names a Redis URL (``redact_url``) and by the daemon's log
filter (``redact``), so a secret is hidden the same way everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "***"

#: ``scheme://user:password@host`` → ``scheme://user:***@host``
#: A scheme starts where no scheme character precedes it, and is short: without both, a long
#: run of letters (a 1 MB key in a log line) costs quadratic time, one try per position.
_URL_PASSWORD = re.compile(r"(?P<head>(?<![a-zA-Z0-9+.-])[a-zA-Z][a-zA-Z0-9+.-]{0,31}://[^:/@\s]*:)[^@\s/]+(?=@)")
#: ``?password=...`` or ``&password=...`` in a URL's query string (redis-py reads it there too),
#: and any ``*_password`` such as the sentinels' own ``sentinel_password``
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&](?:[a-z0-9]+_)*(?:password|passwd|secret|token)=)[^&#\s]*", re.IGNORECASE)
#: the query-string fields that carry a secret, as ``_QUERY_PASSWORD`` recognises them
_SECRET_FIELD = re.compile(r"(?:[a-z0-9]+_)*(?:password|passwd|secret|token)", re.IGNORECASE)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Return ``text`` with each secret, and any password in a URL, replaced by ``***``.

    >>> redact("rediss://app:s3cret@cache:6380/0?password=also key=AKIA", ["AKIA"])
    'rediss://app:***@cache:6380/0?password=*** key=***'
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + REDACTED, text)
    return _QUERY_PASSWORD.sub(lambda m: m.group("head") + REDACTED, text)


def redact_url(url: str) -> str:
    """Return ``url`` with any password (``user:password@``, ``?password=``, ``?sentinel_password=``) replaced by ``***``.

    >>> redact_url("rediss://app:s3cret@cache:6380/0?password=also")
    'rediss://app:***@cache:6380/0?password=***'
    """
    return redact(url)


def url_secrets(url: str) -> list[str]:
    """Return every secret a URL carries (``user:password@``, ``?password=``, ``?sentinel_password=``, …), decoded.

    >>> url_secrets("redis+sentinel://:a%40b@h:26379/m?sentinel_password=c")
    ['a@b', 'c']
    """
    from urllib.parse import parse_qsl, unquote, urlsplit

    parts = urlsplit(url)
    found = [unquote(parts.password)] if parts.password else []
    found += [value for name, value in parse_qsl(parts.query) if value and _SECRET_FIELD.fullmatch(name)]
    return found


__all__ = ["REDACTED", "redact", "redact_url", "url_secrets"]
