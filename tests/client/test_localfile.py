"""The local file rules: opened once with O_NOFOLLOW and checked on the descriptor; deleted only if unchanged."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from conftest import wait_until

from s3po_client.admin import count_jobs
from s3po_client.errors import JobError, SourceChangedError, UnsafePathError
from s3po_client.localfile import FileStat, delete_unchanged, open_checked

SECRET = b"outside the allowed directory: must never be uploaded\n"
INSIDE = b"inside\n"


def test_open_checked_refuses_what_leads_outside(tmp_path: Path) -> None:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir(), outside.mkdir()
    (outside / "secret").write_bytes(SECRET)
    (allowed / "link").symlink_to(outside / "secret")
    (allowed / "inner").symlink_to(allowed / "real")
    (allowed / "real").write_bytes(INSIDE)
    (allowed / "dir").mkdir()
    os.mkfifo(allowed / "fifo")
    with pytest.raises(UnsafePathError, match="outside the allowed"):
        open_checked(str(allowed / "link"), allow_dirs=[str(allowed)])
    with pytest.raises(UnsafePathError, match="outside the allowed"):
        open_checked(str(allowed / ".." / "outside" / "secret"), allow_dirs=[str(allowed)])
    with pytest.raises(JobError, match="not a regular file"):
        open_checked(str(allowed / "dir"), allow_dirs=[str(allowed)])
    with pytest.raises(JobError, match="not a regular file"):  # and does not block on a FIFO
        open_checked(str(allowed / "fifo"), allow_dirs=[str(allowed)])
    f, real = open_checked(str(allowed / "inner"), allow_dirs=[str(allowed)])  # a symlink that stays inside
    with f:
        assert f.read() == INSIDE and real == str(allowed / "real")


def test_delete_unchanged_keeps_a_name_swapped_for_a_symlink_or_a_new_file(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(INSIDE)
    seen = FileStat.of(str(f))
    target = tmp_path / "target"
    target.write_bytes(SECRET)
    os.unlink(f)
    f.symlink_to(target)  # the name now leads elsewhere: neither the link nor its target goes
    with pytest.raises(SourceChangedError):
        delete_unchanged(str(f), seen)
    assert f.is_symlink() and target.read_bytes() == SECRET
    os.unlink(f)
    f.write_bytes(INSIDE)  # same bytes, another inode: another file
    with pytest.raises(SourceChangedError):
        delete_unchanged(str(f), seen)
    assert f.exists()
    assert delete_unchanged(str(f), FileStat.of(str(f))) is True and not f.exists()


def test_a_symlink_swapped_in_after_the_check_is_never_uploaded(
    redis_server, redis_client, s3, bucket, start_daemon, tmp_path: Path
) -> None:
    """A writer of the allowed directory flips a name between a file and a symlink out of it.

    Checking a resolved name and opening it later loses this race within a few hundred
    jobs; checking the opened descriptor never does.
    """
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir(), outside.mkdir()
    (outside / "secret").write_bytes(SECRET)
    name = allowed / "f"
    name.write_bytes(INSIDE)
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            link = allowed / ".link"
            link.symlink_to(outside / "secret")
            os.replace(link, name)
            regular = allowed / ".file"
            regular.write_bytes(INSIDE)
            os.replace(regular, name)

    jobs = 400
    # Pushed raw, as any producer may: the name flips, so a producer-side check means nothing.
    redis_client.lpush(
        "s3po:queue",
        *(json.dumps({"bucket": bucket, "key": f"k{i}", "path": str(name), "delete": False}) for i in range(jobs)),
    )
    flipper = threading.Thread(target=flip, daemon=True)
    flipper.start()
    try:
        daemon = start_daemon("--allow-dir", str(allowed), "--concurrency", "4")
        wait_until(
            lambda: (lambda c: c.pending + c.processing + c.delayed == 0)(count_jobs(redis_client)),
            timeout_s=120,
            message="every job settled",
        )
    finally:
        stop.set()
        flipper.join()
    stored = [
        s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for o in page.get("Contents", [])
    ]
    leaked = sum(body == SECRET for body in stored)
    assert leaked == 0, f"{leaked} of {len(stored)} stored objects hold the file from outside --allow-dir"
    assert stored and all(body == INSIDE for body in stored)
    assert count_jobs(redis_client).dead + len(stored) >= jobs  # every job either stored or dead-lettered
    assert daemon.proc.poll() is None
    assert (outside / "secret").read_bytes() == SECRET


@pytest.mark.skipif(not hasattr(os, "O_PATH") or not os.path.isdir("/proc/self/fd"), reason="Linux: O_PATH, /proc")
def test_a_plain_name_is_opened_and_settled_without_resolving_it_in_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """realpath walks every component with a system call each: the kernel's resolution is used instead."""
    from s3po_client.settle import through_symlink

    allowed = tmp_path / "allowed"
    (allowed / "real").mkdir(parents=True)
    (allowed / "real" / "f").write_bytes(INSIDE)
    (allowed / "dirlink").symlink_to(allowed / "real")  # a symlinked directory inside: fine
    (allowed / "flink").symlink_to(allowed / "real" / "f")  # a symlinked name: resolved the careful way
    resolved: list[str] = []
    realpath = os.path.realpath

    def counting(path: str, *args: object, **kwargs: object) -> str:
        resolved.append(path)
        return realpath(path)

    monkeypatch.setattr(os.path, "realpath", counting)
    for name in ("real/f", "dirlink/f"):
        f, real = open_checked(str(allowed / name), allow_dirs=[str(allowed)])
        with f:
            assert f.read() == INSIDE and real == str(allowed / "real" / "f")
    assert not through_symlink(str(allowed / "real" / "f"), str(allowed / "real" / "f"))
    assert resolved == []
    f, real = open_checked(str(allowed / "flink"), allow_dirs=[str(allowed)])
    f.close()
    assert real == str(allowed / "real" / "f") and resolved == [str(allowed / "flink")]
    assert through_symlink(str(allowed / "flink"), real)
    with pytest.raises(UnsafePathError, match="outside the allowed"):
        open_checked(str(allowed / "dirlink" / "f"), allow_dirs=[str(allowed / "dirlink2")])
