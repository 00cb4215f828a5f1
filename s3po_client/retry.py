"""Retry policy: one arithmetic for every wait s3po makes after a failure, and the one loop that waits.

The daemon's delayed retries, the engine's attempts, a request's own retries, the
in-process threads' scheduled retries and the loops that wait for Redis to come back all
take their waits from a :class:`RetryPolicy`. :meth:`RetryPolicy.next_delay_s` is the
decision (another attempt? after how long?); a caller that schedules elsewhere (a ZSET in
Redis, a timer heap) uses it alone. A caller that waits in its own thread uses the one loop:
:meth:`RetryPolicy.call` (a bounded number of attempts) or :func:`wait_until_answers` (a
server expected back). Their waits end at once when a ``stop`` event is set, and in the
main thread a Ctrl-C interrupts them.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from .errors import ConfigError, JobError, TransferError

T = TypeVar("T")

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

    def next_delay_s(self, attempt: int, retries: int, error: BaseException) -> float | None:
        """Return the wait before the attempt after failed attempt ``attempt``; None when there is none."""
        return self.delay_s(attempt) if self.should_retry(attempt, retries, error) else None

    def call(
        self,
        attempt: Callable[[], T],
        *,
        retries: int,
        stop: threading.Event | None = None,
        classify: Callable[[Exception, int], Exception] | None = None,
        on_retry: Callable[[int, float, Exception], None] | None = None,
    ) -> T:
        """Return ``attempt()``, called again after each failure the policy allows; raise the last error.

        THE retry loop: classify → wait → try again. A failure ``exc`` becomes
        ``classify(exc, n)`` (n: the failed attempt, 0 first; e.g. a translation into the
        TransferError tree), which is raised, from ``exc``, unless :meth:`next_delay_s`
        allows another of the ``retries`` retries.
        ``on_retry(next_attempt, delay_s, error)`` is told before each wait (to log it).
        The wait ends at once when ``stop`` is set (then the error is raised), or on Ctrl-C
        in the main thread.

        >>> policy = RetryPolicy(base_s=0)
        >>> tries = iter([TransferError("busy"), TransferError("busy"), "stored"])
        >>> def attempt():
        ...     outcome = next(tries)
        ...     if isinstance(outcome, Exception):
        ...         raise outcome
        ...     return outcome
        >>> policy.call(attempt, retries=3)
        'stored'
        """
        failed = 0
        while True:
            try:
                return attempt()
            except Exception as exc:  # noqa: BLE001 - classified, then retried or raised
                error = exc if classify is None else classify(exc, failed)
                delay_s = self.next_delay_s(failed, retries, error)
                if delay_s is not None and not stopped(stop):
                    if on_retry is not None:
                        on_retry(failed + 1, delay_s, error)
                    if not interruptible_wait(delay_s, stop):
                        failed += 1
                        continue
                if error is exc:
                    raise
                raise error from exc

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


def stopped(stop: threading.Event | None) -> bool:
    return stop is not None and stop.is_set()


def interruptible_wait(seconds: float, stop: threading.Event | None) -> bool:
    """Wait ``seconds``; return True, at once, when ``stop`` is set (before or during the wait).

    Both ``Event.wait`` and ``time.sleep`` let a Ctrl-C (KeyboardInterrupt) through in the
    main thread; a thread that is not the main one is stopped through ``stop``.
    """
    if stop is None:
        time.sleep(seconds)
        return False
    return stop.wait(seconds)


def wait_until_answers(
    step: Callable[[], T],
    *,
    errors: tuple[type[Exception], ...],
    stop: threading.Event | None = None,
    give_up: Callable[[], bool] | None = None,
    on_failure: Callable[[Exception], None] | None = None,
    policy: RetryPolicy = SERVER_RETRY,
) -> T:
    """Return ``step()``, called again after each failure in ``errors`` (a server away) until it answers.

    For a server that is expected back (Redis restarting, failing over): no retry count,
    the waits follow ``policy`` (0.2 s doubling to 5 s by default). ``on_failure(error)``
    sees each failure (to count or log it). The last error is raised once ``stop`` is set
    or ``give_up()`` returns True (asked after each failure); any other error at once.
    """
    backoff = policy.backoff()
    while True:
        try:
            return step()
        except errors as exc:
            if on_failure is not None:
                on_failure(exc)
            if (give_up is not None and give_up()) or interruptible_wait(backoff.step(), stop):
                raise


__all__ = ["SERVER_RETRY", "Backoff", "RetryPolicy", "interruptible_wait", "stopped", "wait_until_answers"]
