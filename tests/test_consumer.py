"""The settle steps (Lua scripts) against a real redis-server: where each job ends up."""

from __future__ import annotations

import json
import time

from s3po_client.queue import QueueKeys
from s3pod.consumer import Consumer, dead_entry

KEYS = QueueKeys("s3po")


def consumer(redis_client, worker_id: str = "w1") -> Consumer:
    return Consumer(redis_client, KEYS, worker_id)


def test_claim_takes_the_oldest_and_ack_forgets_it(redis_client) -> None:
    redis_client.lpush(KEYS.queue, b"first", b"second")
    c = consumer(redis_client)
    assert c.claim(0.1) == b"first"
    assert redis_client.lrange(KEYS.processing("w1"), 0, -1) == [b"first"]
    assert c.ack(b"first") == 1
    assert redis_client.llen(KEYS.processing("w1")) == 0
    assert redis_client.lrange(KEYS.queue, 0, -1) == [b"second"]
    assert c.claim(0.1) == b"second"
    assert c.claim(0.1) is None


def test_ack_of_a_job_a_reaper_put_back_removes_the_queued_copy(redis_client) -> None:
    c = consumer(redis_client)
    redis_client.lpush(KEYS.queue, b"job")
    c.claim(0.1)
    c.retire()  # as a reaper would
    assert redis_client.lrange(KEYS.queue, 0, -1) == [b"job"]
    assert c.ack(b"job") == 2
    assert redis_client.llen(KEYS.queue) == 0


def test_delay_moves_the_next_attempt_to_the_delayed_set_scored_by_redis_time(redis_client) -> None:
    c = consumer(redis_client)
    redis_client.lpush(KEYS.queue, b"try-0")
    c.claim(0.1)
    seconds, micros = redis_client.time()
    due = c.delay(b"try-0", b"try-1", 30)
    assert abs(due - (seconds + micros / 1e6 + 30)) < 2
    assert redis_client.llen(KEYS.processing("w1")) == 0
    assert redis_client.zrange(KEYS.delayed, 0, -1, withscores=True) [0][0] == b"try-1"
    assert abs(redis_client.zscore(KEYS.delayed, b"try-1") - due) < 1e-5
    # Repeating the step (its first reply lost) leaves one copy.
    c.delay(b"try-0", b"try-1", 30)
    assert redis_client.zcard(KEYS.delayed) == 1


def test_promote_moves_only_due_jobs_to_the_taking_end(redis_client) -> None:
    c = consumer(redis_client)
    redis_client.lpush(KEYS.queue, b"pending")
    c.claim(0.1)
    c.delay(b"pending", b"soon", 0)
    c.delay(b"never-mind", b"later", 3600)
    redis_client.lpush(KEYS.queue, b"older-pending")
    assert c.promote() == 1
    assert redis_client.zrange(KEYS.delayed, 0, -1) == [b"later"]
    assert c.claim(0.1) == b"soon", "a job whose backoff is over is taken next"


def test_dead_letter_records_once_even_when_repeated(redis_client) -> None:
    c = consumer(redis_client)
    redis_client.lpush(KEYS.queue, b"bad")
    c.claim(0.1)
    entry = dead_entry(b"bad", "boom", 2, "w1")
    assert c.dead_letter(b"bad", entry) is True
    assert c.dead_letter(b"bad", entry) is False
    assert redis_client.llen(KEYS.processing("w1")) == 0
    [stored] = redis_client.lrange(KEYS.dead, 0, -1)
    assert {k: v for k, v in json.loads(stored).items() if k != "failed_at"} == {
        "job": "bad", "error": "boom", "attempts": 2, "worker": "w1"}


def test_dead_entry_keeps_bytes_that_are_not_utf8(redis_client) -> None:
    from s3pod.consumer import raw_bytes

    raw = b"\xff\xfe not utf-8"
    assert raw_bytes(json.loads(dead_entry(raw, "x", 0, "w"))["job"]) == raw


def test_reap_puts_back_the_jobs_of_a_silent_worker_in_their_first_order(redis_client) -> None:
    dead, alive = consumer(redis_client, "dead"), consumer(redis_client, "alive")
    redis_client.lpush(KEYS.queue, b"j1", b"j2", b"j3")
    dead.heartbeat()
    assert dead.claim(0.1) == b"j1" and dead.claim(0.1) == b"j2"
    alive.heartbeat()
    assert alive.reap(timeout_s=30) == {}, "a fresh heartbeat is left alone"
    time.sleep(0.6)
    alive.heartbeat()
    assert alive.reap(timeout_s=0.5) == {"dead": 2}
    assert redis_client.llen(KEYS.processing("dead")) == 0
    assert redis_client.zrange(KEYS.workers, 0, -1) == [b"alive"]
    assert [alive.claim(0.1) for _ in range(3)] == [b"j1", b"j2", b"j3"]


def test_reap_frees_a_processing_list_that_has_no_heartbeat_at_all(redis_client) -> None:
    redis_client.lpush(KEYS.processing("old-version-daemon"), b"stuck")
    c = consumer(redis_client)
    c.heartbeat()
    assert c.reap(timeout_s=30) == {"old-version-daemon": 1}
    assert redis_client.lrange(KEYS.queue, 0, -1) == [b"stuck"]


def test_heartbeat_says_when_the_worker_was_reaped_while_alive(redis_client) -> None:
    c = consumer(redis_client)
    assert c.heartbeat() is False
    assert c.heartbeat() is True
    consumer(redis_client, "other").requeue("w1", -1)
    assert c.heartbeat() is False


def test_put_back_returns_a_held_job_to_the_taking_end(redis_client) -> None:
    c = consumer(redis_client)
    redis_client.lpush(KEYS.queue, b"a", b"b")
    assert c.claim(0.1) == b"a"
    assert c.put_back(b"a") is True
    assert c.put_back(b"a") is False
    assert c.claim(0.1) == b"a"


def test_hash_tagged_prefix_keeps_every_key_in_one_cluster_slot() -> None:
    keys = QueueKeys("{s3po}")
    names = [keys.queue, keys.processing("host-1-99"), keys.delayed, keys.dead, keys.workers]
    assert all(name.startswith("{s3po}:") for name in names)
