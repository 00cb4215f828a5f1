"""The ``s3po`` command, run as a subprocess like a person or script would."""

from __future__ import annotations

import json
import subprocess
import sys

from s3po_client.queue import QueueKeys


def s3po(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "s3po_client.cli", *args], capture_output=True, text=True, env=env)


def test_status_json_counts_each_state(redis_client, daemon_env) -> None:
    keys = QueueKeys("s3po")
    redis_client.lpush(keys.queue, "a", "b", "c")
    redis_client.lpush(keys.processing("host-1"), "d")
    redis_client.zadd(keys.delayed, {"e": 1, "f": 2})
    redis_client.lpush(keys.dead, "g")
    out = s3po("status", "--json", env=daemon_env)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert (data["pending"], data["processing"], data["delayed"], data["dead"]) == (3, 1, 2, 1)


def test_status_text_and_prefix(redis_client, daemon_env) -> None:
    redis_client.lpush("other:queue", "a")
    out = s3po("status", "--prefix", "other", env=daemon_env)
    assert out.returncode == 0, out.stderr
    assert "pending     1" in out.stdout


def test_status_unreachable_redis_is_one_clear_line(daemon_env) -> None:
    env = {**daemon_env, "S3PO_REDIS_URL": "redis://:hunter2@127.0.0.1:1/0"}
    out = s3po("status", env=env)
    assert out.returncode == 1
    assert "cannot reach Redis" in out.stderr and "hunter2" not in out.stderr
