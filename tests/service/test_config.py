"""``s3pod --config FILE``: a TOML file sets the options, the command line and environment override
it, its errors are one line each, ``--check-config`` shows the settings with secrets redacted,
SIGHUP re-reads it, and its ``[[watch]]`` tables watch directories, against the real servers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from conftest import ROOT, wait_until
from servers import free_port
from test_service_cli import http

EXAMPLE = ROOT / "systemd" / "s3pod.toml.example"


def s3pod(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``s3pod`` to its end (``--check-config`` runs) in a clean environment plus ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("S3POD_", "S3PO_"))}
    clean["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "s3pod", *args],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def setting(output: str, name: str) -> str:
    """Return ``--check-config``'s line for ``name``: ``value  # source``."""
    lines = [line for line in output.splitlines() if line.startswith(f"{name} = ")]
    assert len(lines) == 1, output
    return lines[0].split(" = ", 1)[1]


def test_file_values_apply_and_the_command_line_and_environment_override_them(tmp_path: Path) -> None:
    config = tmp_path / "s3pod.toml"
    config.write_text(f'concurrency = 3\nmax_memory = 64\nallow-dir = ["{tmp_path}"]\nbwlimit = "5M"\n')
    out = s3pod("--config", str(config), "--check-config")
    assert out.returncode == 0, out.stderr
    assert setting(out.stdout, "concurrency") == "3  # config file"
    assert setting(out.stdout, "max-memory") == "64  # config file"
    assert setting(out.stdout, "allow-dir") == f"[{tmp_path}]  # config file"
    assert setting(out.stdout, "bwlimit") == "5M  # config file"
    assert setting(out.stdout, "claim-batch") == "8  # default"

    out = s3pod("--check-config", "--concurrency", "4", env={"S3POD_CONFIG": str(config), "S3POD_MAX_MEMORY": "32"})
    assert out.returncode == 0, out.stderr
    assert setting(out.stdout, "concurrency") == "4  # command line"
    assert setting(out.stdout, "max-memory") == "32  # environment"
    assert setting(out.stdout, "bwlimit") == "5M  # config file"


def test_an_unknown_key_is_one_line_naming_it_and_its_line(tmp_path: Path) -> None:
    config = tmp_path / "s3pod.toml"
    config.write_text('concurrency = 3\n\nconcurency = 4\n[[watch]]\ndir = "/tmp"\nto = "s3://b/p"\n')
    out = s3pod("--config", str(config))
    assert out.returncode == 2
    assert out.stderr == f"s3pod: {config}, line 3: unknown key 'concurency'\n"

    config.write_text('concurrency = 3\n[[watch]]\ndir = "/tmp"\nto = "s3://b/p"\ndelete = true\n')
    out = s3pod("--config", str(config))
    assert (out.returncode, out.stderr) == (2, f"s3pod: {config}, line 5: [[watch]]: unknown key 'delete'\n")


def test_a_syntax_error_or_a_bad_value_is_one_line_with_the_line_number(tmp_path: Path) -> None:
    config = tmp_path / "s3pod.toml"
    config.write_text('prefix = "s3po"\nconcurrency = \n')
    out = s3pod("--config", str(config), "--check-config")
    assert out.returncode == 2
    assert len(out.stderr.splitlines()) == 1 and "line 2" in out.stderr, out.stderr

    config.write_text('prefix = "s3po"\nconcurrency = "many"\n')
    out = s3pod("--config", str(config), "--check-config")
    assert (out.returncode, out.stderr) == (
        2,
        f"s3pod: {config}, line 2: concurrency: 'many' is not a valid integer range.\n",
    )


def test_check_config_prints_the_settings_with_secrets_redacted(tmp_path: Path) -> None:
    config = tmp_path / "s3pod.toml"
    config.write_text('api-token = "tok-9f8e7d"\nredis-url = "redis://app:pw-5c4b3a@127.0.0.1:6379/0"\n')
    out = s3pod(
        "--config", str(config), "--check-config", env={"S3POD_SECRET_KEY": "sk-1a2b3c", "S3POD_ACCESS_ID": "AKID"}
    )
    assert out.returncode == 0, out.stderr
    for secret in ("tok-9f8e7d", "pw-5c4b3a", "sk-1a2b3c"):
        assert secret not in out.stdout + out.stderr
    assert setting(out.stdout, "api-token") == "***  # config file"
    assert setting(out.stdout, "secret-key") == "***  # environment"
    assert setting(out.stdout, "redis-url") == "redis://app:***@127.0.0.1:6379/0  # config file"
    assert setting(out.stdout, "access-id") == "AKID  # environment"


def test_the_example_file_passes_check_config(tmp_path: Path) -> None:
    """The example as shipped, and with its [[watch]] table uncommented, both check clean."""
    spool = tmp_path / "spool"
    (spool / "outbox").mkdir(parents=True)
    text = EXAMPLE.read_text().replace("/var/spool/s3po", str(spool))
    head, sep, table = text.partition("#[[watch]]")
    assert sep, "the example shows a [[watch]] table"
    uncommented = head + "[[watch]]" + table.replace("\n#", "\n")
    for variant in (text, uncommented):
        config = tmp_path / "s3pod.toml"
        config.write_text(variant)
        out = s3pod("--config", str(config), "--check-config")
        assert out.returncode == 0, out.stderr
        assert setting(out.stdout, "allow-dir") == f"[{spool}]  # config file"
    assert f"# watching {spool / 'outbox'}=s3://my-bucket/outbox/ compress=gzip" in out.stdout


def test_sighup_changes_the_bandwidth_limit_of_a_running_daemon(start_daemon: Any, tmp_path: Path) -> None:
    api = f"127.0.0.1:{free_port()}"
    config = tmp_path / "s3pod.toml"
    config.write_text(f'api-listen = "{api}"\nbwlimit = "5M"\nconcurrency = 2\n')
    daemon = start_daemon("--config", str(config))

    def limit() -> Any:
        status, body = http("GET", f"http://{api}/v1/bwlimit")
        return status == 200 and json.loads(body)["bwlimit"]

    assert wait_until(limit, message="the API") == "5M"
    config.write_text(f'api-listen = "{api}"\nbwlimit = "2M"\nconcurrency = 3\nlog-level = "debug"\n')
    daemon.signal(signal.SIGHUP)
    wait_until(lambda: limit() == "2M", message="the new limit")
    wait_until(lambda: "needs a restart" in daemon.log or "after a restart" in daemon.log, message="the log")
    assert "config reload: bwlimit = 2M (was 5M)" in daemon.log
    assert "config reload: log_level = debug (was unset)" in daemon.log
    assert "config reload: concurrency changed: takes effect after a restart" in daemon.log
    assert daemon.proc.poll() is None


def test_a_broken_file_on_sighup_keeps_the_settings_in_force(start_daemon: Any, tmp_path: Path) -> None:
    api = f"127.0.0.1:{free_port()}"
    config = tmp_path / "s3pod.toml"
    config.write_text(f'api-listen = "{api}"\nbwlimit = "5M"\n')
    daemon = start_daemon("--config", str(config))
    wait_until(lambda: http("GET", f"http://{api}/v1/bwlimit")[0] == 200, message="the API")
    config.write_text('bwlimit = "2M"\nbogus = 1\n')
    daemon.signal(signal.SIGHUP)
    wait_until(lambda: "config reload failed" in daemon.log, message="the log")
    assert f"{config}, line 2: unknown key 'bogus'" in daemon.log
    assert json.loads(http("GET", f"http://{api}/v1/bwlimit")[1])["bwlimit"] == "5M"
    assert daemon.proc.poll() is None


def test_sighup_without_a_config_file_is_logged_and_the_daemon_keeps_running(start_daemon: Any) -> None:
    """``systemctl reload`` on a unit started without ``--config`` must not end the daemon."""
    daemon = start_daemon()
    wait_until(lambda: "ready" in daemon.log, message="the worker ready")
    daemon.signal(signal.SIGHUP)
    wait_until(lambda: "no --config file to reload" in daemon.log, message="the log")
    assert daemon.proc.poll() is None


def test_a_watch_table_uploads_a_dropped_file(s3: Any, bucket: str, start_daemon: Any, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    config = tmp_path / "s3pod.toml"
    config.write_text(
        f'allow-dir = ["{tmp_path}"]\n\n[[watch]]\ndir = "{spool}"\nto = "s3://{bucket}/in"\nkeep = true\n'
        'exclude = ["*.bak"]\n'
    )
    start_daemon("--config", str(config))
    (spool / "skip.bak").write_text("left")
    (spool / "report.csv").write_text("a,b\n1,2\n")

    def uploaded() -> bool:
        return s3.list_objects_v2(Bucket=bucket, Prefix="in/").get("KeyCount", 0) > 0

    wait_until(uploaded, message="the upload")
    assert s3.get_object(Bucket=bucket, Key="in/report.csv")["Body"].read() == b"a,b\n1,2\n"
    assert (spool / "report.csv").exists()  # keep = true
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["in/report.csv"]


def test_sighup_takes_up_the_watch_tables_of_the_file(s3: Any, bucket: str, start_daemon: Any, tmp_path: Path) -> None:
    """A watch removed from the file is no longer taken, one added is, without a restart; the metrics count them."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    metrics = f"127.0.0.1:{free_port()}"
    config = tmp_path / "s3pod.toml"

    def watching(spool: Path, prefix: str) -> str:
        return (
            f'allow-dir = ["{tmp_path}"]\nmetrics-listen = "{metrics}"\nwatch-quiet = 0.5\n\n'
            f'[[watch]]\ndir = "{spool}"\nto = "s3://{bucket}/{prefix}"\n'
        )

    def keys() -> list[str]:
        return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]

    def counter(name: str) -> float:
        status, body = http("GET", f"http://{metrics}/metrics")
        assert status == 200
        [line] = [line for line in body.decode().splitlines() if line.startswith(f"{name} ")]
        return float(line.split()[1])

    config.write_text(watching(first, "one"))
    daemon = start_daemon("--config", str(config))
    (first / "a.txt").write_text("before the reload")
    wait_until(lambda: keys() == ["one/a.txt"], message="the first watch's upload")
    config.write_text(watching(second, "two"))
    daemon.signal(signal.SIGHUP)
    wait_until(lambda: f"config reload: watching {second}=s3://{bucket}/two/" in daemon.log, message="the reload")
    wait_until(lambda: f"watching {second}=s3://{bucket}/two/ (inotify)" in daemon.log, message="the watcher's turn")
    (second / "b.txt").write_text("after the reload")
    (first / "c.txt").write_text("no longer watched")
    wait_until(lambda: "two/b.txt" in keys(), message="the new watch's upload")
    wait_until(lambda: not (second / "b.txt").exists(), message="b.txt deleted after its upload")
    assert "after a restart" not in daemon.log
    time.sleep(1.0)  # twice the watcher's tick: c.txt's event has been read, and must have been ignored
    assert counter("s3pod_watch_files_queued_total") == 2
    assert counter("s3pod_watch_rescans_total") >= 2  # at start, and at the reload
    assert counter("s3pod_watch_overflows_total") == 0
    daemon.stop()  # all that was queued is settled: c.txt was never taken
    assert sorted(keys()) == ["one/a.txt", "two/b.txt"]
    assert (first / "c.txt").read_text() == "no longer watched"
    assert daemon.log.count("watch queued job=") == 2
