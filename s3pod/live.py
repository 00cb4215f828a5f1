"""What a running s3pod may change without a restart: its bandwidth limiters and its spool directories.

One :class:`Live` per daemon. The API and SIGHUP's reload change the limiters; the reload
gives the spool watcher new watches (starting one if the daemon had none); the metrics read
the limiters and the watchers' counts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

from s3po_client.destinations import Destination
from s3po_client.redis_url import connect
from s3po_client.transfer.bandwidth import Limiter, Schedule

from .spool import Spool, WatchCounts
from .watchspec import SpoolSettings

logger = logging.getLogger(__name__)

#: Socket timeouts of the spool watcher's Redis client.
SPOOL_REDIS_TIMEOUT_S = 5.0


class Live:
    """The daemon's bandwidth limiters and spool watcher, reachable from the API, the metrics and a reload."""

    def __init__(self, bwlimit: Schedule | None = None, destinations: tuple[Destination, ...] = ()) -> None:
        #: the process's limiter: every transfer's, but those of a destination with a limit of its own
        self.bandwidth = Limiter(bwlimit)
        #: the limiter of each destination with a bandwidth limit of its own, by name
        self.destination_bandwidth: Mapping[str, Limiter] = {
            d.name: Limiter(d.schedule()) for d in sorted(destinations, key=lambda d: d.name) if d.bwlimit
        }
        self.watch_counts = WatchCounts()
        self._spool: Spool | None = None
        self._redis_url: str | None = None
        self._prefix = ""
        self._lock = threading.Lock()

    def start_watching(self, settings: SpoolSettings | None, redis_url: str, prefix: str) -> None:
        """Start the spool watcher if ``settings`` has watches; a later :meth:`watch` can start one too."""
        with self._lock:
            self._redis_url, self._prefix = redis_url, prefix
            if settings is not None and settings.watches:
                self._start(settings)

    def watch(self, settings: SpoolSettings) -> None:
        """Watch ``settings.watches`` (checked) from now on: the running watcher takes them, or one starts."""
        with self._lock:
            if self._spool is not None:
                self._spool.reconfigure(settings)
            elif self._redis_url is not None and settings.watches:
                self._start(settings)

    def close(self) -> None:
        """Stop the spool watcher, if one runs; files not yet queued are found by the next start's scan."""
        with self._lock:
            spool, self._spool, self._redis_url = self._spool, None, None
        if spool is not None:
            spool.close()
            spool.client.close()

    def _start(self, settings: SpoolSettings) -> None:
        assert self._redis_url is not None
        client = connect(self._redis_url, socket_timeout=SPOOL_REDIS_TIMEOUT_S)
        self._spool = Spool(client, settings, prefix=self._prefix, counts=self.watch_counts)
        self._spool.start()


__all__ = ["Live"]
