"""Retry policy: one arithmetic for every wait s3po makes after a failure.

The daemon's delayed retries, the engine's attempts, a request's own retries, the
in-process threads' scheduled retries and the loops that wait for Redis to come back all
take their waits from a :class:`RetryPolicy`. It never sleeps and never touches Redis:
callers decide how to wait (a ZSET in Redis, a timer heap, an Event).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .errors import ConfigError, JobError, TransferError

DEFAULT_BACKOFF_BASE_S = 60.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter.

    After failed attempt ``n`` (0-based) the ceiling is ``base_s × factor**n``, capped at
    ``max_s``: 1, 2, 4 minutes, … with the default base of 60 s. With ``jitter`` (the
    default) the wait is drawn uniformly between 0 and that ceiling ("full jitter", as in
    AWS's "Exponential Backoff And Jitter"), so after an outage the retries of many jobs
    spread out instead of firing together; without it the wait is the ceiling itself.

    >>> [RetryPolicy(base_s=60, jitter=False).delay_s(n) for n in range(3)]
    [60.0, 120.0, 240.0]
    >>> 0 <= RetryPolicy(base_s=60).delay_s(2) <= 240
    True
    """

    base_s: float = DEFAULT_BACKOFF_BASE_S
    factor: float = 2.0
    max_s: float = 6 * 3600.0
    jitter: bool = True
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.base_s < 0 or self.factor < 1 or self.max_s < 0:
            raise ConfigError(
                f"retry policy needs base_s >= 0, factor >= 1, max_s >= 0; got "
                f"base_s={self.base_s}, factor={self.factor}, max_s={self.max_s}"
            )

    def ceiling_s(self, attempt: int) -> float:
        """Return the longest wait after failed attempt ``attempt`` (0 is the first try)."""
        return float(min(self.max_s, self.base_s * self.factor ** max(0, attempt)))

    def delay_s(self, attempt: int) -> float:
        """Return the seconds to wait after failed attempt ``attempt`` (0 is the first try)."""
        ceiling = self.ceiling_s(attempt)
        return self.rng.uniform(0.0, ceiling) if self.jitter else ceiling

    def should_retry(self, attempt: int, retries: int, error: BaseException) -> bool:
        """Return True when failed attempt ``attempt`` may be followed by another.

        ``retries`` counts the retries allowed after the first attempt. A JobError, and a
        TransferError marked permanent, never get another attempt; any other error (a bug,
        an unexpected failure) uses the retries like a transient failure.
        """
        if attempt >= retries:
            return False
        if isinstance(error, JobError):
            return False
        if isinstance(error, TransferError):
            return error.transient
        return True

    def backoff(self) -> Backoff:
        """Return a fresh :class:`Backoff` that steps through this policy's waits."""
        return Backoff(self)


class Backoff:
    """The waits of one retry loop, attempt after attempt: ``step()`` gives the next, ``reset()`` starts over.

    For loops that keep calling a server until it answers (Redis away): each failure
    steps, the first success resets.
    """

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.failures = 0

    def step(self) -> float:
        """Return the wait before the next try, and count a failure."""
        wait = self.policy.delay_s(self.failures)
        self.failures += 1
        return wait

    def reset(self) -> None:
        self.failures = 0


#: How a loop waiting for a server (Redis) retries: 0.2 s doubling to 5 s, jittered.
SERVER_RETRY = RetryPolicy(base_s=0.2, max_s=5.0)
