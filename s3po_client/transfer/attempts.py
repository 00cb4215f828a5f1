"""The engine's attempts: a whole transfer run again after a transient failure, as the retry policy says."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from ..errors import JobError, TransferError
from ..retry import RetryPolicy
from .client import translate_error

logger = logging.getLogger(__name__)

T = TypeVar("T")


def run_attempts(
    run: Callable[[], T],
    *,
    bucket: str,
    key: str,
    retries: int,
    error_cls: type[TransferError],
    rereadable: bool,
    policy: RetryPolicy,
    stop: threading.Event | None = None,
) -> T:
    """Return ``run()``, run again after a transient failure up to ``retries`` times; raise the last error.

    Every failure leaves as a ``TransferError`` of ``error_cls``'s side (a ``JobError`` as it
    is); a source that cannot be read again (``rereadable`` False) gets no second attempt;
    ``stop`` ends a wait at once.
    """

    def classify(exc: Exception, attempt: int) -> Exception:
        if isinstance(exc, JobError):
            return exc
        error = _as_transfer_error(exc, bucket, key, error_cls)
        error.attempt = attempt
        return error

    def on_retry(attempt: int, delay_s: float, error: Exception) -> None:
        logger.warning(
            "transfer retry bucket=%s key=%s attempt=%d in=%.1fs error=%s", bucket, key, attempt, delay_s, error
        )

    allowed = retries if rereadable else 0
    return policy.call(run, retries=allowed, stop=stop, classify=classify, on_retry=on_retry)


def _as_transfer_error(exc: Exception, bucket: str, key: str, error_cls: type[TransferError]) -> TransferError:
    error = translate_error(exc, bucket, key, error_cls)
    if error is not exc and not isinstance(exc, TransferError):
        error.__cause__ = exc
    if type(error) is TransferError:  # raised bare inside the engine: give it its side
        error = error_cls(str(error), bucket=bucket, key=key, transient=error.transient)
        error.__cause__ = exc
    return error
