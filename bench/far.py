"""The far cases: the store 20 ms round trip away (``delay.DelayProxy``), where throughput is
how many requests a client keeps in flight, for how little CPU.

Every sample also carries the delay proxy's CPU seconds during the run (``proxy_cpu_s``),
shown in a column of its own: the proxy is no client's process, and its CPU is in no
client's column, but it shares the cores with them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import data
import tools
from cases import Bench, Case, size_label
from delay import DelayProxy
from measure import Contender, Sample
from rig import BUCKET, FAR_RTT_MS
from targets import Faster, FasterThanBest

#: rounds of the 1 GiB far case (the full run's slowest case; 3 keep ``make bench`` near 45 minutes)
LARGE_ROUNDS = 3


def metered(proxy: DelayProxy, contender: Contender) -> Contender:
    """``contender`` with the proxy's CPU during each run in its Sample's ``proxy_cpu_s``."""
    run = contender.run

    def measured(tag: str) -> Sample:
        before = proxy.cpu_s()
        sample = run(tag)
        return replace(sample, extra={**sample.extra, "proxy_cpu_s": proxy.cpu_s() - before})

    return replace(contender, run=measured)


@contextmanager
def small_files_far(b: Bench) -> Iterator[Case]:
    endpoint, proxy = b.rig.far()
    count, size = b.sizes.small_count, b.sizes.small_bytes
    folder = b.work / "small"
    files = data.small_files(folder, count, size)
    paths = [str(f) for f in files]

    def clear(tag: str) -> None:
        b.rig.clear(f"small/{tag}/")

    def pool(threads: int) -> Contender:
        def put(prefix: str, these: list[str]) -> Sample:
            return b.boto3.call(
                "boto3_put_many", endpoint=endpoint.url, bucket=BUCKET, prefix=prefix, paths=these, threads=threads
            )

        def warm() -> None:  # its own client, with ``threads`` pooled connections, opened untimed
            put("warm", paths[:threads])
            b.rig.clear("warm/")

        return Contender(
            f"boto3 put_object, {threads} threads", lambda tag: put(f"small/{tag}", paths), after=clear, warm=warm
        )

    def rclone(transfers: int) -> Contender:
        return b.command(
            f"rclone copy --transfers {transfers}",
            endpoint,
            lambda tag: tools.rclone(
                endpoint, "copy", "--transfers", str(transfers), str(folder), tools.rclone_remote(f"small/{tag}")
            ),
            after=clear,
        )

    b.warm(endpoint)
    with b.rig.daemon(endpoint, b.work / "spool-far") as daemon:
        s3pod = "s3pod: enqueue_many → all acknowledged"
        contenders = [
            b.via_s3pod(s3pod, daemon, lambda: files, lambda tag, p: f"small/{tag}/{p.name}", after=clear),
            pool(16),
            pool(64),
        ]
        if tools.RCLONE:
            contenders += [rclone(16), rclone(64)]
        peers = tuple(c.name for c in contenders[1:])
        yield Case(
            "small-far",
            f"{count:,} files × {size // 1024} KiB, HTTP, {FAR_RTT_MS} ms round trip",
            [metered(proxy, c) for c in contenders],
            [s3pod],
            [FasterThanBest(s3pod, peers, 1.5)],
            b.sizes.rounds,
            notes=[far_note(proxy)],
        )


@contextmanager
def large_upload_far(b: Bench) -> Iterator[Case]:
    endpoint, proxy = b.rig.far()
    big = data.random_file(b.work / "large.bin", b.sizes.large_bytes)
    url, path = endpoint.url, str(big)

    def key(tag: str, _: Path | None = None) -> str:
        return f"large-far/{tag}/large.bin"

    def clear(tag: str) -> None:
        b.rig.clear(f"large-far/{tag}/")

    b.warm(endpoint)
    with b.rig.daemon(endpoint, b.work / "spool-far") as daemon:
        engine, s3pod, boto3 = "s3po Connection.uploadFile", "s3pod: enqueue → verified", "boto3 upload_file"
        contenders = [
            Contender(
                engine,
                lambda tag: b.s3po.call("s3po_upload", endpoint=url, bucket=BUCKET, key=key(tag), path=path),
                after=clear,
            ),
            b.via_s3pod(s3pod, daemon, lambda: [big], key, after=clear),
            Contender(
                boto3,
                lambda tag: b.boto3.call("boto3_upload", endpoint=url, bucket=BUCKET, key=key(tag), path=path),
                after=clear,
            ),
        ]
        if tools.RCLONE:
            contenders.append(
                b.command(
                    "rclone copyto",
                    endpoint,
                    lambda tag: tools.rclone(endpoint, "copyto", path, tools.rclone_remote(key(tag))),
                    after=clear,
                )
            )
        if tools.AWS:
            contenders.append(
                b.command(
                    "aws s3 cp",
                    endpoint,
                    lambda tag: tools.aws(endpoint, "s3", "cp", path, f"s3://{BUCKET}/{key(tag)}"),
                    after=clear,
                )
            )
        peers = tuple(c.name for c in contenders[2:])
        rounds = min(b.sizes.rounds, LARGE_ROUNDS)
        yield Case(
            "large-far",
            f"1 file × {size_label(b.sizes.large_bytes)} of random bytes, HTTP, {FAR_RTT_MS} ms round trip",
            [metered(proxy, c) for c in contenders],
            [engine, s3pod],
            [FasterThanBest(engine, peers, 1.15), Faster(s3pod, boto3, 1.1, issue=9)],
            rounds,
            notes=[
                far_note(proxy) + (f" {rounds} rounds: the slowest case of the run." if rounds < b.sizes.rounds else "")
            ],
        )


def far_note(proxy: DelayProxy) -> str:
    return (
        f"The store is {FAR_RTT_MS} ms round trip away: `bench/delayproxy.c` holds each side's bytes "
        f"{proxy.one_way_ms:g} ms before passing them on, at most 4 MiB per direction and connection (a TCP "
        "window), and a new connection waits one round trip (the handshake). Proxy CPU s: the proxy's own, "
        "in no client's column."
    )
