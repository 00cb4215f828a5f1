"""Whether the daemon's two servers answer: Redis outages logged once, and an S3 endpoint probe."""

from __future__ import annotations

import logging
import ssl
import threading
import time
import urllib.error
import urllib.request

logger = logging.getLogger(__name__)


class RedisWatch:
    """Tracks Redis outages across the daemon's threads, so each outage is logged once.

    Every thread reports what its last Redis call did (:meth:`failed`, :meth:`answered`);
    the first failure logs "Redis unavailable", the first answer after it "Redis is back".
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._up_since = float("-inf")  # never down yet: as if up forever

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def up_for_s(self) -> float:
        """Return the seconds since Redis last came back (infinite if it never went away)."""
        return time.monotonic() - self._up_since

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            if self._down_since is None:
                self._down_since = time.monotonic()
                logger.error("Redis unavailable, retrying until it is back: %s", exc)

    def answered(self) -> None:
        if self._down_since is None:  # the common case, without the lock
            return
        with self._lock:
            if self._down_since is not None:
                now = time.monotonic()
                logger.warning("Redis is back after %.1fs", now - self._down_since)
                self._down_since = None
                self._up_since = now


def s3_answers(url: str, timeout_s: float = 5.0, ca_bundle: str | None = None) -> str | None:
    """Return None if an HTTP server answers at ``url`` (any status), else why not.

    Any answer counts, 403 included: readiness asks whether the endpoint is reachable, not
    whether these credentials may list buckets (a daemon often may only put objects).
    Over HTTPS the server is trusted as boto3 trusts it: ``ca_bundle``, else the one
    botocore is configured with (``AWS_CA_BUNDLE``, ``ca_bundle`` in the profile), else the
    system's; proxies come from the environment (``HTTPS_PROXY``, ``NO_PROXY``), as for boto3.
    """
    context = (
        ssl.create_default_context(cafile=ca_bundle or _configured_ca_bundle()) if url.startswith("https:") else None
    )
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout_s, context=context):
            return None
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return str(getattr(exc, "reason", exc))


def _configured_ca_bundle() -> str | None:
    """The CA bundle botocore would use: ``AWS_CA_BUNDLE``, or ``ca_bundle`` in the AWS config file."""
    import botocore.session

    bundle = botocore.session.Session().get_config_variable("ca_bundle")
    return str(bundle) if bundle else None
