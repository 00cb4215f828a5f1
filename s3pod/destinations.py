"""Named destinations in the daemon: a job's ``destination`` picks the engine it goes through, and its share of memory.

The config file's ``[destinations.NAME]`` tables (:mod:`s3po_client.destinations`, which
``s3po upload --destination`` reads too) describe them. A job without a destination goes to
the command line's store, as every job did before destinations existed.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from types import MappingProxyType

from s3po_client.destinations import Destination
from s3po_client.errors import JobError
from s3po_client.job import Job
from s3po_client.transfer import TransferEngine
from s3po_client.transfer.bandwidth import Limiter

from .budget import MemoryBudget


class ShareBudget(MemoryBudget):
    """A destination's share of the daemon's :class:`~s3pod.budget.MemoryBudget`: what it takes, the whole takes too.

    A job reserves here first (waiting while its destination's jobs hold the share), then in
    the whole budget, so one destination's uploads can never hold more than its share while
    the other destinations' still start.
    """

    def __init__(self, limit_bytes: int, whole: MemoryBudget) -> None:
        super().__init__(limit_bytes, whole.settings)
        self.whole = whole

    def acquire(self, nbytes: int, stop: threading.Event) -> bool:
        if not super().acquire(nbytes, stop):
            return False
        if not self.whole.acquire(nbytes, stop):
            super().release(nbytes)
            return False
        return True

    def take_now(self, nbytes: int) -> None:
        super().take_now(nbytes)
        self.whole.take_now(nbytes)

    def release(self, nbytes: int) -> None:
        super().release(nbytes)
        self.whole.release(nbytes)


class Destinations:
    """The engine of each destination, built on first use; the default engine for jobs naming none."""

    def __init__(
        self,
        default: TransferEngine,
        destinations: tuple[Destination, ...] = (),
        limiters: Mapping[str, Limiter] | None = None,
    ) -> None:
        self.default = default
        self.destinations = {d.name: d for d in destinations}
        self._engines: dict[str, TransferEngine] = {}
        self._budgets: dict[str, ShareBudget] = {}
        #: the limiter of each destination with a bandwidth limit of its own (the others share the default's):
        #: ``limiters`` (the daemon's, which the API and the metrics see), else made here
        self.limiters = (
            dict(limiters)
            if limiters is not None
            else {d.name: Limiter(d.schedule()) for d in destinations if d.bwlimit}
        )
        self._lock = threading.Lock()

    def route(self, job: Job) -> tuple[TransferEngine, Mapping[str, str]]:
        """Return the engine for ``job`` and the headers to send; JobError if its destination is unknown."""
        if job.destination is None:
            return self.default, job.headers
        destination = self.destinations.get(job.destination)
        if destination is None:
            known = ", ".join(sorted(self.destinations)) or "none configured"
            raise JobError(f"unknown destination {job.destination!r} (known: {known})")
        return self._engine(destination), MappingProxyType(destination.headers_under(job.headers))

    def engine_for(self, job: Job | None) -> TransferEngine:
        """Return the engine of ``job``'s destination: the default one for none, or one not known."""
        destination = self.destinations.get(job.destination or "") if job is not None else None
        return self.default if destination is None else self._engine(destination)

    def budget_for(self, job: Job, whole: MemoryBudget) -> MemoryBudget:
        """Return the budget ``job`` reserves its memory in: its destination's share of ``whole``, else ``whole``."""
        destination = self.destinations.get(job.destination or "")
        if destination is None or destination.memory_share is None:
            return whole
        with self._lock:
            budget = self._budgets.get(destination.name)
            if budget is None or budget.whole is not whole:
                limit = max(1, int(whole.limit_bytes * destination.memory_share))
                budget = self._budgets[destination.name] = ShareBudget(limit, whole)
            return budget

    def close(self) -> None:
        """Close every engine built for a destination (not the default one: its owner closes it)."""
        with self._lock:
            engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            engine.close()

    def _engine(self, destination: Destination) -> TransferEngine:
        with self._lock:
            engine = self._engines.get(destination.name)
            if engine is None:
                engine = self._engines[destination.name] = self._build(destination)
            return engine

    def _build(self, destination: Destination) -> TransferEngine:
        base = self.default
        limiter = self.limiters.get(destination.name, base.limiter)
        return TransferEngine(
            destination.s3_settings(base.s3), destination.transfer_settings(base.settings), base.retry, limiter=limiter
        )


__all__ = ["Destination", "Destinations", "ShareBudget"]
