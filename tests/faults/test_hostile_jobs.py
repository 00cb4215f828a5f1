"""Scenario 7: hostile jobs, pushed raw onto the queue, and a flood.

Each bad job must be dead-lettered with a one-line reason, the daemon must keep running
and keep uploading the good jobs among them, and no file may be touched: not the target of
a symlink out of ``--allow-dir``, not a directory, a FIFO or a device. Then a flood of jobs
(100,000 under ``make test-faults``) is enqueued while the daemon works: its memory stays
bounded and no enqueue call stalls.
"""

from __future__ import annotations

import json
import os
import random
import stat
import time
from pathlib import Path

from conftest import wait_until
from scenario import KEYS, LONG, Figures, Spec, Stream, scale, settled, write_file

from s3po_client.admin import count_jobs
from s3po_client.job import Job
from s3po_client.producer import make_job, push_jobs
from s3po_client.transfer import TransferEngine
from s3pod.consumer import raw_text

pytestmark = LONG


def hostile_jobs(bucket: str, allowed: Path, outside: Path) -> tuple[list[tuple[str, bytes]], list[str]]:
    """Return (name, raw job) for every hostile case, and notes on the cases that could not be made."""
    notes: list[str] = []

    victim = allowed / "victim.bin"  # a good file: only the field named is wrong in each case
    victim.write_bytes(b"v" * 1000)

    def job(**fields: object) -> bytes:
        return json.dumps({"bucket": bucket, "key": "k", "path": str(victim), "delete": False, **fields}).encode()

    (allowed / "a-directory").mkdir()
    os.mkfifo(allowed / "a-fifo")
    secret = outside / "secret.txt"
    secret.write_text("not yours\n")
    os.symlink(secret, allowed / "link-out")
    unreadable = allowed / "unreadable.bin"
    unreadable.write_bytes(b"u" * 1000)
    unreadable.chmod(0)
    device = allowed / "a-device"
    try:
        os.mknod(device, stat.S_IFCHR | 0o600, os.makedev(1, 5))  # /dev/zero's numbers
    except OSError as exc:
        notes.append(f"no device node: {exc.strerror} (mknod needs CAP_MKNOD)")
    cases = [
        ("malformed JSON", b'{"bucket": "b", "key": '),
        ("not an object", b'["a", "list"]'),
        ("JSON nested past the recursion limit", b"[" * 5000 + b"]" * 5000),
        ("wrong type: bucket", job(bucket=5)),
        ("wrong type: retries", job(retries="3")),
        ("wrong type: delete", job(delete="yes")),
        ("wrong type: headers", job(headers=["Content-Type"])),
        ("unknown field", job(compres="gzip")),
        ("1 MB key", job(key="k" * 1_000_000)),
        ("empty key", job(key="")),
        ("NUL in key", job(key="a\u0000b")),
        ("key too long for S3 (1,025 bytes)", job(key="é" * 513)),
        ("non-UTF-8 bytes", b'{"bucket": "' + bucket.encode() + b'", "key": "\xff\xfe", "path": "/x"}'),
        ("relative path", job(path="relative/file.bin")),
        ("'..' out of --allow-dir", job(path=str(allowed / ".." / "outside" / "secret.txt"))),
        ("symlink out of --allow-dir", job(path=str(allowed / "link-out"))),
        ("a directory", job(path=str(allowed / "a-directory"))),
        ("a FIFO", job(path=str(allowed / "a-fifo"))),
        ("unknown codec", job(compress="lz4")),
        ("a header s3po cannot map", job(headers={"X-Not-A-Header": "1"})),
    ]
    if device.exists():
        cases.append(("a device", job(path=str(device))))
    if os.geteuid() != 0:
        cases.append(("a file without read permission", job(path=str(unreadable))))
    else:
        notes.append("running as root: read permission does not bind, so the unreadable file is not a hostile case")
    return cases, notes


def test_hostile_jobs_are_dead_lettered_one_by_one_and_the_daemon_keeps_working(
    redis_server, redis_client, s3, bucket, s3_settings, start_daemon, tmp_path: Path
) -> None:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    cases, notes = hostile_jobs(bucket, allowed, outside)
    rng = random.Random(7)
    good = []
    for i in range(len(cases)):
        path = allowed / f"good-{i}.bin"
        good.append(Spec(f"good-{i}.bin", path, write_file(path, rng.randint(1, 50_000), rng), path.stat().st_size))
    stream = Stream(start_daemon, "--allow-dir", str(allowed), "--concurrency", "2")
    stream.start()
    started = time.monotonic()
    for (_name, raw), spec in zip(cases, good):  # a bad job, then a good one, and so on
        redis_client.lpush(KEYS.queue, raw)
        push_jobs([make_job(bucket, spec.key, spec.path)], client=redis_client)
    stream.wait_settled(redis_client, good, timeout_s=120)
    dead = {e["job"]: e["error"] for e in (json.loads(x) for x in redis_client.lrange(KEYS.dead, 0, -1))}
    reasons = {}
    for name, raw in cases:
        error = dead.get(raw_text(raw))
        assert error is not None, f"{name}: not dead-lettered"
        assert "\n" not in error and len(error) < 600, f"{name}: the reason is one clear line: {error[:200]!r}"
        reasons[name] = error[:120]
    engine = TransferEngine(s3_settings)
    try:
        figures = Figures("7. Hostile jobs", f"{len(cases)} hostile jobs among {len(good)} good ones")
        figures.measure(engine=engine, s3=s3, bucket=bucket, client=redis_client, specs=good, logs=stream.logs)
    finally:
        engine.close()
    figures.jobs = len(cases) + len(good)
    figures.lost = sum(1 for name, raw in cases if raw_text(raw) not in dead) + figures.lost
    figures.crashes = stream.crashes()
    stream.sample()
    figures.peak_rss_mib = round(stream.peak_kib / 1024, 1)
    figures.seconds = round(time.monotonic() - started, 1)
    figures.extra.update(reasons=reasons, notes=notes)
    figures.record()
    figures.assert_nothing_lost()
    assert figures.verified == len(good) and figures.dead == len(cases), figures
    assert (outside / "secret.txt").read_text() == "not yours\n"
    assert (allowed / "a-directory").is_dir() and stat.S_ISFIFO(os.stat(allowed / "a-fifo").st_mode)
    assert os.path.islink(allowed / "link-out")
    assert (allowed / "victim.bin").read_bytes() == b"v" * 1000
    assert all(d.proc.poll() is None for d in stream.alive), "the daemon runs on"


def test_a_flood_of_jobs_keeps_memory_bounded_and_enqueue_responsive(
    redis_server, redis_client, s3, bucket, start_daemon, tmp_path: Path
) -> None:
    """The jobs name files that do not exist: each is dead-lettered at once, so the flood
    measures the queue and the daemon's memory, not the store."""
    total = scale(5_000, 100_000)
    batch = 1000
    stream = Stream(start_daemon, "--concurrency", "4")
    daemon = stream.start()
    stream.wait_ready()
    started = time.monotonic()
    slowest = 0.0
    for i in range(0, total, batch):
        jobs = [Job(bucket=bucket, key=f"flood/{n}", path=str(tmp_path / f"missing-{n}")) for n in range(i, i + batch)]
        began = time.monotonic()
        push_jobs(jobs, client=redis_client)
        slowest = max(slowest, time.monotonic() - began)
        stream.sample()
    wait_until(
        lambda: stream.sample() or settled(redis_client),
        timeout_s=scale(300, 1800),
        interval_s=0.5,
        message="the flood drained",
    )
    counts = count_jobs(redis_client)
    figures = Figures(
        "7. Job flood",
        f"{total:,} jobs enqueued in batches of {batch} while the daemon works",
        jobs=total,
        dead=counts.dead,
        crashes=stream.crashes(),
        peak_rss_mib=round(stream.peak_kib / 1024, 1),
        seconds=round(time.monotonic() - started, 1),
    )
    figures.lost = total - counts.dead
    figures.extra.update(
        slowest_enqueue_batch_s=round(slowest, 3), drain_rate_jobs_per_s=round(total / figures.seconds, 1)
    )
    figures.record()
    assert figures.lost == 0 and figures.crashes == 0
    assert daemon.proc.poll() is None
    assert figures.peak_rss_mib < 200, "memory stays bounded whatever the backlog"
    assert slowest < 5.0, "no enqueue stalls behind the daemon's work"
