"""Real servers on free loopback ports: redis-server and SeaweedFS (``weed mini``) for S3.

Used by the test suite (``conftest.py``), the demo and the benchmarks. Each server owns a
temp directory, binds only 127.0.0.1, and can be restarted on the same port and data.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REGION = "us-east-1"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout_s}s")


def find_binary(name: str) -> str:
    """Return the path of ``name``: beside this Python (a venv's bin), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found: run 'make test' (it installs it)")
    return found


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the process that started it dies.

    A test run killed by a timeout (or a Ctrl-C that skips teardown) then leaves no
    redis-server or weed behind on the machine.
    """
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_process(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, timeout_s: float = 10) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class RedisServer:
    """A redis-server of our own; ``appendonly`` turns AOF persistence on, fsynced as ``appendfsync`` says."""

    appendonly: bool = False
    appendfsync: str = "always"
    port: int = field(default_factory=free_port)
    dir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="s3po-redis-"))
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [
            find_binary("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", self.dir, "--save", "", "--daemonize", "no", "--protected-mode", "yes",
            "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", self.appendfsync,
            "--logfile", os.path.join(self.dir, "redis.log"),
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True, preexec_fn=_die_with_parent)
        self._wait_ready()
        return self

    def _wait_ready(self, timeout_s: float = 20) -> None:
        import redis

        deadline = time.monotonic() + timeout_s
        client = redis.Redis(port=self.port, socket_timeout=1)
        while True:
            try:
                if client.ping():
                    client.close()
                    return
            except redis.RedisError:
                pass
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: see {self.dir}/redis.log")
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not answer PING")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.proc, sig)
        self.proc = None

    def restart(self, down_s: float = 0.0, sig: int = signal.SIGTERM) -> None:
        """Stop the server (SIGTERM saves the AOF; SIGKILL does not), wait, start it on the same port."""
        self.stop(sig)
        time.sleep(down_s)
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class S3Server:
    """SeaweedFS ``weed mini``: a real S3 API on loopback that enforces SigV4."""

    access_key: str = "s3po-test"
    secret_key: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)
    dir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="s3po-s3-"))
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        return self.ports["s3.port"]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        if not self.ports:
            names = ["master.port", "volume.port", "filer.port", "s3.port", "admin.port"]
            for name in names:
                self.ports[name] = free_port()
                self.ports[f"{name}.grpc"] = free_port()
            for name in ["s3.port.iceberg", "s3.port.lance", "webdav.port"]:
                self.ports[name] = free_port()
        data = os.path.join(self.dir, "data")
        os.makedirs(data, exist_ok=True)
        args = [
            find_binary("weed"), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-webdav=false", "-admin.ui=false", "-master.telemetry=false", "-s3.autoCreateBucket=false",
            "-s3.allowDeleteBucketNotEmpty=true",
            *(f"-{name}={port}" for name, port in self.ports.items()),
        ]
        env = {**os.environ, "AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}
        self.log = open(os.path.join(self.dir, "weed.log"), "ab")
        self.proc = subprocess.Popen(args, cwd=self.dir, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=_die_with_parent)
        self._wait_ready()
        return self

    def client(self, **config: Any) -> Any:
        """Return a boto3 S3 client for this server (path-style, SigV4)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=self.url, region_name=REGION,
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"}, **config),
        )

    def _wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        client = self.client(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1})
        probe = "s3po-ready-probe"
        while True:
            try:
                client.create_bucket(Bucket=probe)
            except Exception as exc:  # noqa: BLE001 - not up yet, or the bucket exists already
                code = getattr(exc, "response", {}).get("Error", {}).get("Code")
                if code == "BucketAlreadyOwnedByYou" or code == "BucketAlreadyExists":
                    pass
                else:
                    if self.proc is not None and self.proc.poll() is not None:
                        raise RuntimeError(f"weed exited: see {self.dir}/weed.log") from exc
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"S3 server not ready: {exc}") from exc
                    time.sleep(0.2)
                    continue
            try:
                client.put_object(Bucket=probe, Key="probe", Body=b"ok")
                return
            except Exception as exc:  # noqa: BLE001
                if time.monotonic() > deadline:
                    raise RuntimeError(f"S3 server not ready: {exc}") from exc
                time.sleep(0.2)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.proc, sig)
        self.proc = None

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def daemon_env(self) -> dict[str, str]:
        """Return the S3POD_* variables that point s3pod at this server."""
        return {
            "S3POD_ENDPOINT_URL": self.url,
            "S3POD_ACCESS_ID": self.access_key,
            "S3POD_SECRET_KEY": self.secret_key,
            "S3POD_REGION": REGION,
        }
