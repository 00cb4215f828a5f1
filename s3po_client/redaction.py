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
#: ``?password=...`` or ``&password=...`` in a URL's query string (redis-py reads it there too)
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&](?:password|passwd|secret|token)=)[^&#\s]*", re.IGNORECASE)


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
    """Return ``url`` with any password (``user:password@`` or ``?password=``) replaced by ``***``.

    >>> redact_url("rediss://app:s3cret@cache:6380/0?password=also")
    'rediss://app:***@cache:6380/0?password=***'
    """
    return redact(url)


def url_password(url: str) -> str | None:
    """Return the password a URL carries (``user:password@`` or ``?password=``), or None."""
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(url)
    if parts.password:
        return parts.password
    found = parse_qs(parts.query).get("password")
    return found[0] if found else None


__all__ = ["REDACTED", "redact", "redact_url", "url_password"]
