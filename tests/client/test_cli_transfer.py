"""``s3po upload``, ``download`` and ``enqueue`` on single files, as a person or a script runs them.

Every test runs the real command in a subprocess against the test Redis and S3 server.
Trees are in test_cli_tree.py; bars and Ctrl-C in test_cli_terminal.py.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from s3po_client import Job


@pytest.fixture
def cli_env(daemon_env: dict[str, str], s3_server) -> dict[str, str]:
    """The environment of an ``s3po`` run against the test servers (connection options as S3PO_* variables)."""
    return {
        **daemon_env,
        "S3PO_ENDPOINT_URL": s3_server.url,
        "S3PO_REGION": "us-east-1",
        "S3PO_ACCESS_ID": s3_server.access_key,
        "S3PO_SECRET_KEY": s3_server.secret_key,
    }


def s3po(
    *args: str, env: dict[str, str], stdin: bytes | None = None, cwd: Path | None = None, **popen: Any
) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m s3po_client.cli ARGS`` and return what it did (stdout/stderr as bytes)."""
    return subprocess.run(
        [sys.executable, "-m", "s3po_client.cli", *args],
        capture_output=True,
        env=env,
        input=stdin,
        cwd=cwd,
        timeout=180,
        **popen,
    )


def records(out: subprocess.CompletedProcess[bytes]) -> list[dict[str, Any]]:
    """The ``--json`` objects a run printed, one per line."""
    return [json.loads(line) for line in out.stdout.decode().splitlines()]


def err_lines(out: subprocess.CompletedProcess[bytes]) -> list[str]:
    return out.stderr.decode().strip().splitlines()


def test_upload_compressed_with_headers_deletes_the_file_then_download_decodes(
    cli_env, s3, bucket, tmp_path: Path
) -> None:
    src = tmp_path / "report.csv"
    data = b"day,count\n" + b"".join(b"%d,%d\n" % (i, i * 3) for i in range(50_000))
    src.write_bytes(data)
    out = s3po(
        "upload",
        str(src),
        f"s3://{bucket}/r/report.csv",
        "--compress",
        "gzip",
        "-H",
        "Cache-Control: max-age=60",
        "--header",
        "x-amz-meta-origin: cli",
        env=cli_env,
    )
    assert out.returncode == 0, out.stderr
    assert not src.exists(), "by default the file is deleted once its object is verified"
    head = s3.head_object(Bucket=bucket, Key="r/report.csv")
    assert head["ContentEncoding"] == "gzip" and head["CacheControl"] == "max-age=60"
    assert head["Metadata"] == {"origin": "cli"}
    stored = s3.get_object(Bucket=bucket, Key="r/report.csv")["Body"].read()
    assert gzip.decompress(stored) == data

    target = tmp_path / "back.csv"
    out = s3po("download", f"s3://{bucket}/r/report.csv", str(target), env=cli_env)
    assert out.returncode == 0, out.stderr
    assert target.read_bytes() == data
    out = s3po("download", "--raw", f"s3://{bucket}/r/report.csv", "-", env=cli_env)
    assert out.returncode == 0 and out.stdout == stored


def test_standard_input_to_an_object_and_back_to_standard_output(cli_env, s3, bucket) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    out = s3po("upload", "-", f"s3://{bucket}/piped.bin", "--compress", "zstd", env=cli_env, stdin=data)
    assert out.returncode == 0, out.stderr
    out = s3po("download", f"s3://{bucket}/piped.bin", "-", env=cli_env)
    assert out.returncode == 0, out.stderr
    assert out.stdout == data


@pytest.mark.parametrize(
    ("args", "env", "kept"),
    [
        ([], {}, False),
        (["--keep"], {}, True),
        ([], {"S3PO_KEEP": "1"}, True),
        (["--delete"], {"S3PO_KEEP": "1"}, False),  # the command line wins; --delete stays accepted
        (["--delete"], {}, False),
    ],
)
def test_upload_deletes_unless_kept(cli_env, s3, bucket, tmp_path, args, env, kept) -> None:
    f = tmp_path / "f.txt"
    f.write_text("payload")
    out = s3po("upload", *args, str(f), f"s3://{bucket}/f.txt", env={**cli_env, **env})
    assert out.returncode == 0, out.stderr
    assert s3.get_object(Bucket=bucket, Key="f.txt")["Body"].read() == b"payload"
    assert f.exists() == kept


@pytest.mark.parametrize(
    ("args", "env", "delete"),
    [
        ([], {}, True),
        (["--keep"], {}, False),
        ([], {"S3PO_KEEP": "1"}, False),
        (["--delete"], {"S3PO_KEEP": "1"}, True),
    ],
)
def test_enqueue_asks_s3pod_to_delete_unless_kept(cli_env, redis_client, tmp_path, args, env, delete) -> None:
    f = tmp_path / "q.log"
    f.write_text("queued")
    out = s3po("enqueue", *args, str(f), "s3://logs/app/q.log", env={**cli_env, **env})
    assert out.returncode == 0, out.stderr
    job = Job.from_json(redis_client.rpop("s3po:queue"))
    assert job.delete is delete and job.id == out.stdout.decode().strip()


def test_enqueue_prints_the_job_id_and_queues_it(cli_env, redis_client, tmp_path) -> None:
    f = tmp_path / "q.log"
    f.write_text("queued")
    out = s3po(
        "enqueue",
        str(f),
        "s3://logs/app/q.log",
        "--compress",
        "zstd",
        "--keep",
        "--retries",
        "5",
        "-H",
        "Content-Type: text/plain",
        env=cli_env,
    )
    assert out.returncode == 0, out.stderr
    job = Job.from_json(redis_client.rpop("s3po:queue"))
    assert job.id == out.stdout.decode().strip()
    assert (job.bucket, job.key, job.path, job.compress, job.delete, job.retries) == (
        "logs",
        "app/q.log",
        str(f),
        "zstd",
        False,
        5,
    )
    assert dict(job.headers) == {"Content-Type": "text/plain"}


def test_upload_json_names_every_field(cli_env, s3, bucket, tmp_path) -> None:
    plain, packed = tmp_path / "plain.bin", tmp_path / "packed.txt"
    plain.write_bytes(os.urandom(20_000))
    packed.write_bytes(b"compress me " * 10_000)
    sizes = {p.name: p.stat().st_size for p in (plain, packed)}
    out = s3po(
        "upload",
        "--json",
        "--compress",
        "gzip",
        str(plain),
        str(packed),
        f"s3://{bucket}/j/",
        env=cli_env,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    rows = {r["key"]: r for r in records(out)}
    assert set(rows) == {"j/plain.bin", "j/packed.txt"}
    for name in sizes:
        row = rows[f"j/{name}"]
        head = s3.head_object(Bucket=bucket, Key=f"j/{name}")
        assert set(row) == {
            "path",
            "bucket",
            "key",
            "bytes_read",
            "bytes_stored",
            "checksum",
            "status",
            "error",
            "deleted",
        }
        assert row["path"] == str(tmp_path / name)
        assert row["bucket"] == bucket and row["status"] == "uploaded" and row["error"] is None
        assert row["bytes_read"] == sizes[name]
        assert row["bytes_stored"] == head["ContentLength"]
        assert row["checksum"] == head["ETag"].strip('"')
        assert row["deleted"] is True and not (tmp_path / name).exists()
    assert rows["j/packed.txt"]["bytes_stored"] < rows["j/packed.txt"]["bytes_read"]


def test_download_json_names_every_field(cli_env, s3, bucket, tmp_path) -> None:
    s3.put_object(Bucket=bucket, Key="d/one.txt", Body=b"hello")
    out = s3po("download", "--json", f"s3://{bucket}/d/one.txt", str(tmp_path), env=cli_env)
    assert out.returncode == 0, out.stderr
    [row] = records(out)
    assert row == {
        "path": str(tmp_path / "one.txt"),
        "bucket": bucket,
        "key": "d/one.txt",
        "bytes_read": 5,
        "bytes_stored": 5,
        "checksum": s3.head_object(Bucket=bucket, Key="d/one.txt")["ETag"].strip('"'),
        "status": "downloaded",
        "error": None,
        "verified": "crc32",  # boto3 stores a CRC32
    }
    assert (tmp_path / "one.txt").read_bytes() == b"hello"


def test_missing_file_exits_2_in_one_line(cli_env, tmp_path) -> None:
    out = s3po("upload", str(tmp_path / "missing.txt"), "s3://b/k", env=cli_env)
    assert out.returncode == 2
    assert err_lines(out) == [
        f"s3po upload: error: path '{tmp_path / 'missing.txt'}' does not exist (see 's3po upload --help')"
    ]


def test_missing_bucket_exits_1_in_one_line_keeping_the_file(cli_env, tmp_path) -> None:
    f = tmp_path / "keep.txt"
    f.write_text("keep")
    out = s3po("upload", "--retries", "0", str(f), "s3://no-such-bucket-s3po/k", env=cli_env)
    assert out.returncode == 1
    [line] = err_lines(out)
    assert line.startswith("s3po: error: s3://no-such-bucket-s3po/k: NoSuchBucket")
    assert f.read_text() == "keep"
    out = s3po("download", "s3://no-such-bucket-s3po/k", str(tmp_path / "x"), env=cli_env)
    assert out.returncode == 1 and len(err_lines(out)) == 1 and not (tmp_path / "x").exists()


def test_missing_object_exits_1_and_writes_nothing(cli_env, bucket, tmp_path) -> None:
    out = s3po("download", f"s3://{bucket}/nothing-here", str(tmp_path / "x"), env=cli_env)
    assert out.returncode == 1
    [line] = err_lines(out)
    assert f"s3://{bucket}/nothing-here" in line
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "args",
    [
        ["upload", "x.txt", "not-an-s3-url"],
        ["upload", "x.txt", "s3:///k"],
        ["upload", "x.txt", "s3://bucket/k", "--header", "no colon here"],
        ["upload", "x.txt", "s3://bucket/k", "--header", "X-Unknown-Thing: 1"],
        ["upload", "x.txt", "s3://bucket/k", "--compress", "bzip2"],
        ["upload", "x.txt", "x.txt", "s3://bucket/k"],  # several files need a prefix
        ["download", "http://bucket/k"],
        ["download", "s3://bucket/prefix/", "-"],
        ["ls", "bucket"],
        ["enqueue", "x.txt", "bucket/k"],
        ["upload", "--jobs", "0", "x.txt", "s3://bucket/k"],
    ],
)
def test_bad_usage_exits_2_in_one_line_before_sending(cli_env, tmp_path, args) -> None:
    (tmp_path / "x.txt").write_text("x")
    out = s3po(*args, env=cli_env, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    [line] = err_lines(out)
    assert line.startswith(f"s3po {args[0]}: error: ") and line.endswith(f"(see 's3po {args[0]} --help')")
    assert (tmp_path / "x.txt").exists()


def test_debug_adds_log_lines_and_no_traceback_for_a_transfer_error(cli_env, tmp_path) -> None:
    f = tmp_path / "keep.txt"
    f.write_text("keep")
    quiet = s3po("upload", "--retries", "0", str(f), "s3://no-such-bucket-s3po/k", env=cli_env)
    loud = s3po("upload", "--debug", "--retries", "0", str(f), "s3://no-such-bucket-s3po/k", env=cli_env)
    assert quiet.returncode == loud.returncode == 1
    assert len(err_lines(quiet)) == 1 and len(err_lines(loud)) > 1
    assert b"Traceback" not in quiet.stderr and b"Traceback" in loud.stderr and b"DEBUG" in loud.stderr


def test_every_option_from_the_environment(cli_env, s3, bucket, tmp_path) -> None:
    f = tmp_path / "env.txt"
    f.write_text("set by the environment " * 100)
    env = {
        **cli_env,
        "S3PO_COMPRESS": "zstd",
        "S3PO_KEEP": "1",
        "S3PO_JSON": "1",
        "S3PO_RETRIES": "0",
        "S3PO_HEADER": "Cache-Control: max-age=5\nContent-Language: en",
    }
    out = s3po("upload", str(f), f"s3://{bucket}/env.txt", env=env)
    assert out.returncode == 0, out.stderr
    [row] = records(out)
    head = s3.head_object(Bucket=bucket, Key="env.txt")
    assert head["ContentEncoding"] == "zstd" and head["CacheControl"] == "max-age=5"
    assert head["ContentLanguage"] == "en" and row["deleted"] is False and f.exists()
    # an option of one command only: S3PO_<COMMAND>_<OPTION>
    out = s3po("download", f"s3://{bucket}/env.txt", "-", env={**cli_env, "S3PO_DOWNLOAD_RAW": "1"})
    assert out.returncode == 0 and out.stdout == s3.get_object(Bucket=bucket, Key="env.txt")["Body"].read()


@pytest.mark.parametrize("command", ["upload", "download", "ls", "enqueue", "status"])
def test_help_shows_examples_and_environment_variables(command) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "s3po_client.cli", command, "--help"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert f"Usage: s3po {command}" in out.stdout and "env var: S3PO_" in out.stdout
    if command != "status":
        assert "Examples:" in out.stdout and f"s3po {command} " in out.stdout.split("Examples:")[1]


def test_shell_completion_as_the_readme_shows_it(cli_env) -> None:
    script = s3po(env={**cli_env, "_S3PO_COMPLETE": "bash_source"})
    assert script.returncode == 0 and b"_s3po_completion" in script.stdout
    words = s3po(env={**cli_env, "_S3PO_COMPLETE": "bash_complete", "COMP_WORDS": "s3po up", "COMP_CWORD": "1"})
    assert b"upload" in words.stdout


def test_every_option_the_readme_names_exists() -> None:
    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    section = (root / "docs" / "cli.md").read_text() + readme[readme.index("### 3. The `s3po` command") :].split(
        "\n## "
    )[0]
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", section)) - {"--help"}
    helps = "".join(
        subprocess.run(
            [sys.executable, "-m", "s3po_client.cli", *cmd, "--help"], capture_output=True, text=True, timeout=60
        ).stdout
        for cmd in (
            ["upload"],
            ["download"],
            ["ls"],
            ["enqueue"],
            ["status"],
            ["dead", "list"],
            ["dead", "retry"],
            ["dead", "purge"],
        )
    )
    missing = {opt for opt in named if not re.search(rf"(?<![\w-]){re.escape(opt)}\b", helps)}
    assert named and not missing, missing
    variables = set(re.findall(r"(?<!_)S3PO_[A-Z_]+", section))
    assert variables and not {v for v in variables if v not in helps}
