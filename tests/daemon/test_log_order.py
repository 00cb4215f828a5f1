"""A job's log lines are written before Redis shows its outcome: whoever watches Redis finds them."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import redis

from s3po_client import enqueue
from s3po_client.retry import RetryPolicy
from s3po_client.settings import S3Settings
from s3po_client.transfer import TransferEngine
from s3pod.config import WorkerConfig
from s3pod.loop import Worker


class Probe(logging.Handler):
    """Notes each job line, and at each flush what Redis shows then."""

    def __init__(self, client: redis.Redis, processing: str) -> None:
        super().__init__(logging.INFO)
        self.client, self.processing = client, processing
        self.events: list[tuple[str, ...]] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(("uploaded job=", "deleted job=", "dead job=")):
            self.events.append(("line", message.split(" ")[0] + " " + message.split(" ")[1]))

    def flush(self) -> None:
        held, dead = self.client.llen(self.processing), self.client.llen("s3po:dead")
        self.events.append(("flush", f"held={held}", f"dead={dead}"))


def test_a_jobs_lines_are_flushed_before_its_ack_and_its_dead_letter(
    redis_server: Any, redis_client: redis.Redis, s3_settings: S3Settings, bucket: str, tmp_path: Path
) -> None:
    good, lost = tmp_path / "good.txt", tmp_path / "lost.txt"
    good.write_text("good")
    lost.write_text("lost")
    good_id = enqueue(bucket, "good.txt", good, redis_url=redis_server.url)
    dead_id = enqueue("no-such-bucket-s3po", "lost.txt", lost, retries=0, redis_url=redis_server.url)
    config = WorkerConfig(concurrency=1, claim_batch=1, retry=RetryPolicy(base_s=0))
    worker = Worker(redis_client, TransferEngine(s3_settings), config)
    probe = Probe(redis_client, worker.queue.processing)
    root = logging.getLogger()
    saved_level = root.level
    root.addHandler(probe)
    root.setLevel(logging.INFO)
    try:
        assert worker.run(burst=True) == 0
    finally:
        root.removeHandler(probe)
        root.setLevel(saved_level)
    events = probe.events
    deleted = events.index(("line", f"deleted job={good_id}"))
    assert ("line", f"uploaded job={good_id}") in events[:deleted]
    assert events[deleted + 1] == ("flush", "held=1", "dead=0"), "the lines written while the job was held"
    dead = events.index(("line", f"dead job={dead_id}"))
    assert events[dead + 1] == ("flush", "held=1", "dead=0"), "the line written before the dead letter"
    assert redis_client.llen("s3po:dead") == 1 and not good.exists()
