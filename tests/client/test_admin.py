"""Dead letters: retried by id or all, each exactly once, the others kept in their order (real Redis)."""

from __future__ import annotations

import json

import redis

from s3po_client.admin import RETRY_CHUNK, list_dead, retry_dead
from s3po_client.job import Job
from s3po_client.keys import QueueKeys

KEYS = QueueKeys("s3po")


def bury(client: redis.Redis, count: int, invalid_every: int = 0) -> list[bytes]:
    """Push ``count`` dead entries, oldest first (as s3pod does, on the left); return them newest first."""
    entries = []
    for n in range(count):
        job = Job(bucket="b", key=f"k{n}", path=f"/spool/{n}", id=f"job-{n:06d}", attempt=3)
        text = "{not a job" if invalid_every and n % invalid_every == 0 else job.to_json()
        entries.append(json.dumps({"job": text, "error": "boom", "attempts": 4, "failed_at": float(n)}).encode())
    pipe = client.pipeline(transaction=False)
    for entry in entries:
        pipe.lpush(KEYS.dead, entry)
    pipe.execute()
    return entries[::-1]


def queued_ids(client: redis.Redis) -> list[str]:
    """The ids of the queued jobs, oldest first."""
    return [Job.from_json(raw).id for raw in reversed(client.lrange(KEYS.queue, 0, -1))]


def test_retry_by_ids_queues_each_once_and_keeps_the_others_in_order(redis_client: redis.Redis) -> None:
    count = RETRY_CHUNK * 2 + 17  # several chunks, the last one short
    dead = bury(redis_client, count)
    wanted = {f"job-{n:06d}" for n in (0, 1, 5, RETRY_CHUNK, count - 1)}  # oldest, middle, newest
    report = retry_dead(redis_client, sorted(wanted) + ["job-missing"])
    assert sorted(report.queued) == sorted(wanted) and report.not_found == ["job-missing"]
    assert queued_ids(redis_client) == sorted(wanted), "queued once each, oldest failure first"
    assert all(Job.from_json(raw).attempt == 0 for raw in redis_client.lrange(KEYS.queue, 0, -1))
    kept = redis_client.lrange(KEYS.dead, 0, -1)
    assert kept == [e for e in dead if json.loads(e)["job"].split('"id":"')[1][:10] not in wanted]


def test_retry_all_queues_every_valid_job_and_keeps_the_invalid_ones(redis_client: redis.Redis) -> None:
    dead = bury(redis_client, RETRY_CHUNK + 300, invalid_every=7)
    invalid = [e for e in dead if b"{not a job" in e]
    report = retry_dead(redis_client, None)
    assert len(report.queued) == len(set(report.queued)) == len(dead) - len(invalid)
    assert queued_ids(redis_client) == sorted(report.queued)
    assert [e.stored for e in report.invalid] == invalid[::-1], "reported oldest first"
    assert redis_client.lrange(KEYS.dead, 0, -1) == invalid, "the invalid ones stay, in their order"
    assert [e.stored for e in list_dead(redis_client)] == invalid


def take_one_chunk(client: redis.Redis, count: int) -> None:
    """Do what a retry of everything does to the ``count`` oldest entries, then stop (as if killed there)."""
    from s3po_client.admin import load_script

    tail = client.lrange(KEYS.dead, -count, -1)[::-1]
    args: list[bytes | str] = []
    for raw in tail:
        args += [raw, "" if b"job-000001" in raw else Job.from_json(json.loads(raw)["job"]).to_json()]
    retry = load_script(client, "retry_dead")
    assert retry(keys=[KEYS.dead, KEYS.queue, KEYS.dead_kept], args=args) == count


def test_a_retry_killed_midway_loses_nothing_and_the_next_puts_back_what_it_kept(redis_client: redis.Redis) -> None:
    dead = bury(redis_client, 5)
    take_one_chunk(redis_client, 3)  # job-000000 and job-000002 queued, job-000001 set aside
    assert queued_ids(redis_client) == ["job-000000", "job-000002"]
    late = json.dumps({"job": "late", "error": "x"}).encode()
    redis_client.lpush(KEYS.dead, late)  # dead-lettered meanwhile: the newest
    report = retry_dead(redis_client, ["job-000003"])
    assert report.queued == ["job-000003"]
    assert redis_client.lrange(KEYS.dead, 0, -1) == [late, dead[0], dead[3]], "every entry once, in its order"
    assert redis_client.llen(KEYS.dead_kept) == 0
    assert queued_ids(redis_client) == ["job-000000", "job-000002", "job-000003"]
