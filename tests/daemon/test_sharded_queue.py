"""Sharded queues: ``--prefix '{s3po0},{s3po1},...'`` spreads one queue over several, on one Redis or a cluster."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import wait_until
from servers import RedisClusterServers

from s3po_client import enqueue_many
from s3po_client.admin import count_jobs, list_dead, purge_dead, retry_dead
from s3po_client.errors import ConfigError
from s3po_client.job import Job
from s3po_client.keys import QueueKeys
from s3po_client.producer import push_jobs, shard_index
from s3po_client.redis_url import connect, split_prefixes
from s3pod.consumer import dead_entry
from s3pod.sharded import ShardedConsumer, consumer_for

SHARDS = ["{s3po0}", "{s3po1}", "{s3po2}", "{s3po3}"]
PREFIX = ",".join(SHARDS)


def commands(client: redis.Redis, name: str) -> int:
    stats = client.info("commandstats").get(f"cmdstat_{name}")
    return int(stats["calls"]) if stats else 0


@pytest.mark.parametrize("prefix", ["a,,b", "a,b,a", "a,"])
def test_a_bad_prefix_list_is_a_config_error(prefix: str) -> None:
    with pytest.raises(ConfigError, match="distinct non-empty prefixes"):
        split_prefixes(prefix)


def test_producers_spread_jobs_by_bucket_and_key(redis_client: redis.Redis) -> None:
    jobs = [Job(bucket="b", key=f"k{i}", path=f"/tmp/f{i}") for i in range(40)]
    ids = push_jobs(jobs, client=redis_client, prefix=PREFIX)
    assert ids == [j.id for j in jobs]
    for i, shard in enumerate(SHARDS):
        expected = sorted(j.id for j in jobs if shard_index(j.bucket, j.key, len(SHARDS)) == i)
        got = sorted(Job.from_json(raw).id for raw in redis_client.lrange(QueueKeys(shard).queue, 0, -1))
        assert got == expected
        assert 0 < len(got) < 40, "every shard gets some of 40 jobs"
    assert count_jobs(redis_client, PREFIX).pending == 40


def test_a_sharded_consumer_claims_in_turn_and_settles_on_the_shard_it_claimed_from(redis_client: redis.Redis) -> None:
    by_shard = {shard: Job(bucket="b", key=shard, path="/tmp/x") for shard in SHARDS}
    for shard, job in by_shard.items():
        push_jobs([job], client=redis_client, prefix=shard)
    consumer = consumer_for(redis_client, PREFIX, "w1", heartbeat_timeout_s=5)
    assert isinstance(consumer, ShardedConsumer)
    assert consumer.heartbeat() == 0
    claims = [consumer.claim(1) for _ in SHARDS]
    assert sorted(Job.from_json(c.raw).key for c in claims if c) == sorted(SHARDS), "one claim from each shard"
    settled = {Job.from_json(c.raw).key: c for c in claims if c}
    assert all(c.shard.keys.prefix == key for key, c in settled.items()), "each job carries its shard"
    first_claim = settled[SHARDS[0]]
    first = Job.from_json(first_claim.raw)
    first_claim.shard.mark_stored(first.id)  # in the job's own shard (one slot with the rest of it)
    assert redis_client.exists(QueueKeys(SHARDS[0]).stored(first.id))
    assert first_claim.shard.was_stored(first.id)
    assert first_claim.shard.ack(first_claim.raw, first.id) == (True, False)
    second, third, fourth = settled[SHARDS[1]], settled[SHARDS[2]], settled[SHARDS[3]]
    second.shard.delay(second.raw, Job.from_json(second.raw).next_attempt().to_json(), 60)
    assert third.shard.dead_letter(third.raw, dead_entry(third.raw, "boom", 1, "w1"))
    assert fourth.shard.put_back(fourth.raw)
    assert redis_client.zcard(QueueKeys(SHARDS[1]).delayed) == 1
    assert redis_client.llen(QueueKeys(SHARDS[2]).dead) == 1
    assert redis_client.llen(QueueKeys(SHARDS[3]).queue) == 1
    counts = count_jobs(redis_client, PREFIX)
    assert (counts.pending, counts.processing, counts.delayed, counts.dead) == (1, 0, 1, 1)
    assert [e.error for e in list_dead(redis_client, PREFIX)] == ["boom"]
    assert retry_dead(redis_client, None, PREFIX).queued == [Job.from_json(third.raw).id]
    assert redis_client.llen(QueueKeys(SHARDS[2]).queue) == 1, "a dead job is retried on its own shard"
    assert purge_dead(redis_client, PREFIX) == 0

    # A silent worker's jobs are reaped from every shard it held some in.
    assert consumer.claim(1) and consumer.claim(1)
    other = consumer_for(redis_client, PREFIX, "w2", heartbeat_timeout_s=5)
    other.heartbeat()
    assert other.reap(-1) == {"w1": 2}
    assert count_jobs(redis_client, PREFIX).pending == 2


def test_an_idle_sharded_claim_blocks_instead_of_polling(redis_client: redis.Redis) -> None:
    consumer = consumer_for(redis_client, PREFIX, "w1")
    lmoves, blmoves = commands(redis_client, "lmove"), commands(redis_client, "blmove")
    assert consumer.claim(0.3) is None
    assert commands(redis_client, "lmove") - lmoves == len(SHARDS), "one quick look at each shard"
    assert commands(redis_client, "blmove") - blmoves == 1, "then one blocking wait"


def test_daemon_drains_every_shard_and_status_adds_them_up(
    s3: Any,
    bucket: str,
    start_daemon: Callable[..., Any],
    daemon_env: dict[str, str],
    tmp_path: Path,
) -> None:
    files = []
    for i in range(12):
        f = tmp_path / f"f{i}.txt"
        f.write_text(f"file {i}\n")
        files.append(f)
    enqueue_many(
        [{"bucket": bucket, "key": f.name, "path": f} for f in files],
        prefix=PREFIX,
        redis_url=daemon_env["S3PO_REDIS_URL"],
    )
    daemon = start_daemon("--prefix", PREFIX, "--concurrency", "2")
    wait_until(lambda: not any(f.exists() for f in files), timeout_s=60, message="all 12 uploads")
    for i, f in enumerate(files):
        assert s3.get_object(Bucket=bucket, Key=f.name)["Body"].read() == f"file {i}\n".encode()
    out = subprocess.run(
        [sys.executable, "-m", "s3po_client.cli", "status", "--json", "--prefix", PREFIX],
        env=daemon_env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    status = json.loads(out.stdout)
    assert (status["pending"], status["processing"], status["dead"]) == (0, 0, 0)
    assert len(status["workers"]) == 1
    assert daemon.proc.poll() is None


def test_a_sharded_daemon_dead_letters_a_job_whose_file_never_existed(
    redis_client: redis.Redis,
    bucket: str,
    start_daemon: Callable[..., Any],
    tmp_path: Path,
) -> None:
    """The job is still held on its shard, so it is dead-lettered with its reason, never dropped."""
    missing = str(tmp_path / "never-there.txt")
    redis_client.lpush(QueueKeys(SHARDS[2]).queue, json.dumps({"bucket": bucket, "key": "k", "path": missing}))
    daemon = start_daemon("--prefix", PREFIX, "--concurrency", "1")

    def dead() -> list[bytes]:
        return [e for shard in SHARDS for e in redis_client.lrange(QueueKeys(shard).dead, 0, -1)]

    wait_until(lambda: dead(), timeout_s=30, message="the job dead-lettered")
    [entry] = dead()
    assert "does not exist" in json.loads(entry)["error"]
    assert all(redis_client.llen(QueueKeys(s).queue) == 0 for s in SHARDS)
    assert "dropped job=" not in daemon.log


def test_shards_spread_over_the_cluster_masters(
    redis_cluster: RedisClusterServers,
    s3: Any,
    bucket: str,
    start_daemon: Callable[..., Any],
    daemon_env: dict[str, str],
    tmp_path: Path,
) -> None:
    masters = {redis_cluster.master_of(QueueKeys(shard).queue) for shard in SHARDS}
    assert len(masters) >= 2, "shards with their own hash tags live on different masters"
    url = redis_cluster.url
    files = []
    for i in range(12):
        f = tmp_path / f"f{i}.txt"
        f.write_text(f"file {i}\n")
        files.append(f)
    enqueue_many([{"bucket": bucket, "key": f.name, "path": f} for f in files], redis_url=url, prefix=PREFIX)
    env = {**daemon_env, "S3POD_REDIS_URL": url, "S3POD_PREFIX": PREFIX}
    daemon = start_daemon("--concurrency", "2", env=env)
    wait_until(lambda: not any(f.exists() for f in files), timeout_s=60, message="all 12 uploads")
    client = connect(url)
    try:
        wait_until(lambda: count_jobs(client, PREFIX).processing == 0, message="every job acknowledged")
        counts = count_jobs(client, PREFIX)
        assert (counts.pending, counts.delayed, counts.dead) == (0, 0, 0)
    finally:
        client.close()
    assert daemon.proc.poll() is None


def test_a_sharded_batch_claim_takes_from_one_shard_and_settles_there(redis_client: redis.Redis) -> None:
    jobs = {shard: [Job(bucket="b", key=f"{shard}/{i}", path="/tmp/x") for i in range(3)] for shard in SHARDS}
    for shard, shard_jobs in jobs.items():
        push_jobs(shard_jobs, client=redis_client, prefix=shard)
    consumer = consumer_for(redis_client, PREFIX, "w1")
    consumer.heartbeat()  # the workers set is how the counts find its processing lists
    claimed = [consumer.claim_many(1, most=8, takers=1) for _ in SHARDS]
    for batch in claimed:
        keys = [Job.from_json(c.raw).key for c in batch]
        assert len(batch) == 3 and len({k.split("/")[0] for k in keys}) == 1, "a batch comes from one shard"
        assert {c.shard.keys.prefix for c in batch} == {keys[0].split("/")[0]}, "and says which"
    assert count_jobs(redis_client, PREFIX).processing == 12
    for batch in claimed:
        shard = batch[0].shard
        everything = [(c.raw, Job.from_json(c.raw).id) for c in batch]
        shard.mark_stored_many([job_id for _, job_id in everything])
        assert all(redis_client.exists(shard.keys.stored(job_id)) for _, job_id in everything), "markers in its shard"
        assert shard.ack_many(everything) == [(True, False)] * 3
    counts = count_jobs(redis_client, PREFIX)
    assert (counts.pending, counts.processing) == (0, 0)
    assert consumer.claim_many(0.2, most=8, takers=1) == []


def test_one_prefix_is_one_shard_and_a_claim_is_one_blocking_call(redis_client: redis.Redis) -> None:
    consumer = consumer_for(redis_client, "s3po", "w1")
    assert [shard.keys.prefix for shard in consumer.shards] == ["s3po"]
    lmoves, blmoves = commands(redis_client, "lmove"), commands(redis_client, "blmove")
    assert consumer.claim(0.2) is None
    assert (commands(redis_client, "lmove") - lmoves, commands(redis_client, "blmove") - blmoves) == (0, 1)
