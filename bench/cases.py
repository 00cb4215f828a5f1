"""The cases of the benchmark: what each tool does in each, and the targets s3po must meet there.

Each case is a context manager yielding a ``Case`` (starting the s3pod daemon it needs, and
stopping it after). Every tool is at its defaults, except where the case names a setting.
The s3pod rows count the daemon's CPU and the producer's enqueue, and the daemon's own peak
RSS; the time runs from the enqueue to the last job acknowledged (stored, verified, its
file deleted).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import data
import tools
from measure import Contender, Driver, Results, Sample, run_command, run_rounds
from rig import BUCKET, Daemon, Endpoint, Rig
from targets import CpuPerGiB, Faster, LessCpu, PeakRss, Smaller, Target

MiB = 1024 * 1024
GiB = 1024 * MiB


@dataclass(frozen=True)
class Sizes:
    """How big each case is, and how many rounds it runs."""

    large_bytes: int = 1 * GiB
    small_count: int = 2000
    small_bytes: int = 4 * 1024
    log_bytes: int = 1 * GiB
    enqueue_calls: int = 2000
    enqueue_many_calls: int = 10_000
    memory_bytes: int = 5 * GiB
    rounds: int = 5


FULL = Sizes()
QUICK = Sizes(
    large_bytes=64 * MiB,
    small_count=200,
    log_bytes=48 * MiB,
    enqueue_calls=300,
    enqueue_many_calls=2000,
    memory_bytes=192 * MiB,
    rounds=2,
)


@dataclass
class Case:
    """Contenders run interleaved; ``subjects`` are s3po's rows, compared with every other row."""

    name: str
    title: str
    contenders: list[Contender]
    subjects: list[str]
    targets: list[Target]
    rounds: int
    #: what a Sample's seconds are: "time" (of the whole run), "p50 latency" (of one call),
    #: or "rate" (the run handles ``count`` jobs)
    measures: str = "time"
    count: int = 0
    notes: list[str] = field(default_factory=list)

    def run(self) -> Results:
        print(f"\n{self.title}", flush=True)
        started = time.monotonic()
        results = run_rounds(self.contenders, self.rounds, label=self.name)
        print(f"  ({time.monotonic() - started:.0f} s)", flush=True)
        return results


@dataclass
class Bench:
    """What every case needs: the servers, the drivers (one per library), the sizes, a folder."""

    rig: Rig
    s3po: Driver
    boto3: Driver
    redis: Driver
    sizes: Sizes

    @property
    def work(self) -> Path:
        return self.rig.work

    def warm(self, endpoint: Endpoint) -> None:
        """Build each library's clients for ``endpoint`` and open their connections, untimed, as a running program has."""
        path = str(data.random_file(self.work / "warm.bin", MiB))
        url = endpoint.url
        for compress in (None, "gzip"):
            self.s3po.call("s3po_upload", endpoint=url, bucket=BUCKET, key="warm/s3po", path=path, compress=compress)
        self.s3po.call("s3po_download", endpoint=url, bucket=BUCKET, key="warm/s3po", path=f"{path}.s3po")
        self.boto3.call("boto3_upload", endpoint=url, bucket=BUCKET, key="warm/boto3", path=path)
        self.boto3.call("boto3_download", endpoint=url, bucket=BUCKET, key="warm/boto3", path=f"{path}.boto3")
        self.boto3.call("boto3_put_many", endpoint=url, bucket=BUCKET, prefix="warm", paths=[path] * 16)
        self.rig.clear("warm/")
        for left in (f"{path}.s3po", f"{path}.boto3"):
            Path(left).unlink()

    def command(self, name: str, endpoint: Endpoint, argv: Callable[[str], list[str]], **hooks: Any) -> Contender:
        def run(tag: str) -> Sample:
            command = argv(tag)
            return run_command(command, tools.environment(command, self.rig.env(endpoint)))

        return Contender(name, run, **hooks)

    def via_s3pod(
        self,
        name: str,
        daemon: Daemon,
        files: Callable[[], list[Path]],
        key: Callable[[str, Path], str],
        compress: str | None = None,
        **hooks: Any,
    ) -> Contender:
        """s3pod uploads hard links to ``files`` (made untimed), enqueued in one ``enqueue_many``."""
        links: dict[str, list[Path]] = {}

        def before(tag: str) -> None:
            links[tag] = data.hard_links(files(), daemon.spool / tag)

        def run(tag: str) -> Sample:
            jobs = [
                {"bucket": BUCKET, "key": key(tag, p), "path": str(p), "compress": compress} for p in links.pop(tag)
            ]
            daemon.meter.reset_peak()
            cpu_before = daemon.meter.cpu_s()
            done = self.s3po.call("s3pod_jobs", redis_url=self.rig.redis.url, jobs=jobs)
            cpu_s = daemon.meter.cpu_s() - cpu_before + done.extra["enqueue_cpu_s"]
            left = list((daemon.spool / tag).iterdir())
            if left:
                raise RuntimeError(f"s3pod acknowledged every job but left {len(left)} file(s) in {daemon.spool / tag}")
            (daemon.spool / tag).rmdir()
            return Sample(done.seconds, cpu_s, daemon.meter.peak_rss_bytes())

        def warm() -> None:
            link = data.hard_links([data.random_file(self.work / "warm.bin", MiB)], daemon.spool / "warm")[0]
            self.s3po.call(
                "s3pod_jobs",
                redis_url=self.rig.redis.url,
                jobs=[{"bucket": BUCKET, "key": "warm/s3pod", "path": str(link), "compress": compress}],
            )
            (daemon.spool / "warm").rmdir()
            self.rig.clear("warm/")

        return Contender(name, run, before=before, warm=warm, **hooks)


def size_label(n: int) -> str:
    return f"{n / GiB:g} GiB" if n >= GiB else f"{n / MiB:g} MiB"


# -- one large file ----------------------------------------------------------------------


@contextmanager
def large_upload(b: Bench, endpoint: Endpoint) -> Iterator[Case]:
    big = data.random_file(b.work / "large.bin", b.sizes.large_bytes)
    folder = f"large-{endpoint.name}"

    def key(tag: str, _: Path | None = None) -> str:
        return f"{folder}/{tag}/large.bin"

    def clear(tag: str) -> None:
        b.rig.clear(f"{folder}/{tag}/")

    url, path = endpoint.url, str(big)
    b.warm(endpoint)
    with b.rig.daemon(endpoint, b.work / f"spool-{endpoint.name}") as daemon:
        contenders = [
            Contender(
                "s3po Connection.uploadFile",
                lambda tag: b.s3po.call("s3po_upload", endpoint=url, bucket=BUCKET, key=key(tag), path=path),
                after=clear,
            ),
            b.via_s3pod("s3pod: enqueue → verified", daemon, lambda: [big], key, after=clear),
            Contender(
                "boto3 upload_file",
                lambda tag: b.boto3.call("boto3_upload", endpoint=url, bucket=BUCKET, key=key(tag), path=path),
                after=clear,
            ),
        ]
        if tools.AWS:
            contenders.append(
                b.command(
                    "aws s3 cp",
                    endpoint,
                    lambda tag: tools.aws(endpoint, "s3", "cp", path, f"s3://{BUCKET}/{key(tag)}"),
                    after=clear,
                )
            )
        if tools.RCLONE:
            contenders.append(
                b.command(
                    "rclone copyto",
                    endpoint,
                    lambda tag: tools.rclone(endpoint, "copyto", path, tools.rclone_remote(key(tag))),
                    after=clear,
                )
            )
            contenders.append(
                b.command(
                    "rclone copyto --s3-upload-concurrency 8 --s3-chunk-size 16M",
                    endpoint,
                    lambda tag: tools.rclone(
                        endpoint,
                        "copyto",
                        "--s3-upload-concurrency",
                        "8",
                        "--s3-chunk-size",
                        "16M",
                        path,
                        tools.rclone_remote(key(tag)),
                    ),
                    after=clear,
                )
            )
        if tools.CURL:
            contenders.append(
                b.command(
                    "curl -T (one PUT, SigV4)",
                    endpoint,
                    lambda tag: tools.curl_put(b.rig, endpoint, big, key(tag)),
                    after=clear,
                )
            )
        engine, s3pod = "s3po Connection.uploadFile", "s3pod: enqueue → verified"
        yield Case(
            f"large-{endpoint.name}",
            f"1 file × {size_label(b.sizes.large_bytes)} of random bytes, {endpoint.name.upper()}",
            contenders,
            [engine, s3pod],
            large_targets(engine, s3pod, endpoint, b.sizes.large_bytes / GiB),
            b.sizes.rounds,
        )


def large_targets(engine: str, s3pod: str, endpoint: Endpoint, gib: float) -> list[Target]:
    """Issue 20's: ≥ 1.15× boto3 over HTTP and HTTPS; over HTTP ≥ 1.0× curl and ≤ 1.5 CPU-s per GiB."""
    curl = "curl -T (one PUT, SigV4)"
    targets: list[Target] = [Faster(engine, "boto3 upload_file", 1.15)]
    if endpoint.name == "http":
        targets += [Faster(engine, curl, 1.0), CpuPerGiB(engine, gib, 1.5)]
    else:
        targets.append(Faster(engine, curl, 0.95, issue=9))
    return targets + [Faster(engine, "rclone copyto", 1.4, issue=9), Faster(s3pod, "boto3 upload_file", 1.1, issue=9)]


# -- many small files --------------------------------------------------------------------


@contextmanager
def small_files(b: Bench, endpoint: Endpoint) -> Iterator[Case]:
    count, size = b.sizes.small_count, b.sizes.small_bytes
    folder = b.work / "small"
    files = data.small_files(folder, count, size)
    paths = [str(f) for f in files]

    def clear(tag: str) -> None:
        b.rig.clear(f"small/{tag}/")

    b.warm(endpoint)
    with b.rig.daemon(endpoint, b.work / f"spool-{endpoint.name}") as daemon:
        s3pod, pool = "s3pod: enqueue_many → all acknowledged", "boto3 put_object, 16 threads"
        rclone = "rclone copy --transfers 16"
        contenders = [
            b.via_s3pod(s3pod, daemon, lambda: files, lambda tag, p: f"small/{tag}/{p.name}", after=clear),
            Contender(
                pool,
                lambda tag: b.boto3.call(
                    "boto3_put_many",
                    endpoint=endpoint.url,
                    bucket=BUCKET,
                    prefix=f"small/{tag}",
                    paths=paths,
                    threads=16,
                ),
                after=clear,
            ),
        ]
        if tools.RCLONE:
            contenders.append(
                b.command(
                    rclone,
                    endpoint,
                    lambda tag: tools.rclone(
                        endpoint, "copy", "--transfers", "16", str(folder), tools.rclone_remote(f"small/{tag}")
                    ),
                    after=clear,
                )
            )
        if tools.AWS:
            contenders.append(
                b.command(
                    "aws s3 cp --recursive",
                    endpoint,
                    lambda tag: tools.aws(
                        endpoint, "s3", "cp", "--recursive", str(folder), f"s3://{BUCKET}/small/{tag}/"
                    ),
                    after=clear,
                )
            )
        yield Case(
            "small",
            f"{count:,} files × {size // 1024} KiB, {endpoint.name.upper()}",
            contenders,
            [s3pod],
            [Faster(s3pod, pool, 2.0), Faster(s3pod, rclone, 1.0), LessCpu(s3pod, rclone)],
            b.sizes.rounds,
            notes=["boto3's pool gets as many pooled connections as threads (its default is 10)."],
        )


# -- compressed upload -------------------------------------------------------------------


@contextmanager
def compressed(b: Bench, endpoint: Endpoint) -> Iterator[Case]:
    log = data.log_file(b.work / "app.log", b.sizes.log_bytes)
    url, path = endpoint.url, str(log)
    b.warm(endpoint)

    def key(tag: str) -> str:
        return f"gz/{tag}/app.log.gz"

    def clear(tag: str) -> None:
        b.rig.clear(f"gz/{tag}/")

    def s3po(tag: str) -> Sample:
        done = b.s3po.call("s3po_upload", endpoint=url, bucket=BUCKET, key=key(tag), path=path, compress="gzip")
        return Sample(done.seconds, done.cpu_s, done.rss_bytes, {"bytes_out": b.rig.size_of(key(tag))})

    subject, gz, pigz, plain = (
        's3po Connection.uploadFile compress="gzip"',
        "gzip -6, then boto3 upload_file",
        "pigz -6 (every core), then boto3 upload_file",
        "boto3 upload_file, uncompressed",
    )
    contenders = [Contender(subject, s3po, after=clear)]
    if tools.GZIP:
        contenders.append(
            Contender(
                gz,
                lambda tag: b.boto3.call(
                    "compress_then_boto3",
                    endpoint=url,
                    bucket=BUCKET,
                    key=key(tag),
                    path=path,
                    command=[tools.GZIP, "-6", "-c"],
                ),
                after=clear,
            )
        )
    if tools.PIGZ:
        contenders.append(
            Contender(
                pigz,
                lambda tag: b.boto3.call(
                    "compress_then_boto3",
                    endpoint=url,
                    bucket=BUCKET,
                    key=key(tag),
                    path=path,
                    command=[tools.PIGZ, "-6", "-c"],
                ),
                after=clear,
            )
        )
    contenders.append(
        Contender(
            plain,
            lambda tag: b.boto3.call("boto3_upload", endpoint=url, bucket=BUCKET, key=key(tag), path=path),
            after=clear,
        )
    )
    yield Case(
        "gzip",
        f"{size_label(b.sizes.log_bytes)} of log lines, gzip on the way, {endpoint.name.upper()}",
        contenders,
        [subject],
        [
            Faster(subject, gz, 4.0, issue=9),
            Faster(subject, pigz, 2.0, issue=9),
            Faster(subject, plain, 1.0, "faster than boto3 uncompressed", issue=9),
            Smaller(subject, gz, 1.25),
        ],
        b.sizes.rounds,
    )


# -- download ----------------------------------------------------------------------------


@contextmanager
def download(b: Bench, endpoint: Endpoint) -> Iterator[Case]:
    big = data.random_file(b.work / "large.bin", b.sizes.large_bytes)
    source = "download/large.bin"
    b.rig.put(source, big)
    target = b.work / "downloaded"
    target.mkdir(exist_ok=True)
    url = endpoint.url
    b.warm(endpoint)

    def local(tag: str) -> str:
        return str(target / f"{tag}.bin")

    def remove(tag: str) -> None:
        Path(local(tag)).unlink()

    subject, peer = "s3po Connection.downloadFile", "boto3 download_file"
    contenders = [
        Contender(
            subject,
            lambda tag: b.s3po.call("s3po_download", endpoint=url, bucket=BUCKET, key=source, path=local(tag)),
            after=remove,
        ),
        Contender(
            peer,
            lambda tag: b.boto3.call("boto3_download", endpoint=url, bucket=BUCKET, key=source, path=local(tag)),
            after=remove,
        ),
    ]
    if tools.RCLONE:
        contenders.append(
            b.command(
                "rclone copyto",
                endpoint,
                lambda tag: tools.rclone(endpoint, "copyto", tools.rclone_remote(source), local(tag)),
                after=remove,
            )
        )
    if tools.AWS:
        contenders.append(
            b.command(
                "aws s3 cp",
                endpoint,
                lambda tag: tools.aws(endpoint, "s3", "cp", f"s3://{BUCKET}/{source}", local(tag)),
                after=remove,
            )
        )
    try:
        yield Case(
            "download",
            f"download 1 object × {size_label(b.sizes.large_bytes)}, {endpoint.name.upper()}",
            contenders,
            [subject],
            [Faster(subject, peer, 1.15), Faster(subject, "rclone copyto", 1.0)],
            b.sizes.rounds,
        )
    finally:
        b.rig.clear("download/")


# -- enqueueing --------------------------------------------------------------------------


def queue_call(b: Bench, driver: Driver, op: str, calls: int, latency: bool) -> Callable[[str], Sample]:
    """A contender's run: ``op`` with ``calls`` jobs under a prefix of its own, deleted untimed after."""
    import redis

    path = str(data.small_files(b.work / "enqueue", 1, 1024)[0])

    def run(tag: str) -> Sample:
        prefix = f"benchq-{tag}"
        done = driver.call(op, redis_url=b.rig.redis.url, prefix=prefix, path=path, calls=calls)
        r = redis.Redis.from_url(b.rig.redis.url)
        queued = r.llen(f"{prefix}:queue")
        r.delete(f"{prefix}:queue")
        r.close()
        if queued != calls:
            raise RuntimeError(f"{op} queued {queued} jobs, not {calls}")
        return Sample(done.extra["p50_s"] if latency else done.seconds, done.cpu_s, done.rss_bytes, done.extra)

    return run


@contextmanager
def enqueue_latency(b: Bench) -> Iterator[Case]:
    n = b.sizes.enqueue_calls
    subject, queued, peer = "s3po enqueue()", "s3po Connection.uploadFile (queued)", "redis-py LPUSH (one client)"
    yield Case(
        "enqueue",
        f"enqueue() latency, p50 of {n:,} calls",
        [
            Contender(subject, queue_call(b, b.s3po, "enqueue_latency", n, latency=True)),
            Contender(queued, queue_call(b, b.s3po, "connection_queued_latency", n, latency=True)),
            Contender(peer, queue_call(b, b.redis, "lpush_latency", n, latency=True)),
        ],
        [subject, queued],
        [Faster(subject, peer, 1 / 1.3, "p50 ≤ 1.3× raw LPUSH's", inverse=True)],
        b.sizes.rounds,
        measures="p50 latency",
        notes=[f"The seconds are one call's median latency; CPU is that of all {n:,} calls."],
    )


@contextmanager
def enqueue_many_rate(b: Bench) -> Iterator[Case]:
    n = b.sizes.enqueue_many_calls
    subject, peer = "s3po enqueue_many", "redis-py pipelined LPUSH"
    yield Case(
        "enqueue_many",
        f"enqueue_many of {n:,} jobs",
        [
            Contender(subject, queue_call(b, b.s3po, "enqueue_many_rate", n, latency=False)),
            Contender(peer, queue_call(b, b.redis, "pipelined_lpush_rate", n, latency=False)),
        ],
        [subject],
        [Faster(subject, peer, 0.7, "rate ≥ 0.7× pipelined LPUSH's", issue=9)],
        b.sizes.rounds,
        measures="rate",
        count=n,
    )


# -- memory ------------------------------------------------------------------------------


@contextmanager
def memory(b: Bench, endpoint: Endpoint) -> Iterator[Case]:
    n = b.sizes.memory_bytes
    plain, gz = f"s3pod, {size_label(n)} random file", f's3pod, {size_label(n)} log, compress="gzip"'
    files = {plain: data.random_file(b.work / "memory.bin", n), gz: data.log_file(b.work / "memory.log", n)}

    def clear(tag: str) -> None:
        b.rig.clear(f"memory/{tag}/")

    try:
        with b.rig.daemon(endpoint, b.work / f"spool-{endpoint.name}") as daemon:
            contenders = [
                b.via_s3pod(
                    name,
                    daemon,
                    lambda f=f: [f],
                    lambda tag, p: f"memory/{tag}/{p.name}",
                    compress="gzip" if name == gz else None,
                    after=clear,
                )
                for name, f in files.items()
            ]
            yield Case(
                "memory",
                f"memory: {size_label(n)} through s3pod at its default settings",
                contenders,
                [plain, gz],
                [PeakRss(plain, 150), PeakRss(gz, 150)],
                rounds=1,
                notes=["The RSS is the daemon's own peak (VmHWM) during the job."],
            )
    finally:
        for f in files.values():
            f.unlink(missing_ok=True)


def far_case(name: str, b: Bench) -> Any:
    """A case of ``far.py`` (the store 20 ms away), which imports this module."""
    import far

    return getattr(far, name)(b)


#: every case, by the name ``--cases`` takes, in the order of the report (issue 20's table, then the far cases)
CASES: dict[str, Callable[[Bench], Any]] = {
    "large": lambda b: large_upload(b, b.rig.http),
    "large-tls": lambda b: large_upload(b, b.rig.https),
    "small": lambda b: small_files(b, b.rig.http),
    "gzip": lambda b: compressed(b, b.rig.http),
    "download": lambda b: download(b, b.rig.http),
    "enqueue": lambda b: enqueue_latency(b),
    "enqueue_many": lambda b: enqueue_many_rate(b),
    "memory": lambda b: memory(b, b.rig.http),
    "small-far": lambda b: far_case("small_files_far", b),
    "large-far": lambda b: far_case("large_upload_far", b),
}

#: the order cases run in: the short ones first, so that a long run cut short has them
RUN_ORDER = [
    "enqueue",
    "enqueue_many",
    "small",
    "small-far",
    "memory",
    "large",
    "large-tls",
    "large-far",
    "download",
    "gzip",
]
