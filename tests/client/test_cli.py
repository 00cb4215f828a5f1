"""The ``s3po`` command, run as a subprocess like a person or script would."""

from __future__ import annotations

import json
import subprocess
import sys

from s3po_client.keys import QueueKeys


def s3po(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "s3po_client.cli", *args], capture_output=True, text=True, env=env)


def test_status_json_counts_each_state(redis_client, daemon_env) -> None:
    keys = QueueKeys("s3po")
    redis_client.zadd(keys.workers, {"host-1": 1})  # a worker beats before it claims
    redis_client.lpush(keys.queue, "a", "b", "c")
    redis_client.lpush(keys.processing("host-1"), "d")
    redis_client.zadd(keys.delayed, {"e": 1, "f": 2})
    redis_client.lpush(keys.dead, "g")
    out = s3po("status", "--json", env=daemon_env)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert (data["pending"], data["processing"], data["delayed"], data["dead"]) == (3, 1, 2, 1)


def test_status_text_and_prefix(redis_client, daemon_env) -> None:
    redis_client.lpush("other:queue", "a")
    out = s3po("status", "--prefix", "other", env=daemon_env)
    assert out.returncode == 0, out.stderr
    assert "pending     1" in out.stdout


def test_status_unreachable_redis_is_one_clear_line(daemon_env) -> None:
    env = {**daemon_env, "S3PO_REDIS_URL": "redis://:hunter2@127.0.0.1:1/0"}
    out = s3po("status", env=env)
    assert out.returncode == 1
    assert "cannot reach Redis" in out.stderr and "hunter2" not in out.stderr


def test_dead_list_retry_and_purge_against_a_real_daemon(
    redis_server, redis_client, s3, daemon_env, start_daemon, tmp_path
) -> None:
    import uuid

    from conftest import wait_until

    from s3po_client import enqueue

    late_bucket = f"t-late-{uuid.uuid4().hex[:12]}"
    f = tmp_path / "late.txt"
    f.write_text("waited for its bucket")
    job_id = enqueue(late_bucket, "late.txt", f, retries=0, redis_url=redis_server.url)
    redis_client.lpush("s3po:queue", b"{broken")
    start_daemon()
    wait_until(lambda: redis_client.llen("s3po:dead") == 2, message="two dead jobs")

    listed = s3po("dead", "list", "--json", env=daemon_env)
    assert listed.returncode == 0, listed.stderr
    entries = {e["id"]: e for e in json.loads(listed.stdout)}
    assert set(entries) == {job_id, None}
    assert "NoSuchBucket" in entries[job_id]["error"] and entries[job_id]["bucket"] == late_bucket
    text = s3po("dead", "list", env=daemon_env).stdout
    assert job_id in text and f"s3://{late_bucket}/late.txt" in text and "(invalid job)" in text

    missing = s3po("dead", "retry", "no-such-id", env=daemon_env)
    assert missing.returncode == 1 and "no-such-id" in missing.stderr
    assert s3po("dead", "retry", env=daemon_env).returncode == 2, "ids or --all are required"

    s3.create_bucket(Bucket=late_bucket)
    retried = s3po("dead", "retry", "--all", env=daemon_env)
    assert retried.returncode == 0, retried.stderr
    assert "queued 1 job(s)" in retried.stdout and "not a valid job" in retried.stderr
    wait_until(lambda: not f.exists(), message="the retried job to land")
    assert s3.get_object(Bucket=late_bucket, Key="late.txt")["Body"].read() == b"waited for its bucket"

    refused = subprocess.run(
        [sys.executable, "-m", "s3po_client.cli", "dead", "purge"],
        input="n\n",
        capture_output=True,
        text=True,
        env=daemon_env,
    )
    assert refused.returncode == 1 and redis_client.llen("s3po:dead") == 1
    purged = s3po("dead", "purge", "--yes", env=daemon_env)
    assert purged.returncode == 0 and "purged 1" in purged.stdout
    assert redis_client.llen("s3po:dead") == 0


def test_status_text_lists_workers_with_their_last_heartbeat(redis_client, daemon_env) -> None:
    redis_client.zadd(QueueKeys("s3po").workers, {"host-7-abc": redis_client.time()[0] - 5})
    out = s3po("status", env=daemon_env)
    assert "workers     1" in out.stdout
    assert "host-7-abc  last heartbeat" in out.stdout
    data = json.loads(s3po("status", "--json", env=daemon_env).stdout)
    assert 4 <= data["workers"]["host-7-abc"]["heartbeat_age_s"] < 60


def test_ctrl_c_during_a_backoff_ends_the_upload_at_once(daemon_env, tmp_path) -> None:
    """The backoff before a retry is minutes long; Ctrl-C must not wait it out."""
    import re
    import signal
    import threading
    import time

    from servers import free_port

    path = tmp_path / "kept.txt"
    path.write_text("never stored")
    env = {
        **daemon_env,
        "S3PO_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens: every attempt fails
        "S3PO_ACCESS_ID": "id",
        "S3PO_SECRET_KEY": "secret",
        "S3PO_REGION": "us-east-1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "s3po_client.cli", "upload", str(path), "s3://bucket/key"]
        + ["--backoff-base", "600", "--retries", "5"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    lines: list[str] = []
    long_wait = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            found = re.search(r"retry .*in=([0-9.]+)s", line)
            if found and float(found.group(1)) >= 10:  # full jitter: a short wait is let pass
                long_wait.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert long_wait.wait(120), "no backoff announced:\n" + "".join(lines)
        time.sleep(0.3)  # inside the wait
        interrupted = time.monotonic()
        proc.send_signal(signal.SIGINT)
        status = proc.wait(timeout=60)
        took = time.monotonic() - interrupted
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(5)
    assert took < 3, f"Ctrl-C took {took:.1f}s to end the upload"
    assert status == 130, "".join(lines)
    assert "interrupted" in "".join(lines) and path.read_text() == "never stored"
