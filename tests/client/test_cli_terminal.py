"""``s3po`` at a terminal (a pseudo-terminal: bars and notices) and stopped by Ctrl-C (SIGINT)."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import wait_until
from test_cli_transfer import cli_env, records, s3po  # noqa: F401 - cli_env is a fixture

MiB = 1024 * 1024


def run_on_a_terminal(args: list[str], env: dict[str, str], timeout_s: float = 120) -> tuple[int, str]:
    """Run ``s3po ARGS`` with its standard streams on a pseudo-terminal; return its exit status and output."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: stdin, stdout and stderr are the terminal
        try:
            os.execve(sys.executable, [sys.executable, "-m", "s3po_client.cli", *args], env)
        finally:
            os._exit(127)
    output = b""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if not ready:
            if os.waitpid(pid, os.WNOHANG) != (0, 0):
                break
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


def tree_with_a_large_file(root: Path) -> None:
    root.mkdir()
    (root / "big.bin").write_bytes(os.urandom(24 * MiB))
    for i in range(3):
        (root / f"small-{i}.txt").write_text("small " * 100)


def test_bars_and_the_delete_notice_on_a_terminal_only(cli_env, s3, bucket, tmp_path) -> None:
    tree_with_a_large_file(tmp_path / "a")
    code, screen = run_on_a_terminal(["upload", str(tmp_path / "a"), f"s3://{bucket}/a/"], cli_env)
    assert code == 0, screen
    assert "deleting each of the 4 files after its verified upload; --keep to keep them" in screen
    assert "total: " in screen and "/4 files" in screen, "an overall bar for the tree"
    assert "big.bin" in screen and "MiB" in screen and "/s" in screen, "a bar per file: bytes and rate"
    assert "\x1b[" in screen

    tree_with_a_large_file(tmp_path / "b")
    out = s3po("upload", str(tmp_path / "b"), f"s3://{bucket}/b/", env=cli_env)
    assert out.returncode == 0, out.stderr
    err = out.stderr.decode()
    assert "total: " not in err and "\x1b[" not in err and "deleting each" not in err
    assert "uploaded 4 of 4 files" in err

    tree_with_a_large_file(tmp_path / "c")
    code, screen = run_on_a_terminal(["upload", "--quiet", str(tmp_path / "c"), f"s3://{bucket}/c/"], cli_env)
    assert code == 0, screen
    assert screen.strip() == "", "--quiet says nothing when all goes well"
    assert len(s3.list_objects_v2(Bucket=bucket)["Contents"]) == 12


def test_a_single_file_gets_a_bar_and_keep_is_said(cli_env, bucket, tmp_path) -> None:
    f = tmp_path / "one.bin"
    f.write_bytes(os.urandom(20 * MiB))
    code, screen = run_on_a_terminal(["upload", "--keep", str(f), f"s3://{bucket}/one.bin"], cli_env)
    assert code == 0, screen
    assert f"keeping {f} after the upload (--keep)" in screen
    assert "one.bin" in screen and "MiB" in screen and "total: " not in screen
    code, screen = run_on_a_terminal(["download", f"s3://{bucket}/one.bin", str(tmp_path / "back.bin")], cli_env)
    assert code == 0, screen
    assert "MiB" in screen and (tmp_path / "back.bin").read_bytes() == f.read_bytes()


def test_ctrl_c_mid_multipart_aborts_every_upload_in_flight(cli_env, s3, bucket, fault_proxy, tmp_path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / f"part-{i}.bin").write_bytes(os.urandom(40 * MiB))
    fault_proxy.add_rule("delay", method="PUT", query="partNumber", times=None, delay_s=0.3)
    env = {**cli_env, "S3PO_ENDPOINT_URL": fault_proxy.url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "s3po_client.cli", "upload", "--json", "-j", "3", str(src), f"s3://{bucket}/big/"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(
            lambda: len(s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])) >= 2,
            timeout_s=60,
            message="multipart uploads in flight",
        )
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == [], "no incomplete upload left"
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    assert sorted(p.name for p in src.iterdir()) == ["part-0.bin", "part-1.bin", "part-2.bin"]
    rows = [r for r in records(subprocess.CompletedProcess([], 130, stdout, stderr))]
    assert rows and all(r["status"] == "interrupted" and r["deleted"] is False for r in rows)
    assert stderr.decode().strip().splitlines()[-1] == "s3po: interrupted"


def test_ctrl_c_mid_download_leaves_no_partial_file(cli_env, s3, bucket, fault_proxy, tmp_path) -> None:
    s3.put_object(Bucket=bucket, Key="large.bin", Body=os.urandom(48 * MiB))
    fault_proxy.add_rule("delay", method="GET", path="large.bin", times=None, delay_s=0.5)
    env = {**cli_env, "S3PO_ENDPOINT_URL": fault_proxy.url}
    target = tmp_path / "out"
    target.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "s3po_client.cli", "download", f"s3://{bucket}/large.bin", str(target / "large.bin")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(lambda: any(target.iterdir()), timeout_s=60, message="the download's temporary file")
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert list(target.iterdir()) == [], "the partial download is removed"
