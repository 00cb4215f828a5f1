"""``s3po top``: live on a pseudo-terminal (``q`` quits), plain lines through a pipe.

The command is run as ``s3po top`` will run it, from its module (registered in
``s3po_client.cli`` as ``cli.add_command(top)``).
"""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from typing import Any

import redis
from conftest import ROOT

from s3po_client.keys import QueueKeys
from s3pod.events import Outcome, OutcomeKind
from s3pod.service.activity import Activity

KEYS = QueueKeys("s3po")
RUN_TOP = "from s3po_client.cli.top import top; top(prog_name='s3po top')"


def env_for(redis_server: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("S3POD_", "S3PO_"))}
    env.update(S3PO_REDIS_URL=redis_server.url, PYTHONPATH=str(ROOT), TERM="xterm-256color", COLUMNS="140", LINES="40")
    return env


def a_busy_queue(client: redis.Redis) -> Activity:
    """Three pending jobs, one dead, and a worker with an upload half done, recorded as s3pod records them."""
    client.lpush(KEYS.queue, b"{}", b"{}", b"{}")
    client.lpush(KEYS.dead, b'{"job": "{}", "error": "bad"}')
    client.zadd(KEYS.workers, {"box-1-abc": time.time()})
    activity = Activity(client, KEYS, "box-1-abc")
    activity.uploads.started("job-big", "bkt", "big.bin", "/srv/spool/big.bin", 4 * 1024 * 1024)
    activity.uploads.progress("job-big", 2 * 1024 * 1024)
    activity.throughput.on_outcome(Outcome(OutcomeKind.DEAD, "job-x", "bkt", "x.bin", attempt=4, error="NoSuchBucket"))
    activity.flush()
    return activity


def test_top_on_a_terminal_draws_the_queue_and_q_quits(redis_server: Any, redis_client: redis.Redis) -> None:
    a_busy_queue(redis_client)
    pid, fd = pty.fork()
    if pid == 0:  # the child: its standard streams are the terminal
        try:
            os.execve(sys.executable, [sys.executable, "-c", RUN_TOP, "--interval", "0.3"], env_for(redis_server))
        finally:
            os._exit(127)
    output = b""
    deadline = time.monotonic() + 30
    try:
        while b"q quits" not in output or b"NoSuchBucket" not in output:
            assert time.monotonic() < deadline, output.decode(errors="replace")
            if select.select([fd], [], [], 0.2)[0]:
                output += os.read(fd, 65536)
        redis_client.lpush(KEYS.queue, b"{}")  # a fourth: the next redraw shows it
        while b"pending 4" not in output:
            assert time.monotonic() < deadline, output.decode(errors="replace")
            if select.select([fd], [], [], 0.2)[0]:
                output += os.read(fd, 65536)
        os.write(fd, b"q")
        status = None
        while status is None:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                raise AssertionError("q did not quit s3po top")
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    output += os.read(fd, 65536)
                except OSError:  # EIO: the child closed the terminal
                    pass
            reaped, code = os.waitpid(pid, os.WNOHANG)
            status = code if reaped else None
    finally:
        os.close(fd)
    text = output.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "pending 3" in text and "dead 1" in text and "workers 1/1" in text
    assert "/srv/spool/big.bin" in text and "2.0 MiB/4.0 MiB" in text and "━" in text  # the upload's bar
    assert "box-1-abc" in text
    assert "\x1b[?1049h" in text and text.rstrip().endswith("\x1b[?1049l")  # the screen is given back


def test_top_through_a_pipe_prints_plain_lines(redis_server: Any, redis_client: redis.Redis) -> None:
    a_busy_queue(redis_client)
    done = subprocess.run(
        [sys.executable, "-c", RUN_TOP, "-n", "2", "--interval", "0.2"],
        env=env_for(redis_server),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout
    assert done.stdout.count("pending 3  delayed 0  in flight 0  dead 1  workers 1/1") == 2
    assert "upload job-big /srv/spool/big.bin -> s3://bkt/big.bin 2.0 MiB/4.0 MiB 50%" in done.stdout
    assert "failed" in done.stdout and "dead job-x s3://bkt/x.bin: NoSuchBucket" in done.stdout


def test_top_says_when_redis_cannot_be_reached(redis_server: Any) -> None:
    env = {**env_for(redis_server), "S3PO_REDIS_URL": "redis://127.0.0.1:1/0"}
    done = subprocess.run(
        [sys.executable, "-c", RUN_TOP, "-n", "1"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1 and "cannot reach Redis" in done.stderr
