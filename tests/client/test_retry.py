"""Retry policy arithmetic: waits and which errors get another attempt."""

from __future__ import annotations

import pytest

from s3po_client.errors import ConfigError, JobError, TransferError
from s3po_client.retry import RetryPolicy


def test_default_backoff_ceilings_are_one_two_four_minutes() -> None:
    policy = RetryPolicy()
    assert [policy.ceiling_s(n) for n in range(3)] == [60.0, 120.0, 240.0]
    assert [RetryPolicy(jitter=False).delay_s(n) for n in range(3)] == [60.0, 120.0, 240.0]


def test_full_jitter_spreads_waits_between_zero_and_the_ceiling() -> None:
    import random

    policy = RetryPolicy(base_s=60, rng=random.Random(7))
    waits = [policy.delay_s(2) for _ in range(2000)]
    assert all(0 <= w <= 240 for w in waits)
    # Uniform: about a quarter in each quarter of the range, so retries due together spread out.
    quarters = [sum(q * 60 <= w < (q + 1) * 60 for w in waits) for q in range(4)]
    assert all(400 <= n <= 600 for n in quarters), quarters


def test_backoff_is_capped() -> None:
    assert RetryPolicy(base_s=1, max_s=5, jitter=False).delay_s(10) == 5.0
    assert RetryPolicy(base_s=1, max_s=5).delay_s(10) <= 5.0


def test_a_backoff_steps_through_the_policy_and_resets() -> None:
    backoff = RetryPolicy(base_s=0.2, max_s=1, jitter=False).backoff()
    assert [backoff.step() for _ in range(5)] == [0.2, 0.4, 0.8, 1.0, 1.0]
    backoff.reset()
    assert backoff.step() == 0.2


def test_retries_are_counted_after_the_first_attempt() -> None:
    policy = RetryPolicy()
    transient = TransferError("503", transient=True)
    assert policy.should_retry(0, 1, transient)
    assert not policy.should_retry(1, 1, transient)
    assert not policy.should_retry(0, 0, transient)


def test_permanent_and_job_errors_are_not_retried() -> None:
    policy = RetryPolicy()
    assert not policy.should_retry(0, 5, TransferError("NoSuchBucket", transient=False))
    assert not policy.should_retry(0, 5, JobError("bad"))


def test_unexpected_errors_use_the_retries() -> None:
    assert RetryPolicy().should_retry(0, 1, RuntimeError("bug"))


def test_bad_policy_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        RetryPolicy(base_s=-1)
