"""Kill s3pod processes (SIGKILL: no cleanup at all) and check that every job still lands once."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from conftest import wait_until

from s3po_client import enqueue, enqueue_many

MiB = 1024 * 1024


def status(env: dict[str, str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "s3po_client.cli", "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def all_settled(env: dict[str, str]) -> bool:
    data = status(env)
    return (data["pending"], data["processing"], data["delayed"], data["dead"]) == (0, 0, 0, 0)


def keys_in(s3, bucket: str) -> set[str]:
    found: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        found.update(o["Key"] for o in page.get("Contents", []))
    return found


def test_sigkill_in_the_middle_of_a_large_upload_then_another_daemon_finishes_it(
    redis_server, redis_client, s3, bucket, start_daemon, fault_proxy, daemon_env, tmp_path: Path
) -> None:
    # 64 MiB: a multipart upload with the engine's 16 MiB threshold (a single PUT before it).
    big = tmp_path / "big.bin"
    with open(big, "wb") as out:
        for _ in range(64):
            out.write(os.urandom(MiB))
    digest = hashlib.md5(big.read_bytes()).hexdigest()
    slow = fault_proxy.add_rule("delay", method="PUT", delay_s=1.0, times=None)
    job_id = enqueue(bucket, "big.bin", big, redis_url=redis_server.url)

    first = start_daemon("--heartbeat-timeout", "2", env={"S3POD_ENDPOINT_URL": fault_proxy.url})
    wait_until(lambda: slow.hits >= 1, message="the upload to be under way")
    data = status(daemon_env)
    [(killed_worker, held)] = data["processing_by_worker"].items()
    assert (data["pending"], data["processing"], held) == (0, 1, 1)
    first.signal(signal.SIGKILL)
    assert first.wait(10) == -signal.SIGKILL
    assert big.exists()
    assert status(daemon_env)["processing_by_worker"] == {killed_worker: 1}, "the job waits in the dead worker's list"

    fault_proxy.clear()
    second = start_daemon("--heartbeat-timeout", "2", env={"S3POD_ENDPOINT_URL": fault_proxy.url})
    wait_until(
        lambda: not big.exists() and all_settled(daemon_env),
        timeout_s=60,
        message="the second daemon to reap the job and finish it",
    )
    body = s3.get_object(Bucket=bucket, Key="big.bin")["Body"].read()
    assert hashlib.md5(body).hexdigest() == digest
    assert f"reaped worker {killed_worker}" in second.log
    deletions = (first.log + second.log).count(f"deleted job={job_id}")
    assert deletions == 1, "the file is deleted once"
    assert status(daemon_env)["processing_by_worker"] == {}
    # It stays listed, silent, for an hour (a paused worker that wakes up is still found).
    assert status(daemon_env)["workers"][killed_worker]["heartbeat_age_s"] >= 2


def test_two_daemons_drain_500_jobs_with_none_lost_or_left_behind(
    redis_server, redis_client, s3, bucket, start_daemon, daemon_env, tmp_path: Path
) -> None:
    files = []
    for i in range(500):
        f = tmp_path / f"f{i:03d}.txt"
        f.write_text(f"file {i}\n")
        files.append(f)
    enqueue_many([{"bucket": bucket, "key": f.name, "path": f} for f in files], redis_url=redis_server.url)
    assert status(daemon_env)["pending"] == 500
    daemons = [start_daemon("--concurrency", "4") for _ in range(2)]
    wait_until(
        lambda: not any(f.exists() for f in files) and all_settled(daemon_env),
        timeout_s=120,
        interval_s=0.25,
        message="500 uploads",
    )
    assert keys_in(s3, bucket) == {f.name for f in files}
    for daemon in daemons:
        assert "uploaded job=" in daemon.log, "both daemons shared the work"
    assert sum(d.log.count("deleted job=") for d in daemons) == 500
    assert len(status(daemon_env)["workers"]) == 2


def test_sigkill_with_a_batch_claimed_loses_nothing_and_deletes_each_file_once(
    redis_server, redis_client, s3, bucket, start_daemon, fault_proxy, daemon_env, tmp_path: Path
) -> None:
    """A thread claims several jobs in one step; killed then, every one of them is reaped and done once."""
    files = []
    for i in range(24):
        f = tmp_path / f"b{i:02d}.txt"
        f.write_text(f"batch file {i}\n")
        files.append(f)
    # The batch's first two PUTs get through, the third hangs: the kill comes with part of
    # the batch uploaded (not yet settled: a batch settles together) and part not started.
    hang = fault_proxy.add_rule("delay", method="PUT", path=r"/b(0[2-9]|[12]\d)\.txt$", delay_s=30.0, times=None)
    ids = enqueue_many([{"bucket": bucket, "key": f.name, "path": f} for f in files], redis_url=redis_server.url)
    first = start_daemon(
        "--concurrency",
        "1",
        "--claim-batch",
        "8",
        "--heartbeat-timeout",
        "2",
        env={"S3POD_ENDPOINT_URL": fault_proxy.url},
    )
    wait_until(lambda: hang.hits >= 1, message="the batch's third upload under way")
    data = status(daemon_env)
    [(killed_worker, held)] = data["processing_by_worker"].items()
    assert (held, data["pending"]) == (8, 24 - 8), "one claim took 8 jobs"
    assert keys_in(s3, bucket) == {"b00.txt", "b01.txt"} and all(f.exists() for f in files)
    first.signal(signal.SIGKILL)
    assert first.wait(10) == -signal.SIGKILL

    fault_proxy.clear()
    second = start_daemon("--heartbeat-timeout", "2", env={"S3POD_ENDPOINT_URL": fault_proxy.url})
    wait_until(
        lambda: not any(f.exists() for f in files) and all_settled(daemon_env),
        timeout_s=60,
        message="the second daemon to reap the batch and finish every job",
    )
    assert f"reaped worker {killed_worker}" in second.log
    assert keys_in(s3, bucket) == {f.name for f in files}
    for f in files:
        assert s3.get_object(Bucket=bucket, Key=f.name)["Body"].read() == f"batch file {files.index(f)}\n".encode()
    both = first.log + second.log
    assert [both.count(f"deleted job={job_id}") for job_id in ids] == [1] * 24, "each file deleted once"
    markers = redis_client.keys("s3po:stored:*")
    assert len(markers) == 24 and all(redis_client.ttl(m) > 0 for m in markers), "one marker a job, left to expire"
