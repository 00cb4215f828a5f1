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
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REGION = "us-east-1"


#: The ports :func:`free_port` handed out lately, one ``port time`` line each, shared by every
#: process on the machine that uses this module (pytest-xdist's workers, another checkout's suite).
PORTS_FILE = Path(tempfile.gettempdir()) / "s3po-test-ports"
#: How long a port handed out stays reserved: longer than any test holds one.
PORT_RESERVED_S = 1800.0


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now.

    The caller binds it later (or expects nothing there): meanwhile the kernel would give the
    same port to the next ``bind(("127.0.0.1", 0))`` of any process. So no port is handed out
    twice within :data:`PORT_RESERVED_S`, across processes: they agree through
    :data:`PORTS_FILE`, under an exclusive lock.
    """
    import fcntl

    def unbound() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    try:
        ledger = open(PORTS_FILE, "a+")
    except OSError:  # a file another user made: no sharing, just the kernel's pick
        return unbound()
    with ledger:
        fcntl.flock(ledger, fcntl.LOCK_EX)
        ledger.seek(0)
        now = time.time()
        recent: dict[int, float] = {}
        for line in ledger.read().splitlines():
            try:
                port, at = line.split()
                if now - float(at) < PORT_RESERVED_S:
                    recent[int(port)] = float(at)
            except ValueError:
                continue
        for _ in range(1000):
            port = unbound()
            if port not in recent:
                break
        recent[port] = now
        ledger.seek(0)
        ledger.truncate()
        ledger.write("".join(f"{p} {at:.3f}\n" for p, at in recent.items()))
        ledger.flush()
    return port


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
            find_binary("redis-server"),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            self.dir,
            "--save",
            "",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            self.appendfsync,
            "--logfile",
            os.path.join(self.dir, "redis.log"),
        ]
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
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
    #: more ``weed mini`` flags (the benchmarks add an HTTPS port and its certificate)
    extra_args: tuple[str, ...] = ()
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
            find_binary("weed"),
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
            "-s3.autoCreateBucket=false",
            "-s3.allowDeleteBucketNotEmpty=true",
            *(f"-{name}={port}" for name, port in self.ports.items()),
            *self.extra_args,
        ]
        env = {**os.environ, "AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}
        self.log = open(os.path.join(self.dir, "weed.log"), "ab")
        self.proc = subprocess.Popen(
            args,
            cwd=self.dir,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self._wait_ready()
        return self

    def client(self, **config: Any) -> Any:
        """Return a boto3 S3 client for this server (path-style, SigV4)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
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


def _start_redis(port: int, dir: str, *args: str) -> subprocess.Popen[bytes]:
    """Start one redis-server (or a sentinel, with ``--sentinel``) that logs into ``dir``."""
    os.makedirs(dir, exist_ok=True)
    return subprocess.Popen(
        [
            find_binary("redis-server"),
            *args,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            dir,
            "--daemonize",
            "no",
            "--logfile",
            os.path.join(dir, "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )


def _wait(predicate: Any, what: str, timeout_s: float = 30.0) -> Any:
    """Poll ``predicate`` (Redis errors count as not yet) until it returns something truthy."""
    import redis

    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (redis.RedisError, OSError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s}s waiting for {what} (last error: {last})")
        time.sleep(0.1)


@dataclass
class RedisClusterServers:
    """A real Redis Cluster on loopback: ``masters`` masters, each with one replica.

    Built as an operator would: ``redis-server --cluster-enabled yes`` per node, then
    ``redis-cli --cluster create ... --cluster-replicas 1``. A short ``cluster-node-timeout``
    makes a replica take over a killed master within a few seconds.
    """

    masters: int = 3
    node_timeout_ms: int = 1000
    dir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="s3po-cluster-"))
    ports: list[int] = field(default_factory=list)
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """``redis+cluster://`` with every master's address as a seed."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports[: self.masters])

    def _start_node(self, port: int) -> None:
        self.procs[port] = _start_redis(
            port,
            os.path.join(self.dir, str(port)),
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            str(self.node_timeout_ms),
            "--cluster-port",
            str(self.cluster_ports[port]),
            "--cluster-replica-validity-factor",
            "0",
            "--save",
            "",
            "--appendonly",
            "no",
        )

    def start(self) -> RedisClusterServers:
        import redis

        self.ports = [free_port() for _ in range(2 * self.masters)]
        self.cluster_ports = {port: free_port() for port in self.ports}
        for port in self.ports:
            self._start_node(port)
        for port in self.ports:
            _wait(redis.Redis(port=port, socket_timeout=1).ping, f"redis-server on {port}")
        subprocess.run(
            [
                find_binary("redis-cli"),
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in self.ports),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            timeout=60,
        )
        self.wait_healthy()
        return self

    def node(self, port: int) -> Any:
        import redis

        return redis.Redis(port=port, socket_timeout=2, decode_responses=True)

    def alive(self) -> list[int]:
        return [p for p, proc in self.procs.items() if proc.poll() is None]

    def master_of(self, key: str) -> int:
        """Return the port of the master that serves ``key``'s slot, as the live nodes agree."""

        def find() -> int | None:
            for port in self.alive():
                client = self.node(port)
                slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
                for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                    if int(start) <= slot <= int(end):
                        return int(master[1])
            return None

        return int(_wait(find, f"the master of {key!r}"))

    def wait_takeover(self, key: str, old: int, timeout_s: float = 30.0) -> int:
        """Wait until a node other than ``old`` serves ``key``'s slot as master, and the cluster is ok; return it."""

        def taken() -> int | None:
            port = self.master_of(key)
            if port == old or self.node(port).cluster("info")["cluster_state"] != "ok":
                return None
            return port

        return int(_wait(taken, f"a replica to take over {key!r} from {old}", timeout_s))

    def replicas_in_sync(self) -> bool:
        """True when every live master has a replica whose link is up and whose offset matches."""
        for port in self.alive():
            info = self.node(port).info("replication")
            if info["role"] == "master" and int(info.get("connected_slaves", 0)) < 1:
                return False
            if info["role"] == "slave" and info.get("master_link_status") != "up":
                return False
        return True

    def wait_healthy(self, timeout_s: float = 60.0) -> None:
        """Wait until every live node says ``cluster_state:ok`` and every master has a synced replica."""

        def healthy() -> bool:
            return (
                all(self.node(p).cluster("info")["cluster_state"] == "ok" for p in self.alive())
                and self.replicas_in_sync()
            )

        _wait(healthy, "a healthy cluster", timeout_s)

    def kill(self, port: int) -> None:
        """SIGKILL one node: no shutdown, no goodbye to the others."""
        stop_process(self.procs[port], signal.SIGKILL)

    def revive(self, port: int) -> None:
        """Start a killed node again on its port and nodes.conf: it rejoins (a replica if it lost its master role)."""
        self._start_node(port)
        _wait(self.node(port).ping, f"redis-server on {port}")

    def heal(self) -> None:
        """Restart every killed node and wait until the cluster has a synced replica per master again."""
        for port in self.ports:
            if self.procs[port].poll() is not None:
                self.revive(port)
        self.wait_healthy()

    def flush(self) -> None:
        """Empty every master (FLUSHALL), leaving the cluster's layout alone."""
        for port in self.alive():
            client = self.node(port)
            if client.info("replication")["role"] == "master":
                client.flushall()

    def close(self) -> None:
        for proc in self.procs.values():
            stop_process(proc)
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class RedisSentinelServers:
    """A master, one replica and ``sentinels`` Redis Sentinels (quorum 2) on loopback.

    Sentinels run as ``redis-server sentinel.conf --sentinel`` (what Debian's
    redis-sentinel package starts). A down-after of one second makes a failover take a few.
    """

    service: str = "s3po"
    sentinels: int = 3
    down_after_ms: int = 1000
    dir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="s3po-sentinel-"))
    data_ports: list[int] = field(default_factory=list)
    sentinel_ports: list[int] = field(default_factory=list)
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        seeds = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{seeds}/{self.service}"

    def _start_data(self, port: int, *args: str) -> None:
        self.procs[port] = _start_redis(
            port, os.path.join(self.dir, str(port)), "--save", "", "--appendonly", "no", *args
        )

    def start(self) -> RedisSentinelServers:
        import redis

        self.data_ports = [free_port(), free_port()]
        master, replica = self.data_ports
        self._start_data(master)
        self._start_data(replica, "--replicaof", "127.0.0.1", str(master))
        self.sentinel_ports = [free_port() for _ in range(self.sentinels)]
        for port in self.sentinel_ports:
            sdir = os.path.join(self.dir, f"sentinel-{port}")
            os.makedirs(sdir, exist_ok=True)
            conf = os.path.join(sdir, "sentinel.conf")
            with open(conf, "w") as f:
                f.write(
                    f"sentinel monitor {self.service} 127.0.0.1 {master} 2\n"
                    f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}\n"
                    f"sentinel failover-timeout {self.service} 5000\n"
                    f"sentinel parallel-syncs {self.service} 1\n"
                )
            self.procs[port] = _start_redis(port, sdir, conf, "--sentinel")
        for port in self.data_ports:
            _wait(redis.Redis(port=port, socket_timeout=1).ping, f"redis-server on {port}")
        self.wait_healthy()
        return self

    def sentinel(self, port: int) -> Any:
        import redis

        return redis.Redis(port=port, socket_timeout=2, decode_responses=True)

    def master_port(self) -> int:
        """Return the port of the master, as a majority of the live sentinels name it."""

        def agreed() -> int | None:
            named: list[int] = []
            for port in self.sentinel_ports:
                if self.procs[port].poll() is None:
                    addr = self.sentinel(port).sentinel_get_master_addr_by_name(self.service)
                    if addr:
                        named.append(int(addr[1]))
            best = max(set(named), key=named.count) if named else None
            return best if best is not None and named.count(best) >= 2 else None

        return int(_wait(agreed, "the sentinels to agree on a master"))

    def master_has_replica(self) -> bool:
        import redis

        info = redis.Redis(port=self.master_port(), socket_timeout=2).info("replication")
        return info["role"] == "master" and any(
            isinstance(v, dict) and v.get("state") == "online" for k, v in info.items() if k.startswith("slave")
        )

    def wait_healthy(self, timeout_s: float = 60.0) -> None:
        """Wait until every sentinel knows the master, its replica and the other sentinels (what a failover needs)."""

        def ready() -> bool:
            for port in self.sentinel_ports:
                master = self.sentinel(port).sentinel_master(self.service)
                if "s_down" in master["flags"] or "o_down" in master["flags"]:
                    return False
                if int(master["num-other-sentinels"]) < self.sentinels - 1 or int(master["num-slaves"]) < 1:
                    return False
            return self.master_has_replica()

        _wait(ready, "the sentinels to see a master, its replica and each other", timeout_s)

    def kill(self, port: int) -> None:
        stop_process(self.procs[port], signal.SIGKILL)

    def revive(self, port: int) -> None:
        """Start a killed data node again as a replica of the current master (the sentinels would
        make it one too, but only after their next INFO round, about 10 s)."""
        import redis

        self._start_data(port, "--replicaof", "127.0.0.1", str(self.master_port()))
        _wait(redis.Redis(port=port, socket_timeout=1).ping, f"redis-server on {port}")

    def heal(self) -> None:
        """Start a killed data node again and wait until the master has a synced replica (WAIT needs one)."""
        killed = [port for port in self.data_ports if self.procs[port].poll() is not None]
        for port in killed:
            self.revive(port)
        if killed:
            _wait(self.master_has_replica, "the revived node to replicate the master")

    def flush(self) -> None:
        import redis

        redis.Redis(port=self.master_port(), socket_timeout=2).flushall()

    def close(self) -> None:
        for proc in self.procs.values():
            stop_process(proc)
        shutil.rmtree(self.dir, ignore_errors=True)


def make_certs(directory: Path) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1 and localhost, made with openssl (TLS Redis, HTTPS store)."""
    ca_key, ca_crt = directory / "ca.key", directory / "ca.crt"
    key, csr, crt = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca_crt),
        "-days",
        "1",
        "-subj",
        "/CN=s3po test CA",
    )
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    run(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca_crt),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(crt),
        "-days",
        "1",
        "-extfile",
        str(ext),
    )
    return {"ca": ca_crt, "cert": crt, "key": key}


@dataclass
class HttpsS3Server:
    """SeaweedFS serving S3 over HTTPS too, with a certificate from a CA of its own (``ca``).

    Nothing trusts that CA unless told: a client reaches :attr:`url` only when given ``ca``
    (``AWS_CA_BUNDLE``, say), as with a private MinIO or Ceph.
    """

    dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="s3po-tls-")))
    https_port: int = field(default_factory=free_port)
    server: S3Server | None = None
    ca: Path | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def start(self) -> HttpsS3Server:
        certs = make_certs(self.dir)
        self.ca = certs["ca"]
        self.server = S3Server(
            extra_args=(
                f"-s3.port.https={self.https_port}",
                f"-s3.cert.file={certs['cert']}",
                f"-s3.key.file={certs['key']}",
            )
        ).start()
        wait_for_port(self.https_port)
        return self

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class ConnectProxy:
    """An HTTP proxy on loopback, as ``HTTPS_PROXY``/``HTTP_PROXY`` name one: CONNECT tunnels and
    absolute-form requests (``PUT http://host:port/path``), relayed byte for byte.

    ``requests`` holds the first request line of every connection (``CONNECT 127.0.0.1:8443``,
    ``PUT http://127.0.0.1:8333/b/k``): what went through the proxy.
    """

    def __init__(self) -> None:
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ConnectProxy:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, name="connectproxy", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._listener is not None:
            self._listener.close()

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        from urllib.parse import urlsplit

        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(65536)
            if not chunk:
                client.close()
                return
            head += chunk
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        with self._lock:
            self.requests.append(line)
        method, target, _ = line.split(" ", 2)
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
            upstream = socket.create_connection((host, int(port)))
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            rest = head.split(b"\r\n\r\n", 1)[1]
        else:  # an origin server takes the absolute form as it is (RFC 9112, 3.2.2)
            where = urlsplit(target)
            upstream = socket.create_connection((where.hostname or "127.0.0.1", where.port or 80))
            rest = head
        if rest:
            upstream.sendall(rest)
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pipe, args=(src, dst), daemon=True).start()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def rewriting_proxy(upstream_port: int, rewrites: list[tuple[bytes, bytes]]) -> Any:
    """A :class:`~faultproxy.FaultProxy` that also rewrites every answer's head and body with
    ``rewrites`` (regular expression, replacement): a store that says other things than SeaweedFS.

    A replacement must keep the body's length (Content-Length is passed on as it is).
    """
    import re

    from faultproxy import FaultProxy

    class _Rewriting:
        def __init__(self, sock: socket.socket) -> None:
            self.sock = sock

        def sendall(self, data: bytes) -> None:
            for pattern, replacement in rewrites:
                data = re.sub(pattern, replacement, data)
            self.sock.sendall(data)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.sock, name)

    class RewritingProxy(FaultProxy):
        def _relay_response(self, up: Any, client: Any, method: str, **faults: Any) -> bool:
            return super()._relay_response(up, _Rewriting(client), method, **faults)  # type: ignore[arg-type]

    return RewritingProxy(upstream_port)
