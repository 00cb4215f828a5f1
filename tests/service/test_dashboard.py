"""The dashboard: what the daemons record (real Redis) and what the page may read and do
(real HTTP). The page in a real browser is tests/service/test_dashboard_page.py.
"""

from __future__ import annotations

import http.client
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from conftest import wait_until

from s3po_client.activity import LIVE_TTL_S, inflight_key, read_activity
from s3po_client.job import Job
from s3po_client.keys import QueueKeys
from s3pod.events import Outcome, OutcomeKind
from s3pod.service.activity import Activity, ThroughputRecorder, WorkerBoard
from s3pod.service.api import ApiServer
from s3pod.service.dashboard import hide_path

TOKEN = "dashboard-token-3f9a1c"
KEYS = QueueKeys("s3po")


def commands(client: redis.Redis, name: str) -> int:
    """How many times Redis has run ``name`` since it started (INFO commandstats)."""
    return int(client.info("commandstats").get(f"cmdstat_{name}", {}).get("calls", 0))


def outcome(kind: OutcomeKind, job_id: str, **extra: Any) -> Outcome:
    return Outcome(kind, job_id, "bkt", f"k/{job_id}", **extra)


# -- what the daemons record ---------------------------------------------------------------------


def test_outcomes_add_up_per_minute_across_daemons_in_one_round_trip(redis_client: redis.Redis) -> None:
    minute = 1_800_000_000 // 60 * 60.0
    first = ThroughputRecorder(redis_client, KEYS, "w1", clock=lambda: minute + 5)
    second = ThroughputRecorder(redis_client, KEYS, "w2", clock=lambda: minute + 50)
    for i in range(50):
        first.on_outcome(outcome(OutcomeKind.UPLOADED, f"a{i}", bytes_sent=1000, duration_s=0.5))
    first.on_outcome(outcome(OutcomeKind.RETRY, "r1", attempt=1, error="SlowDown from rediss://u:pw@h:1"))
    second.on_outcome(outcome(OutcomeKind.UPLOADED, "b1", bytes_sent=24))
    second.on_outcome(outcome(OutcomeKind.DEAD, "d1", attempt=4, error="NoSuchBucket"))
    before = commands(redis_client, "hincrby")
    first.flush()
    second.flush()
    first.flush()  # nothing new: no round trip at all
    assert commands(redis_client, "hincrby") - before == 4 + 4  # one per counter moved, not one per job

    seen = read_activity(redis_client, "s3po", now=minute + 59)
    assert len(seen.history) == 60 and seen.history[-1].at == minute
    last = seen.history[-1]
    assert (last.uploaded, last.bytes, last.retry, last.dead, last.failed) == (51, 50_024, 1, 1, 2)
    assert last.upload_ms == 25_000
    assert seen.rates() == {"window_s": 299.0, "jobs_per_s": 51 / 299, "bytes_per_s": 50_024 / 299, "failures": 2}
    assert [f.job_id for f in seen.failures] == ["d1", "r1"]  # newest first
    assert "pw" not in seen.failures[1].error and "SlowDown" in seen.failures[1].error
    assert 0 < redis_client.ttl(f"s3po:activity:{int(minute // 60)}") <= 62 * 60
    # An hour later the minute is off the chart.
    assert all(m.uploaded == 0 for m in read_activity(redis_client, "s3po", now=minute + 3600).history)


def test_progress_is_written_at_most_once_per_flush_and_expires_with_its_daemon(redis_client: redis.Redis) -> None:
    clock = [1000.0]
    board = WorkerBoard(redis_client, KEYS, "host-1-abc", clock=lambda: clock[0])
    redis_client.zadd(KEYS.workers, {"host-1-abc": time.time()})
    board.started("j1", "bkt", "big.bin", "/srv/spool/big.bin", 10_000)
    board.flush()
    before = commands(redis_client, "hset")
    for done in range(0, 5001, 5):  # an upload thread reporting a thousand times
        board.progress("j1", done)
    clock[0] += 2
    board.flush()
    assert commands(redis_client, "hset") - before == 2  # the worker's info and one upload, once

    seen = read_activity(redis_client, "s3po")
    [upload] = seen.uploads
    assert (upload.job_id, upload.worker, upload.done_bytes, upload.total_bytes) == ("j1", "host-1-abc", 5000, 10_000)
    assert upload.rate_bps == pytest.approx(2500) and upload.fraction == 0.5
    [worker] = seen.workers
    assert worker.pid == os.getpid() and worker.version and worker.host and worker.alive
    assert 0 < redis_client.ttl(inflight_key(KEYS, "host-1-abc")) <= LIVE_TTL_S

    board.finished("j1")
    board.flush()
    assert read_activity(redis_client, "s3po").uploads == []


def test_activity_flushes_in_the_background_and_clears_on_close(redis_client: redis.Redis) -> None:
    activity = Activity(redis_client, KEYS, "w-bg", flush_every_s=0.05)
    activity.start()
    activity.uploads.started("j9", "bkt", "k", "/p", 10)
    activity.throughput.on_outcome(outcome(OutcomeKind.INVALID, "j8", error="bad job"))
    wait_until(lambda: redis_client.hlen(inflight_key(KEYS, "w-bg")) == 1, timeout_s=5, message="a flush")
    wait_until(lambda: redis_client.llen("s3po:failures") == 1, timeout_s=5, message="the failure recorded")
    activity.close()
    assert not redis_client.exists(inflight_key(KEYS, "w-bg"), "s3po:worker-info:w-bg")


def test_counting_costs_the_same_whatever_the_queue_length(redis_client: redis.Redis) -> None:
    def cost() -> dict[str, int]:
        stats = redis_client.info("commandstats")
        before = {name: int(v["calls"]) for name, v in stats.items()}
        read_activity(redis_client, "s3po")
        after = redis_client.info("commandstats")
        return {n: int(v["calls"]) - before.get(n, 0) for n, v in after.items() if int(v["calls"]) != before.get(n, 0)}

    redis_client.lpush(KEYS.queue, *[b"x"] * 10)
    small = cost()
    pipe = redis_client.pipeline(transaction=False)
    for _ in range(20):
        pipe.lpush(KEYS.queue, *[b"x"] * 10_000)
    pipe.execute()
    small.pop("cmdstat_info", None)
    large = cost()
    large.pop("cmdstat_info", None)
    assert large == small and "cmdstat_lrange" in small and "cmdstat_llen" in small
    assert read_activity(redis_client, "s3po").counts.pending == 200_010


# -- what the page may read and do, over HTTP -----------------------------------------------------


def request(port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        response = conn.getresponse()
        response.body = response.read()  # type: ignore[attr-defined]
        return response
    finally:
        conn.close()


def dead_letter(client: redis.Redis, path: str, bucket: str = "gone-bucket", error: str = "NoSuchBucket") -> Job:
    job = Job(bucket=bucket, key="x.bin", path=path).stamped()
    entry = {
        "job": job.to_json(),
        "error": f"{error} for {path}",
        "attempts": 4,
        "failed_at": time.time(),
        "worker": "w",
    }
    client.lpush(KEYS.dead, json.dumps(entry))
    return job


@pytest.fixture
def api(redis_client: redis.Redis) -> Iterator[ApiServer]:
    server = ApiServer(redis_client, token=TOKEN, redact_paths=True)
    yield server
    server.close()


def login(api: ApiServer, origin: str | None = None) -> tuple[str, str]:
    """Log in through the form; return the session cookie and the page's CSRF token."""
    origin = origin or f"http://127.0.0.1:{api.port}"
    form = {"Content-Type": "application/x-www-form-urlencoded", "Origin": origin}
    r = request(api.port, "POST", "/dashboard/login", f"token={TOKEN}".encode(), form)
    assert r.status == 303 and r.headers["Location"] == "/"
    set_cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie and "Path=/" in set_cookie
    cookie = set_cookie.split(";")[0]
    state = json.loads(request(api.port, "GET", "/dashboard/state", headers={"Cookie": cookie}).body)
    assert state["access"]["can_act"] is True
    return cookie, state["access"]["csrf"]


def test_reading_needs_no_token_but_acting_does(api: ApiServer, redis_client: redis.Redis) -> None:
    page = request(api.port, "GET", "/")
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["Content-Security-Policy"] and b"/static/dashboard.js" in page.body
    assert request(api.port, "GET", "/static/dashboard.js").status == 200
    job = dead_letter(redis_client, "/srv/spool/secret-dir/x.bin")
    state = json.loads(request(api.port, "GET", "/dashboard/state").body)
    assert state["counts"]["dead"] == 1 and state["access"] == {"can_act": False, "csrf": None, "login": True}
    [entry] = json.loads(request(api.port, "GET", "/dashboard/dead").body)["entries"]
    assert entry["id"] == job.id and entry["retryable"] and "job" not in entry
    assert "secret-dir" not in json.dumps(entry) and entry["path"] == "…/x.bin"  # --api-redact-paths
    ref = json.dumps({"ref": entry["ref"]}).encode()
    json_post = {"Content-Type": "application/json", "Origin": f"http://127.0.0.1:{api.port}"}

    assert request(api.port, "POST", "/dashboard/dead/retry", ref, json_post).status == 401
    assert request(api.port, "GET", "/dashboard/dead/retry").status == 405
    wrong = request(api.port, "POST", "/dashboard/login", b"token=nope", {**json_post, "Content-Type": "x"})
    assert wrong.status == 303 and wrong.headers["Location"] == "/?login=failed" and "Set-Cookie" not in wrong.headers
    cookie, csrf = login(api)
    with_cookie = {**json_post, "Cookie": cookie}
    assert request(api.port, "POST", "/dashboard/dead/retry", ref, with_cookie).status == 403  # no CSRF token
    cross = {**with_cookie, "X-CSRF-Token": csrf, "Origin": "http://evil.example"}
    assert request(api.port, "POST", "/dashboard/dead/retry", ref, cross).status == 403
    assert request(api.port, "POST", "/dashboard/dead/retry", ref, {**cross, "Origin": ""}).status == 403
    assert redis_client.llen(KEYS.dead) == 1 and redis_client.llen(KEYS.queue) == 0

    # A reader with the token sees the whole path; the CSRF token opens the action.
    full = json.loads(request(api.port, "GET", "/dashboard/dead", headers={"Cookie": cookie}).body)
    assert full["entries"][0]["path"] == "/srv/spool/secret-dir/x.bin"
    done = request(api.port, "POST", "/dashboard/dead/retry", ref, {**with_cookie, "X-CSRF-Token": csrf})
    assert done.status == 200 and json.loads(done.body)["queued"] == [job.id]
    assert redis_client.llen(KEYS.dead) == 0 and Job.from_json(redis_client.lpop(KEYS.queue)).attempt == 0


def test_a_script_acts_with_the_bearer_token_and_a_session_ends_with_the_token(
    api: ApiServer, redis_client: redis.Redis
) -> None:
    for i in range(3):
        dead_letter(redis_client, f"/srv/{i}.bin")
    bearer = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    page = json.loads(request(api.port, "GET", "/dashboard/dead?offset=1&limit=1", headers=bearer).body)
    assert page["total"] == 3 and len(page["entries"]) == 1 and page["entries"][0]["path"] == "/srv/1.bin"
    one = json.dumps({"ref": page["entries"][0]["ref"]}).encode()
    assert json.loads(request(api.port, "POST", "/dashboard/dead/delete", one, bearer).body) == {"deleted": 1}
    assert request(api.port, "POST", "/dashboard/dead/delete", one, bearer).status == 404
    wrong = {**bearer, "Authorization": "Bearer nope"}
    assert request(api.port, "POST", "/dashboard/dead/delete", b'{"all": true}', wrong).status == 401
    assert (
        json.loads(request(api.port, "POST", "/dashboard/dead/delete", b'{"all": true}', bearer).body)["deleted"] == 2
    )

    cookie, _ = login(api)
    other = ApiServer(redis_client, token="another-token")
    try:
        state = json.loads(request(other.port, "GET", "/dashboard/state", headers={"Cookie": cookie}).body)
        assert state["access"]["can_act"] is False
    finally:
        other.close()


def test_without_a_token_the_page_is_read_only(redis_client: redis.Redis) -> None:
    api = ApiServer(redis_client)
    try:
        dead_letter(redis_client, "/srv/a.bin")
        assert request(api.port, "GET", "/").status == 200
        state = json.loads(request(api.port, "GET", "/dashboard/state").body)
        assert state["access"] == {"can_act": False, "csrf": None, "login": False}
        r = request(api.port, "POST", "/dashboard/dead/retry", b'{"all": true}', {"Content-Type": "application/json"})
        assert r.status == 403 and "--api-token" in json.loads(r.body)["error"]
        assert redis_client.llen(KEYS.dead) == 1
    finally:
        api.close()


def test_paths_are_cut_to_their_last_part() -> None:
    assert hide_path("cannot open /srv/spool/c.log: gone") == "cannot open …/c.log: gone"
    assert hide_path("'/srv/x/y.bin' changed") == "'…/y.bin' changed"
    assert hide_path("see s3://bucket/key and http://h/p/q") == "see s3://bucket/key and http://h/p/q"


def test_recent_failures_are_paged_and_their_paths_hidden(api: ApiServer, redis_client: redis.Redis) -> None:
    recorder = ThroughputRecorder(redis_client, KEYS, "w")
    for i in range(25):
        recorder.on_outcome(outcome(OutcomeKind.RETRY, f"j{i}", error=f"cannot read /srv/private/f{i}.bin"))
    recorder.flush()
    state = json.loads(request(api.port, "GET", "/dashboard/state").body)
    assert state["failures_total"] == 25 and len(state["failures"]) == 20
    assert state["failures"][0]["job_id"] == "j24" and state["failures"][0]["error"] == "cannot read …/f24.bin"
    older = json.loads(request(api.port, "GET", "/dashboard/failures?offset=20&limit=20").body)
    assert (older["total"], [f["job_id"] for f in older["entries"]]) == (25, ["j4", "j3", "j2", "j1", "j0"])
    assert "private" not in json.dumps(older)
    assert request(api.port, "GET", "/dashboard/failures?offset=x").status == 400


def test_the_state_carries_the_bandwidth_limit_in_force(redis_client: redis.Redis) -> None:
    from s3po_client.transfer.bandwidth import Limiter, Rates, parse_bwlimit

    limiter, backup = Limiter(parse_bwlimit("5M:off")), Limiter(parse_bwlimit("1M"))
    server = ApiServer(redis_client, bandwidth=limiter, destination_bandwidth={"backup": backup})
    try:
        state = json.loads(request(server.port, "GET", "/dashboard/state").body)
        assert state["bandwidth"]["rate"] == "5M:off" and state["bandwidth"]["destinations"]["backup"]["rate"] == "1M"
        limiter.set_rate(Rates(2 * 1024 * 1024, 2 * 1024 * 1024))
        time.sleep(1.1)  # the state is read at most once a second
        assert json.loads(request(server.port, "GET", "/dashboard/state").body)["bandwidth"]["rate"] == "2M"
    finally:
        server.close()
    without = ApiServer(redis_client)
    try:
        assert json.loads(request(without.port, "GET", "/dashboard/state").body)["bandwidth"] is None
    finally:
        without.close()
