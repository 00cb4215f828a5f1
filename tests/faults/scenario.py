"""What every fault scenario shares: its files, the checks against the store, and its figures.

A scenario makes local files whose digests it keeps, enqueues jobs for them, injects its
fault, waits until the queue is settled, then measures — against the store and the
filesystem, never from the daemon's word — what the issue's table reports:

- jobs submitted, objects verified byte for byte (downloaded, decoded, MD5 compared);
- jobs lost: neither verified on the store nor dead-lettered with a reason (must be 0);
- local files deleted without a verified upload (must be 0);
- duplicate uploads (a job uploaded more than once: allowed, counted from the logs);
- dead letters, each with its reason; daemon crashes on bad input (must be 0);
- orphaned multipart uploads left on the store (must be 0);
- the peak RSS of the daemons (VmHWM, sampled while they run).

Each scenario appends its figures as one JSON line to ``$S3PO_FAULT_FIGURES`` (default
``build/fault-figures.jsonl``); ``python tests/faults/report.py`` turns the
file into the table of docs/RELIABILITY.md. ``S3PO_FAULTS=full`` (``make test-faults``)
runs every scenario at its full size; without it each runs a short version.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from s3po_client.admin import count_jobs
from s3po_client.keys import QueueKeys

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
KEYS = QueueKeys("s3po")

#: ``make test-faults`` runs the full scenarios; ``make test`` the short ones.
FULL = os.environ.get("S3PO_FAULTS", "") == "full"


#: pytest-timeout's limit for one scenario test: the full sizes run far longer than the default.
LONG = pytest.mark.timeout(2400 if FULL else 600)


def scale(short: int, full: int) -> int:
    """Return ``full`` under ``make test-faults``, ``short`` otherwise."""
    return full if FULL else short


@dataclass
class Spec:
    """One job of a scenario: the file, what it held, and how it is sent."""

    key: str
    path: Path
    md5: str
    size: int
    compress: str | None = None
    delete: bool = True

    def job(self, bucket: str) -> dict[str, Any]:
        return {
            "bucket": bucket,
            "key": self.key,
            "path": str(self.path),
            "compress": self.compress,
            "delete": self.delete,
        }


def write_file(path: Path, size: int, rng: random.Random, compressible: bool = False) -> str:
    """Write ``size`` bytes to ``path`` (text-like when ``compressible``); return their MD5."""
    digest = hashlib.md5()
    with open(path, "wb") as out:
        left = size
        while left:
            n = min(left, 4 * MiB)
            if compressible:
                line = f"{rng.random():.12f} some log line with words that repeat\n".encode()
                chunk = (line * (n // len(line) + 1))[:n]
            else:
                chunk = rng.randbytes(n)
            out.write(chunk)
            digest.update(chunk)
            left -= n
    return digest.hexdigest()


def mixed_files(
    directory: Path,
    rng: random.Random,
    *,
    small: int,
    multipart: int,
    gzip: int,
    zstd: int,
    multipart_bytes: int = 40 * MiB,
    compressed_bytes: int = 20 * MiB,
    small_bytes: tuple[int, int] = (1, 200_000),
) -> list[Spec]:
    """Make the files of a mixed stream: small, multipart, gzip and zstd (both multipart-sized)."""
    directory.mkdir(parents=True, exist_ok=True)
    specs: list[Spec] = []
    kinds = ["small"] * small + ["multipart"] * multipart + ["gzip"] * gzip + ["zstd"] * zstd
    rng.shuffle(kinds)
    for i, kind in enumerate(kinds):
        path = directory / f"{kind}-{i:05d}.bin"
        if kind == "small":
            size = rng.randint(*small_bytes)
            specs.append(Spec(path.name, path, write_file(path, size, rng), size))
        elif kind == "multipart":
            specs.append(Spec(path.name, path, write_file(path, multipart_bytes, rng), multipart_bytes))
        else:  # random bytes: the compressed stream stays multipart-sized, as the kill needs
            md5 = write_file(path, compressed_bytes, rng)
            specs.append(Spec(path.name, path, md5, compressed_bytes, compress=kind))
    return specs


def settled(client: redis.Redis, prefix: str = KEYS.prefix) -> bool:
    """True when no job is pending, held or delayed (dead letters count as settled)."""
    counts = count_jobs(client, prefix)
    return counts.pending + counts.processing + counts.delayed == 0


def dead_entries(client: redis.Redis) -> list[dict[str, Any]]:
    return [json.loads(e) for e in client.lrange(KEYS.dead, 0, -1)]


def dead_keys(client: redis.Redis) -> set[str | None]:
    """The keys of the dead-lettered jobs (None for an entry that is not a job object)."""
    keys: set[str | None] = set()
    for entry in dead_entries(client):
        try:
            keys.add(json.loads(entry["job"]).get("key"))
        except (ValueError, AttributeError, RecursionError):  # not JSON, not an object, nested too deep
            keys.add(None)
    return keys


def upload_records(client: redis.Redis) -> int:
    """How many multipart upload records are left in Redis."""
    return sum(1 for _ in client.scan_iter(match=KEYS.upload("*")))


def orphaned_uploads(s3: Any, bucket: str) -> list[tuple[str, str]]:
    """The multipart uploads the store still holds in ``bucket``: (key, upload id)."""
    found: list[tuple[str, str]] = []
    for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
        found.extend((u["Key"], u["UploadId"]) for u in page.get("Uploads", []))
    return found


def stored_keys(s3: Any, bucket: str) -> set[str]:
    found: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        found.update(o["Key"] for o in page.get("Contents", []))
    return found


def verified_keys(engine: Any, s3: Any, bucket: str, specs: Iterable[Spec]) -> set[str]:
    """The keys whose stored object, decoded, is byte for byte the file the scenario wrote."""
    present = stored_keys(s3, bucket)
    good: set[str] = set()
    for spec in specs:
        if spec.key not in present:
            continue
        data = engine.download_bytes(bucket, spec.key)
        if len(data) == spec.size and hashlib.md5(data).hexdigest() == spec.md5:
            good.add(spec.key)
    return good


def peak_rss_kib(pid: int) -> int:
    """The peak resident set (VmHWM) of a running process, in KiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def duplicate_uploads(logs: Iterable[str]) -> int:
    """How many uploads repeated one already done for the same job id (from the daemons' logs)."""
    counts = Counter(re.findall(r"uploaded job=([0-9a-f]+) ", "\n".join(logs)))
    return sum(n - 1 for n in counts.values() if n > 1)


@dataclass
class Figures:
    """The figures of one scenario variant, measured; :meth:`record` appends them to the figures file."""

    scenario: str
    variant: str
    jobs: int = 0
    verified: int = 0
    lost: int = 0
    deleted_unverified: int = 0
    duplicates: int = 0
    dead: int = 0
    dead_reasons: list[str] = field(default_factory=list)
    crashes: int = 0
    orphaned_uploads: int = 0
    peak_rss_mib: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    full: bool = FULL

    def measure(
        self,
        *,
        engine: Any,
        s3: Any,
        bucket: str,
        client: redis.Redis,
        specs: list[Spec],
        logs: Iterable[str] = (),
        expect_dead: Iterable[str] = (),
    ) -> Figures:
        """Fill every figure from the store, the filesystem, Redis and the daemons' logs.

        ``expect_dead`` are keys whose jobs the scenario means to fail (their files changed
        for the worse, say): dead-lettered with a reason, they are not lost.
        """
        logs = list(logs)
        good = verified_keys(engine, s3, bucket, specs)
        dead = dead_entries(client)
        dead_set = dead_keys(client)
        self.jobs = len(specs)
        self.verified = len(good)
        self.lost = sum(1 for s in specs if s.key not in good and s.key not in dead_set)
        self.deleted_unverified = sum(
            1 for s in specs if s.delete and not s.path.exists() and s.key not in good and s.key not in set(expect_dead)
        )
        self.duplicates = duplicate_uploads(logs)
        self.dead = len(dead)
        self.dead_reasons = sorted({e["error"][:160] for e in dead})
        self.orphaned_uploads = len(orphaned_uploads(s3, bucket))
        self.extra.setdefault("upload_records_left", upload_records(client))
        return self

    def record(self) -> Figures:
        path = Path(os.environ.get("S3PO_FAULT_FIGURES", ROOT / "build" / "fault-figures.jsonl"))
        path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({**asdict(self), "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        with open(path, "a") as out:
            out.write(line + "\n")
        print(f"\nFIGURES {line}")
        return self

    def assert_nothing_lost(self) -> None:
        """The figures that must be 0 are 0."""
        assert (self.lost, self.deleted_unverified, self.crashes, self.orphaned_uploads) == (0, 0, 0, 0), self
        assert self.extra.get("upload_records_left", 0) == 0, self


class Stream:
    """Daemons working through a scenario's jobs while the scenario hurts them.

    ``start()`` launches one more s3pod (through ``start_daemon``, so each is stopped when the
    test ends); ``kill(i)`` SIGKILLs daemon ``i`` and starts its replacement; the peak RSS of
    each daemon is sampled before it dies and at the end.
    """

    def __init__(self, start_daemon: Any, *args: str, env: dict[str, str] | None = None) -> None:
        self.start_daemon = start_daemon
        self.args = args
        self.env = env or {}
        self.daemons: list[Any] = []
        self.alive: list[Any] = []
        self.peak_kib = 0
        self.kills = 0

    def start(self) -> Any:
        daemon = self.start_daemon(*self.args, env=self.env)
        self.daemons.append(daemon)
        self.alive.append(daemon)
        return daemon

    def wait_ready(self, timeout_s: float = 60) -> None:
        """Wait until every live daemon logged that it is ready (a start takes seconds on a busy box)."""
        from conftest import wait_until

        wait_until(
            lambda: all(" ready: " in d.log for d in self.alive), timeout_s=timeout_s, message="the daemons ready"
        )

    def sample(self) -> None:
        for daemon in self.alive:
            self.peak_kib = max(self.peak_kib, peak_rss_kib(daemon.proc.pid))

    def kill(self, index: int = 0, sig: int = 9) -> Any:
        """SIGKILL (or ``sig``) one live daemon, wait for it, start its replacement; return the new one."""
        self.sample()
        daemon = self.alive.pop(index)
        daemon.signal(sig)
        daemon.wait(30)
        self.kills += 1
        return self.start()

    def crashes(self) -> int:
        """Daemons that ended on their own (not killed by the scenario): a crash."""
        killed = set(id(d) for d in self.daemons) - set(id(d) for d in self.alive)
        return sum(1 for d in self.daemons if id(d) not in killed and d.proc.poll() is not None)

    @property
    def logs(self) -> list[str]:
        return [d.log for d in self.daemons]

    def wait_settled(self, client: redis.Redis, specs: list[Spec], timeout_s: float) -> None:
        """Wait until every job is settled and every file to delete is gone (or dead-lettered)."""
        from conftest import wait_until

        def done() -> bool:
            self.sample()
            if not settled(client):
                return False
            dead = dead_keys(client)
            return not any(s.delete and s.path.exists() and s.key not in dead for s in specs)

        wait_until(done, timeout_s=timeout_s, interval_s=0.25, message="every job settled")
