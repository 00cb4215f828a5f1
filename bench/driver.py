"""The child that runs library calls for the benchmark, one JSON line in, one JSON line out.

Started by ``measure.Driver``; one process per library (s3po, boto3, redis-py), so that each
one's peak RSS is its own. Each request ``{"op": name, "args": {...}}`` runs ``OPS[name]``
and answers ``{"ok": true, "seconds", "cpu_s", "rss_bytes", "extra"}``: wall time of the
call, user + system CPU of this process and the children it waited for (``gzip``, ``pigz``),
and its VmHWM, reset just before the call. Clients are built once per endpoint and reused,
as a program that uploads more than once would.

Credentials and the CA bundle come from the environment (``AWS_ACCESS_KEY_ID``, …,
``AWS_CA_BUNDLE``), as they would for any boto3 program.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REGION = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
_cache: dict[tuple[str, str], Any] = {}


def cached(kind: str, key: str, build: Callable[[], Any]) -> Any:
    if (kind, key) not in _cache:
        _cache[(kind, key)] = build()
    return _cache[(kind, key)]


# -- clients ---------------------------------------------------------------------------


def connection(endpoint: str) -> Any:
    """s3po's synchronous Connection, at its defaults."""
    from s3po_client import Connection

    return cached(
        "s3po",
        endpoint,
        lambda: Connection(
            os.environ["AWS_ACCESS_KEY_ID"],
            os.environ["AWS_SECRET_ACCESS_KEY"],
            async_=False,
            delete=False,
            endpoint_url=endpoint,
            region=REGION,
        ),
    )


def boto3_client(endpoint: str, max_pool_connections: int | None = None) -> Any:
    """A boto3 S3 client at its defaults (path-style addressing, as for any S3-compatible store)."""
    import boto3
    from botocore.config import Config

    def build() -> Any:
        options: dict[str, Any] = {"s3": {"addressing_style": "path"}}
        if max_pool_connections is not None:
            options["max_pool_connections"] = max_pool_connections
        return boto3.client("s3", endpoint_url=endpoint, region_name=REGION, config=Config(**options))

    return cached("boto3", f"{endpoint} {max_pool_connections}", build)


def redis_client(url: str) -> Any:
    import redis

    return cached("redis", url, lambda: redis.Redis.from_url(url))


# -- s3po ------------------------------------------------------------------------------


def s3po_upload(endpoint: str, bucket: str, key: str, path: str, compress: str | None = None) -> dict[str, Any]:
    if not connection(endpoint).uploadFile(bucket, key, path, compress=compress):
        raise RuntimeError("uploadFile returned False")
    return {}


def s3po_download(endpoint: str, bucket: str, key: str, path: str) -> dict[str, Any]:
    connection(endpoint).downloadFile(bucket, key, path)
    return {}


def s3pod_jobs(redis_url: str, jobs: list[dict[str, Any]], poll_s: float = 0.005) -> dict[str, Any]:
    """Enqueue ``jobs`` in one ``enqueue_many``, then wait until s3pod has acknowledged every one.

    Waits first for the files to go (s3pod deletes each one just before acknowledging its
    job), which costs Redis nothing, then for the queue to be empty. ``enqueue_cpu_s`` is the
    CPU the enqueueing took; waiting is not the producer's cost and is left out of it.
    """
    import s3po_client
    from s3po_client.admin import count_jobs
    from s3po_client.redis_url import connect

    r = cached("redis-queue", redis_url, lambda: connect(redis_url))
    before = cpu_self()
    s3po_client.enqueue_many(jobs, redis_url=redis_url)
    enqueue_cpu_s = cpu_self() - before
    paths = [job["path"] for job in jobs]
    first = 0  # s3pod takes the oldest job first: look at the first file not yet gone, not at all of them
    while first < len(paths):
        if os.path.exists(paths[first]):
            time.sleep(poll_s)
        else:
            first += 1
    while True:
        counts = count_jobs(r)
        if counts.pending == 0 and counts.processing == 0 and counts.delayed == 0:
            break
        time.sleep(poll_s)
    if counts.dead:
        raise RuntimeError(f"{counts.dead} job(s) dead-lettered: {r.lindex('s3po:dead', 0)!r}")
    return {"enqueue_cpu_s": enqueue_cpu_s}


def job_json(i: int, path: str) -> str:
    """The JSON a hand-written producer would push: the same fields s3po's enqueue sends."""
    return json.dumps(
        {
            "bucket": "bench",
            "key": f"enqueued/{i}",
            "path": path,
            "headers": {},
            "compress": None,
            "retries": 3,
            "delete": True,
            "silent": False,
            "id": os.urandom(16).hex(),
            "enqueued_at": time.time(),
            "attempt": 0,
            "v": 1,
        }
    )


def p50(latencies: list[float]) -> dict[str, Any]:
    cuts = statistics.quantiles(latencies, n=100)
    return {"p50_s": statistics.median(latencies), "p99_s": cuts[98], "calls": len(latencies)}


def enqueue_latency(redis_url: str, prefix: str, path: str, calls: int) -> dict[str, Any]:
    import s3po_client

    latencies = []
    for i in range(calls):
        started = time.perf_counter()
        s3po_client.enqueue("bench", f"enqueued/{i}", path, redis_url=redis_url, prefix=prefix)
        latencies.append(time.perf_counter() - started)
    return p50(latencies)


def connection_queued_latency(redis_url: str, prefix: str, path: str, calls: int) -> dict[str, Any]:
    from s3po_client import Connection

    conn = cached("s3po-queued", f"{redis_url} {prefix}", lambda: Connection(redis_url=redis_url, prefix=prefix))
    latencies = []
    for i in range(calls):
        started = time.perf_counter()
        conn.uploadFile("bench", f"enqueued/{i}", path)
        latencies.append(time.perf_counter() - started)
    return p50(latencies)


def lpush_latency(redis_url: str, prefix: str, path: str, calls: int) -> dict[str, Any]:
    r = redis_client(redis_url)
    latencies = []
    for i in range(calls):
        started = time.perf_counter()
        r.lpush(f"{prefix}:queue", job_json(i, path))
        latencies.append(time.perf_counter() - started)
    return p50(latencies)


def enqueue_many_rate(redis_url: str, prefix: str, path: str, calls: int) -> dict[str, Any]:
    import s3po_client

    s3po_client.enqueue_many(
        [{"bucket": "bench", "key": f"enqueued/{i}", "path": path} for i in range(calls)],
        redis_url=redis_url,
        prefix=prefix,
    )
    return {}


def pipelined_lpush_rate(redis_url: str, prefix: str, path: str, calls: int) -> dict[str, Any]:
    pipe = redis_client(redis_url).pipeline(transaction=False)
    for i in range(calls):
        pipe.lpush(f"{prefix}:queue", job_json(i, path))
    pipe.execute()
    return {}


# -- boto3 -----------------------------------------------------------------------------


def boto3_upload(
    endpoint: str, bucket: str, key: str, path: str, content_encoding: str | None = None
) -> dict[str, Any]:
    extra = {"ContentEncoding": content_encoding} if content_encoding else None
    boto3_client(endpoint).upload_file(path, bucket, key, ExtraArgs=extra)
    return {}


def boto3_download(endpoint: str, bucket: str, key: str, path: str) -> dict[str, Any]:
    boto3_client(endpoint).download_file(bucket, key, path)
    return {}


def boto3_put_many(endpoint: str, bucket: str, prefix: str, paths: list[str], threads: int = 16) -> dict[str, Any]:
    """``put_object`` of each file from a pool of ``threads`` (and as many pooled connections)."""
    client = boto3_client(endpoint, max_pool_connections=threads)

    def put(path: str) -> None:
        with open(path, "rb") as f:
            client.put_object(Bucket=bucket, Key=f"{prefix}/{os.path.basename(path)}", Body=f.read())

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, paths))
    return {}


def compress_then_boto3(endpoint: str, bucket: str, key: str, path: str, command: list[str]) -> dict[str, Any]:
    """Compress ``path`` with ``command`` (``gzip -6 -c``, ``pigz -c``) into a file, then upload that."""
    compressed = f"{path}.{os.getpid()}.gz"
    try:
        with open(compressed, "wb") as out:
            subprocess.run([*command, path], stdout=out, check=True)
        size = os.path.getsize(compressed)
        boto3_upload(endpoint, bucket, key, compressed, content_encoding="gzip")
    finally:
        os.unlink(compressed)
    return {"bytes_out": size}


OPS: dict[str, Callable[..., dict[str, Any]]] = {
    f.__name__: f
    for f in (
        s3po_upload,
        s3po_download,
        s3pod_jobs,
        enqueue_latency,
        connection_queued_latency,
        lpush_latency,
        enqueue_many_rate,
        pipelined_lpush_rate,
        boto3_upload,
        boto3_download,
        boto3_put_many,
        compress_then_boto3,
    )
}


# -- measuring -------------------------------------------------------------------------


def cpu_self() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def cpu_tree() -> float:
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return cpu_self() + c.ru_utime + c.ru_stime


def peak_rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def measured(op: str, args: dict[str, Any]) -> dict[str, Any]:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    cpu_before = cpu_tree()
    started = time.perf_counter()
    extra = OPS[op](**args)
    seconds = time.perf_counter() - started
    cpu_s = cpu_tree() - cpu_before
    rss = peak_rss_bytes()
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if children_after > children_before:  # a child (gzip, pigz) peaked higher than any before
        rss = max(rss, children_after * 1024)
    return {"ok": True, "seconds": seconds, "cpu_s": cpu_s, "rss_bytes": rss, "extra": extra}


def main() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        try:
            answer = measured(request["op"], request["args"])
        except Exception:  # noqa: BLE001 - reported to the benchmark, which stops
            answer = {"ok": False, "error": traceback.format_exc(limit=4)}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
