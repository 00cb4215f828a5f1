"""Every example of the original S3-PO README, transcribed, against the real Redis and S3 servers.

Each example runs the way the original meant it: a default connection queues for ``s3pod``
(started here as a real subprocess), ``async_=False`` uploads in the caller's thread, and
``runLoop()`` uploads in background threads. Where an example holds for every mode it is
parametrized over the three.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import wait_until
from faultproxy import FaultProxy
from servers import REGION

from s3po_client import Connection, Job, JobError, S3poError, UploadError
from s3po_client.admin import count_jobs
from s3po_client.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
MODES = ("sync", "in-process", "queued")


def object_bytes(s3: Any, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def object_exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except Exception:  # noqa: BLE001 - 404
        return False


def queued_jobs(redis_client: redis.Redis) -> list[Job]:
    """The jobs waiting for s3pod, oldest first."""
    return [Job.from_json(raw) for raw in reversed(redis_client.lrange("s3po:queue", 0, -1))]


@pytest.fixture
def tempdir(tmp_path: Path) -> Path:
    d = tmp_path / "s3po-tmp"
    d.mkdir()
    return d


@pytest.fixture
def make_conn(s3_server, redis_server, redis_client, tempdir) -> Iterator[Callable[..., Connection]]:
    """Factory: a Connection on the test servers (tiny backoff), closed when the test ends.

    Positional arguments replace the test credentials; keyword arguments override the rest.
    """
    conns: list[Connection] = []

    def make(*args: Any, **overrides: Any) -> Connection:
        options: dict[str, Any] = dict(
            endpoint_url=s3_server.url, region=REGION, redis_url=redis_server.url, backoff_base=0.01, tempdir=tempdir
        )
        options.update(overrides)
        conn = Connection(*(args or (s3_server.access_key, s3_server.secret_key)), **options)
        conns.append(conn)
        return conn

    yield make
    for conn in conns:
        conn.close()


class Mode:
    """Runs an example one way: synchronous, on in-process threads (``runLoop()``) or queued for s3pod."""

    def __init__(
        self,
        name: str,
        make_conn: Callable[..., Connection],
        start_daemon: Callable[..., Any],
        redis_client: redis.Redis,
    ) -> None:
        self.name = name
        self._make_conn = make_conn
        self._start_daemon = start_daemon
        self._redis = redis_client
        self._daemon: Any = None

    def connection(self, *args: Any, **options: Any) -> Connection:
        if self.name == "sync":
            options.setdefault("async_", False)
        conn = self._make_conn(*args, **options)
        if self.name == "in-process":
            conn.runLoop()
        return conn

    def settle(self, conn: Connection) -> None:
        """Return once every upload requested so far is done."""
        if self.name == "in-process":
            assert conn.wait(60), "in-process uploads did not finish"
        elif self.name == "queued":
            if self._daemon is None:
                self._daemon = self._start_daemon()

            def settled() -> bool:
                c = count_jobs(self._redis)
                return c.pending == 0 and c.processing == 0 and c.delayed == 0

            wait_until(settled, timeout_s=60, message="s3pod to drain the queue")


@pytest.fixture(params=MODES)
def mode(request, make_conn, start_daemon, redis_client) -> Mode:
    return Mode(request.param, make_conn, start_daemon, redis_client)


# -- "import s3po; conn = s3po.Connection()" ---------------------------------------------


def test_default_connection_queues_for_s3pod_which_uploads_and_deletes(
    make_conn, redis_client, start_daemon, s3, bucket, tmp_path
) -> None:
    foo = tmp_path / "foo.txt"
    foo.write_text("foo\n")
    conn = make_conn()
    job_id = conn.uploadFile(bucket, "my-key", str(foo))
    (job,) = queued_jobs(redis_client)
    assert job.id == job_id
    assert (job.bucket, job.key, job.path, job.delete, job.retries) == (bucket, "my-key", str(foo), True, 3)
    assert foo.exists(), "an asynchronous call only queues"
    start_daemon()
    wait_until(lambda: not foo.exists(), message="s3pod to upload and delete foo.txt")
    assert object_bytes(s3, bucket, "my-key") == b"foo\n"


def test_without_keys_the_standard_credential_chain_applies(
    make_conn, s3_server, s3, bucket, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    foo = tmp_path / "foo.txt"
    foo.write_text("from the environment")
    conn = make_conn(None, None, async_=False)
    assert conn.uploadFile(bucket, "my-key", str(foo)) is True
    assert object_bytes(s3, bucket, "my-key") == b"from the environment"


# -- Auto Deletion ------------------------------------------------------------------------


def test_default_connection_deletes_what_it_uploaded(mode, s3, bucket, tmp_path) -> None:
    foo = tmp_path / "foo.txt"
    foo.write_text("delete me once stored")
    conn = mode.connection()
    conn.uploadFile(bucket, "my-key", str(foo))
    mode.settle(conn)
    assert object_bytes(s3, bucket, "my-key") == b"delete me once stored"
    assert not foo.exists()


def test_delete_false_connection_keeps_files_unless_a_call_says_delete(
    mode, redis_client, s3, bucket, tmp_path
) -> None:
    foo, bar = tmp_path / "foo.txt", tmp_path / "bar.txt"
    foo.write_text("keep me")
    bar.write_text("delete me")
    # Now by default we won't delete uploaded files
    conn = mode.connection(delete=False)
    # This won't get deleted
    conn.uploadFile(bucket, "my-key", str(foo))
    # But this one will!
    conn.uploadFile(bucket, "my-key-2", str(bar), delete=True)
    if mode.name == "queued":
        assert [j.delete for j in queued_jobs(redis_client)] == [False, True]
    mode.settle(conn)
    assert object_bytes(s3, bucket, "my-key") == b"keep me"
    assert object_bytes(s3, bucket, "my-key-2") == b"delete me"
    assert foo.read_text() == "keep me"
    assert not bar.exists()


def test_delete_default_is_overridden_the_other_way_too(mode, s3, bucket, tmp_path) -> None:
    foo = tmp_path / "foo.txt"
    foo.write_text("kept")
    conn = mode.connection()
    conn.uploadFile(bucket, "my-key", str(foo), delete=False)
    mode.settle(conn)
    assert object_bytes(s3, bucket, "my-key") == b"kept"
    assert foo.read_text() == "kept"


@pytest.mark.parametrize("spelling", ["async_", "async"])
def test_sync_connection_waits_and_a_per_call_async_upload_goes_to_s3pod(
    make_conn, redis_client, start_daemon, s3, bucket, tmp_path, spelling
) -> None:
    foo, bar = tmp_path / "foo.txt", tmp_path / "bar.txt"
    foo.write_text("synchronous")
    bar.write_text("asynchronous")
    # Now upload requests are synchronous by default
    conn = make_conn(**{spelling: False})
    # This will wait until the file has uploaded
    assert conn.uploadFile(bucket, "my-key", str(foo)) is True
    assert object_bytes(s3, bucket, "my-key") == b"synchronous"
    assert not foo.exists()
    # This will return right away
    job_id = conn.uploadFile(bucket, "my-key-2", str(bar), **{spelling: True})
    assert [j.id for j in queued_jobs(redis_client)] == [job_id]
    assert bar.exists() and not object_exists(s3, bucket, "my-key-2")
    start_daemon()
    wait_until(lambda: not bar.exists(), message="s3pod to upload bar.txt")
    assert object_bytes(s3, bucket, "my-key-2") == b"asynchronous"


def test_async_connection_with_a_per_call_sync_upload(make_conn, redis_client, s3, bucket, tmp_path) -> None:
    foo = tmp_path / "foo.txt"
    foo.write_text("now")
    conn = make_conn()
    assert conn.upload_file(bucket, "my-key", foo, async_=False) is True
    assert object_bytes(s3, bucket, "my-key") == b"now"
    assert redis_client.llen("s3po:queue") == 0


# -- Retries ------------------------------------------------------------------------------


def test_retries_ten_is_what_the_queued_job_carries(
    make_conn, redis_client, start_daemon, s3, bucket, tmp_path
) -> None:
    foo = tmp_path / "foo.txt"
    foo.write_text("retry me")
    conn = make_conn()
    conn.uploadFile(bucket, "my-key", str(foo), retries=10)
    assert [j.retries for j in queued_jobs(redis_client)] == [10]
    start_daemon()
    wait_until(lambda: not foo.exists(), message="s3pod to upload foo.txt")
    assert object_bytes(s3, bucket, "my-key") == b"retry me"


@pytest.mark.parametrize("how", ["sync", "in-process"])
def test_retries_ten_outlasts_failures_that_retries_zero_does_not(
    make_conn, s3_server, s3, bucket, tmp_path, how
) -> None:
    with FaultProxy(s3_server.port) as proxy:
        conn = make_conn(endpoint_url=proxy.url, async_=how != "sync")
        if how == "in-process":
            conn.runLoop()
        once, ten = tmp_path / "once.txt", tmp_path / "ten.txt"
        once.write_text("gives up")
        ten.write_text("keeps trying")

        proxy.add_rule("error", method="PUT", status=503, code="SlowDown", times=6)
        if how == "sync":
            with pytest.raises(UploadError, match="SlowDown"):
                conn.uploadFile(bucket, "once", str(once), retries=0)
        else:
            conn.uploadFile(bucket, "once", str(once), retries=0)
            assert conn.wait(60)
            assert [f.key for f in conn.failures()] == ["once"]
        assert once.exists() and not object_exists(s3, bucket, "once")

        proxy.clear()
        rule = proxy.add_rule("error", method="PUT", status=503, code="SlowDown", times=6)
        # Retry up to 10 times
        conn.uploadFile(bucket, "ten", str(ten), retries=10)
        assert conn.wait(60)
        assert rule.hits == 6
    assert object_bytes(s3, bucket, "ten") == b"keeps trying"
    assert not ten.exists()


# -- Response Headers and Compression ------------------------------------------------------


def test_headers_are_set_on_the_object(mode, s3, bucket, tmp_path) -> None:
    foo = tmp_path / "foo.txt"
    foo.write_text("plain text")
    conn = mode.connection()
    conn.uploadFile(
        bucket,
        "my-key",
        str(foo),
        headers={
            "Content-Type": "text/plain",
        },
    )
    mode.settle(conn)
    head = s3.head_object(Bucket=bucket, Key="my-key")
    assert head["ContentType"] == "text/plain"
    assert object_bytes(s3, bucket, "my-key") == b"plain text"


def test_compress_gzip_sets_content_encoding_and_round_trips(mode, s3, bucket, tmp_path) -> None:
    text = b"squeeze me " * 5000
    foo = tmp_path / "foo.txt"
    foo.write_bytes(text)
    conn = mode.connection()
    conn.uploadFile(bucket, "my-key", str(foo), compress="gzip")
    mode.settle(conn)
    stored = s3.get_object(Bucket=bucket, Key="my-key")
    assert stored["ContentEncoding"] == "gzip"
    body = stored["Body"].read()
    assert len(body) < len(text) and gzip.decompress(body) == text
    # When downloading, it's also aware that it was compressed and decompresses it.
    assert conn.downloadString(bucket, "my-key") == text


def test_upload_string_with_gzip_then_download_string(make_conn, s3, bucket) -> None:
    conn = make_conn()
    # Upload this string setting Content-Encoding to gzip and compressing it with gzip.
    assert conn.uploadString(bucket, "key", "howdy " * 100, compress="gzip", async_=False) is True
    assert s3.head_object(Bucket=bucket, Key="key")["ContentEncoding"] == "gzip"
    # When downloading, it's also aware that it was compressed with gzip.
    assert conn.downloadString(bucket, "key") == b"howdy " * 100


def test_bwlimit_limits_the_connections_uploads_and_downloads(make_conn, s3, bucket, tmp_path) -> None:
    conn = make_conn(async_=False, delete=False, bwlimit="1M")
    data = os.urandom(2 * 1024 * 1024)
    path = tmp_path / "two-mib"
    path.write_bytes(data)
    started = time.monotonic()
    assert conn.uploadFile(bucket, "limited", str(path)) is True
    up_s = time.monotonic() - started
    started = time.monotonic()
    assert conn.downloadString(bucket, "limited") == data
    down_s = time.monotonic() - started
    print(f"measured at 1M: up {len(data) / up_s / 1024:.0f} KiB/s, down {len(data) / down_s / 1024:.0f} KiB/s")
    # 2 MiB at 1 MiB/s: 2 s, less a burst of at most a quarter second (a band that load cannot break)
    assert 1.6 <= up_s <= 6.0, up_s
    assert 1.6 <= down_s <= 6.0, down_s
    assert object_bytes(s3, bucket, "limited") == data


def test_a_bad_bwlimit_is_refused_when_the_connection_is_made() -> None:
    with pytest.raises(ConfigError, match="bwlimit|rate"):
        Connection(bwlimit="fast")


# -- Asynchronous use: in-process threads (the original's "threaded version") --------------


def test_run_loop_uploads_three_files_in_the_background_without_redis(s3_server, tempdir, s3, bucket, tmp_path) -> None:
    files = [tmp_path / name for name in ("foo.txt", "bar.txt", "yes.txt")]
    for f in files:
        f.write_text(f"content of {f.name}")
    # Nothing listens on port 1: the in-process threads must not need Redis.
    connection = Connection(
        s3_server.access_key,
        s3_server.secret_key,
        endpoint_url=s3_server.url,
        region=REGION,
        redis_url="redis://127.0.0.1:1/0",
        backoff_base=0.01,
        tempdir=tempdir,
        **{"async": True},
    )
    try:
        # Now it will go off in the background and upload files
        connection.runLoop()
        # Add requests to upload files; each of these returns immediately
        ids = [connection.uploadFile(bucket, f"my-key/{f.name}", str(f)) for f in files]
        assert all(isinstance(i, str) for i in ids) and len(set(ids)) == 3
        assert connection.wait(60)
    finally:
        connection.close()
    for f in files:
        assert object_bytes(s3, bucket, f"my-key/{f.name}") == f"content of {f.name}".encode()
        assert not f.exists()
    assert connection.failures() == []


# -- Silent failure ---------------------------------------------------------------------------


def test_sync_failure_raises_or_returns_false_when_silent(make_conn, tmp_path) -> None:
    foo = tmp_path / "foo.txt"
    foo.write_text("nowhere to go")
    conn = make_conn(async_=False)
    with pytest.raises(UploadError, match="NoSuchBucket") as caught:
        conn.uploadFile("no-such-bucket-s3po", "my-key", str(foo))
    assert (caught.value.bucket, caught.value.key) == ("no-such-bucket-s3po", "my-key")
    assert conn.uploadFile("no-such-bucket-s3po", "my-key", str(foo), silent=True) is False
    assert foo.read_text() == "nowhere to go", "a failed upload never deletes"
    with pytest.raises(UploadError, match="NoSuchBucket"):
        conn.uploadString("no-such-bucket-s3po", "my-key", "data")
    assert conn.uploadString("no-such-bucket-s3po", "my-key", "data", silent=True) is False


def test_in_process_silent_failure_is_recorded_but_not_logged_as_an_error(make_conn, tmp_path, caplog) -> None:
    loud, quiet = tmp_path / "loud.txt", tmp_path / "quiet.txt"
    loud.write_text("x")
    quiet.write_text("y")
    conn = make_conn()
    conn.runLoop()
    with caplog.at_level("INFO", logger="s3po_client"):
        conn.uploadFile("no-such-bucket-s3po", "loud", str(loud))
        conn.uploadFile("no-such-bucket-s3po", "quiet", str(quiet), silent=True)
        assert conn.wait(60)
    assert sorted(f.key for f in conn.failures()) == ["loud", "quiet"]
    assert all(isinstance(f.error, UploadError) and "NoSuchBucket" in str(f.error) for f in conn.failures())
    failed = [r for r in caplog.records if r.getMessage().startswith("failed job=")]
    levels = {("loud" if "key=loud" in r.getMessage() else "quiet"): r.levelname for r in failed}
    assert levels == {"loud": "ERROR", "quiet": "INFO"}
    assert loud.exists() and quiet.exists()


def test_failed_in_process_upload_is_reported(make_conn, tmp_path, caplog) -> None:
    foo = tmp_path / "foo.txt"
    foo.write_text("stays")
    conn = make_conn()
    conn.run_loop()
    with caplog.at_level("ERROR", logger="s3po_client"):
        job_id = conn.upload_file("no-such-bucket-s3po", "my-key", foo, retries=1)
        assert conn.wait(60)
    (failure,) = conn.failures()
    assert failure.job.id == job_id
    assert (failure.bucket, failure.key, failure.path) == ("no-such-bucket-s3po", "my-key", str(foo))
    assert isinstance(failure.error, UploadError) and "NoSuchBucket" in str(failure.error)
    assert any(job_id in r.getMessage() and "NoSuchBucket" in r.getMessage() for r in caplog.records)
    assert foo.read_text() == "stays"


# -- Asynchronous strings ---------------------------------------------------------------------


@pytest.mark.parametrize("how", ["in-process", "queued"])
def test_async_string_upload_removes_its_temp_file(
    make_conn, redis_client, start_daemon, s3, bucket, tempdir, how
) -> None:
    conn = make_conn()
    if how == "in-process":
        conn.runLoop()
    job_id = conn.uploadString(bucket, "greeting", "howdy")
    assert isinstance(job_id, str)
    if how == "queued":
        (job,) = queued_jobs(redis_client)
        assert job.delete is True and Path(job.path).parent == tempdir
        assert Path(job.path).read_bytes() == b"howdy"
        start_daemon("--allow-dir", str(tempdir))
        wait_until(lambda: not list(tempdir.iterdir()), message="the temp file to be uploaded and removed")
    else:
        assert conn.wait(60)
    assert object_bytes(s3, bucket, "greeting") == b"howdy"
    assert list(tempdir.iterdir()) == []


# -- Lifecycle --------------------------------------------------------------------------------


def test_leaving_with_drains_the_threads_and_stops_them(s3_server, tempdir, s3, bucket, tmp_path) -> None:
    import threading

    files = [tmp_path / f"f{i}.bin" for i in range(4)]
    for i, f in enumerate(files):
        f.write_bytes(bytes([i]) * 10_000)
    with FaultProxy(s3_server.port) as proxy:
        proxy.add_rule("delay", method="PUT", delay_s=0.3, times=None)
        with Connection(
            s3_server.access_key,
            s3_server.secret_key,
            endpoint_url=proxy.url,
            region=REGION,
            backoff_base=0.01,
            tempdir=tempdir,
        ) as conn:
            conn.runLoop(threads=1)
            for f in files:
                conn.uploadFile(bucket, f.name, str(f))
        # Leaving the block waited for every upload.
        for i, f in enumerate(files):
            assert not f.exists()
            assert object_bytes(s3, bucket, f.name) == bytes([i]) * 10_000
    assert not [t for t in threading.enumerate() if t.name.startswith("s3po-upload")]
    late = tmp_path / "late.txt"
    late.write_text("too late")
    with pytest.raises(S3poError, match="stopped"):
        conn.uploadFile(bucket, "late", str(late))


def test_pending_in_process_uploads_finish_at_interpreter_exit(s3_server, tempdir, s3, bucket, tmp_path) -> None:
    files = [tmp_path / f"exit{i}.txt" for i in range(3)]
    for f in files:
        f.write_text(f.name)
    with FaultProxy(s3_server.port) as proxy:
        proxy.add_rule("delay", method="PUT", delay_s=0.3, times=None)
        out = run_script(f"""
conn = Connection({s3_server.access_key!r}, {s3_server.secret_key!r}, endpoint_url={proxy.url!r},
                  region={REGION!r}, backoff_base=0.01)
conn.runLoop(threads=1)
for f in {[str(f) for f in files]!r}:
    conn.uploadFile({bucket!r}, os.path.basename(f), f)
print("queued", flush=True)
""")
    assert out.returncode == 0, out.stderr
    assert "finishing" in out.stderr and "pending upload" in out.stderr
    for f in files:
        assert not f.exists()
        assert object_bytes(s3, bucket, f.name) == f.name.encode()


def test_uploads_abandoned_at_exit_are_each_logged(s3_server, tempdir, s3, bucket, tmp_path) -> None:
    import signal

    files = [tmp_path / f"slow{i}.txt" for i in range(3)]
    for f in files:
        f.write_text(f.name)
    log = tmp_path / "stderr.log"
    with FaultProxy(s3_server.port) as proxy:
        proxy.add_rule("delay", method="PUT", delay_s=30, times=None)
        with open(log, "w") as err:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    script(f"""
conn = Connection({s3_server.access_key!r}, {s3_server.secret_key!r}, endpoint_url={proxy.url!r},
                  region={REGION!r}, backoff_base=0.01)
conn.runLoop(threads=1)
for f in {[str(f) for f in files]!r}:
    conn.uploadFile({bucket!r}, os.path.basename(f), f)
"""),
                ],
                stderr=err,
                env=script_env(),
            )
            try:
                wait_until(
                    lambda: "finishing 3 pending upload(s)" in log.read_text(),
                    timeout_s=60,
                    message="the exit drain to start",
                )
                proc.send_signal(signal.SIGINT)
                assert proc.wait(30) is not None
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    text = log.read_text()
    for f in files:
        assert f"key={f.name}" in text and "abandoned" in text, text
        assert f.exists(), "an abandoned upload keeps its local file"
    abandoned = [line for line in text.splitlines() if "abandoned" in line]
    assert len(abandoned) == 3 and all("ERROR" in line for line in abandoned)


# -- Downloads ----------------------------------------------------------------------------------


def test_download_file_into_a_temp_file_or_a_named_one(make_conn, s3, bucket, tempdir, tmp_path) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"downloaded")
    conn = make_conn()
    path = conn.downloadFile(bucket, "k")
    assert Path(path).parent == tempdir and Path(path).read_bytes() == b"downloaded"
    target = tmp_path / "named.bin"
    assert conn.downloadFile(bucket, "k", str(target)) == str(target)
    assert target.read_bytes() == b"downloaded"


def test_download_of_a_missing_key_raises_and_leaves_no_temp_file(make_conn, bucket, tempdir) -> None:
    from s3po_client import DownloadError

    conn = make_conn()
    with pytest.raises(DownloadError):
        conn.downloadFile(bucket, "missing", retries=1)
    with pytest.raises(DownloadError):
        conn.downloadString(bucket, "missing", retries=0)
    assert list(tempdir.iterdir()) == []


# -- The interface itself ------------------------------------------------------------------------


def append_once_the_put_is_held(held: Any, path: Path) -> None:
    """Append a line to ``path`` once its PUT is held at the proxy: after it was read, never before."""
    wait_until(lambda: held.hits >= 1, timeout_s=30, message="the PUT at the proxy")
    with path.open("a") as f:
        f.write("second line\n")


def test_file_that_changes_while_sent_is_sent_again_and_only_then_deleted(
    make_conn, s3_server, s3, bucket, tmp_path
) -> None:
    import threading

    foo = tmp_path / "growing.log"
    foo.write_text("first line\n")
    with FaultProxy(s3_server.port) as proxy:
        held = proxy.add_rule("delay", method="PUT", delay_s=1.0, times=1)
        conn = make_conn(endpoint_url=proxy.url, async_=False)
        writer = threading.Thread(target=append_once_the_put_is_held, args=(held, foo))
        writer.start()
        assert conn.uploadFile(bucket, "log", str(foo), retries=2) is True
        writer.join()
    assert object_bytes(s3, bucket, "log") == b"first line\nsecond line\n"
    assert not foo.exists()


def test_file_that_changes_while_sent_is_kept_when_no_retry_is_left(make_conn, s3_server, bucket, tmp_path) -> None:
    import threading

    foo = tmp_path / "growing.log"
    foo.write_text("first line\n")
    with FaultProxy(s3_server.port) as proxy:
        held = proxy.add_rule("delay", method="PUT", delay_s=1.0, times=1)
        conn = make_conn(endpoint_url=proxy.url, async_=False)
        writer = threading.Thread(target=append_once_the_put_is_held, args=(held, foo))
        writer.start()
        with pytest.raises(UploadError, match="changed"):
            conn.uploadFile(bucket, "log", str(foo), retries=0)
        writer.join()
    assert foo.read_text() == "first line\nsecond line\n"


def test_async_upload_of_a_missing_file_is_refused_at_once(make_conn, redis_client, tmp_path) -> None:
    conn = make_conn()
    with pytest.raises(JobError, match="does not exist"):
        conn.uploadFile("b", "k", str(tmp_path / "nope.txt"))
    assert redis_client.llen("s3po:queue") == 0


def test_async_keyword_spellings_must_agree(make_conn, tmp_path) -> None:
    foo = tmp_path / "foo.txt"
    foo.write_text("x")
    conn = make_conn()
    with pytest.raises(TypeError, match="disagree"):
        conn.uploadFile("b", "k", str(foo), async_=True, **{"async": False})
    with pytest.raises(TypeError, match="asynch"):
        conn.uploadFile("b", "k", str(foo), asynch=True)
    assert foo.exists()


def test_pep8_and_original_names_are_the_same_methods() -> None:
    for original, pep8 in [
        ("uploadFile", "upload_file"),
        ("uploadString", "upload_string"),
        ("downloadFile", "download_file"),
        ("downloadString", "download_string"),
        ("runLoop", "run_loop"),
    ]:
        assert getattr(Connection, original) is getattr(Connection, pep8)


def test_constructing_and_queueing_does_not_load_boto3(redis_server, redis_client, tmp_path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("x")
    out = run_script(f"""
conn = Connection("id", "secret", redis_url={redis_server.url!r}, tempdir={str(tmp_path)!r})
conn.uploadFile("b", "k", {str(f)!r})
conn.uploadString("b", "s", "data")
conn.close()
assert "boto3" not in sys.modules and "botocore" not in sys.modules, sorted(sys.modules)
print("light")
""")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "light"
    assert [j.key for j in queued_jobs(redis_client)] == ["k", "s"]


# -- helpers ---------------------------------------------------------------------------------------


def script(body: str) -> str:
    return (
        "import logging, os, sys\nlogging.basicConfig(level=logging.INFO)\nfrom s3po_client import Connection\n" + body
    )


def script_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def run_script(body: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script(body)], capture_output=True, text=True, env=script_env(), timeout=120
    )


def test_waiting_retries_hold_no_thread_and_do_not_hold_up_exit(s3_server, s3, bucket, tmp_path) -> None:
    """Four failing uploads with the 60 s backoff on a pool of four: a fifth still goes at once.

    Each waiting retry sits on the timer heap, not in a sleeping thread; at exit the retries
    still waiting are logged as abandoned (their files kept) instead of being slept through.
    """
    import time

    failing = [tmp_path / f"fail{i}.txt" for i in range(4)]
    for f in failing:
        f.write_text(f.name)
    good = tmp_path / "good.txt"
    good.write_text("good")
    with FaultProxy(s3_server.port) as proxy:
        proxy.add_rule("error", method="PUT", path="/fail", status=503, code="SlowDown", times=None)
        started = time.monotonic()
        out = run_script(f"""
import time
conn = Connection({s3_server.access_key!r}, {s3_server.secret_key!r}, endpoint_url={proxy.url!r},
                  region={REGION!r}, backoff_base=60)
conn.runLoop(threads=4)
for f in {[str(f) for f in failing]!r}:
    conn.uploadFile({bucket!r}, os.path.basename(f), f, retries=3)
time.sleep(1.0)  # the four are failing by now
t = time.monotonic()
conn.uploadFile({bucket!r}, "good.txt", {str(good)!r})
while os.path.exists({str(good)!r}) and time.monotonic() - t < 30:
    time.sleep(0.05)
print("good after", round(time.monotonic() - t, 2), file=sys.stderr)
""")
        elapsed = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    assert object_bytes(s3, bucket, "good.txt") == b"good" and not good.exists()
    waited = float(out.stderr.split("good after ")[1].split()[0])
    assert waited < 10, f"the fifth upload waited {waited}s for a thread"
    assert elapsed < 30, f"the interpreter exit took {elapsed:.0f}s: retries were slept through"
    # Each failing upload ends logged: abandoned while its retry waited, or failed at its last attempt.
    assert out.stderr.count("abandoned job=") + out.stderr.count("failed job=") == 4, out.stderr
    assert "abandoned job=" in out.stderr and all(f.exists() for f in failing)
