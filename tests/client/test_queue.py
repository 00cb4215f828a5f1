"""Enqueueing: what lands in Redis, path checks, and a light producer import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from s3po_client import Job, JobError, QueueKeys, enqueue, enqueue_many
from s3po_client.admin import count_jobs
from s3po_client.redaction import redact_url


def test_enqueue_pushes_a_valid_job(redis_server, redis_client: redis.Redis, tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("hello")
    job_id = enqueue(
        "bkt",
        "k/a.txt",
        str(f),
        headers={"Cache-Control": "no-cache"},
        compress="gzip",
        retries=5,
        delete=False,
        silent=True,
        redis_url=redis_server.url,
    )
    raw = redis_client.lrange("s3po:queue", 0, -1)
    assert len(raw) == 1
    job = Job.from_json(raw[0])
    assert job.id == job_id
    assert (job.bucket, job.key, job.path, job.compress, job.retries, job.delete, job.silent) == (
        "bkt",
        "k/a.txt",
        str(f),
        "gzip",
        5,
        False,
        True,
    )
    assert dict(job.headers) == {"Cache-Control": "no-cache"}
    assert job.enqueued_at is not None


def test_relative_path_is_made_absolute(redis_server, redis_client, tmp_path, monkeypatch) -> None:
    (tmp_path / "rel.txt").write_text("x")
    monkeypatch.chdir(tmp_path)
    enqueue("bkt", "k", "rel.txt", redis_url=redis_server.url)
    assert Job.from_json(redis_client.rpop("s3po:queue")).path == str(tmp_path / "rel.txt")


def test_redis_url_comes_from_the_environment(redis_server, redis_client, tmp_path, monkeypatch) -> None:
    f = tmp_path / "a"
    f.write_text("x")
    monkeypatch.setenv("S3PO_REDIS_URL", redis_server.url)
    enqueue("bkt", "k", f, prefix="other")
    assert redis_client.llen("other:queue") == 1


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_path_must_be_an_existing_regular_file(redis_server, redis_client, tmp_path, kind) -> None:
    target = tmp_path / "nope" if kind == "missing" else tmp_path
    with pytest.raises(JobError, match="does not exist" if kind == "missing" else "not a regular file"):
        enqueue("bkt", "k", target, redis_url=redis_server.url)
    assert redis_client.llen("s3po:queue") == 0


def test_bad_option_is_rejected_before_sending(redis_server, redis_client, tmp_path) -> None:
    f = tmp_path / "a"
    f.write_text("x")
    with pytest.raises(JobError, match="compress"):
        enqueue("bkt", "k", f, compress="lzma", redis_url=redis_server.url)  # type: ignore[arg-type]
    assert redis_client.llen("s3po:queue") == 0


def test_enqueue_many_is_one_round_trip_in_order(redis_server, redis_client, tmp_path) -> None:
    files = []
    for i in range(3):
        f = tmp_path / f"f{i}"
        f.write_text(str(i))
        files.append(f)
    ids = enqueue_many(
        [{"bucket": "b", "key": f"k{i}", "path": f} for i, f in enumerate(files[:2])]
        + [Job(bucket="b", key="k2", path=str(files[2]), delete=False)],
        redis_url=redis_server.url,
    )
    assert len(ids) == 3 and len(set(ids)) == 3
    # The oldest job is at the taking (right) end.
    queued = [Job.from_json(r) for r in reversed(redis_client.lrange("s3po:queue", 0, -1))]
    assert [j.id for j in queued] == ids
    assert [j.key for j in queued] == ["k0", "k1", "k2"]
    assert queued[2].delete is False


def test_enqueue_many_validates_everything_first(redis_server, redis_client, tmp_path) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(JobError):
        enqueue_many(
            [{"bucket": "b", "key": "a", "path": f}, {"bucket": "b", "key": "c", "path": tmp_path / "missing"}],
            redis_url=redis_server.url,
        )
    assert redis_client.llen("s3po:queue") == 0


def test_counts_by_state(redis_client) -> None:
    keys = QueueKeys("s3po")
    redis_client.zadd(keys.workers, {"w1": 1, "w2": 1})  # every worker beats before it claims
    redis_client.lpush(keys.queue, "a", "b")
    redis_client.lpush(keys.processing("w1"), "c")
    redis_client.lpush(keys.processing("w2"), "d", "e")
    redis_client.zadd(keys.delayed, {"f": 1})
    redis_client.lpush(keys.dead, "g")
    counts = count_jobs(redis_client)
    assert (counts.pending, counts.processing, counts.delayed, counts.dead) == (2, 3, 1, 1)
    assert dict(counts.processing_by_worker) == {"w1": 1, "w2": 2}


def test_redact_url_hides_the_password() -> None:
    assert redact_url("redis://user:s3cret@host:6380/1") == "redis://user:***@host:6380/1"
    assert redact_url("redis://:s3cret@host/0") == "redis://:***@host/0"
    assert redact_url("redis://host:6379/0") == "redis://host:6379/0"
    assert redact_url("unix:///run/redis.sock?db=2&password=s3cret") == "unix:///run/redis.sock?db=2&password=***"


def test_importing_and_enqueueing_does_not_load_boto3(redis_server, tmp_path) -> None:
    f = tmp_path / "a"
    f.write_text("x")
    code = (
        "import sys, s3po_client\n"
        f"s3po_client.enqueue('b', 'k', {str(f)!r}, redis_url={redis_server.url!r})\n"
        "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules, sorted(sys.modules)\n"
        "print('light')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "light"


def test_enqueue_keeps_its_connection_and_survives_a_redis_restart(aof_redis, tmp_path: Path) -> None:
    from s3po_client.redis_url import shared_client

    f = tmp_path / "a.txt"
    f.write_text("x")
    first = enqueue("bkt", "a", str(f), redis_url=aof_redis.url)
    client = shared_client(aof_redis.url)
    assert shared_client(aof_redis.url) is client, "one client per process and URL"
    aof_redis.restart()  # the kept connection is dead now
    second = enqueue("bkt", "b", str(f), redis_url=aof_redis.url)
    queued = [Job.from_json(raw).id for raw in redis.Redis.from_url(aof_redis.url).lrange("s3po:queue", 0, -1)]
    assert queued == [second, first]
