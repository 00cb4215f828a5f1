"""What the worker tells observers (metrics, logs) about each job transition."""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from s3po_client.job import Job


class OutcomeKind(str, Enum):
    """How one attempt at a job ended."""

    UPLOADED = "uploaded"  # stored and verified; local file handled; job acknowledged
    RETRY = "retry"  # failed; another attempt is scheduled
    DEAD = "dead"  # failed for good; dead-lettered
    INVALID = "invalid"  # not a valid job (or not an allowed path); dead-lettered at once


@dataclass(frozen=True, slots=True)
class Outcome:
    """One job transition, with what observers need to count and log it."""

    kind: OutcomeKind
    job_id: str | None
    bucket: str | None
    key: str | None
    bytes_sent: int = 0
    duration_s: float = 0.0
    attempt: int = 0
    error: str | None = None

    @classmethod
    def of(
        cls, kind: OutcomeKind, job: Job | None, *, started: float, bytes_sent: int = 0, error: str | None = None
    ) -> Outcome:
        """Return the outcome of ``job`` (None: not a valid job) whose run began at ``started`` (monotonic)."""
        return cls(
            kind=kind,
            job_id=None if job is None else job.id,
            bucket=None if job is None else job.bucket,
            key=None if job is None else job.key,
            bytes_sent=bytes_sent,
            duration_s=time.monotonic() - started,
            attempt=0 if job is None else job.attempt,
            error=error,
        )


class Listener(Protocol):
    """Anything that wants to hear about outcomes (metrics, structured logs)."""

    def on_outcome(self, outcome: Outcome) -> None: ...
