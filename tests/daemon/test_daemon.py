"""s3pod as a real subprocess: delayed retries, dead letters, file rules, changed files, stops."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from datetime import datetime

from conftest import wait_until

from s3po_client import enqueue
from s3po_client.admin import count_jobs


def status(env: dict[str, str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "s3po_client.cli", "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def counts(env: dict[str, str]) -> tuple[int, int, int, int]:
    data = status(env)
    return data["pending"], data["processing"], data["delayed"], data["dead"]


def object_bytes(s3, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def keys_in(s3, bucket: str) -> set[str]:
    found: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        found.update(o["Key"] for o in page.get("Contents", []))
    return found


def log_times(log: str, pattern: str) -> list[datetime]:
    """Return the timestamps of the log lines matching ``pattern``."""
    stamps = []
    for line in log.splitlines():
        if re.search(pattern, line):
            stamps.append(datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f"))
    return stamps


def test_transient_failure_waits_its_backoff_in_the_delayed_set_then_lands(
    redis_server, redis_client, s3, bucket, start_daemon, fault_proxy, daemon_env, tmp_path
) -> None:
    f = tmp_path / "flaky.bin"
    f.write_bytes(os.urandom(50_000))
    data = f.read_bytes()
    # Every PUT of this key fails for a while; however many the engine retries inside one
    # attempt, the daemon sees failed attempts and schedules the next ones itself.
    rule = fault_proxy.add_rule("error", method="PUT", path="/flaky.bin", status=503, code="SlowDown", times=None)
    job_id = enqueue(bucket, "flaky.bin", f, retries=5, redis_url=redis_server.url)
    daemon = start_daemon("--backoff-base", "0.4", env={"S3POD_ENDPOINT_URL": fault_proxy.url})
    wait_until(lambda: counts(daemon_env) == (0, 0, 1, 0), message="the job waiting in the delayed set")
    wait_until(lambda: len(log_times(daemon.log, f"retry job={job_id}")) >= 2, message="two failed attempts")
    rule.times = rule.hits  # the store recovers
    wait_until(lambda: not f.exists(), message="the upload after the store recovered")
    assert object_bytes(s3, bucket, "flaky.bin") == data
    wait_until(lambda: counts(daemon_env) == (0, 0, 0, 0), message="nothing left anywhere")

    log = daemon.log
    retries = re.findall(rf"retry job={job_id} .*attempt=(\d+) in=([\d.]+)s", log)
    # Full jitter: the wait after attempt n is drawn between 0 and base × 2^n.
    assert [int(a) for a, _ in retries[:2]] == [1, 2]
    assert all(0 <= float(s) <= 0.4 * 2 ** (int(a) - 1) for a, s in retries), retries
    # Each new attempt is claimed no earlier than its due time (log stamps are to the ms).
    failed = log_times(log, f"retry job={job_id}")
    claimed = log_times(log, rf"claimed job={job_id} .*attempt=[1-9]")
    for (attempt, delay_s), t_fail, t_claim in zip(retries, failed, claimed):
        assert (t_claim - t_fail).total_seconds() >= float(delay_s) - 0.01, f"attempt {attempt} came early"
    assert redis_client.llen("s3po:dead") == 0


def test_permanent_failure_is_dead_lettered_at_once_with_its_file_intact(
    redis_server, redis_client, s3, bucket, start_daemon, fault_proxy, daemon_env, tmp_path
) -> None:
    f = tmp_path / "forbidden.txt"
    f.write_text("keep me")
    fault_proxy.add_rule("error", method="PUT", status=403, code="AccessDenied", times=None)
    job_id = enqueue(bucket, "forbidden.txt", f, retries=3, redis_url=redis_server.url)
    daemon = start_daemon(env={"S3POD_ENDPOINT_URL": fault_proxy.url})
    wait_until(lambda: counts(daemon_env) == (0, 0, 0, 1), message="one dead job")
    entry = json.loads(redis_client.lindex("s3po:dead", 0))
    assert json.loads(entry["job"])["id"] == job_id
    assert "AccessDenied" in entry["error"] and entry["attempts"] == 1
    assert entry["worker"] in status(daemon_env)["workers"]
    assert f.read_text() == "keep me"
    assert f"retry job={job_id}" not in daemon.log, "a permanent error is not retried"


def test_paths_outside_the_allowed_dirs_are_dead_lettered_and_untouched(
    redis_client, s3, bucket, start_daemon, daemon_env, tmp_path
) -> None:
    spool, elsewhere = tmp_path / "spool", tmp_path / "elsewhere"
    spool.mkdir()
    elsewhere.mkdir()
    secret = elsewhere / "secret.txt"
    secret.write_text("not yours")
    link = spool / "link.txt"
    link.symlink_to(secret)
    good = spool / "good.txt"
    good.write_text("fine")
    (spool / "sub").mkdir()
    bad_paths = {
        "outside": str(secret),
        "symlink": str(link),
        "dotdot": f"{spool}/../elsewhere/secret.txt",
        "directory": str(spool / "sub"),
    }
    for key, path in bad_paths.items():
        redis_client.lpush("s3po:queue", json.dumps({"bucket": bucket, "key": key, "path": path}))
    redis_client.lpush("s3po:queue", json.dumps({"bucket": bucket, "key": "good", "path": str(good)}))
    start_daemon("--allow-dir", str(spool))
    wait_until(lambda: counts(daemon_env) == (0, 0, 0, 4) and not good.exists(), message="4 dead, 1 uploaded")

    errors = {
        json.loads(json.loads(e)["job"])["key"]: json.loads(e)["error"] for e in redis_client.lrange("s3po:dead", 0, -1)
    }
    assert set(errors) == set(bad_paths)
    for key in ("outside", "symlink", "dotdot"):
        assert "outside the allowed directories" in errors[key]
    assert "not a regular file" in errors["directory"]
    assert secret.read_text() == "not yours" and link.is_symlink()
    assert keys_in(s3, bucket) == {"good"}


def test_no_allow_dir_warns_at_startup(redis_client, start_daemon) -> None:
    daemon = start_daemon()
    wait_until(lambda: "ready" in daemon.log, message="the daemon to be ready")
    assert "no --allow-dir given" in daemon.log


def test_a_file_that_changes_during_its_upload_is_kept_and_uploaded_again(
    redis_server, redis_client, s3, bucket, start_daemon, fault_proxy, daemon_env, tmp_path
) -> None:
    f = tmp_path / "growing.log"
    f.write_bytes(b"first line\n")
    slow = fault_proxy.add_rule("delay", method="PUT", path="/growing.log", delay_s=1.5, times=1)
    enqueue(bucket, "growing.log", f, redis_url=redis_server.url)
    daemon = start_daemon(env={"S3POD_ENDPOINT_URL": fault_proxy.url})
    wait_until(lambda: slow.hits == 1, message="the first PUT to reach the proxy")
    with open(f, "ab") as out:
        out.write(b"second line\n")
    wait_until(lambda: not f.exists() and counts(daemon_env) == (0, 0, 0, 0), message="the second upload")
    assert object_bytes(s3, bucket, "growing.log") == b"first line\nsecond line\n"
    assert "changed during the upload" in daemon.log


def test_sigterm_lets_jobs_in_flight_finish_and_leaves_the_rest_queued(
    redis_server, redis_client, s3, bucket, start_daemon, fault_proxy, daemon_env, tmp_path
) -> None:
    files = [tmp_path / f"f{i}.bin" for i in range(6)]
    for i, f in enumerate(files):
        f.write_bytes(os.urandom(10_000))
        enqueue(bucket, f"k{i}", f, redis_url=redis_server.url)
    slow = fault_proxy.add_rule("delay", method="PUT", delay_s=1.0, times=None)
    daemon = start_daemon("--concurrency", "2", env={"S3POD_ENDPOINT_URL": fault_proxy.url})
    wait_until(lambda: slow.hits >= 2, message="two uploads in flight")
    # Two in flight, five claimed: each thread claims its share of the queue in one round
    # trip (3 of 6, then 2 of the 3 left); the stop puts back the claimed ones not started.
    assert status(daemon_env)["processing"] == 5
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0
    pending, processing, delayed, dead = counts(daemon_env)
    uploaded = keys_in(s3, bucket)
    assert processing == 0 and delayed == 0 and dead == 0
    assert len(uploaded) >= 2, "the jobs in flight were finished"
    assert pending == 6 - len(uploaded)
    for i, f in enumerate(files):
        assert (f"k{i}" in uploaded) == (not f.exists())
    assert status(daemon_env)["workers"] == {}, "a stopped worker leaves the workers set"


def test_sigterm_past_the_shutdown_timeout_puts_jobs_in_flight_back(
    redis_server, redis_client, s3, bucket, start_daemon, fault_proxy, daemon_env, tmp_path
) -> None:
    files = [tmp_path / f"f{i}.bin" for i in range(4)]
    for i, f in enumerate(files):
        f.write_bytes(os.urandom(10_000))
        enqueue(bucket, f"k{i}", f, redis_url=redis_server.url)
    slow = fault_proxy.add_rule("delay", method="PUT", delay_s=5.0, times=None)
    first = start_daemon("--concurrency", "2", "--shutdown-timeout", "0.5", env={"S3POD_ENDPOINT_URL": fault_proxy.url})
    wait_until(lambda: slow.hits >= 2, message="two uploads in flight")
    first.signal(signal.SIGTERM)
    assert first.wait(30) == 0
    assert counts(daemon_env) == (4, 0, 0, 0), "both jobs in flight went back"
    assert all(f.exists() for f in files)
    # Two in flight and the one claimed with them (2 of 4, then 1 of the 2 left) but not started.
    assert "put 3 unfinished job(s) back" in first.log
    fault_proxy.clear()
    start_daemon()
    wait_until(
        lambda: not any(f.exists() for f in files) and counts(daemon_env) == (0, 0, 0, 0),
        message="a second daemon to finish all four",
    )
    assert keys_in(s3, bucket) == {f"k{i}" for i in range(4)}


def test_status_lists_a_running_worker_and_forgets_it_after_it_stops(redis_client, start_daemon, daemon_env) -> None:
    daemon = start_daemon("--heartbeat-timeout", "3")
    wait_until(lambda: status(daemon_env)["workers"], message="a heartbeat")
    [(worker, info)] = status(daemon_env)["workers"].items()
    assert str(daemon.proc.pid) in worker and info["heartbeat_age_s"] < 3
    daemon.signal(signal.SIGINT)
    assert daemon.wait(30) == 0
    assert status(daemon_env)["workers"] == {}
    assert count_jobs(redis_client).processing == 0


def test_a_job_stored_by_a_run_that_died_before_its_ack_is_not_dead_lettered(
    redis_client, s3, bucket, start_daemon, daemon_env, tmp_path
) -> None:
    from s3po_client import Job
    from s3po_client.keys import QueueKeys

    keys = QueueKeys("s3po")
    # What a daemon leaves when it dies between deleting the file and acknowledging the job
    # (a reaper then puts the job back): the stored marker, no file, the job queued again.
    stored = Job(bucket=bucket, key="stored-before", path=str(tmp_path / "deleted-already.txt"))
    redis_client.set(keys.stored(stored.id), "a-dead-worker", ex=600)
    # Without a marker, a missing file is still a dead job.
    missing = Job(bucket=bucket, key="never", path=str(tmp_path / "never-existed.txt"))
    fresh_file = tmp_path / "fresh.txt"
    fresh_file.write_text("fresh")
    fresh = Job(bucket=bucket, key="fresh", path=str(fresh_file))
    redis_client.lpush(keys.queue, stored.to_json(), missing.to_json(), fresh.to_json())

    daemon = start_daemon("--concurrency", "1")
    wait_until(lambda: counts(daemon_env) == (0, 0, 0, 1) and not fresh_file.exists(), message="three settled jobs")
    entry = json.loads(redis_client.lindex(keys.dead, 0))
    assert json.loads(entry["job"])["id"] == missing.id
    assert "already" in daemon.log and stored.id in daemon.log
    assert object_bytes(s3, bucket, "fresh") == b"fresh"
    assert all(redis_client.ttl(k) > 0 for k in redis_client.keys(keys.stored("*"))), "markers expire"


def test_a_raw_job_without_id_keeps_one_id_from_its_dead_letter_to_its_retry(
    redis_client, s3, bucket, start_daemon, daemon_env, tmp_path
) -> None:
    # The README's example for other languages: a plain LPUSH with no id.
    target = tmp_path / "late.txt"
    raw = json.dumps({"bucket": bucket, "key": "late.txt", "path": str(target)})
    redis_client.lpush("s3po:queue", raw)
    daemon = start_daemon("--concurrency", "1")
    wait_until(lambda: counts(daemon_env) == (0, 0, 0, 1), message="the job dead-lettered (no file yet)")
    listed = subprocess.run(
        [sys.executable, "-m", "s3po_client.cli", "dead", "list", "--json"],
        env=daemon_env,
        capture_output=True,
        text=True,
        check=True,
    )
    [entry] = json.loads(listed.stdout)
    job_id = entry["id"]
    assert (
        entry["id"]
        == json.loads(
            subprocess.run(
                [sys.executable, "-m", "s3po_client.cli", "dead", "list", "--json"],
                env=daemon_env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )[0]["id"]
    ), "the same id on every read"
    assert f"dead job={job_id}" in daemon.log
    target.write_text("arrived late")
    retried = subprocess.run(
        [sys.executable, "-m", "s3po_client.cli", "dead", "retry", job_id],
        env=daemon_env,
        capture_output=True,
        text=True,
    )
    assert retried.returncode == 0, retried.stderr
    wait_until(lambda: not target.exists() and counts(daemon_env) == (0, 0, 0, 0), message="the retried job stored")
    assert object_bytes(s3, bucket, "late.txt") == b"arrived late"
    assert f"uploaded job={job_id}" in daemon.log and f"deleted job={job_id}" in daemon.log


def test_a_large_file_in_a_batch_settles_the_jobs_before_it_and_returns_the_ones_after_it(
    redis_server, redis_client, s3, bucket, start_daemon, fault_proxy, daemon_env, tmp_path
) -> None:
    names = ["a.txt", "big.bin", "c.txt", "d.txt"]
    files = [tmp_path / n for n in names]
    for f in files:
        f.write_bytes(os.urandom(17 * 1024 * 1024) if f.name == "big.bin" else f.name.encode())
    for f in files:
        enqueue(bucket, f.name, f, redis_url=redis_server.url)
    slow = fault_proxy.add_rule("delay", method="PUT", path="/big.bin", delay_s=3.0, times=None)
    daemon = start_daemon("--concurrency", "1", "--claim-batch", "8", env={"S3POD_ENDPOINT_URL": fault_proxy.url})
    wait_until(lambda: slow.hits >= 1, message="the large file's upload under way")
    # One claim took all four; before the multipart upload, a.txt was settled and the two
    # after big.bin went back to the queue for anyone to take.
    assert not files[0].exists() and counts(daemon_env)[:2] == (2, 1)
    assert [json.loads(raw)["key"] for raw in redis_client.lrange("s3po:queue", 0, -1)] == ["d.txt", "c.txt"], (
        "c.txt is taken first, as before"
    )
    fault_proxy.clear()
    wait_until(
        lambda: not any(f.exists() for f in files) and counts(daemon_env) == (0, 0, 0, 0),
        timeout_s=60,
        message="every job done",
    )
    assert keys_in(s3, bucket) == set(names)
    assert all(daemon.log.count(f"key={n} ") >= 1 for n in names)
