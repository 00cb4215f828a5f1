"""Spool directories: files written or moved into a watched directory are uploaded, each once.

A real s3pod subprocess watches a directory (inotify, or scans), against the real Redis and
S3 servers. "Queued once" is counted from the watcher's own log line per job it pushed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_until

from s3po_client.admin import list_dead
from s3pod.watchspec import WatchSpec

QUIET = ("--watch-quiet", "0.5")


def keys_in(s3: Any, bucket: str) -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def queued_paths(*logs: str) -> Counter[str]:
    """Return how many times the watcher pushed a job for each path, from the daemons' logs."""
    return Counter(m[1] for log in logs for m in re.finditer(r"watch queued job=\w+ path=(\S+)", log))


def start_watch(start_daemon: Any, spool: Path, bucket: str, *args: str) -> Any:
    daemon = start_daemon("--watch", f"{spool}=s3://{bucket}/in", *QUIET, *args)
    wait_until(lambda: "watching " in daemon.log or daemon.proc.poll() is not None, message="the watcher to start")
    return daemon


def body(s3: Any, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def test_closed_moved_and_subdirectory_files_are_uploaded_and_deleted(
    s3: Any, bucket: str, start_daemon: Any, tmp_path: Path
) -> None:
    spool, outside = tmp_path / "spool", tmp_path / "outside"
    spool.mkdir()
    outside.mkdir()
    daemon = start_watch(start_daemon, spool, bucket, "--allow-dir", str(tmp_path))
    (spool / "written.txt").write_bytes(b"written")
    (outside / "moved.txt").write_bytes(b"moved")
    os.rename(outside / "moved.txt", spool / "moved.txt")
    (spool / "sub" / "deeper").mkdir(parents=True)
    (spool / "sub" / "deeper" / "late.txt").write_bytes(b"late")
    (outside / "tree").mkdir()
    (outside / "tree" / "old.txt").write_bytes(b"old")
    os.rename(outside / "tree", spool / "tree")
    expected = {"in/written.txt": b"written", "in/moved.txt": b"moved", "in/sub/deeper/late.txt": b"late"}
    expected["in/tree/old.txt"] = b"old"
    wait_until(lambda: sorted(keys_in(s3, bucket)) == sorted(expected), message="four objects")
    assert {k: body(s3, bucket, k) for k in expected} == expected
    wait_until(lambda: not [p for p in spool.rglob("*") if p.is_file()], message="the files deleted")
    assert spool.is_dir() and (spool / "sub" / "deeper").is_dir()  # no pruning unless asked
    assert set(queued_paths(daemon.log).values()) == {1}


def test_a_file_still_open_is_taken_only_once_closed(s3: Any, bucket: str, start_daemon: Any, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    start_watch(start_daemon, spool, bucket)
    with open(spool / "growing.log", "wb") as f:
        f.write(b"first half ")
        f.flush()
        time.sleep(2.0)  # four quiet periods: a scan would have taken it by now
        assert keys_in(s3, bucket) == []
        f.write(b"second half")
    wait_until(lambda: keys_in(s3, bucket) == ["in/growing.log"], message="the closed file uploaded")
    assert body(s3, bucket, "in/growing.log") == b"first half second half"


def test_a_rewritten_file_is_queued_again(s3: Any, bucket: str, start_daemon: Any, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    daemon = start_watch(start_daemon, spool, bucket, "--watch-keep")
    (spool / "report.txt").write_bytes(b"version 1")
    wait_until(lambda: keys_in(s3, bucket) == ["in/report.txt"], message="the first version")
    (spool / "report.txt").write_bytes(b"version 2, longer")
    wait_until(lambda: body(s3, bucket, "in/report.txt") == b"version 2, longer", message="the second version")
    assert queued_paths(daemon.log) == {str(spool / "report.txt"): 2}


def test_a_file_removed_before_its_upload_is_dead_lettered_as_missing(
    redis_client: Any, s3: Any, bucket: str, start_daemon: Any, tmp_path: Path
) -> None:
    """The watcher's daemon cannot reach S3 (so it claims nothing); another daemon runs the job."""
    spool = tmp_path / "spool"
    spool.mkdir()
    watcher = start_watch(start_daemon, spool, bucket, "--endpoint-url", "http://127.0.0.1:9")
    (spool / "gone.txt").write_bytes(b"removed by its writer")
    wait_until(lambda: "watch queued" in watcher.log, message="the file queued")
    (spool / "gone.txt").unlink()
    runner = start_daemon()
    wait_until(lambda: list_dead(redis_client), message="the dead letter")
    [entry] = list_dead(redis_client)
    assert "does not exist" in entry.error and str(spool / "gone.txt") in entry.error
    assert re.search(r"dead job=\w+ bucket=\S+ key=in/gone.txt attempts=\d+ error=.*does not exist", runner.log)
    assert keys_in(s3, bucket) == []


def test_a_watched_directory_moved_away_and_back_is_watched_again(
    s3: Any, bucket: str, start_daemon: Any, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    daemon = start_watch(start_daemon, spool, bucket)
    (spool / "before").mkdir()
    time.sleep(0.3)
    os.rename(spool / "before", spool / "renamed")  # within the tree: watched under its new name
    (spool / "renamed" / "x.txt").write_bytes(b"x")
    wait_until(lambda: keys_in(s3, bucket) == ["in/renamed/x.txt"], message="the renamed directory's file")
    os.rename(spool, tmp_path / "away")
    wait_until(lambda: "was removed or moved away" in daemon.log, message="the loss noticed")
    spool.mkdir()
    wait_until(lambda: "is back: watching it again" in daemon.log, message="the directory watched again")
    (spool / "after.txt").write_bytes(b"after")
    wait_until(lambda: sorted(keys_in(s3, bucket)) == ["in/after.txt", "in/renamed/x.txt"], message="the upload")


def test_a_sharded_queue_takes_each_watched_file_on_its_shard(
    redis_client: Any, s3: Any, bucket: str, start_daemon: Any, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    start_watch(start_daemon, spool, bucket, "--prefix", "s1,s2")
    for i in range(20):
        (spool / f"f{i}.txt").write_bytes(b"%d" % i)
    wait_until(lambda: len(keys_in(s3, bucket)) == 20, message="every file uploaded")
    markers = Counter(k.split(b":")[0] for k in redis_client.scan_iter("*:watched:*"))
    assert set(markers) == {b"s1", b"s2"} and sum(markers.values()) == 20


def test_files_written_while_redis_is_down_are_queued_once_it_is_back(
    aof_redis: Any, s3: Any, bucket: str, start_daemon: Any, tmp_path: Path
) -> None:
    """Redis is down when s3pod starts, so the watcher's first scan fails; it scans again later."""
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "early.txt").write_bytes(b"before Redis")
    aof_redis.stop()
    env = {"S3POD_REDIS_URL": aof_redis.url, "S3PO_REDIS_URL": aof_redis.url}
    daemon = start_daemon("--watch", f"{spool}=s3://{bucket}/in", *QUIET, env=env)
    wait_until(lambda: "spool: cannot queue on Redis" in daemon.log, message="the watcher to find Redis down")
    (spool / "late.txt").write_bytes(b"while Redis is down")
    aof_redis.start()
    wait_until(lambda: sorted(keys_in(s3, bucket)) == ["in/early.txt", "in/late.txt"], message="both uploaded")
    assert set(queued_paths(daemon.log).values()) == {1}


def test_ignored_and_excluded_names_stay(s3: Any, bucket: str, start_daemon: Any, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    daemon = start_watch(start_daemon, spool, bucket, "--watch-exclude", "*.skip")
    left = ["a.tmp", ".hidden", "b.part", "c.skip", ".cache/d.txt"]
    (spool / ".cache").mkdir()
    for name in left:
        (spool / name).write_bytes(b"x")
    (spool / "e.txt.part").write_bytes(b"renamed when complete")
    os.rename(spool / "e.txt.part", spool / "e.txt")
    wait_until(lambda: keys_in(s3, bucket) == ["in/e.txt"], message="the one wanted file")
    time.sleep(1.5)
    assert keys_in(s3, bucket) == ["in/e.txt"]
    assert all((spool / name).exists() for name in left)
    assert list(queued_paths(daemon.log)) == [str(spool / "e.txt")]


def test_include_patterns_match_the_path_or_the_name() -> None:
    spec = WatchSpec.parse("/d=s3://b/p", include=("*.log", "keep/*"), exclude=("*debug*",))
    assert spec.key_for("x/y.log") == "p/x/y.log"
    assert [spec.wants(p) for p in ("a.log", "x/y.log", "keep/z.bin", "z.bin", "debug.log", "a/.git/b.log")] == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]


def test_empty_subdirectories_are_pruned_never_the_watched_one(
    s3: Any, bucket: str, start_daemon: Any, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    start_watch(start_daemon, spool, bucket, "--watch-prune-empty-dirs")
    (spool / "a" / "b").mkdir(parents=True)
    (spool / "a" / "b" / "f.txt").write_bytes(b"f")
    wait_until(lambda: keys_in(s3, bucket) == ["in/a/b/f.txt"], message="the upload")
    wait_until(lambda: not (spool / "a").exists(), message="the empty directories pruned")
    assert spool.is_dir()


def test_scanning_takes_quiet_files_where_inotify_is_not_used(
    s3: Any, bucket: str, start_daemon: Any, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "before.txt").write_bytes(b"before the start")
    daemon = start_watch(start_daemon, spool, bucket, "--watch-poll", "0.2", "--watch-keep")
    (spool / "after.txt").write_bytes(b"after")
    wait_until(lambda: sorted(keys_in(s3, bucket)) == ["in/after.txt", "in/before.txt"], message="both uploaded")
    time.sleep(1.0)  # many scans later: kept files are not queued again
    assert (spool / "before.txt").exists() and (spool / "after.txt").exists()
    assert set(queued_paths(daemon.log).values()) == {1}
    assert "a scan every 0.2s" in daemon.log


def test_a_symlink_is_never_followed(s3: Any, bucket: str, start_daemon: Any, tmp_path: Path) -> None:
    spool, secret = tmp_path / "spool", tmp_path / "secret.txt"
    spool.mkdir()
    secret.write_bytes(b"outside every allowed directory")
    (spool / "link.txt").symlink_to(secret)
    daemon = start_watch(start_daemon, spool, bucket, "--allow-dir", str(spool))
    (spool / "ok.txt").write_bytes(b"ok")
    wait_until(lambda: keys_in(s3, bucket) == ["in/ok.txt"], message="the regular file")
    assert secret.read_bytes() == b"outside every allowed directory" and (spool / "link.txt").is_symlink()
    assert f"skipped symlink {spool / 'link.txt'}" in daemon.log


@pytest.mark.parametrize(
    ("make", "allow", "message"),
    [
        (lambda p: None, None, "does not exist or is not a directory"),
        (lambda p: p.mkdir(), "elsewhere", "is not inside any --allow-dir"),
    ],
)
def test_a_directory_it_cannot_watch_stops_the_start_with_one_line(
    daemon_env: dict[str, str], tmp_path: Path, make: Any, allow: str | None, message: str
) -> None:
    spool = tmp_path / "spool"
    make(spool)
    args = ["--watch", f"{spool}=s3://b/p"]
    if allow:
        (tmp_path / allow).mkdir()
        args += ["--allow-dir", str(tmp_path / allow)]
    proc = subprocess.run(
        [sys.executable, "-m", "s3pod", *args], env=daemon_env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"s3pod: watched directory {str(spool)!r} {message}"]


def test_a_directory_it_cannot_read_stops_the_start_naming_it(daemon_env: dict[str, str], tmp_path: Path) -> None:
    """A directory s3pod may not list: refused at start, not watched in vain.

    Root reads any directory through CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, so as root
    s3pod runs with both dropped from its bounding set (``setpriv``): it is then held to
    the directory's mode, as a service user is.
    """
    spool = tmp_path / "spool"
    spool.mkdir()
    spool.chmod(0)
    drop = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    proc = subprocess.run(
        [*drop, sys.executable, "-m", "s3pod", "--watch", f"{spool}=s3://b/p"],
        env=daemon_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    spool.chmod(0o755)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"s3pod: watched directory {str(spool)!r} is not readable"]


def max_queued_events() -> int:
    return int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())


def test_a_storm_with_an_overflow_uploads_every_file_once(
    redis_client: Any, s3: Any, bucket: str, start_daemon: Any, tmp_path: Path
) -> None:
    """10,000 files; the daemon is stopped (SIGSTOP) for most of them, so inotify's queue overflows.

    Each new file makes two events (created, closed after writing): past ``max_queued_events``
    the kernel drops events and queues IN_Q_OVERFLOW, and the watcher rescans.
    """
    spool = tmp_path / "spool"
    spool.mkdir()
    stopped = max_queued_events() // 2 + 1000
    total = max(10_000, stopped + 1000)
    daemon = start_watch(start_daemon, spool, bucket)
    started = time.monotonic()
    for i in range(total):
        if i == total - stopped:
            daemon.signal(signal.SIGSTOP)
        (spool / f"f{i:05d}.txt").write_bytes(b"%d" % i)
    daemon.signal(signal.SIGCONT)
    wait_until(lambda: not any(spool.iterdir()), timeout_s=300, interval_s=0.5, message="every file uploaded")
    print(f"\n{total} files uploaded through the spool in {time.monotonic() - started:.1f}s")
    assert "inotify queue overflowed" in daemon.log
    assert sorted(keys_in(s3, bucket)) == [f"in/f{i:05d}.txt" for i in range(total)]
    queued = queued_paths(daemon.log)
    assert len(queued) == total and set(queued.values()) == {1}
    assert sum(1 for _ in redis_client.scan_iter("s3po:watched:*", count=1000)) == total
    uploaded = Counter(re.findall(r"uploaded job=\w+ bucket=\S+ key=(\S+)", daemon.log))
    assert len(uploaded) == total and set(uploaded.values()) == {1}


def test_a_daemon_killed_mid_storm_and_started_again_queues_each_file_once(
    redis_client: Any, s3: Any, bucket: str, start_daemon: Any, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    args = ("--heartbeat-timeout", "1")
    first = start_watch(start_daemon, spool, bucket, *args)
    total = 3000

    def write_all() -> None:  # goes on through the kill: some files land while no watcher runs
        for i in range(total):
            (spool / f"f{i:05d}.txt").write_bytes(b"%d" % i)
            if i % 100 == 99:
                time.sleep(0.05)

    writer = threading.Thread(target=write_all)
    writer.start()
    wait_until(lambda: first.log.count("uploaded job=") >= 200, message="some uploads")
    first.signal(signal.SIGKILL)
    first.wait()
    killed_at = len(list(spool.iterdir()))
    time.sleep(0.3)
    second = start_watch(start_daemon, spool, bucket, *args)
    writer.join()
    assert killed_at < total  # the kill came mid-storm
    wait_until(lambda: not any(spool.iterdir()), timeout_s=120, interval_s=0.5, message="every file uploaded")
    assert sorted(keys_in(s3, bucket)) == [f"in/f{i:05d}.txt" for i in range(total)]
    # lua/watched.lua pushes a job exactly when it sets the job's marker: one marker per file
    # is one push per file, whatever log lines the SIGKILL cut off.
    assert sum(1 for _ in redis_client.scan_iter("s3po:watched:*", count=1000)) == total
    assert set(queued_paths(first.log, second.log).values()) == {1}
