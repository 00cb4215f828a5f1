"""Named destinations: a job's ``destination`` sends it to another store, configured in s3pod's
config file, against two real SeaweedFS servers; an unknown one is dead-lettered with the names known."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, wait_until
from servers import S3Server

from s3po_client import enqueue
from s3po_client.admin import list_dead
from s3po_client.errors import JobError
from s3po_client.job import Job


@pytest.fixture(scope="module")
def backup_server() -> Iterator[S3Server]:
    """A second store, with keys of its own: only the ``backup`` profile's credentials open it."""
    server = S3Server(access_key="backup-user").start()
    yield server
    server.close()


@pytest.fixture
def backup(backup_server: S3Server, tmp_path: Path) -> tuple[Any, str, Path]:
    """The second store's client, a bucket on it, and a config file naming it ``backup``."""
    client = backup_server.client()
    bucket = f"backup-{tmp_path.name[-12:].lower().replace('_', '-')}"
    client.create_bucket(Bucket=bucket)
    credentials = tmp_path / "credentials"
    credentials.write_text(
        f"[backup]\naws_access_key_id = {backup_server.access_key}\n"
        f"aws_secret_access_key = {backup_server.secret_key}\n"
    )
    config = tmp_path / "s3pod.toml"
    config.write_text(
        f'allow-dir = ["{tmp_path}"]\n\n[destinations.backup]\nendpoint-url = "{backup_server.url}"\n'
        'profile = "backup"\nheaders = { "x-amz-meta-copy" = "backup" }\n'
    )
    return client, bucket, config


def test_a_job_naming_a_destination_goes_to_its_store(
    s3: Any, bucket: str, backup: tuple[Any, str, Path], redis_server: Any, start_daemon: Any, tmp_path: Path
) -> None:
    backup_s3, backup_bucket, config = backup
    env = {"AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials")}
    start_daemon("--config", str(config), env=env)
    (tmp_path / "a.txt").write_text("to the backup")
    (tmp_path / "b.txt").write_text("to the default store")
    enqueue(backup_bucket, "a.txt", tmp_path / "a.txt", destination="backup", redis_url=redis_server.url)
    enqueue(bucket, "b.txt", tmp_path / "b.txt", redis_url=redis_server.url)
    wait_until(lambda: not (tmp_path / "a.txt").exists() and not (tmp_path / "b.txt").exists(), message="uploads")
    stored = backup_s3.get_object(Bucket=backup_bucket, Key="a.txt")
    assert stored["Body"].read() == b"to the backup"
    assert stored["Metadata"] == {"copy": "backup"}  # the destination's default headers
    assert s3.get_object(Bucket=bucket, Key="b.txt")["Body"].read() == b"to the default store"
    assert "Contents" not in backup_s3.list_objects_v2(Bucket=backup_bucket, Prefix="b.txt")


def test_s3po_enqueue_names_a_destination_and_an_unknown_one_is_dead_lettered(
    backup: tuple[Any, str, Path], redis_client: Any, redis_server: Any, start_daemon: Any, tmp_path: Path
) -> None:
    _, backup_bucket, config = backup
    start_daemon("--config", str(config), env={"AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials")})
    (tmp_path / "c.txt").write_text("nowhere to go")
    out = subprocess.run(
        [sys.executable, "-m", "s3po_client.cli", "enqueue", str(tmp_path / "c.txt"), f"s3://{backup_bucket}/c.txt"]
        + ["--destination", "archive", "--json"],
        env={"S3PO_REDIS_URL": redis_server.url, "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    wait_until(lambda: list_dead(redis_client), message="the dead letter")
    [entry] = list_dead(redis_client)
    assert entry.error == "unknown destination 'archive' (known: backup)"
    assert json.loads(entry.job_text)["destination"] == "archive"
    assert (tmp_path / "c.txt").exists()


def test_the_destination_field_is_left_out_when_unset_and_checked_when_set() -> None:
    job = Job(bucket="b", key="k", path="/tmp/f")
    assert "destination" not in json.loads(job.to_json())  # an older s3pod still takes it
    named = Job(bucket="b", key="k", path="/tmp/f", destination="backup")
    assert Job.from_json(named.to_json()) == named
    with pytest.raises(JobError, match="field 'destination'"):
        Job(bucket="b", key="k", path="/tmp/f", destination="../etc")


def test_a_secret_in_a_destination_is_refused_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "s3pod.toml"
    config.write_text('prefix = "s3po"\n[destinations.backup]\nregion = "eu-west-1"\nsecret-key = "abc123"\n')
    out = subprocess.run(
        [sys.executable, "-m", "s3pod", "--config", str(config), "--check-config"],
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert out.stderr == (
        f"s3pod: {config}, line 2: [destinations.backup] secret-key: no secret in the config file "
        "(it may be world-readable); name a profile, or set the credentials in the environment file\n"
    )
