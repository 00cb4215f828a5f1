"""Retry policy: pure arithmetic on attempts and errors. It never sleeps and never touches Redis."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError, JobError, TransferError

DEFAULT_BACKOFF_BASE_S = 60.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff: the wait after failed attempt ``n`` (0-based) is ``base_s × factor**n``.

    With the default base of 60 s the waits are 1, 2, 4 minutes, … capped at ``max_s``.

    >>> [RetryPolicy(base_s=60).delay_s(n) for n in range(3)]
    [60.0, 120.0, 240.0]
    """

    base_s: float = DEFAULT_BACKOFF_BASE_S
    factor: float = 2.0
    max_s: float = 6 * 3600.0

    def __post_init__(self) -> None:
        if self.base_s < 0 or self.factor < 1 or self.max_s < 0:
            raise ConfigError(
                f"retry policy needs base_s >= 0, factor >= 1, max_s >= 0; got "
                f"base_s={self.base_s}, factor={self.factor}, max_s={self.max_s}"
            )

    def delay_s(self, attempt: int) -> float:
        """Return the seconds to wait after failed attempt ``attempt`` (0 is the first try)."""
        return float(min(self.max_s, self.base_s * self.factor ** max(0, attempt)))

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
