"""The memory budget charges what an upload holds: 20 parallel 64 MiB multipart jobs on a slow store stay within --max-memory."""

from __future__ import annotations

import os
import time
from pathlib import Path

from conftest import wait_until

from s3po_client import enqueue_many
from s3po_client.admin import count_jobs

MiB = 1024 * 1024


def vm_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for pid {pid}")


def test_twenty_parallel_multipart_jobs_on_a_slow_store_stay_within_max_memory(
    redis_server, redis_client, s3, bucket, start_daemon, fault_proxy, tmp_path: Path
) -> None:
    """Every upload reserves what it really holds, so the daemon's growth stays under --max-memory.

    64 MiB files go as 8 parts of 8 MiB; a slow store (0.5 s per part) keeps every upload's
    4 parts in flight. Each holds its first 16 MiB buffer while its first parts are cut, then
    4 parts in flight and 1 being read: 56 MiB. Charged 40 MiB each, 4 ran at once in 160 MiB.
    """
    max_memory_mib = 160
    files = []
    block = os.urandom(MiB)
    for i in range(20):
        f = tmp_path / f"big{i}.bin"
        with open(f, "wb") as out:
            for _ in range(64):
                out.write(block)
        files.append(f)
    fault_proxy.add_rule("delay", method="PUT", delay_s=0.5, times=None)
    daemon = start_daemon(
        "--concurrency", "20", "--max-memory", str(max_memory_mib), env={"S3POD_ENDPOINT_URL": fault_proxy.url}
    )
    wait_until(lambda: "ready" in daemon.log, message="the daemon ready")
    time.sleep(0.5)
    idle_kib = vm_kib(daemon.proc.pid, "VmRSS")
    enqueue_many([{"bucket": bucket, "key": f.name, "path": str(f)} for f in files], redis_url=redis_server.url)
    wait_until(lambda: not any(f.exists() for f in files), timeout_s=240, message="all 20 uploads stored")
    peak_kib = vm_kib(daemon.proc.pid, "VmHWM")
    grew_mib = (peak_kib - idle_kib) / 1024
    assert count_jobs(redis_client).dead == 0
    assert s3.head_object(Bucket=bucket, Key="big7.bin")["ContentLength"] == 64 * MiB
    # Measured: 87 MiB with this code; 235 MiB when each upload was charged 40 MiB.
    assert grew_mib <= max_memory_mib, (
        f"peak {peak_kib // 1024} MiB, idle {idle_kib // 1024} MiB: "
        f"grew {grew_mib:.0f} MiB with --max-memory {max_memory_mib}"
    )
