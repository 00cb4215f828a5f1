"""Named destinations: a job's ``destination`` sends it to another store, configured in s3pod's
config file, against two real SeaweedFS servers; an unknown one is dead-lettered with the names known."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, wait_until
from servers import S3Server, free_port

from s3po_client import enqueue
from s3po_client.admin import list_dead
from s3po_client.destinations import Destination
from s3po_client.errors import ConfigError, JobError
from s3po_client.job import Job
from s3po_client.settings import MiB, TransferSettings
from s3po_client.transfer import TransferEngine
from s3pod.budget import MemoryBudget
from s3pod.destinations import Destinations


def http(method: str, url: str, body: object | None = None) -> tuple[int, bytes]:
    """Return the status and body of one HTTP request (0 when nothing listens yet)."""
    request = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(), method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except urllib.error.URLError:
        return 0, b""


def run(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m argv…`` (s3pod or s3po_client.cli) with this checkout and ``env`` only."""
    return subprocess.run(
        [sys.executable, "-m", *argv],
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


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
        'profile = "backup"\nheaders = { "x-amz-meta-copy" = "backup" }\nmemory-share = 0.5\n'
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
    out = run(
        "s3po_client.cli",
        "enqueue",
        str(tmp_path / "c.txt"),
        f"s3://{backup_bucket}/c.txt",
        "--destination",
        "archive",
        "--json",
        S3PO_REDIS_URL=redis_server.url,
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
    out = run("s3pod", "--config", str(config), "--check-config")
    assert out.returncode == 2
    assert out.stderr == (
        f"s3pod: {config}, line 2: [destinations.backup] secret-key: no secret in the config file "
        "(it may be world-readable); name a profile, or set the credentials in the environment file\n"
    )


def test_a_destination_sets_its_addressing_style_in_its_engines_botocore_config(s3_settings: Any) -> None:
    virtual = Destination.from_table("virtual", {"addressing-style": "virtual", "region": "eu-west-1"})
    routes = Destinations(TransferEngine(s3_settings), (virtual, Destination(name="plain")))
    try:
        style = {
            name: routes.engine_for(Job(bucket="b", key="k", path="/f", destination=name)).client.meta.config.s3[
                "addressing_style"
            ]
            for name in ("virtual", "plain")
        }
        default = routes.engine_for(Job(bucket="b", key="k", path="/f")).client.meta.config.s3["addressing_style"]
    finally:
        routes.close()
        routes.default.close()
    assert style == {"virtual": "virtual", "plain": "path"}  # path: the default with an endpoint URL
    assert default == "path"
    with pytest.raises(ConfigError, match="addressing style must be one of path, virtual, auto, got 'dns'"):
        Destination.from_table("x", {"addressing_style": "dns"})


def test_a_destinations_jobs_wait_for_its_memory_share_while_another_destinations_start(s3_settings: Any) -> None:
    whole = MemoryBudget(64 * MiB, TransferSettings())
    backup = Destination.from_table("backup", {"memory-share": 0.25})  # 16 MiB of the 64
    routes = Destinations(TransferEngine(s3_settings), (backup, Destination(name="other")))
    stop = threading.Event()
    to_backup = Job(bucket="b", key="k", path="/f", destination="backup")
    to_other = Job(bucket="b", key="k", path="/f", destination="other")
    first = routes.budget_for(to_backup, whole).reserve(12 * MiB, stop)  # a 12 MiB single PUT holds 12 MiB
    assert first is not None and whole.in_use_bytes == 12 * MiB
    second: list[Any] = []
    waiting = threading.Thread(
        target=lambda: second.append(routes.budget_for(to_backup, whole).reserve(12 * MiB, stop))
    )
    waiting.start()
    waiting.join(0.5)
    assert waiting.is_alive(), "a second backup job fitted in the whole budget, past its destination's share"
    others = [routes.budget_for(job, whole).reserve(12 * MiB, stop) for job in (to_other, to_other, to_other)]
    assert all(r is not None for r in others) and whole.in_use_bytes == 48 * MiB  # the others' jobs still start
    first.release()
    waiting.join(5)
    assert not waiting.is_alive() and second[0] is not None
    assert whole.in_use_bytes == 48 * MiB and routes.budget_for(to_backup, whole).in_use_bytes == 12 * MiB
    for reservation in (*others, second[0]):
        reservation.release()
    assert whole.in_use_bytes == 0
    routes.default.close()
    with pytest.raises(ConfigError, match="memory-share: expected a fraction above 0, at most 1"):
        Destination.from_table("x", {"memory-share": 2})


def test_s3po_upload_goes_through_a_destination_of_the_same_config_file(
    backup: tuple[Any, str, Path], tmp_path: Path
) -> None:
    backup_s3, backup_bucket, config = backup
    (tmp_path / "now.txt").write_text("sent now, to the backup")
    credentials = str(tmp_path / "credentials")

    def s3po_upload(*args: str) -> subprocess.CompletedProcess[str]:
        return run("s3po_client.cli", "upload", *args, AWS_SHARED_CREDENTIALS_FILE=credentials, S3PO_CONFIG=str(config))

    out = s3po_upload("--destination", "backup", str(tmp_path / "now.txt"), f"s3://{backup_bucket}/")
    assert out.returncode == 0, out.stderr
    stored = backup_s3.get_object(Bucket=backup_bucket, Key="now.txt")
    assert stored["Body"].read() == b"sent now, to the backup"
    assert stored["Metadata"] == {"copy": "backup"}
    assert not (tmp_path / "now.txt").exists()
    (tmp_path / "later.txt").write_text("x")
    out = s3po_upload("--destination", "archive", str(tmp_path / "later.txt"), f"s3://{backup_bucket}/")
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        f"s3po upload: error: unknown destination 'archive' in {config} (known: backup) (see 's3po upload --help')"
    ]


def test_s3po_download_fetches_through_a_destination_of_the_same_config_file(
    backup: tuple[Any, str, Path], tmp_path: Path
) -> None:
    backup_s3, backup_bucket, config = backup
    backup_s3.put_object(Bucket=backup_bucket, Key="kept.txt", Body=b"only the backup store has this")
    credentials = str(tmp_path / "credentials")

    def s3po_download(*args: str) -> subprocess.CompletedProcess[str]:
        return run(
            "s3po_client.cli", "download", "--config", str(config), *args, AWS_SHARED_CREDENTIALS_FILE=credentials
        )

    out = s3po_download("--destination", "backup", f"s3://{backup_bucket}/kept.txt", str(tmp_path / "got.txt"))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "got.txt").read_bytes() == b"only the backup store has this"
    out = s3po_download("--destination", "archive", f"s3://{backup_bucket}/kept.txt", str(tmp_path / "no.txt"))
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        f"s3po download: error: unknown destination 'archive' in {config} (known: backup) (see 's3po download --help')"
    ]
    assert not (tmp_path / "no.txt").exists()


def test_a_destinations_own_limit_is_in_the_metrics_and_the_api_which_changes_it(
    backup_server: S3Server, backup: tuple[Any, str, Path], redis_server: Any, start_daemon: Any, tmp_path: Path
) -> None:
    backup_s3, backup_bucket, _ = backup
    api, metrics = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    config = tmp_path / "limited.toml"
    config.write_text(
        f'allow-dir = ["{tmp_path}"]\napi-listen = "{api}"\nmetrics-listen = "{metrics}"\nbwlimit = "8M"\n\n'
        f'[destinations.backup]\nendpoint-url = "{backup_server.url}"\nprofile = "backup"\nbwlimit = "1M:off"\n'
    )
    start_daemon("--config", str(config), env={"AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials")})

    def scrape() -> dict[str, float]:
        status, body = http("GET", f"http://{metrics}/metrics")
        return dict(
            (line.rsplit(" ", 1)[0], float(line.rsplit(" ", 1)[1]))
            for line in body.decode().splitlines()
            if status == 200 and line.startswith("s3pod_")
        )

    wait_until(lambda: http("GET", f"http://{api}/v1/bwlimit")[0] == 200, message="the API")
    (tmp_path / "d.bin").write_bytes(b"d" * 300_000)
    enqueue(backup_bucket, "d.bin", tmp_path / "d.bin", destination="backup", redis_url=redis_server.url)
    wait_until(lambda: not (tmp_path / "d.bin").exists(), message="the upload")
    assert backup_s3.get_object(Bucket=backup_bucket, Key="d.bin")["ContentLength"] == 300_000
    got = scrape()
    assert got['s3pod_bwlimit_bytes_per_second{direction="up"}'] == 8 * 1024 * 1024
    assert got['s3pod_destination_bwlimit_bytes_per_second{destination="backup",direction="up"}'] == 1024 * 1024
    assert got['s3pod_destination_bwlimit_bytes_per_second{destination="backup",direction="down"}'] == 0
    assert got['s3pod_destination_transferred_bytes_total{destination="backup",direction="up"}'] >= 300_000
    shown = json.loads(http("GET", f"http://{api}/v1/bwlimit")[1])
    assert shown["bwlimit"] == "8M" and shown["destinations"]["backup"]["bwlimit"] == "1M:off"
    status, body = http("PUT", f"http://{api}/v1/bwlimit", {"rate": "3M", "destination": "backup"})
    assert status == 200 and json.loads(body)["destinations"]["backup"]["rate"] == "3M"
    assert json.loads(body)["bwlimit"] == "8M", "the process's limit is left alone"
    assert scrape()['s3pod_destination_bwlimit_bytes_per_second{destination="backup",direction="up"}'] == 3 * 1024**2
    status, body = http("PUT", f"http://{api}/v1/bwlimit", {"rate": "3M", "destination": "archive"})
    assert status == 400
    assert json.loads(body)["error"] == "no destination 'archive' with a limit of its own (known: backup)"


def test_a_watch_table_sends_its_files_through_a_destination_with_its_headers(
    backup: tuple[Any, str, Path], start_daemon: Any, tmp_path: Path
) -> None:
    backup_s3, backup_bucket, config = backup
    spool = tmp_path / "outbox"
    spool.mkdir()
    config.write_text(
        config.read_text() + f'\n[[watch]]\ndir = "{spool}"\nto = "s3://{backup_bucket}/in"\ndestination = "backup"\n'
        'headers = { "Cache-Control" = "max-age=60" }\n'
    )
    start_daemon("--config", str(config), env={"AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials")})
    (spool / "r.txt").write_text("watched, to the backup")
    wait_until(lambda: not (spool / "r.txt").exists(), message="the upload")
    stored = backup_s3.get_object(Bucket=backup_bucket, Key="in/r.txt")
    assert stored["Body"].read() == b"watched, to the backup"
    assert stored["CacheControl"] == "max-age=60" and stored["Metadata"] == {"copy": "backup"}


def test_a_watch_naming_an_unknown_destination_stops_the_start_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "s3pod.toml"
    config.write_text(
        f'[destinations.backup]\nregion = "eu-west-1"\n\n[[watch]]\ndir = "{tmp_path}"\nto = "s3://b/p"\n'
        'destination = "archive"\n'
    )
    out = run("s3pod", "--config", str(config), "--check-config")
    assert out.returncode == 2
    assert out.stderr == (
        f"s3pod: {config}, line 7: [[watch]] destination: no [destinations.archive] (known: backup)\n"
    )
