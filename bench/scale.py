"""How s3pod's throughput scales with daemons, and what each job costs Redis: one Redis vs a Redis Cluster.

Starts its own servers on loopback (like the tests): SeaweedFS for S3, one redis-server,
and a Redis Cluster of 3 masters and 3 replicas. For each setup and each number of s3pod
daemons it queues ``--jobs`` small files at once and measures:

- jobs per second, from the enqueue to the last file deleted (every job verified);
- Redis commands per job (``INFO commandstats`` on every master, reset just before), the
  enqueue included;
- and, apart, the ceiling of one slot: the queue protocol alone (no S3) run flat out by
  ``--protocol-clients`` processes, each claiming, marking and acknowledging jobs as
  s3pod does, while the Redis CPU it costs (``used_cpu_user + used_cpu_sys`` of
  the queue's node) is measured. Every command of one queue runs on one Redis core, so
  one slot takes at most ``1 s / Redis CPU per job`` jobs per second, whatever the
  clients (on a small machine the clients, not Redis, limit the measured rate).

Setups: ``single`` (one redis-server, prefix ``s3po``), ``cluster`` (prefix ``{s3po}``: one
slot), ``sharded`` (the cluster with ``--shards`` prefixes ``{s3po0},{s3po1},...``).

    .venv/bin/python bench/scale.py                      # prints a Markdown table
    .venv/bin/python bench/scale.py --jobs 400 --daemons 1,2,4 --setups single,cluster,sharded
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from servers import RedisClusterServers, RedisServer, S3Server, stop_process  # noqa: E402


@dataclass
class Setup:
    name: str
    url: str
    prefix: str
    masters: list[int]  # ports of the nodes whose stats count


@dataclass
class Result:
    setup: str
    daemons: int
    jobs: int
    seconds: float
    commands: int
    redis_cpu_s: float

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.seconds

    @property
    def commands_per_job(self) -> float:
        return self.commands / self.jobs

    @property
    def cpu_us_per_job(self) -> float:
        return self.redis_cpu_s / self.jobs * 1e6


def node(port: int) -> Any:
    import redis

    return redis.Redis(port=port, socket_timeout=10, decode_responses=True)


def redis_stats(ports: list[int]) -> tuple[int, float]:
    """Return (commands run, CPU seconds used) summed over ``ports``, leaving out this probe's own INFO."""
    calls, cpu = 0, 0.0
    for port in ports:
        client = node(port)
        stats = client.info("commandstats")
        calls += sum(int(v["calls"]) for k, v in stats.items() if k not in ("cmdstat_info", "cmdstat_config"))
        info = client.info("cpu")
        cpu += float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return calls, cpu


def masters_of(cluster: RedisClusterServers) -> list[int]:
    return [p for p in cluster.alive() if node(p).info("replication")["role"] == "master"]


def start_daemons(n: int, setup: Setup, s3: S3Server, spool: Path, logs: Path, concurrency: int) -> list[Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("S3POD_", "S3PO_"))}
    env.update(s3.daemon_env())
    env.update(
        {
            "S3POD_REDIS_URL": setup.url,
            "S3POD_PREFIX": setup.prefix,
            "PYTHONPATH": str(ROOT),
            "S3POD_ALLOW_DIR": str(spool),
            "S3POD_LOG_LEVEL": "WARNING",
        }
    )
    procs = []
    for i in range(n):
        log = open(logs / f"{setup.name}-{n}-{i}.log", "wb")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "s3pod", "--concurrency", str(concurrency), "--log-level", "INFO"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    deadline = time.monotonic() + 60
    for i in range(n):
        path = logs / f"{setup.name}-{n}-{i}.log"
        while "ready" not in path.read_text(errors="replace"):
            if time.monotonic() > deadline or procs[i].poll() is not None:
                raise RuntimeError(f"s3pod did not start: see {path}")
            time.sleep(0.05)
    return procs


def run_once(
    setup: Setup, daemons: int, jobs: int, size: int, concurrency: int, s3: S3Server, bucket: str, work: Path
) -> Result:
    from s3po_client import enqueue_many
    from s3po_client.admin import count_jobs
    from s3po_client.redis_url import connect

    spool = work / f"{setup.name}-{daemons}"
    spool.mkdir()
    block = os.urandom(size)
    files = []
    for i in range(jobs):
        f = spool / f"f{i:05d}.bin"
        f.write_bytes(block)
        files.append(f)
    procs = start_daemons(daemons, setup, s3, spool, work, concurrency)
    try:
        for port in setup.masters:
            node(port).config_resetstat()
        calls0, cpu0 = redis_stats(setup.masters)
        started = time.perf_counter()
        enqueue_many(
            [{"bucket": bucket, "key": f"{setup.name}/{daemons}/{f.name}", "path": f} for f in files],
            redis_url=setup.url,
            prefix=setup.prefix,
        )
        while any(f.exists() for f in files):
            time.sleep(0.01)
        client = connect(setup.url)
        while count_jobs(client, setup.prefix).processing:  # the last acknowledgements
            time.sleep(0.01)
        seconds = time.perf_counter() - started
        client.close()
        calls1, cpu1 = redis_stats(setup.masters)
    finally:
        for proc in procs:
            stop_process(proc)
    return Result(setup.name, daemons, jobs, seconds, calls1 - calls0, cpu1 - cpu0)


def protocol_worker(url: str, prefix: str, worker_id: str, ready: Any, go: Any, out: Any) -> None:
    """Claim and settle jobs as s3pod does (claim, stored marker, ack dropping it) until the queue is empty."""
    from s3po_client.keys import QueueKeys
    from s3po_client.redis_url import connect
    from s3pod.consumer import Consumer

    client = connect(url)
    consumer = Consumer(client, QueueKeys(prefix), worker_id)
    consumer.heartbeat()
    ready.release()
    go.wait()
    done = 0
    while True:
        raw = consumer.claim(0.2)
        if raw is None:
            break
        job_id = f"{worker_id}-{done}"
        consumer.mark_stored(job_id)
        consumer.ack(raw, job_id)  # drops the marker in the same step, as s3pod does
        done += 1
    out.put(done)


def protocol_ceiling(setup: Setup, jobs: int, clients: int) -> tuple[float, float]:
    """Return (jobs/s measured, Redis CPU µs per job) of the protocol alone on one queue."""
    import multiprocessing

    from s3po_client.job import Job
    from s3po_client.keys import QueueKeys
    from s3po_client.producer import push_jobs
    from s3po_client.redis_url import connect

    client = connect(setup.url)
    batch = [Job(bucket="b", key=f"k{i}", path=f"/nonexistent/{i}") for i in range(1000)]
    for _ in range(jobs // len(batch)):
        push_jobs(batch, client=client, prefix=setup.prefix)
    home = setup.masters
    if len(setup.masters) > 1:  # the one node that holds the queue's slot
        home = [int(client.get_node_from_key(QueueKeys(setup.prefix).queue).port)]  # type: ignore[attr-defined]
    client.close()
    ctx = multiprocessing.get_context("spawn")
    out, ready, go = ctx.Queue(), ctx.Semaphore(0), ctx.Event()
    procs = [
        ctx.Process(target=protocol_worker, args=(setup.url, setup.prefix, f"p{i}", ready, go, out))
        for i in range(clients)
    ]
    for proc in procs:
        proc.start()
    for _ in procs:  # every client connected and ready: time the work, not the start-up
        ready.acquire()
    _, cpu0 = redis_stats(home)
    started = time.perf_counter()
    go.set()
    done = sum(out.get() for _ in procs)
    seconds = time.perf_counter() - started
    for proc in procs:
        proc.join()
    _, cpu1 = redis_stats(home)
    return done / seconds, (cpu1 - cpu0) / done * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=400, help="small files per run (default 400)")
    parser.add_argument("--size", type=int, default=4096, help="bytes per file (default 4096)")
    parser.add_argument("--daemons", default="1,2,4", help="daemon counts to run (default 1,2,4)")
    parser.add_argument("--concurrency", type=int, default=8, help="--concurrency of each s3pod (default 8)")
    parser.add_argument("--setups", default="single,cluster,sharded", help="which Redis setups (default all)")
    parser.add_argument("--shards", type=int, default=4, help="prefixes of the sharded setup (default 4)")
    parser.add_argument(
        "--protocol-jobs", type=int, default=20000, help="jobs of the protocol-only run (default 20000)"
    )
    parser.add_argument("--protocol-clients", type=int, default=4, help="its client processes (default 4)")
    args = parser.parse_args()
    counts = [int(n) for n in args.daemons.split(",")]
    wanted = args.setups.split(",")

    work = Path(tempfile.mkdtemp(prefix="s3po-scale-"))
    s3 = S3Server().start()
    single = RedisServer().start()
    cluster = RedisClusterServers().start() if {"cluster", "sharded"} & set(wanted) else None
    try:
        setups = []
        if "single" in wanted:
            setups.append(Setup("single", single.url, "s3po", [single.port]))
        if cluster is not None:
            if "cluster" in wanted:
                setups.append(Setup("cluster", cluster.url, "{s3po}", masters_of(cluster)))
            if "sharded" in wanted:
                prefix = ",".join(f"{{s3po{i}}}" for i in range(args.shards))
                setups.append(Setup("sharded", cluster.url, prefix, masters_of(cluster)))
        bucket = "scale"
        s3.client().create_bucket(Bucket=bucket)
        results = []
        for setup in setups:
            for n in counts:
                result = run_once(setup, n, args.jobs, args.size, args.concurrency, s3, bucket, work)
                results.append(result)
                print(
                    f"# {setup.name} daemons={n}: {result.jobs_per_s:.0f} jobs/s "
                    f"{result.commands_per_job:.1f} commands/job",
                    file=sys.stderr,
                )
        ceilings = []
        for setup in setups:
            if setup.name == "sharded":
                continue
            rate, cpu_us = protocol_ceiling(setup, args.protocol_jobs, args.protocol_clients)
            ceilings.append((setup.name, rate, cpu_us))
            print(f"# {setup.name} protocol alone: {rate:.0f} jobs/s, {cpu_us:.1f} µs Redis CPU/job", file=sys.stderr)
        load = os.getloadavg()[0]
    finally:
        if cluster is not None:
            cluster.close()
        single.close()
        s3.close()
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"- Date: {time.strftime('%Y-%m-%d')}; machine: {os.cpu_count()} cores, {platform.machine()}; "
        f"Python {platform.python_version()}; load average {load:.1f} at the end"
    )
    print(
        f"- Command: `bench/scale.py --jobs {args.jobs} --size {args.size} --daemons {args.daemons} "
        f"--concurrency {args.concurrency} --setups {args.setups} --shards {args.shards} "
        f"--protocol-jobs {args.protocol_jobs} --protocol-clients {args.protocol_clients}`"
    )
    print()
    print(f"{args.jobs} files × {args.size} bytes, each s3pod `--concurrency {args.concurrency}`:")
    print()
    print("| Redis | daemons | jobs/s | Redis commands/job |")
    print("| --- | ---: | ---: | ---: |")
    for r in results:
        print(f"| {r.setup} | {r.daemons} | {r.jobs_per_s:.0f} | {r.commands_per_job:.1f} |")
    print()
    print(f"The queue protocol alone, {args.protocol_jobs} jobs, {args.protocol_clients} client processes:")
    print()
    print("| Redis | jobs/s measured | Redis CPU µs/job | one slot's ceiling, jobs/s |")
    print("| --- | ---: | ---: | ---: |")
    for name, rate, cpu_us in ceilings:
        print(f"| {name} | {rate:.0f} | {cpu_us:.1f} | {1e6 / cpu_us:,.0f} |")


if __name__ == "__main__":
    main()
