"""The settle steps (Lua scripts) against a real redis-server: where each job ends up."""

from __future__ import annotations

import json
import time

from s3po_client.keys import QueueKeys
from s3pod.consumer import STORED_AFTER_ACK_TTL_S, Consumer, dead_entry

KEYS = QueueKeys("s3po")


def consumer(redis_client, worker_id: str = "w1") -> Consumer:
    return Consumer(redis_client, KEYS, worker_id)


def test_claim_takes_the_oldest_and_ack_forgets_it(redis_client) -> None:
    redis_client.lpush(KEYS.queue, b"first", b"second")
    c = consumer(redis_client)
    assert c.claim(0.1) == b"first"
    assert redis_client.lrange(KEYS.processing("w1"), 0, -1) == [b"first"]
    assert c.ack(b"first", "first") == (True, False)
    assert redis_client.llen(KEYS.processing("w1")) == 0
    assert redis_client.lrange(KEYS.queue, 0, -1) == [b"second"]
    assert c.claim(0.1) == b"second"
    assert c.claim(0.1) is None


def test_claim_many_takes_the_oldest_jobs_up_to_its_share_of_the_queue(redis_client) -> None:
    redis_client.lpush(KEYS.queue, *[f"j{i}".encode() for i in range(10)])
    c = consumer(redis_client)
    assert c.claim_many(0.1, most=4, takers=2) == [b"j0", b"j1", b"j2", b"j3"], "a deep queue: the most asked for"
    assert redis_client.lrange(KEYS.processing("w1"), 0, -1) == [b"j3", b"j2", b"j1", b"j0"], "newest claim left"
    assert c.claim_many(0.1, most=4, takers=2) == [b"j4", b"j5", b"j6"], "6 left for 2 takers: its share, 3"
    assert c.claim_many(0.1, most=4, takers=4) == [b"j7"], "3 left for 4 takers: one"
    assert c.claim_many(0.1, most=1, takers=4) == [b"j8"], "one at a time: a plain BLMOVE"
    assert c.claim_many(0.1, most=4, takers=4) == [b"j9"]
    assert redis_client.llen(KEYS.processing("w1")) == 10 and redis_client.llen(KEYS.queue) == 0
    started = time.monotonic()
    assert c.claim_many(0.3, most=4, takers=4) == [], "an empty queue: it blocks for the timeout, then gives up"
    assert time.monotonic() - started >= 0.25


def test_claim_many_on_an_empty_queue_wakes_for_a_job_pushed_while_it_waits(redis_client) -> None:
    import threading

    c = consumer(redis_client)
    pusher = threading.Timer(0.2, lambda: redis_client.lpush(KEYS.queue, b"late"))
    pusher.start()
    try:
        assert c.claim_many(5, most=8, takers=1) == [b"late"]
    finally:
        pusher.join()


def test_ack_many_settles_each_job_as_ack_would_in_one_step(redis_client) -> None:
    c = consumer(redis_client)
    redis_client.lpush(KEYS.queue, b"a", b"b", b"c", b"a")  # "a" queued twice: two copies held
    assert c.claim_many(0.1, most=4, takers=1) == [b"a", b"b", b"c", b"a"]
    c.mark_stored_many(["a", "b", "c"])
    assert all(redis_client.ttl(KEYS.stored(i)) > 0 for i in "abc"), "markers expire"
    redis_client.lrem(KEYS.processing("w1"), 1, b"b")  # as a reaper would
    redis_client.set(KEYS.upload("c"), "{}")
    found = c.ack_many([(b"a", "a"), (b"b", "b"), (b"c", "c"), (b"a", "a")])
    assert found == [(True, False), (False, False), (True, True), (True, False)]
    assert redis_client.llen(KEYS.processing("w1")) == 0
    assert all(redis_client.exists(KEYS.stored(i)) for i in "abc"), "markers expire: later copies of a job find them"
    assert c.ack_many([]) == []


def test_ack_of_a_job_a_reaper_put_back_says_so_and_leaves_the_queued_copy(redis_client) -> None:
    c = consumer(redis_client)
    redis_client.lpush(KEYS.queue, b"job")
    c.claim(0.1)
    c.retire()  # as a reaper would
    assert c.ack(b"job", "job") == (False, False), "the worker no longer held it: its stored marker must stay"
    assert redis_client.lrange(KEYS.queue, 0, -1) == [b"job"], "the queue is never searched"


def test_ack_leaves_the_stored_marker_to_expire_for_later_copies_of_the_job(redis_client) -> None:
    c = consumer(redis_client)
    redis_client.lpush(KEYS.queue, b"a", b"b")
    c.claim(0.1)
    c.mark_stored("a")
    assert c.ack(b"a", "a") == (True, False)
    assert 0 < redis_client.ttl(KEYS.stored("a")) <= STORED_AFTER_ACK_TTL_S, (
        "a duplicate pushed twice finds it, for a while"
    )
    c.claim(0.1)
    c.mark_stored("b")
    c.retire()  # taken for dead meanwhile
    assert c.ack(b"b", "b") == (False, False) and redis_client.exists(KEYS.stored("b")), "the copy put back needs it"
    assert redis_client.ttl(KEYS.stored("b")) > STORED_AFTER_ACK_TTL_S, "kept whole for the copy put back"
    redis_client.set(KEYS.upload("b"), "{}")
    assert c.ack(b"b", "b") == (False, True), "a recorded multipart upload is reported, for the caller to abort"


def test_delay_moves_the_next_attempt_to_the_delayed_set_scored_by_redis_time(redis_client) -> None:
    c = consumer(redis_client)
    redis_client.lpush(KEYS.queue, b"try-0")
    c.claim(0.1)
    seconds, micros = redis_client.time()
    due = c.delay(b"try-0", b"try-1", 30)
    assert abs(due - (seconds + micros / 1e6 + 30)) < 2
    assert redis_client.llen(KEYS.processing("w1")) == 0
    assert redis_client.zrange(KEYS.delayed, 0, -1, withscores=True)[0][0] == b"try-1"
    assert abs(redis_client.zscore(KEYS.delayed, b"try-1") - due) < 1e-5
    # Repeating the step (its first reply lost) leaves one copy.
    c.delay(b"try-0", b"try-1", 30)
    assert redis_client.zcard(KEYS.delayed) == 1


def test_promote_moves_only_due_jobs_behind_the_pending_ones_in_due_order(redis_client) -> None:
    c = consumer(redis_client)
    redis_client.lpush(KEYS.queue, b"pending")
    c.claim(0.1)
    c.delay(b"pending", b"soon", 0)
    c.delay(b"x", b"sooner", -1)
    c.delay(b"never-mind", b"later", 3600)
    redis_client.lpush(KEYS.queue, b"fresh")
    assert c.promote() == 2
    assert redis_client.zrange(KEYS.delayed, 0, -1) == [b"later"]
    assert [c.claim(0.1) for _ in range(3)] == [b"fresh", b"sooner", b"soon"], (
        "retries join the queue like new jobs, earliest due first"
    )


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
        "job": "bad",
        "error": "boom",
        "attempts": 2,
        "worker": "w1",
    }


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
    assert [alive.claim(0.1) for _ in range(3)] == [b"j1", b"j2", b"j3"]
    # The reaped worker stays known, so a job it claims on waking up is still found.
    assert sorted(redis_client.zrange(KEYS.workers, 0, -1)) == [b"alive", b"dead"]
    redis_client.lpush(KEYS.queue, b"j4")
    assert dead.claim(0.1) == b"j4"
    assert alive.reap(timeout_s=0.5) == {"dead": 1}


def test_heartbeat_says_first_fresh_or_silent_past_the_timeout(redis_client) -> None:
    c = Consumer(redis_client, KEYS, "w1", heartbeat_timeout_s=0.3)
    assert c.heartbeat() == 0
    assert c.heartbeat() == 1
    time.sleep(0.4)
    assert c.heartbeat() == 2, "silent past the timeout: a reaper may have put its jobs back"
    consumer(redis_client, "other").requeue("w1", -1)  # as the worker's own stop does: it leaves the set
    assert c.heartbeat() == 0


def test_status_finds_workers_from_the_workers_set_in_two_round_trips(redis_client) -> None:
    from s3po_client.admin import count_jobs

    w1, w2 = consumer(redis_client, "w1"), consumer(redis_client, "w2")
    w1.heartbeat(), w2.heartbeat()
    redis_client.lpush(KEYS.queue, b"a", b"b", b"c", b"d")
    w1.claim(0.1), w2.claim(0.1), w2.claim(0.1)
    counts = count_jobs(redis_client)
    assert (counts.pending, counts.processing) == (1, 3)
    assert dict(counts.processing_by_worker) == {"w1": 1, "w2": 2}
    assert set(counts.heartbeat_age_s) == {"w1", "w2"}


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


def test_no_step_scans_a_backlog_of_a_million_jobs(redis_client) -> None:
    """Every settle step, the reaper, promotion and the counts stay off Redis's slow log.

    With 1,000,000 pending jobs and 200,000 dead entries, a step that searched the queue
    (LREM) or the dead list (LPOS) or the keyspace (SCAN) takes tens of milliseconds inside
    Redis, blocking every other client; bounded steps take microseconds.
    """
    from s3po_client.admin import count_jobs

    filler = b"x" * 40
    pipe = redis_client.pipeline(transaction=False)
    for _ in range(100):
        pipe.lpush(KEYS.queue, *([filler] * 10_000))
    for _ in range(20):
        pipe.lpush(KEYS.dead, *([filler] * 10_000))
    pipe.execute()
    assert redis_client.llen(KEYS.queue) == 1_000_000
    c = consumer(redis_client)
    c.heartbeat()
    threshold_us = 5_000
    old = redis_client.config_get("slowlog-log-slower-than")["slowlog-log-slower-than"]
    redis_client.config_set("slowlog-log-slower-than", threshold_us)
    redis_client.slowlog_reset()
    try:
        # The abnormal paths: each job is no longer in this worker's list (a reaper took it).
        assert c.ack(b"reaped-then-done", "reaped-then-done") == (False, False)
        c.delay(b"reaped-then-failed", b"next-attempt", 60)
        c.dead_letter(b"reaped-then-dead", dead_entry(b"reaped-then-dead", "boom", 1, "w1"))
        c.dead_letter(b"reaped-then-dead", dead_entry(b"reaped-then-dead", "boom", 1, "w1"))
        c.put_back(b"not-held")
        assert len(c.claim_many(0.1, most=8, takers=4)) == 8
        c.promote()
        c.reap(30)
        count_jobs(redis_client)
        slow = redis_client.slowlog_get(128)
    finally:
        redis_client.config_set("slowlog-log-slower-than", old)
    assert slow == [], [(e["duration"], e["command"][:60]) for e in slow]
