"""``s3po upload``, ``s3po download`` and ``s3po enqueue`` as a person or a script runs them."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest

from s3po_client import Job


@pytest.fixture
def cli_env(daemon_env: dict[str, str], s3_server) -> dict[str, str]:
    return {**daemon_env, "S3PO_ENDPOINT_URL": s3_server.url, "S3PO_REGION": "us-east-1",
            "S3PO_ACCESS_ID": s3_server.access_key, "S3PO_SECRET_KEY": s3_server.secret_key}


def s3po(*args: str, env: dict[str, str], stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "s3po_client.cli", *args], capture_output=True, env=env,
                          input=stdin, timeout=120)


def test_upload_compressed_with_headers_then_download_decoded(cli_env, s3, bucket, tmp_path: Path) -> None:
    src = tmp_path / "report.csv"
    src.write_bytes(b"day,count\n" + b"".join(b"%d,%d\n" % (i, i * 3) for i in range(50_000)))
    out = s3po("upload", str(src), f"s3://{bucket}/r/report.csv", "--compress", "gzip",
               "-H", "Cache-Control: max-age=60", "--header", "x-amz-meta-origin: cli", env=cli_env)
    assert out.returncode == 0, out.stderr
    assert src.exists(), "without --delete the file is kept"
    head = s3.head_object(Bucket=bucket, Key="r/report.csv")
    assert head["ContentEncoding"] == "gzip" and head["CacheControl"] == "max-age=60"
    assert head["Metadata"] == {"origin": "cli"}
    stored = s3.get_object(Bucket=bucket, Key="r/report.csv")["Body"].read()
    assert gzip.decompress(stored) == src.read_bytes()

    target = tmp_path / "back.csv"
    out = s3po("download", f"s3://{bucket}/r/report.csv", str(target), env=cli_env)
    assert out.returncode == 0, out.stderr
    assert target.read_bytes() == src.read_bytes()
    out = s3po("download", "--raw", f"s3://{bucket}/r/report.csv", "-", env=cli_env)
    assert out.returncode == 0 and out.stdout == stored


def test_upload_from_stdin_and_delete(cli_env, s3, bucket, tmp_path) -> None:
    out = s3po("upload", "-", f"s3://{bucket}/piped.txt", env=cli_env, stdin=b"from a pipe\n")
    assert out.returncode == 0, out.stderr
    assert s3.get_object(Bucket=bucket, Key="piped.txt")["Body"].read() == b"from a pipe\n"
    f = tmp_path / "gone.txt"
    f.write_text("bye")
    out = s3po("upload", "--delete", str(f), f"s3://{bucket}/gone.txt", env=cli_env)
    assert out.returncode == 0, out.stderr
    assert not f.exists()


def test_failed_upload_is_one_line_and_exit_1_keeping_the_file(cli_env, tmp_path) -> None:
    f = tmp_path / "keep.txt"
    f.write_text("keep")
    out = s3po("upload", "--delete", "--retries", "0", str(f), "s3://no-such-bucket-s3po/k", env=cli_env)
    assert out.returncode == 1
    err = out.stderr.decode().strip()
    assert len(err.splitlines()) == 1 and "NoSuchBucket" in err and "no-such-bucket-s3po" in err
    assert f.read_text() == "keep"


@pytest.mark.parametrize("args", [
    ["upload", "x.txt", "not-an-s3-url"],
    ["upload", "x.txt", "s3://bucket/k", "--header", "no colon here"],
    ["upload", "x.txt", "s3://bucket/k", "--header", "X-Unknown-Thing: 1"],
    ["upload", "x.txt", "s3://bucket/k", "--compress", "bzip2"],
])
def test_bad_usage_exits_2_before_sending(cli_env, tmp_path, args) -> None:
    (tmp_path / "x.txt").write_text("x")
    out = subprocess.run([sys.executable, "-m", "s3po_client.cli", *args], capture_output=True, env=cli_env,
                         cwd=tmp_path, timeout=60)
    assert out.returncode == 2, out.stderr
    assert b"Error" in out.stderr


def test_enqueue_prints_the_job_id_and_queues_it(cli_env, redis_client, tmp_path) -> None:
    f = tmp_path / "q.log"
    f.write_text("queued")
    out = s3po("enqueue", str(f), "s3://logs/app/q.log", "--compress", "zstd", "--keep", "--retries", "5",
               "-H", "Content-Type: text/plain", env=cli_env)
    assert out.returncode == 0, out.stderr
    job = Job.from_json(redis_client.rpop("s3po:queue"))
    assert job.id == out.stdout.decode().strip()
    assert (job.bucket, job.key, job.path, job.compress, job.delete, job.retries) == (
        "logs", "app/q.log", str(f), "zstd", False, 5)
    assert dict(job.headers) == {"Content-Type": "text/plain"}


def test_enqueue_of_a_missing_file_is_a_usage_error(cli_env, redis_client, tmp_path) -> None:
    out = s3po("enqueue", str(tmp_path / "missing"), "s3://b/k", env=cli_env)
    assert out.returncode == 2 and b"does not exist" in out.stderr
    assert redis_client.llen("s3po:queue") == 0
