"""The servers the benchmark measures against, on loopback: redis-server, and SeaweedFS over HTTP and HTTPS.

One ``weed mini`` serves both: its plain S3 port, and an HTTPS port with a certificate
for 127.0.0.1 signed by a CA made here with openssl (as the tests make theirs for
rediss://). Every tool gets the CA bundle the way it takes one. ``Rig`` also cleans up
after each run (deletes what it stored, and vacuums SeaweedFS so its disk use stays flat)
and runs the s3pod daemon.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from delay import DelayProxy
from measure import ProcessMeter, die_with_parent

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from servers import REGION, RedisServer, S3Server, free_port, make_certs, stop_process  # noqa: E402

BUCKET = "bench"
#: deleted bytes after which the store is vacuumed (see ``Rig.clear``)
VACUUM_AFTER_BYTES = 1 << 30
#: the round trip of the far cases (the store behind ``delay.DelayProxy``)
FAR_RTT_MS = 20


@dataclass(frozen=True)
class Endpoint:
    """One way to reach the store: its URL and, over HTTPS, the CA bundle that proves it."""

    name: str  # "http", "https", or "far" (HTTP through the delay proxy)
    url: str
    ca_bundle: str | None = None


class Rig:
    """redis-server and SeaweedFS (HTTP and HTTPS), a bucket, a work folder; closed by ``close()``."""

    def __init__(self) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="s3po-bench-"))
        self.logs = self.work / "logs"
        self.logs.mkdir()
        certs = make_certs(self.work)
        https_port = free_port()
        self.redis = RedisServer().start()
        self.s3 = S3Server(
            extra_args=(
                f"-s3.port.https={https_port}",
                f"-s3.cert.file={certs['cert']}",
                f"-s3.key.file={certs['key']}",
            )
        ).start()
        self.http = Endpoint("http", self.s3.url)
        self.https = Endpoint("https", f"https://127.0.0.1:{https_port}", str(certs["ca"]))
        self.client = self.s3.client()
        self.garbage_bytes = 0
        self.proxy: DelayProxy | None = None
        self.client.create_bucket(Bucket=BUCKET)
        # SeaweedFS allocates volumes on a bucket's first writes (about a second): warm up
        # so that no tool pays for it.
        for i in range(16):
            self.client.put_object(Bucket=BUCKET, Key=f"warm-up/{i}", Body=os.urandom(1 << 20))
        self.clear("warm-up/")

    def far(self) -> tuple[Endpoint, DelayProxy]:
        """The store over HTTP, ``FAR_RTT_MS`` away through a delay proxy (started on first use)."""
        if self.proxy is None:
            self.proxy = DelayProxy(self.s3.port, FAR_RTT_MS / 2, self.work)
        return Endpoint("far", self.proxy.url), self.proxy

    def close(self) -> None:
        if self.proxy is not None:
            self.proxy.close()
        self.s3.close()
        self.redis.close()
        shutil.rmtree(self.work, ignore_errors=True)

    def env(self, endpoint: Endpoint | None = None) -> dict[str, str]:
        """The environment every tool runs in: the store's credentials and, over HTTPS, its CA bundle."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3PO", "RCLONE_"))}
        env.update(
            AWS_ACCESS_KEY_ID=self.s3.access_key,
            AWS_SECRET_ACCESS_KEY=self.s3.secret_key,
            AWS_DEFAULT_REGION=REGION,
            AWS_EC2_METADATA_DISABLED="true",
            AWS_CONFIG_FILE="/dev/null",
            AWS_SHARED_CREDENTIALS_FILE="/dev/null",
            PYTHONPATH=str(ROOT),
        )
        if endpoint is not None and endpoint.ca_bundle:
            env.update(AWS_CA_BUNDLE=endpoint.ca_bundle, SSL_CERT_FILE=endpoint.ca_bundle)
        return env

    # -- the store between runs ----------------------------------------------------------

    def clear(self, prefix: str) -> int:
        """Delete every object under ``prefix``; return the bytes they held.

        SeaweedFS reclaims deleted bytes only when it vacuums (every 14 minutes by
        itself): once a GiB or more is deleted, vacuum now, untimed, so a full run's disk
        use stays flat.
        """
        deleted = 0
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            objects = page.get("Contents", [])
            if not objects:
                continue
            deleted += sum(o["Size"] for o in objects)
            self.client.delete_objects(
                Bucket=BUCKET, Delete={"Objects": [{"Key": o["Key"]} for o in objects], "Quiet": True}
            )
        self.garbage_bytes += deleted
        if self.garbage_bytes >= VACUUM_AFTER_BYTES:
            self.vacuum()
            self.garbage_bytes = 0
        return deleted

    def vacuum(self) -> None:
        """Reclaim the space of deleted objects now, so a long run's disk use stays flat (and equal for each tool)."""
        master = self.s3.ports["master.port"]
        with urllib.request.urlopen(f"http://127.0.0.1:{master}/vol/vacuum?garbageThreshold=0.01", timeout=300):
            pass

    def size_of(self, key: str) -> int:
        return int(self.client.head_object(Bucket=BUCKET, Key=key)["ContentLength"])

    def put(self, key: str, path: Path) -> None:
        self.client.upload_file(str(path), BUCKET, key)

    # -- the daemon ----------------------------------------------------------------------

    @contextmanager
    def daemon(self, endpoint: Endpoint, spool: Path, args: Sequence[str] = ()) -> Iterator[Daemon]:
        """s3pod at its default settings (or with ``args``) against ``endpoint``, reading and deleting files under ``spool``."""
        spool.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"s3pod-{endpoint.name}.log"
        env = {
            **self.env(endpoint),
            **self.s3.daemon_env(),
            "S3POD_ENDPOINT_URL": endpoint.url,
            "S3POD_REDIS_URL": self.redis.url,
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "s3pod", "--allow-dir", str(spool), "--log-file", str(log), *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stderr=open(self.logs / "s3pod-stderr.log", "ab"),
            preexec_fn=die_with_parent,
        )
        try:
            deadline = time.monotonic() + 60
            while b" ready: " not in (log.read_bytes() if log.exists() else b""):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"s3pod did not start: see {log}")
                time.sleep(0.05)
            yield Daemon(proc, ProcessMeter(proc.pid), spool, log)
        finally:
            stop_process(proc, signal.SIGTERM, timeout_s=30)


@dataclass
class Daemon:
    """A running s3pod: its process, a meter on it, the folder it may read, its log."""

    proc: subprocess.Popen[Any]
    meter: ProcessMeter
    spool: Path
    log: Path
