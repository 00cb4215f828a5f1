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


# -- the one retry loop ------------------------------------------------------------------


class Script:
    """An attempt that fails with each given error in turn, then returns "done"; counts its calls."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def test_the_loop_tries_again_after_transient_failures_and_tells_each_retry() -> None:
    told: list[tuple[int, float]] = []
    attempt = Script(TransferError("busy"), TransferError("busy"))
    result = RetryPolicy(base_s=0.01, jitter=False).call(
        attempt, retries=2, on_retry=lambda n, delay_s, error: told.append((n, delay_s))
    )
    assert (result, attempt.calls) == ("done", 3)
    assert told == [(1, 0.01), (2, 0.02)]


def test_the_loop_raises_the_last_error_once_the_retries_are_used() -> None:
    attempt = Script(TransferError("one"), TransferError("two"), TransferError("three"))
    with pytest.raises(TransferError, match="two"):
        RetryPolicy(base_s=0).call(attempt, retries=1)
    assert attempt.calls == 2


def test_the_loop_raises_a_permanent_error_at_once() -> None:
    for error in (TransferError("denied", transient=False), JobError("bad job")):
        attempt = Script(error)
        with pytest.raises(type(error)):
            RetryPolicy(base_s=0).call(attempt, retries=5)
        assert attempt.calls == 1


def test_the_loop_judges_and_raises_the_classified_error_from_the_original() -> None:
    seen: list[int] = []

    def classify(exc: Exception, failed: int) -> Exception:
        seen.append(failed)
        return TransferError(f"translated {exc}", transient=failed < 1, attempt=failed)

    with pytest.raises(TransferError, match="translated boom") as caught:
        RetryPolicy(base_s=0).call(Script(OSError("boom"), OSError("boom")), retries=5, classify=classify)
    assert seen == [0, 1] and caught.value.attempt == 1
    assert isinstance(caught.value.__cause__, OSError)


def test_a_stop_ends_the_loops_wait_at_once() -> None:
    import threading
    import time

    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    with pytest.raises(TransferError, match="busy"):
        RetryPolicy(base_s=60, jitter=False).call(Script(TransferError("busy")), retries=3, stop=stop)
    assert time.monotonic() - started < 2, "the 60 s backoff was waited out"
    attempt = Script(TransferError("busy"))
    with pytest.raises(TransferError):  # already stopped: no wait, no second attempt
        RetryPolicy(base_s=60).call(attempt, retries=3, stop=stop)
    assert attempt.calls == 1


def test_wait_until_answers_calls_until_the_server_answers() -> None:
    from s3po_client.retry import wait_until_answers

    failures: list[Exception] = []
    attempt = Script(ConnectionError("away"), ConnectionError("away"))
    fast = RetryPolicy(base_s=0.001, max_s=0.01)
    assert wait_until_answers(attempt, errors=(ConnectionError,), on_failure=failures.append, policy=fast) == "done"
    assert len(failures) == 2
    with pytest.raises(ValueError):  # not one of the errors: at once
        wait_until_answers(Script(ValueError("bug")), errors=(ConnectionError,), policy=fast)


def test_wait_until_answers_gives_up_when_told_or_stopped() -> None:
    import threading
    import time

    from s3po_client.retry import wait_until_answers

    forever = Script(*[ConnectionError("away")] * 10_000)
    with pytest.raises(ConnectionError):
        wait_until_answers(forever, errors=(ConnectionError,), give_up=lambda: forever.calls >= 3)
    assert forever.calls == 3
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    with pytest.raises(ConnectionError):
        wait_until_answers(forever, errors=(ConnectionError,), stop=stop, policy=RetryPolicy(base_s=60))
    assert time.monotonic() - started < 2
