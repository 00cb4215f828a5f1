"""What one worker is configured with, besides its Redis client and transfer engine."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from s3po_client.errors import ConfigError
from s3po_client.keys import DEFAULT_PREFIX
from s3po_client.retry import RetryPolicy

from .budget import MiB
from .safety import PathPolicy


def new_worker_id() -> str:
    """Return an id naming this daemon: host, pid and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def default_concurrency() -> int:
    """Return the default number of jobs in flight: 16 per CPU, between 16 and 64.

    Uploads wait on the network far more than on the CPU; compression is what bounds it.
    Measured with 2,000 files of 4 KiB on 2 shared cores (docs/BENCHMARKS.md, "The defaults,
    chosen by measurement"): with the store 20 ms away, 32 jobs in flight moved 533-565
    jobs/s against 407-458 for 16 (which waits on the round trips), for 3 % more CPU per job
    on loopback, where 16, 32 and 64 were within the noise of each other.
    """
    return max(16, min(64, 16 * (os.cpu_count() or 1)))


#: Most jobs one job thread claims in one round trip while the queue is deep (see claim.lua):
#: 8 took the client CPU of a 4 KiB job from 3.3 to 2.5 ms (16, no better; README, "s3pod").
DEFAULT_CLAIM_BATCH = 8


@dataclass(frozen=True, kw_only=True)
class WorkerConfig:
    """What a worker needs besides its Redis client and engine: settings only (hooks: :class:`WorkerHooks`).

    ``max_memory_bytes``: the bound on what all uploads in flight hold in memory (see
    :class:`~s3pod.budget.MemoryBudget`). ``heartbeat_timeout_s``: a worker silent this long is taken for dead and its jobs put
    back (every daemon on one queue should use the same value). ``shutdown_timeout_s``:
    after SIGTERM, how long jobs in flight may take before they are put back.
    ``s3_probe_url``: the URL whose HTTP answer (any status) means the S3 endpoint is
    reachable; no job is claimed before it answers (None: not probed).
    """

    prefix: str = DEFAULT_PREFIX
    worker_id: str = field(default_factory=new_worker_id)
    concurrency: int = field(default_factory=default_concurrency)
    #: most jobs a job thread claims at once (never more than its share of the queue)
    claim_batch: int = DEFAULT_CLAIM_BATCH
    paths: PathPolicy = field(default_factory=PathPolicy)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_memory_bytes: int = 512 * MiB
    heartbeat_timeout_s: float = 30.0
    shutdown_timeout_s: float = 30.0
    claim_timeout_s: float = 1.0
    tick_interval_s: float = 1.0
    s3_probe_url: str | None = None
    #: the CA bundle the probe trusts over HTTPS (``S3Settings.ca_bundle``)
    s3_probe_ca_bundle: str | None = None

    def __post_init__(self) -> None:
        if self.max_memory_bytes < 1:
            raise ConfigError(f"max_memory_bytes must be positive, got {self.max_memory_bytes}")
        if self.concurrency < 1:
            raise ConfigError(f"concurrency must be at least 1, got {self.concurrency}")
        if self.claim_batch < 1:
            raise ConfigError(f"claim_batch must be at least 1, got {self.claim_batch}")
        for name in ("heartbeat_timeout_s", "claim_timeout_s", "tick_interval_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.shutdown_timeout_s < 0:
            raise ConfigError(f"shutdown_timeout_s must be >= 0, got {self.shutdown_timeout_s}")

    @property
    def promote_interval_s(self) -> float:
        """How often due retries are promoted: a quarter of the backoff base, within 0.05–1 s."""
        return min(1.0, max(0.05, self.retry.base_s / 4))


Hook = Callable[[], None]


@dataclass(frozen=True, slots=True)
class WorkerHooks:
    """What the service layer runs at a worker's turning points; each is called with no argument.

    One that raises is logged and does not stop the worker.

    - ``on_ready``: called once, from the thread running :meth:`Worker.run`, when Redis
      answered PING and the S3 endpoint (``s3_probe_url``, if set) answered HTTP; no job is
      claimed before. For systemd ``READY=1`` and readiness probes.
    - ``on_tick``: called every ``tick_interval_s`` from the keeper thread for as long as
      it runs (heartbeats, promotions), Redis or not. For systemd ``WATCHDOG=1`` pings.
    - ``on_stopping``: called once, from the thread running :meth:`Worker.run`, when a stop
      begins (before the jobs in flight finish). For systemd ``STOPPING=1``.
    """

    on_ready: Hook | None = None
    on_tick: Hook | None = None
    on_stopping: Hook | None = None

    def then(self, other: WorkerHooks) -> WorkerHooks:
        """Return hooks that run these, then ``other``'s."""
        return WorkerHooks(
            on_ready=_chain(self.on_ready, other.on_ready),
            on_tick=_chain(self.on_tick, other.on_tick),
            on_stopping=_chain(self.on_stopping, other.on_stopping),
        )


def _chain(first: Hook | None, second: Hook | None) -> Hook | None:
    if first is None or second is None:
        return first or second

    def both() -> None:
        first()
        second()

    return both


__all__ = ["DEFAULT_CLAIM_BATCH", "WorkerConfig", "WorkerHooks", "default_concurrency", "new_worker_id"]
