"""enqueue → s3pod (a real subprocess) → S3, against the real Redis and S3 servers."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from conftest import wait_until

from s3po_client import enqueue
from s3po_client.admin import count_jobs


def object_bytes(s3, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def object_exists(s3, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except Exception:  # noqa: BLE001 - 404
        return False


def settled(redis_client) -> bool:
    c = count_jobs(redis_client)
    return c.pending == 0 and c.processing == 0


def test_three_files_land_and_only_the_right_ones_are_deleted(
    redis_server, redis_client, s3, bucket, start_daemon, tmp_path: Path
) -> None:
    plain, kept, dressed = (tmp_path / n for n in ("plain.bin", "kept.txt", "page.html"))
    plain.write_bytes(bytes(range(256)) * 40)
    kept.write_text("keep me\n")
    dressed.write_text("<h1>hi</h1>")
    enqueue(bucket, "a/plain.bin", plain, redis_url=redis_server.url)
    enqueue(bucket, "a/kept.txt", kept, delete=False, redis_url=redis_server.url)
    enqueue(
        bucket,
        "a/page.html",
        dressed,
        redis_url=redis_server.url,
        headers={
            "Content-Type": "text/html; charset=utf-8",
            "Cache-Control": "max-age=60",
            "Content-Disposition": 'attachment; filename="page.html"',
            "Content-Language": "en",
        },
    )
    daemon = start_daemon()
    wait_until(
        lambda: (
            not plain.exists()
            and not dressed.exists()
            and object_exists(s3, bucket, "a/kept.txt")
            and settled(redis_client)
        ),
        message="all three jobs to be done",
    )

    assert object_bytes(s3, bucket, "a/plain.bin") == bytes(range(256)) * 40
    assert object_bytes(s3, bucket, "a/kept.txt") == b"keep me\n"
    assert object_bytes(s3, bucket, "a/page.html") == b"<h1>hi</h1>"
    head = s3.head_object(Bucket=bucket, Key="a/page.html")
    assert head["ContentType"] == "text/html; charset=utf-8"
    assert head["CacheControl"] == "max-age=60"
    assert head["ContentDisposition"] == 'attachment; filename="page.html"'
    assert head["ContentLanguage"] == "en"
    assert kept.read_text() == "keep me\n"
    assert redis_client.llen("s3po:dead") == 0
    assert daemon.proc.poll() is None


def test_raw_lpush_from_any_language_is_processed(redis_client, s3, bucket, start_daemon, tmp_path) -> None:
    f = tmp_path / "from-shell.txt"
    f.write_text("pushed by hand")
    # What a shell script would do: redis-cli LPUSH s3po:queue '{...}'
    redis_client.lpush("s3po:queue", json.dumps({"bucket": bucket, "key": "hand.txt", "path": str(f)}))
    start_daemon()
    wait_until(lambda: not f.exists() and settled(redis_client), message="the hand-written job")
    assert object_bytes(s3, bucket, "hand.txt") == b"pushed by hand"


def test_malformed_job_is_dead_lettered_and_the_next_one_runs(redis_client, s3, bucket, start_daemon, tmp_path) -> None:
    f = tmp_path / "good.txt"
    f.write_text("good")
    garbage = b'{"bucket": "x", "key": oops not json'
    typo = json.dumps({"bucket": bucket, "key": "t", "path": str(f), "compres": "gzip"})
    redis_client.lpush("s3po:queue", garbage, typo, json.dumps({"bucket": bucket, "key": "good.txt", "path": str(f)}))
    daemon = start_daemon("--concurrency", "1")
    wait_until(
        lambda: redis_client.llen("s3po:dead") == 2 and not f.exists() and settled(redis_client),
        message="two dead jobs and one upload",
    )
    entries = [json.loads(e) for e in redis_client.lrange("s3po:dead", 0, -1)]
    by_job = {e["job"].encode(): e for e in entries}
    assert set(by_job) == {garbage, typo.encode()}, "dead entries keep the job exactly as pushed"
    assert "not valid JSON" in by_job[garbage]["error"]
    assert "unknown field 'compres'" in by_job[typo.encode()]["error"]
    assert all({"job", "error", "attempts", "failed_at", "worker"} <= set(e) for e in entries)
    assert object_bytes(s3, bucket, "good.txt") == b"good"
    assert daemon.proc.poll() is None, "the daemon keeps running after bad input"


def test_failed_upload_is_dead_lettered_with_its_file_kept(
    redis_server, redis_client, s3, bucket, start_daemon, tmp_path
) -> None:
    f = tmp_path / "orphan.txt"
    f.write_text("still here")
    enqueue("no-such-bucket-s3po", "k", f, retries=1, redis_url=redis_server.url)
    start_daemon()
    wait_until(lambda: redis_client.llen("s3po:dead") == 1 and settled(redis_client), message="a dead job")
    entry = json.loads(redis_client.lindex("s3po:dead", 0))
    assert "NoSuchBucket" in entry["error"] and "no-such-bucket-s3po" in entry["error"]
    assert f.read_text() == "still here"


def test_missing_file_is_dead_lettered_naming_the_path(redis_client, s3, bucket, start_daemon, tmp_path) -> None:
    gone = tmp_path / "gone.txt"
    redis_client.lpush("s3po:queue", json.dumps({"bucket": bucket, "key": "g", "path": str(gone)}))
    start_daemon()
    wait_until(lambda: redis_client.llen("s3po:dead") == 1, message="a dead job")
    assert str(gone) in json.loads(redis_client.lindex("s3po:dead", 0))["error"]


def test_sigterm_stops_cleanly_and_loses_nothing(
    redis_server, redis_client, s3, bucket, start_daemon, tmp_path
) -> None:
    files = []
    for i in range(20):
        f = tmp_path / f"f{i}.bin"
        f.write_bytes(b"x" * 200_000)
        files.append(f)
        enqueue(bucket, f"k{i}", f, redis_url=redis_server.url)
    daemon = start_daemon("--concurrency", "2")
    wait_until(lambda: sum(not f.exists() for f in files) >= 1, message="a first upload")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0
    counts = count_jobs(redis_client)
    assert counts.processing == 0, "nothing is left in a processing list"
    uploaded = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}
    for i, f in enumerate(files):
        # Every job is either stored (and its file gone) or still queued (and its file kept).
        assert (f"k{i}" in uploaded) == (not f.exists())
    assert counts.pending == sum(f.exists() for f in files)
    assert "stopped" in daemon.log


def test_version() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "s3pod", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "s3pod, version" in out.stdout


def test_more_job_threads_than_redis_py_pools_by_default_all_work(
    redis_server, redis_client, s3, bucket, start_daemon, tmp_path: Path
) -> None:
    """128 threads block on their claims at once: each needs a pooled connection (redis-py's default pool holds 100)."""
    daemon = start_daemon("--concurrency", "128", "--claim-batch", "1")
    wait_until(lambda: "worker=" in daemon.log, message="s3pod to start")
    files = [tmp_path / f"f{i:03d}.txt" for i in range(40)]
    for i, path in enumerate(files):
        path.write_text(f"file {i}\n")
    for path in files:
        enqueue(bucket, f"many/{path.name}", path, redis_url=redis_server.url)
    wait_until(lambda: settled(redis_client) and not any(p.exists() for p in files), message="all 40 jobs done")
    for i, path in enumerate(files):
        assert object_bytes(s3, bucket, f"many/{path.name}") == f"file {i}\n".encode()
    assert "Too many connections" not in daemon.log
    assert redis_client.llen("s3po:dead") == 0
    assert daemon.proc.poll() is None
