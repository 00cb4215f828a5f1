"""A daemon paused (SIGSTOP) past the heartbeat timeout, its job taken over, then resumed."""

from __future__ import annotations

import json
import signal
import time

from conftest import wait_until

from s3po_client import enqueue
from s3po_client.admin import count_jobs
from s3po_client.keys import QueueKeys
from s3pod.consumer import Consumer

KEYS = QueueKeys("s3po")


def test_a_paused_daemon_that_finishes_a_job_taken_over_leaves_its_stored_marker(
    redis_server, redis_client, s3, bucket, start_daemon, fault_proxy, tmp_path
) -> None:
    """Resumed, the paused daemon stores the object, deletes the file, and its ack finds nothing.

    The copy that was put back must then be acknowledged as stored, not dead-lettered as a
    job whose file does not exist: the marker stays unless the ack found the job.
    """
    f = tmp_path / "paused.bin"
    f.write_bytes(b"p" * 100_000)
    slow = fault_proxy.add_rule("delay", method="PUT", path="/paused.bin", delay_s=1.0, times=1)
    job_id = enqueue(bucket, "paused.bin", f, redis_url=redis_server.url)
    paused = start_daemon(
        "--heartbeat-timeout", "1.5", "--concurrency", "1", env={"S3POD_ENDPOINT_URL": fault_proxy.url}
    )
    wait_until(lambda: slow.hits >= 1, message="the upload under way")
    paused.signal(signal.SIGSTOP)
    try:
        [worker] = [w for w, n in count_jobs(redis_client).processing_by_worker.items() if n]
        time.sleep(2.0)  # past the heartbeat timeout
        other = Consumer(redis_client, KEYS, "other", heartbeat_timeout_s=1.5)
        other.heartbeat()
        assert other.reap(1.5) == {worker: 1}, "the paused worker's job is put back"
        assert other.claim(0.1) is not None, "and taken by another worker"
    finally:
        paused.signal(signal.SIGCONT)
    wait_until(lambda: not f.exists() and f"uploaded job={job_id}" in paused.log, message="the resumed daemon done")
    assert redis_client.exists(KEYS.stored(job_id)), "the ack found nothing, so the marker stays"
    # The other worker gives the job up (it died, say): the copy runs again and finds no file.
    other.retire()
    wait_until(
        lambda: count_jobs(redis_client).pending + count_jobs(redis_client).processing == 0, message="the copy settled"
    )
    time.sleep(0.3)
    assert count_jobs(redis_client).dead == 0, [json.loads(e)["error"] for e in redis_client.lrange(KEYS.dead, 0, -1)]
    assert "already" in paused.log
    assert redis_client.ttl(KEYS.stored(job_id)) > 0, "left to expire, for any later copy of the job"
    assert s3.get_object(Bucket=bucket, Key="paused.bin")["Body"].read() == b"p" * 100_000
