"""The Worker in-process: what listeners hear, and when on_ready and on_tick are called."""

from __future__ import annotations

import logging
import threading

import pytest
import redis
from conftest import wait_until

from s3po_client import enqueue
from s3po_client.retry import RetryPolicy
from s3po_client.settings import S3Settings
from s3po_client.transfer import TransferEngine
from s3pod.config import WorkerConfig, WorkerHooks
from s3pod.events import Outcome, OutcomeKind
from s3pod.loop import Worker


class Recorder:
    """Keeps every outcome and hook call in order; can run an action on the first retry."""

    def __init__(self) -> None:
        self.events: list[object] = []
        self.on_first_retry = lambda: None

    def on_outcome(self, outcome: Outcome) -> None:
        if outcome.kind is OutcomeKind.RETRY and not any(
            isinstance(e, Outcome) and e.kind is OutcomeKind.RETRY for e in self.events
        ):
            self.on_first_retry()
        self.events.append(outcome)

    def ready(self) -> None:
        self.events.append("ready")

    def tick(self) -> None:
        self.events.append("tick")


class Broken:
    def on_outcome(self, outcome: Outcome) -> None:
        raise RuntimeError("listener bug")


def make_worker(client: redis.Redis, endpoint: str, s3_settings: S3Settings, recorder: Recorder, **overrides) -> Worker:
    s3 = S3Settings(
        access_id=s3_settings.access_id,
        secret_key=s3_settings.secret_key,
        region=s3_settings.region,
        endpoint_url=endpoint,
    )
    config = WorkerConfig(
        concurrency=1,
        retry=RetryPolicy(base_s=0),
        s3_probe_url=endpoint,
        tick_interval_s=0.05,
        **overrides,
    )
    hooks = WorkerHooks(on_ready=recorder.ready, on_tick=recorder.tick)
    return Worker(client, TransferEngine(s3), config, listeners=[Broken(), recorder], hooks=hooks)


def test_listeners_hear_every_transition_even_beside_a_broken_one(
    redis_server, redis_client, s3, bucket, s3_settings, fault_proxy, tmp_path, caplog
) -> None:
    good, flaky, lost = (tmp_path / n for n in ("good.txt", "flaky.txt", "lost.txt"))
    for f in (good, flaky, lost):
        f.write_text(f.name)
    good_id = enqueue(bucket, "good.txt", good, redis_url=redis_server.url)
    redis_client.lpush("s3po:queue", b"{not json")
    dead_id = enqueue("no-such-bucket-s3po", "lost.txt", lost, retries=0, redis_url=redis_server.url)
    flaky_id = enqueue(bucket, "flaky.txt", flaky, retries=2, redis_url=redis_server.url)
    failing = fault_proxy.add_rule("error", method="PUT", path="/flaky.txt", times=None)
    recorder = Recorder()

    def recover() -> None:
        failing.times = failing.hits

    recorder.on_first_retry = recover

    worker = make_worker(redis_client, fault_proxy.url, s3_settings, recorder)
    with caplog.at_level(logging.ERROR, logger="s3pod.loop"):
        assert worker.run(burst=True) == 0

    hooks_and_outcomes = [e for e in recorder.events if e != "tick"]
    assert hooks_and_outcomes[0] == "ready", "on_ready comes before any job"
    assert hooks_and_outcomes.count("ready") == 1
    assert "tick" in recorder.events
    outcomes = {(o.job_id, o.kind) for o in recorder.events if isinstance(o, Outcome)}
    assert outcomes == {
        (good_id, OutcomeKind.UPLOADED),
        (None, OutcomeKind.INVALID),
        (dead_id, OutcomeKind.DEAD),
        (flaky_id, OutcomeKind.RETRY),
        (flaky_id, OutcomeKind.UPLOADED),
    }
    by_kind = {(o.job_id, o.kind): o for o in recorder.events if isinstance(o, Outcome)}
    uploaded = by_kind[(good_id, OutcomeKind.UPLOADED)]
    assert (uploaded.bucket, uploaded.key, uploaded.bytes_sent, uploaded.attempt) == (bucket, "good.txt", 8, 0)
    assert uploaded.duration_s > 0 and uploaded.error is None
    assert by_kind[(flaky_id, OutcomeKind.UPLOADED)].attempt == 1
    assert "SlowDown" in (by_kind[(flaky_id, OutcomeKind.RETRY)].error or "")
    assert "NoSuchBucket" in (by_kind[(dead_id, OutcomeKind.DEAD)].error or "")
    assert "listener" in caplog.text and "listener bug" in caplog.text
    assert not good.exists() and not flaky.exists() and lost.exists()
    assert redis_client.llen("s3po:dead") == 2


def test_no_job_is_claimed_until_the_s3_endpoint_answers(redis_server, redis_client, s3_settings, tmp_path) -> None:
    f = tmp_path / "waiting.txt"
    f.write_text("wait")
    enqueue("any-bucket", "k", f, redis_url=redis_server.url)
    recorder = Recorder()
    worker = make_worker(redis_client, "http://127.0.0.1:1", s3_settings, recorder)
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(worker.run()))
    thread.start()
    try:
        wait_until(lambda: worker.stopping.wait(1.0) or True, message="a second to pass")
        assert recorder.events == [], "neither ready nor any outcome"
        assert redis_client.llen("s3po:queue") == 1
    finally:
        worker.stop()
        thread.join(30)
    assert result == [0]


def test_config_rejects_nonsense() -> None:
    from s3po_client.errors import ConfigError

    with pytest.raises(ConfigError, match="concurrency"):
        WorkerConfig(concurrency=0)
    with pytest.raises(ConfigError, match="heartbeat_timeout_s"):
        WorkerConfig(heartbeat_timeout_s=0)


class Fatal:
    """A listener that ends the thread it runs in, as a bug raising BaseException would."""

    def on_outcome(self, outcome: Outcome) -> None:
        raise SystemExit("listener gone")


def test_a_job_thread_that_dies_anyway_stops_the_worker_with_status_1(
    redis_server, redis_client, s3, bucket, s3_settings, tmp_path, caplog
) -> None:
    """A supervisor (systemd's Restart=on-failure) starts it again only if the status says so."""
    f = tmp_path / "one.txt"
    f.write_text("one")
    enqueue(bucket, "one.txt", f, redis_url=redis_server.url)
    config = WorkerConfig(concurrency=1, retry=RetryPolicy(base_s=0), tick_interval_s=0.05)
    worker = Worker(redis_client, TransferEngine(s3_settings), config, listeners=[Fatal()])
    with caplog.at_level(logging.CRITICAL, logger="s3pod.loop"):
        assert worker.run(burst=True) == 1
    assert "job thread died" in caplog.text
