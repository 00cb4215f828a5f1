"""Benchmarks: s3po side by side with what people use instead, in one run, as ratios.

Starts its own redis-server and SeaweedFS on loopback (like the tests), makes the data,
then times each tool on the same files into the same store:

- many small files: s3pod (enqueue → done), the s3po engine, boto3 ``upload_file`` in a
  loop, ``aws s3 cp --recursive``, ``rclone copy``;
- one large file: the s3po engine, boto3 ``upload_file`` (s3transfer), ``aws s3 cp``,
  ``rclone copyto``;
- one large compressible file sent gzip-compressed: the s3po engine with
  ``compress="gzip"``, the ``gzip`` command piped into ``aws s3 cp -``.

Each case runs ``--repeat`` times; the median is reported, and the ratio
``other tool's time / s3po's time`` (above 1: s3po is faster).

    make bench                     # writes bench/results/latest.md
    .venv/bin/python bench/run.py --small-count 100 --large-mib 128 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from servers import REGION, RedisServer, S3Server, stop_process  # noqa: E402

AWS = shutil.which("aws", path=str(ROOT / ".venv-awscli" / "bin")) or shutil.which("aws")
RCLONE = shutil.which("rclone")


def median_time(fn: Callable[[], None], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def make_files(folder: Path, count: int, size: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    block = os.urandom(size)
    files = []
    for i in range(count):
        f = folder / f"f{i:05d}.bin"
        f.write_bytes(block[i % 256:] + block[: i % 256])
        files.append(f)
    return files


def make_large(path: Path, mib: int, compressible: bool) -> Path:
    with open(path, "wb") as out:
        for i in range(mib):
            if compressible:
                line = b"".join(b"2024-06-01T12:%02d:%02d INFO request id=%08d path=/api/v1/items status=200\n"
                                % (i % 60, j % 60, i * 1000 + j) for j in range(1024 * 1024 // 80))
                out.write(line[: 1024 * 1024].ljust(1024 * 1024, b"\n"))
            else:
                out.write(os.urandom(1024 * 1024))
    return path


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.redis = RedisServer().start()
        self.s3 = S3Server().start()
        self.client = self.s3.client()
        self.bucket = f"bench-{uuid.uuid4().hex[:8]}"
        self.client.create_bucket(Bucket=self.bucket)
        # SeaweedFS allocates volumes on a bucket's first writes (about a second): warm up
        # so that no tool pays for it.
        for i in range(16):
            self.client.put_object(Bucket=self.bucket, Key=f"warm-up/{i}", Body=os.urandom(1 << 20))
        self.work = Path(tempfile.mkdtemp(prefix="s3po-bench-"))
        self.env = {
            **os.environ, "AWS_ACCESS_KEY_ID": self.s3.access_key, "AWS_SECRET_ACCESS_KEY": self.s3.secret_key,
            "AWS_DEFAULT_REGION": REGION, "AWS_EC2_METADATA_DISABLED": "true",
        }
        from s3po_client.settings import S3Settings
        from s3po_client.transfer import TransferEngine

        self.engine = TransferEngine(S3Settings(access_id=self.s3.access_key, secret_key=self.s3.secret_key,
                                                region=REGION, endpoint_url=self.s3.url))
        self.rows: list[tuple[str, str, float]] = []

    def close(self) -> None:
        getattr(self.engine, "close", lambda: None)()
        self.s3.close()
        self.redis.close()
        shutil.rmtree(self.work, ignore_errors=True)

    def record(self, case: str, tool: str, fn: Callable[[], None]) -> None:
        seconds = median_time(fn, self.args.repeat)
        self.rows.append((case, tool, seconds))
        print(f"{case:<28} {tool:<34} {seconds:8.3f} s", flush=True)

    def prefix(self) -> str:
        return uuid.uuid4().hex[:8]

    # -- tools -----------------------------------------------------------------------

    def aws(self, *args: str) -> None:
        subprocess.run([AWS, "--endpoint-url", self.s3.url, "--only-show-errors", *args], env=self.env, check=True)

    def rclone_remote(self, path: str) -> str:
        return (f":s3,provider=Other,env_auth=false,access_key_id={self.s3.access_key},"
                f"secret_access_key={self.s3.secret_key},endpoint='{self.s3.url}',region={REGION}:{path}")

    def rclone(self, *args: str) -> None:
        # rclone refuses a custom CA bundle on its plain-HTTP transport; none is needed on loopback.
        env = {k: v for k, v in self.env.items() if k != "AWS_CA_BUNDLE"}
        subprocess.run([RCLONE, "--config", "/dev/null", *args], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    # -- cases -----------------------------------------------------------------------

    def small_files(self) -> None:
        count, size = self.args.small_count, self.args.small_kib * 1024
        case = f"{count} files × {self.args.small_kib} KiB"
        files = make_files(self.work / "small", count, size)

        import s3po_client
        from s3po_client.queue import connect, count_jobs

        env = {**self.env, **self.s3.daemon_env(), "S3POD_REDIS_URL": self.redis.url, "PYTHONPATH": str(ROOT),
               "S3POD_LOG_LEVEL": "WARNING"}
        daemon = subprocess.Popen([sys.executable, "-m", "s3pod", "--concurrency", str(self.args.concurrency)], env=env)
        r = connect(self.redis.url)
        try:
            time.sleep(1.0)

            def via_s3pod() -> None:
                p = self.prefix()
                s3po_client.enqueue_many(
                    [{"bucket": self.bucket, "key": f"{p}/{f.name}", "path": f, "delete": False} for f in files],
                    redis_url=self.redis.url)
                while True:
                    c = count_jobs(r)
                    if c.pending == 0 and c.processing == 0 and c.delayed == 0:
                        break
                    time.sleep(0.005)
                if c.dead:
                    raise RuntimeError(f"{c.dead} dead jobs")

            self.record(case, f"s3pod --concurrency {self.args.concurrency}", via_s3pod)
        finally:
            stop_process(daemon)
            r.close()

        def via_engine() -> None:
            p = self.prefix()
            for f in files:
                self.engine.upload_file(self.bucket, f"{p}/{f.name}", str(f))

        self.record(case, "s3po engine, one thread", via_engine)

        def via_boto3() -> None:
            p = self.prefix()
            for f in files:
                self.client.upload_file(str(f), self.bucket, f"{p}/{f.name}")

        self.record(case, "boto3 upload_file loop", via_boto3)
        if AWS:
            self.record(case, "aws s3 cp --recursive",
                        lambda: self.aws("s3", "cp", "--recursive", str(self.work / "small"),
                                         f"s3://{self.bucket}/{self.prefix()}/"))
        if RCLONE:
            self.record(case, "rclone copy",
                        lambda: self.rclone("copy", str(self.work / "small"),
                                            self.rclone_remote(f"{self.bucket}/{self.prefix()}")))

    def large_file(self) -> None:
        mib = self.args.large_mib
        case = f"1 file × {mib} MiB"
        big = make_large(self.work / "large.bin", mib, compressible=False)
        self.record(case, "s3po engine", lambda: self.engine.upload_file(self.bucket, f"{self.prefix()}/large", str(big)))
        self.record(case, "boto3 upload_file",
                    lambda: self.client.upload_file(str(big), self.bucket, f"{self.prefix()}/large"))
        if AWS:
            self.record(case, "aws s3 cp", lambda: self.aws("s3", "cp", str(big), f"s3://{self.bucket}/{self.prefix()}/large"))
        if RCLONE:
            self.record(case, "rclone copyto",
                        lambda: self.rclone("copyto", str(big), self.rclone_remote(f"{self.bucket}/{self.prefix()}/large")))
        big.unlink()

    def compressed_file(self) -> None:
        mib = self.args.large_mib
        case = f"{mib} MiB log, gzip on the way"
        log = make_large(self.work / "app.log", mib, compressible=True)
        self.record(case, "s3po engine compress=gzip",
                    lambda: self.engine.upload_file(self.bucket, f"{self.prefix()}/app.log.gz", str(log), compress="gzip"))
        if AWS:
            def gzip_pipe_aws() -> None:
                gz = subprocess.Popen(["gzip", "-c", str(log)], stdout=subprocess.PIPE)
                subprocess.run([AWS, "--endpoint-url", self.s3.url, "--only-show-errors", "s3", "cp",
                                "--content-encoding", "gzip", "-", f"s3://{self.bucket}/{self.prefix()}/app.log.gz"],
                               stdin=gz.stdout, env=self.env, check=True)
                assert gz.stdout is not None
                gz.stdout.close()
                if gz.wait() != 0:
                    raise RuntimeError("gzip failed")

            self.record(case, "gzip | aws s3 cp -", gzip_pipe_aws)

        def gzip_then_boto3() -> None:
            gz = self.work / "app.log.gz"
            subprocess.run(["gzip", "-c", str(log)], stdout=open(gz, "wb"), check=True)
            self.client.upload_file(str(gz), self.bucket, f"{self.prefix()}/app.log.gz",
                                    ExtraArgs={"ContentEncoding": "gzip"})
            gz.unlink()

        self.record(case, "gzip file, then boto3 upload_file", gzip_then_boto3)
        log.unlink()

    def report(self) -> str:
        lines = [
            f"Run on {time.strftime('%Y-%m-%d')} on {platform.node()}: {os.cpu_count()} cores, "
            f"{cpu_model()}, Python {platform.python_version()}, loopback SeaweedFS "
            f"(`weed mini`) and redis-server; median of {self.args.repeat} runs.",
            "",
            "| case | tool | seconds | time ÷ s3po's |",
            "| --- | --- | ---: | ---: |",
        ]
        cases: dict[str, list[tuple[str, float]]] = {}
        for case, tool, seconds in self.rows:
            cases.setdefault(case, []).append((tool, seconds))
        for case, entries in cases.items():
            base = entries[0][1]
            for tool, seconds in entries:
                shown = tool.replace("|", "\\|")  # a pipe in a tool's name would split the table cell
                lines.append(f"| {case} | {shown} | {seconds:.3f} | {seconds / base:.2f}× |")
        return "\n".join(lines) + "\n"


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small-count", type=int, default=200)
    parser.add_argument("--small-kib", type=int, default=64)
    parser.add_argument("--large-mib", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cases", default="small,large,compressed",
                        help="comma-separated cases to run: small, large, compressed")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "latest.md"))
    args = parser.parse_args()
    if not AWS:
        print("aws CLI not found: its rows are left out (make bench installs it)")
    if not RCLONE:
        print("rclone not found: its rows are left out (make bench installs it)")
    bench = Bench(args)
    try:
        cases = {"small": bench.small_files, "large": bench.large_file, "compressed": bench.compressed_file}
        for name in args.cases.split(","):
            cases[name.strip()]()
    finally:
        bench.close()
    text = bench.report()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
