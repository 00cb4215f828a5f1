"""The unit under a real systemd: a booted Debian container runs s3pod as the README installs it.

One container for the module (``systemd-nspawn --boot`` on the tree of ``scripts/systemd-tree``),
sharing the host's loopback: s3pod inside talks to this module's redis-server and, through a
fault proxy, to the suite's SeaweedFS. The install is the README's "Run as a service" block,
run as it is written, with ``$EDITOR`` set to a command that writes the test's settings. Each
test then checks one promise of the unit and leaves the service running with those settings.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import ROOT
from faultproxy import FaultProxy
from nspawn import Container, can_boot_here
from servers import REGION, RedisServer, S3Server, free_port

from s3po_client.admin import count_jobs

#: ``make test-systemd`` sets it: asked for by name, the test fails where it cannot run.
from s3po_client.keys import QueueKeys

#: ``make test-systemd`` sets it: asked for by name, the test fails where it cannot run.
REQUIRED = os.environ.get("S3PO_TEST_SYSTEMD") == "required"
if can_boot_here() is not None and REQUIRED:
    raise RuntimeError(f"make test-systemd cannot run here: {can_boot_here()}")

pytestmark = [
    pytest.mark.skipif(can_boot_here() is not None, reason=f"no container here: {can_boot_here()}"),
    pytest.mark.timeout(600),
]

README = ROOT / "docs" / "service.md"  # its "Run as a service" section
ENV_EXAMPLE = ROOT / "systemd" / "s3pod.env.example"
SPOOL = "/var/spool/s3po"
CHECKOUT = "/root/s3po"  # the README runs "as root, in a checkout of s3po"
EDITOR = "/root/edit-settings"
WANTED_SETTINGS = "/root/s3pod.env.wanted"
#: WatchdogSec for the watchdog test (the unit says 30s: two of those would be a minute of waiting).
SHORT_WATCHDOG_S = 3


def readme_service_blocks() -> list[str]:
    """Return the ```sh blocks of the "Run as a service" section of docs/service.md, in order."""
    text = README.read_text()
    section = text.split("\n## Run as a service\n", 1)[1].split("\n## ", 1)[0]
    section = section.split("\n### ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.DOTALL)


def edit_settings(example: str, values: dict[str, str]) -> str:
    """Return ``example`` with each ``KEY=`` line (commented out or not) set to ``values[KEY]``.

    Every key must already be in the example: the settings a user is told to edit exist there.
    """
    lines = example.splitlines()
    for key, value in values.items():
        hits = [i for i, line in enumerate(lines) if re.match(rf"#?{key}=", line)]
        assert hits, f"{key} is not in {ENV_EXAMPLE.name}"
        lines[hits[0]] = f"{key}={value}"
    return "\n".join(lines) + "\n"


@dataclass
class Rig:
    """The booted container with s3pod installed, and the servers it talks to."""

    box: Container
    redis: RedisServer
    s3: S3Server
    proxy: FaultProxy
    bucket: str
    redis_password: str = field(repr=False)
    api_token: str = field(repr=False)
    settings: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def redis_url(self) -> str:
        return f"redis://s3pod:{self.redis_password}@127.0.0.1:{self.redis.port}/0"

    @property
    def secrets(self) -> dict[str, str]:
        return {"S3 secret key": self.s3.secret_key, "Redis password": self.redis_password, "API token": self.api_token}

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    def start_redis(self) -> None:
        """Start our redis-server, with the user ``s3pod`` the settings name (ACLs live in memory)."""
        self.redis.start()
        with redis.Redis(port=self.redis.port) as admin:
            admin.acl_setuser(
                "s3pod",
                enabled=True,
                passwords=[f"+{self.redis_password}"],
                keys=["*"],
                channels=["*"],
                commands=["+@all"],
            )

    def write_settings(self, **changes: str) -> None:
        """Put the settings ``$EDITOR`` writes in place (the defaults below, then ``changes``)."""
        self.settings = {
            "S3POD_REDIS_URL": self.redis_url,
            "S3POD_REGION": REGION,
            "S3POD_ACCESS_ID": self.s3.access_key,
            "S3POD_SECRET_KEY": self.s3.secret_key,
            "S3POD_ENDPOINT_URL": self.proxy.url,
            "S3POD_API_LISTEN": f"127.0.0.1:{free_port()}",
            "S3POD_API_TOKEN": self.api_token,
            **changes,
        }
        self.box.sh(f"cat > {WANTED_SETTINGS}", input=edit_settings(ENV_EXAMPLE.read_text(), self.settings))

    def reconfigure(self, **changes: str) -> None:
        """Edit /etc/s3po/s3pod.env as a user would, and restart the service."""
        self.write_settings(**changes)
        self.box.sh(f"{EDITOR} /etc/s3po/s3pod.env && systemctl restart s3pod")

    def unit(self, *names: str) -> dict[str, str]:
        """Return properties of s3pod.service (``systemctl show``)."""
        out = self.box.sh("systemctl show s3pod " + " ".join(f"-p {n}" for n in names)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def state(self) -> str:
        u = self.unit("ActiveState", "SubState")
        return f"{u['ActiveState']}/{u['SubState']}"

    def main_pid(self) -> int:
        return int(self.unit("MainPID")["MainPID"])

    def journal(self) -> str:
        return self.box.sh("journalctl -u s3pod --no-pager -o short-monotonic", check=False).stdout

    def wait_for(self, what: str, ok: Callable[[], bool], timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not ok():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"not {what} after {timeout_s}s; the service is {self.state()}; "
                    f"its journal ends:\n{self.journal()[-3000:]}"
                )
            time.sleep(0.2)

    def spool(self, name: str, text: str) -> str:
        """Write a file into the spool as a producer does (www-data, umask 007); return its path."""
        path = f"{SPOOL}/{name}"
        self.box.sh(f"runuser -u www-data -- sh -c 'umask 007; cat > {path}'", input=text)
        return path

    def enqueue(self, path: str, key: str) -> None:
        """Queue ``path`` for ``s3://bucket/key`` with the installed ``s3po``, as the producer."""
        # The URL goes by the environment: on runuser's command line it would reach the journal
        # (journald records the command line of a process that logs, and runuser's PAM session does).
        self.box.sh(
            f"export S3PO_REDIS_URL={shlex.quote(self.redis_url)}\n"
            f"runuser -u www-data -- /opt/s3po/bin/s3po enqueue {path} s3://{self.bucket}/{key}"
        )

    def exists(self, path: str) -> bool:
        return self.box.sh(f"test -e {path}", check=False).returncode == 0

    def stored(self, key: str) -> bytes | None:
        try:
            return bytes(self.s3.client().get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except Exception:  # noqa: BLE001 - not there (yet)
            return None

    def idle(self) -> bool:
        """True when no job is pending, in flight or waiting for a retry."""
        with self.client() as c:
            counts = count_jobs(c)
        return counts.pending == counts.processing == counts.delayed == 0

    def assert_done(self, path: str, key: str, text: str) -> None:
        """The job of ``path`` ended well: stored byte for byte, its file deleted, nothing queued."""
        self.wait_for(f"uploaded and deleted: {path}", lambda: not self.exists(path) and self.idle())
        assert self.stored(key) == text.encode()
        with self.client() as c:
            assert c.llen(QueueKeys().dead) == 0, c.lrange(QueueKeys().dead, 0, -1)


@pytest.fixture(scope="module")
def rig(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    logs = tmp_path_factory.mktemp("systemd")
    # Its progress and the time debootstrap took (the first run only) go to stderr, for pytest to show.
    tree = Path(
        subprocess.run(
            [str(ROOT / "scripts" / "systemd-tree")], check=True, stdout=subprocess.PIPE, text=True, timeout=1200
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    pip_cache = ROOT / ".cache" / "systemd-pip"
    pip_cache.mkdir(parents=True, exist_ok=True)
    # The container reaches the package registry the way this machine does: with its trust
    # store and its pip configuration. pip's cache persists across boots.
    binds_ro = [p for p in ("/etc/ssl/certs", "/etc/pip.conf") if Path(p).exists()]
    box = Container(
        tree,
        f"s3po-{uuid.uuid4().hex[:8]}",
        logs / "nspawn.log",
        binds=[f"{pip_cache}:/root/.cache/pip"],
        binds_ro=binds_ro,
    )
    proxy = FaultProxy(s3_server.port).start()
    rig = Rig(
        box=box,
        redis=RedisServer(),
        s3=s3_server,
        proxy=proxy,
        bucket=f"t-{uuid.uuid4().hex[:20]}",
        redis_password=secrets.token_urlsafe(18),
        api_token=secrets.token_urlsafe(24),
    )
    rig.start_redis()
    s3_server.client().create_bucket(Bucket=rig.bucket)
    try:
        box.boot()
        files = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split("\0")
        box.copy_in(ROOT, [f for f in files if f and (ROOT / f).is_file()], CHECKOUT)
        box.sh(f"printf '#!/bin/sh\\ncat {WANTED_SETTINGS} > \"$1\"\\n' > {EDITOR} && chmod +x {EDITOR}")
        rig.write_settings()
        install = readme_service_blocks()[0]
        box.sh(f"cd {CHECKOUT}\nexport EDITOR={EDITOR}\n{install}", timeout_s=600)
        yield rig
    finally:
        if box.leader is not None:
            (logs / "journal.txt").write_text(box.sh("journalctl --no-pager -b", check=False).stdout)
        box.poweroff()
        proxy.close()
        rig.redis.close()
        s3_server.client().delete_bucket(Bucket=rig.bucket)  # the server deletes it with its objects


def test_the_readme_steps_install_and_start_the_service(rig: Rig) -> None:
    assert rig.state() == "active/running"
    assert rig.box.sh("systemctl is-enabled s3pod").stdout.strip() == "enabled"
    status = rig.box.sh("systemctl status s3pod --no-pager").stdout
    assert "active (running)" in status
    assert re.search(r"Status: \"processing jobs from redis://s3pod:\*\*\*@127\.0\.0\.1:\d+/0", status), status

    # "Check it", as written, with the placeholders filled in and without following the journal.
    check = readme_service_blocks()[1]
    check = check.replace("redis://...", rig.redis_url).replace("my-bucket", rig.bucket)
    check = check.replace("journalctl -u s3pod -f", "journalctl -u s3pod --no-pager")
    out = rig.box.sh(f"export EDITOR={EDITOR}\n{check}").stdout
    hostname = rig.box.sh("cat /etc/hostname").stdout
    rig.assert_done(f"{SPOOL}/hello.txt", "hello.txt", hostname)
    status_after = rig.box.sh(f"S3PO_REDIS_URL={shlex.quote(rig.redis_url)} /opt/s3po/bin/s3po status").stdout
    assert re.search(r"(?m)^pending\s+0$", status_after), status_after

    # The exposure score the README quotes is the one systemd computes for the running unit.
    claimed = re.search(r"systemd-analyze security s3pod\s+# .*?([0-9.]+), \"(\w+)\"", readme_service_blocks()[1])
    assert claimed, "the README quotes an exposure score"
    score = re.search(r"Overall exposure level for s3pod\.service: ([0-9.]+) (\w+)", out)
    assert score, out[-2000:]
    assert (score.group(1), score.group(2)) == (claimed.group(1), claimed.group(2))


def test_start_reaches_active_only_after_ready(rig: Rig) -> None:
    rig.box.sh("systemctl stop s3pod")
    rig.redis.stop()  # s3pod sends READY=1 only once Redis answers
    try:
        rig.box.sh("systemctl start --no-block s3pod")
        rig.wait_for("started", lambda: rig.main_pid() != 0, timeout_s=30)
        pid = rig.main_pid()
        time.sleep(3)
        u = rig.unit("ActiveState", "SubState", "StatusText", "MainPID")
        assert (u["ActiveState"], u["SubState"]) == ("activating", "start"), u
        assert int(u["MainPID"]) == pid, "s3pod runs while the unit is not active yet"
        assert u["StatusText"].startswith("starting: waiting for Redis"), u
    finally:
        rig.start_redis()
    started = time.monotonic()
    rig.box.sh("systemctl start s3pod")  # waits for the start job: until READY=1
    u = rig.unit(
        "ActiveState",
        "SubState",
        "StatusText",
        "MainPID",
        "NRestarts",
        "ExecMainStartTimestampMonotonic",
        "ActiveEnterTimestampMonotonic",
    )
    assert (u["ActiveState"], u["SubState"]) == ("active", "running"), u
    assert int(u["MainPID"]) == pid and u["NRestarts"] == "0", "the same process became ready"
    assert u["StatusText"].startswith("processing jobs from"), u
    waited_s = (int(u["ActiveEnterTimestampMonotonic"]) - int(u["ExecMainStartTimestampMonotonic"])) / 1e6
    assert waited_s >= 3, f"active {waited_s:.1f}s after the start, while Redis was down for 3s"
    assert time.monotonic() - started < 30


def test_a_start_that_never_gets_ready_times_out_and_is_tried_again(rig: Rig) -> None:
    assert rig.unit("TimeoutStartUSec")["TimeoutStartUSec"] == "1min 30s"  # the README's 90 s
    dropin = "/etc/systemd/system/s3pod.service.d/start-timeout.conf"  # 90 s, shortened to 2 s here
    rig.box.sh(
        f"systemctl stop s3pod && mkdir -p {dropin.rsplit('/', 1)[0]}"
        f" && printf '[Service]\\nTimeoutStartSec=2s\\n' > {dropin} && systemctl daemon-reload"
    )
    rig.redis.stop()
    try:
        rig.box.sh("systemctl start --no-block s3pod")
        rig.wait_for("timed out", lambda: rig.unit("Result")["Result"] == "timeout", timeout_s=20)
        rig.wait_for("tried again", lambda: rig.unit("NRestarts")["NRestarts"] != "0", timeout_s=20)
    finally:
        rig.start_redis()
        rig.box.sh(f"rm -f {dropin} && systemctl daemon-reload && systemctl restart s3pod")
    assert rig.state() == "active/running"


def test_a_job_from_the_spool_is_uploaded_and_its_file_deleted(rig: Rig) -> None:
    text = "report of the day\n" * 1000
    path = rig.spool("report.csv", text)
    assert rig.box.sh(f"stat -c '%U:%G %a' {path}").stdout.strip() == "www-data:s3po 660"
    rig.enqueue(path, "reports/report.csv")
    rig.assert_done(path, "reports/report.csv", text)
    journal = rig.journal()
    assert re.search(r"uploaded job=\S+ bucket=\S+ key=reports/report\.csv", journal), journal[-2000:]


def test_the_watchdog_is_pinged_and_a_hang_is_restarted(rig: Rig) -> None:
    dropin = "/etc/systemd/system/s3pod.service.d/watchdog.conf"
    rig.box.sh(
        f"mkdir -p {dropin.rsplit('/', 1)[0]} && printf '[Service]\\nWatchdogSec={SHORT_WATCHDOG_S}s\\n' > {dropin}"
        " && systemctl daemon-reload && systemctl restart s3pod"
    )
    try:
        u = rig.unit("WatchdogUSec", "MainPID", "NRestarts")
        assert u["WatchdogUSec"] == f"{SHORT_WATCHDOG_S}s"
        time.sleep(2 * SHORT_WATCHDOG_S + 1)
        after = rig.unit("MainPID", "NRestarts", "ActiveState", "SubState")
        assert (after["MainPID"], after["NRestarts"]) == (u["MainPID"], u["NRestarts"]), after
        assert (after["ActiveState"], after["SubState"]) == ("active", "running")

        # The pings are what keeps it alive: a frozen s3pod is killed by the watchdog and restarted.
        rig.box.sh(f"kill -STOP {u['MainPID']}")
        # (systemd follows its SIGABRT with a SIGCONT, so the frozen process does die.)
        rig.wait_for("caught by the watchdog", lambda: rig.unit("Result")["Result"] == "watchdog", timeout_s=20)
        rig.wait_for(
            "restarted",
            lambda: (
                rig.unit("NRestarts")["NRestarts"] == str(int(u["NRestarts"]) + 1) and rig.state() == "active/running"
            ),
            timeout_s=60,
        )
        assert rig.main_pid() != int(u["MainPID"])
    finally:
        rig.box.sh(f"rm -f {dropin} && systemctl daemon-reload && systemctl restart s3pod")


def in_flight(rig: Rig, key: str, delay_s: float) -> tuple[str, str, Any]:
    """Queue a job whose upload the proxy holds for ``delay_s``; return once s3pod has claimed it."""
    text = f"{key}\n" * 2000
    rule = rig.proxy.add_rule("delay", method="PUT", path=re.escape(f"/{rig.bucket}/{key}"), delay_s=delay_s)
    path = rig.spool(key, text)
    rig.enqueue(path, key)
    rig.wait_for(f"{key} claimed", lambda: rule.hits == 1, timeout_s=30)
    return path, text, rule


def test_stop_finishes_the_job_in_flight(rig: Rig) -> None:
    path, text, _ = in_flight(rig, "slow-finish.txt", delay_s=4)
    rig.box.sh("systemctl stop s3pod")
    assert rig.state() == "inactive/dead"
    assert rig.unit("Result")["Result"] == "success"
    assert rig.stored("slow-finish.txt") == text.encode() and not rig.exists(path)
    assert rig.idle()
    rig.box.sh("systemctl start s3pod")


def test_stop_puts_back_a_job_it_cannot_finish(rig: Rig) -> None:
    rig.reconfigure(S3POD_SHUTDOWN_TIMEOUT="1")
    try:
        path, text, _ = in_flight(rig, "slow-put-back.txt", delay_s=8)
        rig.box.sh("systemctl stop s3pod")
        assert rig.state() == "inactive/dead"
        with rig.client() as c:
            counts = count_jobs(c)
            assert (counts.pending, counts.processing) == (1, 0), "the job went back to the queue"
        assert rig.exists(path), "a job put back keeps its file"
    finally:
        rig.reconfigure()
    rig.assert_done(path, "slow-put-back.txt", text)


def test_sigkill_is_restarted_and_the_job_completes(rig: Rig) -> None:
    # The dead worker's job goes back to the queue once its heartbeat is this old (30 s by default).
    rig.reconfigure(S3POD_HEARTBEAT_TIMEOUT="5")
    try:
        before = rig.unit("MainPID", "NRestarts")
        path, text, _ = in_flight(rig, "killed.txt", delay_s=3)
        rig.box.sh("systemctl kill --signal=KILL --kill-whom=main s3pod")
        rig.wait_for(
            "restarted",
            lambda: (
                rig.unit("NRestarts")["NRestarts"] == str(int(before["NRestarts"]) + 1)
                and rig.state() == "active/running"
            ),
            timeout_s=60,
        )
        assert rig.main_pid() != int(before["MainPID"])
        rig.assert_done(path, "killed.txt", text)
        assert re.search(r"reaped worker \S+ .*put 1 job\(s\) back", rig.journal())
    finally:
        rig.reconfigure()


def test_the_sandbox_refuses_writes_outside_the_spool(rig: Rig) -> None:
    pid = rig.main_pid()
    status = rig.box.sh(f"cat /proc/{pid}/status").stdout
    assert re.search(r"(?m)^CapEff:\s+0+$", status) and re.search(r"(?m)^NoNewPrivs:\s+1$", status), status
    assert re.search(r"(?m)^Seccomp:\s+2$", status), "SystemCallFilter= is in force"
    ids = rig.box.sh("echo $(id -u s3pod) $(id -g s3pod)").stdout.split()
    # What s3pod would see: its mount namespace, its user and group.
    as_s3pod = f"nsenter --target {pid} --mount --setuid {ids[0]} --setgid {ids[1]} -- sh -c"
    for target in ["/etc/s3po/planted", "/opt/s3po/bin/planted", "/var/lib/planted", "/usr/local/bin/planted"]:
        result = rig.box.sh(f"{as_s3pod} 'echo x > {target}'", check=False)
        assert result.returncode != 0 and "Read-only file system" in result.stderr, (target, result)
    assert rig.box.sh(f"{as_s3pod} 'ls /home'", check=False).stdout.strip() == "", "ProtectHome=yes"
    # The spool stays writable (s3pod deletes there), and its /tmp is its own.
    rig.box.sh(f"{as_s3pod} 'echo x > {SPOOL}/written-by-s3pod && rm {SPOOL}/written-by-s3pod'")
    rig.box.sh(f"{as_s3pod} 'echo x > /tmp/private-tmp-probe'")
    assert not rig.exists("/tmp/private-tmp-probe")


def test_no_secret_reaches_the_journal_or_ps(rig: Rig) -> None:
    pid = rig.main_pid()
    environ = rig.box.sh(f"tr '\\0' '\\n' < /proc/{pid}/environ").stdout
    assert f"S3POD_SECRET_KEY={rig.s3.secret_key}" in environ, "s3pod got its secrets from the file"
    seen = {
        "journal": rig.box.sh("journalctl --no-pager -b -o verbose").stdout,
        "ps": rig.box.sh("ps -eo pid,user,args --width 10000; ps auxww").stdout,
        "ps as another user": rig.box.sh("runuser -u www-data -- ps auxww").stdout,
        "systemctl": rig.box.sh("systemctl status s3pod --no-pager --full; systemctl show s3pod").stdout,
    }
    assert "/opt/s3po/bin/s3pod" in seen["ps"]
    assert "redis://s3pod:***@" in seen["journal"] or "redis://s3pod:***@" in seen["systemctl"]
    for where, text in seen.items():
        for name, value in rig.secrets.items():
            lines = [line.replace(value, "<SECRET>") for line in text.splitlines() if value in line]
            assert not lines, f"the {name} shows in {where}:\n" + "\n".join(lines[:10])
