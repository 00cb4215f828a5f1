"""The dashboard in a real headless Chromium against a real s3pod with jobs flowing.

Chromium and its driver are Debian's packages (scripts/install-system-deps installs them);
Selenium is told where the driver is, so it never downloads one. One browser serves the
module. ``S3PO_SCREENSHOTS=1`` writes the light and dark screenshots to docs/.
"""

from __future__ import annotations

import base64
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
from conftest import ROOT, wait_until
from servers import free_port
from test_dashboard import KEYS, TOKEN, commands, request

from s3po_client.activity import read_activity
from s3po_client.job import Job
from s3po_client.producer import push_jobs

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1100",
)
COUNTS = ("pending", "delayed", "dead", "in_flight")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One headless Chromium for the module (Debian's, driven through Debian's chromedriver)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_script_timeout(10)
    yield driver
    driver.quit()


@pytest.fixture
def page(browser: Any) -> Any:
    browser.execute_cdp_cmd("Network.clearBrowserCookies", {})
    browser.execute_cdp_cmd(
        "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "light"}]}
    )
    return browser


def shown(page: Any) -> dict[str, int | None]:
    """The counts the page shows now."""
    values = page.execute_script(
        "return arguments[0].map(n => document.getElementById('count-' + n).dataset.value ?? null)", list(COUNTS)
    )
    return {name: None if v is None else int(v) for name, v in zip(COUNTS, values)}


def enabled(page: Any, selector: str) -> bool | None:
    """Whether the button ``selector`` names can be pressed (None: not on the page)."""
    found = page.execute_script(
        "const b = document.querySelector(arguments[0]); return b ? !b.disabled : null", selector
    )
    return None if found is None else bool(found)


def in_redis(client: redis.Redis) -> dict[str, int | None]:
    counts = read_activity(client, "s3po").counts
    return {"pending": counts.pending, "delayed": counts.delayed, "dead": counts.dead, "in_flight": counts.processing}


def post_from_page(page: Any, path: str, body: dict[str, Any]) -> int:
    """The status of a POST the page's own script sends without the CSRF token."""
    return int(
        page.execute_async_script(
            "const done = arguments[2]; fetch(arguments[0], {method: 'POST', credentials: 'same-origin',"
            " headers: {'Content-Type': 'application/json'}, body: JSON.stringify(arguments[1])})"
            ".then(r => done(r.status), () => done(0));",
            path,
            body,
        )
    )


class _Attacker(BaseHTTPRequestHandler):
    """Another site: its page makes the browser POST a form to the dashboard on load."""

    target = ""

    def do_GET(self) -> None:
        html = (
            f'<form id="f" method="post" action="{self.target}" enctype="text/plain">'
            '<input name=\'{"all": true, "x": "\' value=\'"}\'></form>'
            "<script>document.getElementById('f').submit()</script>"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(html)))
        self.end_headers()
        self.wfile.write(html)

    def log_message(self, *args: Any) -> None:
        pass


def cross_site_post(page: Any, target: str) -> str:
    """Open another site's page that POSTs to ``target``; return what the browser then shows."""
    _Attacker.target = target
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Attacker)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page.get(f"http://localhost:{server.server_address[1]}/")  # localhost is another site than 127.0.0.1
        wait_until(lambda: page.current_url.startswith(target), timeout_s=10, message="the form posted")
        return str(page.find_element("tag name", "body").text)
    finally:
        server.shutdown()
        server.server_close()


def screenshot(page: Any, name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    size = page.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = page.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    path.write_bytes(base64.b64decode(shot["data"]))  # the whole page, not the window's height
    assert path.stat().st_size > 10_000
    if os.environ.get("S3PO_SCREENSHOTS"):
        shutil.copy(path, ROOT / "docs" / name)


def test_the_page_shows_the_queue_and_retries_a_dead_letter_only_with_the_token(
    page: Any, start_daemon: Callable[..., Any], redis_client: redis.Redis, s3: Any, bucket: str, tmp_path: Path
) -> None:
    port, spool = free_port(), tmp_path / "spool"
    spool.mkdir()
    start_daemon(
        "--api-listen",
        f"127.0.0.1:{port}",
        "--allow-dir",
        str(spool),
        "--bwlimit",
        "64M:off",
        env={"S3POD_API_TOKEN": TOKEN},
    )
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: _answers(port), message="the API up")
    late_bucket = f"{bucket}-late"
    (spool / "late.bin").write_bytes(b"late" * 1000)
    late = Job(bucket=late_bucket, key="late.bin", path=str(spool / "late.bin"), retries=0).stamped()
    jobs = [late]
    for i in range(30):
        (spool / f"f{i}.bin").write_bytes(os.urandom(50_000))
        jobs.append(Job(bucket=bucket, key=f"ok/f{i}.bin", path=str(spool / f"f{i}.bin")).stamped())
    push_jobs(jobs, client=redis_client)
    page.get(base + "/")
    # Jobs flowing: whatever the moment, the page catches up with Redis within a poll or two.
    wait_until(lambda: shown(page) == in_redis(redis_client), timeout_s=10, message="the page's counts = Redis")
    wait_until(lambda: redis_client.llen(KEYS.dead) == 1 and not redis_client.llen(KEYS.queue), message="all done")
    wait_until(lambda: shown(page) == in_redis(redis_client) == {**dict.fromkeys(COUNTS, 0), "dead": 1}, timeout_s=10)
    row = f'#dead tr[data-job="{late.id}"]'
    wait_until(lambda: page.find_elements("css selector", row), timeout_s=10, message="the dead letter listed")
    wait_until(lambda: page.find_elements("css selector", "#workers tbody tr"), timeout_s=10, message="the worker")
    assert page.find_element("id", "bwlimit").text == "64M:off"
    assert enabled(page, f"{row} button.retry") is False  # read-only without the token
    assert post_from_page(page, "/dashboard/dead/retry", {"all": True}) == 401
    screenshot(page, "dashboard-light.png", tmp_path)
    page.execute_cdp_cmd(
        "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]}
    )
    assert page.execute_script("return getComputedStyle(document.body).backgroundColor") != "rgb(246, 247, 249)"
    screenshot(page, "dashboard-dark.png", tmp_path)

    page.find_element("id", "token").send_keys(TOKEN)
    page.find_element("css selector", "#login button").click()
    wait_until(lambda: page.find_element("id", "logout").is_displayed(), timeout_s=10, message="logged in")
    wait_until(lambda: enabled(page, f"{row} button.retry"), timeout_s=10, message="the retry button enabled")
    assert post_from_page(page, "/dashboard/dead/retry", {"all": True}) == 403  # the cookie alone is not enough
    refused = cross_site_post(page, f"{base}/dashboard/dead/retry")
    assert "log in" in refused or "cross-site" in refused
    assert redis_client.llen(KEYS.dead) == 1

    s3.create_bucket(Bucket=late_bucket)
    try:
        page.get(base + "/")
        wait_until(lambda: enabled(page, f"{row} button.retry"), timeout_s=10, message="the retry button enabled")
        page.find_element("css selector", f"{row} button.retry").click()
        wait_until(lambda: "queued again: 1" in page.find_element("id", "notice").text, timeout_s=10)
        wait_until(lambda: _stored(s3, late_bucket, "late.bin"), message="the retried job uploaded")
        wait_until(lambda: shown(page)["dead"] == 0, timeout_s=10, message="the page's dead count at 0")
    finally:
        for obj in s3.list_objects_v2(Bucket=late_bucket).get("Contents", []):
            s3.delete_object(Bucket=late_bucket, Key=obj["Key"])
        s3.delete_bucket(Bucket=late_bucket)

    page.set_window_size(390, 844)  # a phone
    assert page.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    page.set_window_size(1280, 1100)


def _answers(port: int) -> bool:
    try:
        return bool(request(port, "GET", "/healthz").status == 200)
    except OSError:
        return False


def _stored(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except Exception:  # noqa: BLE001 - not there yet
        return False


def test_an_open_page_costs_the_daemon_little(
    page: Any, start_daemon: Callable[..., Any], redis_client: redis.Redis
) -> None:
    port = free_port()
    daemon = start_daemon("--api-listen", f"127.0.0.1:{port}")
    wait_until(lambda: _answers(port), message="the API up")
    wait_until(lambda: redis_client.zcard(KEYS.workers), message="the worker's first heartbeat")
    time.sleep(1)  # past its start-up work, which is not the page's
    process = psutil.Process(daemon.proc.pid)

    def cpu_s(window_s: float) -> float:
        before = sum(process.cpu_times()[:2])
        time.sleep(window_s)
        return sum(process.cpu_times()[:2]) - before

    page.get("about:blank")
    idle = cpu_s(10)
    page.get(f"http://127.0.0.1:{port}/")
    wait_until(lambda: shown(page)["pending"] == 0, timeout_s=10, message="the page up")
    calls = commands(redis_client, "lrange")
    watched = cpu_s(10)
    assert watched - idle < 0.01 * 10, (idle, watched)
    reads = commands(redis_client, "lrange") - calls  # one per read of the page's state
    assert 3 <= reads <= 10, reads  # the page polled all along, and the daemon read Redis at most once a second


def test_a_progress_bar_moves_during_a_slowed_large_upload(
    page: Any,
    start_daemon: Callable[..., Any],
    redis_client: redis.Redis,
    bucket: str,
    fault_proxy: Any,
    tmp_path: Path,
) -> None:
    """Needs the daemon to report its uploads (s3pod.service.activity wired into the worker)."""
    port = free_port()
    start_daemon("--api-listen", f"127.0.0.1:{port}", env={"S3POD_ENDPOINT_URL": fault_proxy.url})
    wait_until(lambda: _answers(port), message="the API up")
    fault_proxy.add_rule("delay", method="PUT", delay_s=1.5, times=None)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(80 * 1024 * 1024))
    [job_id] = push_jobs([Job(bucket=bucket, key="big.bin", path=str(big)).stamped()], client=redis_client)
    page.get(f"http://127.0.0.1:{port}/")
    bar = f'#uploads tr[data-job="{job_id}"] .bar'

    def done() -> int:
        # One script, so a table redrawn between finding the bar and reading it cannot go stale.
        script = "const e = document.querySelector(arguments[0]); return e ? Number(e.dataset.done) : -1;"
        return int(page.execute_script(script, bar))

    first = wait_until(lambda: done() >= 0 and (done(),), timeout_s=30, message="the upload on the page")[0]
    wait_until(lambda: done() > first, timeout_s=30, message="the bar to move")
    wait_until(lambda: not page.find_elements("css selector", bar), timeout_s=60, message="the upload to finish")
