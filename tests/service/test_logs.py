"""Log formats and redaction: what reaches the log file, parsed back."""

from __future__ import annotations

import io
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from s3pod.service.logs import CombiningStreamHandler, configure_logging, redact

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.fixture
def log_to(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """``log_to("json", secrets=[...])`` configures logging into a file and returns its path."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)

    def configure(log_format: str, secrets: tuple[str, ...] = ()) -> Path:
        path = tmp_path / f"s3pod.{log_format}.log"
        configure_logging("DEBUG", log_format, str(path), secrets)
        return path

    yield configure
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])


def lines(path: Path) -> list[str]:
    for handler in logging.getLogger().handlers:
        handler.flush()
    return path.read_text().splitlines()


UPLOADED = "uploaded job=%s bucket=%s key=%s bytes=%d duration=%.3fs attempt=%d"  # the worker's shape


def test_json_line_carries_the_templates_fields_typed(log_to: Callable[..., Path]) -> None:
    path = log_to("json")
    log = logging.getLogger("s3pod.loop")
    log.info(UPLOADED, "0f1e2d", "logs", "2024/app log.gz", 123456, 1.23456, 2)
    log.error("dead job=%s bucket=%s key=%s attempts=%d error=%s", "9", "logs", "k", 4, "NoSuchBucket: gone")
    log.info("100%% done, %d left, rate=%.1f/s", 3, 2.5)
    log.info("plain message", extra={"fields": {"event": "x", "n": 1}})
    first, second, third, fourth = (json.loads(line) for line in lines(path))
    assert first["level"] == "INFO" and first["logger"] == "s3pod.loop"
    assert (
        first["message"] == "uploaded job=0f1e2d bucket=logs key=2024/app log.gz bytes=123456 duration=1.235s attempt=2"
    )
    assert {k: first[k] for k in ("job", "bucket", "key", "bytes", "duration", "attempt")} == {
        "job": "0f1e2d",
        "bucket": "logs",
        "key": "2024/app log.gz",
        "bytes": 123456,
        "duration": 1.23456,
        "attempt": 2,
    }
    assert first["ts"].endswith("+00:00")
    assert second["level"] == "ERROR"
    assert (second["attempts"], second["error"]) == (4, "NoSuchBucket: gone")
    assert third["message"] == "100% done, 3 left, rate=2.5/s" and third["rate"] == 2.5
    assert (fourth["event"], fourth["n"]) == ("x", 1)


def test_text_line_is_the_message_plus_extra_fields(log_to: Callable[..., Path]) -> None:
    path = log_to("text")
    log = logging.getLogger("s3pod.loop")
    log.info(UPLOADED, "0f1e2d", "logs", "a b", 1, 0.5, 0)
    log.info("enqueued", extra={"fields": {"job": "j1", "key": "a b"}})
    first, second = lines(path)
    assert first.endswith(" INFO s3pod.loop uploaded job=0f1e2d bucket=logs key=a b bytes=1 duration=0.500s attempt=0")
    assert second.endswith(' INFO s3pod.loop enqueued job=j1 key="a b"')


def test_a_traceback_stays_on_its_record_line(log_to: Callable[..., Path]) -> None:
    for log_format in ("text", "json"):
        path = log_to(log_format)
        try:
            raise RuntimeError("boom\nsecond line")
        except RuntimeError:
            logging.getLogger("s3pod.loop").exception("bug while uploading job=%s", "j")
        (line,) = lines(path)
        assert "Traceback" in line and "RuntimeError: boom" in line
        if log_format == "json":
            assert "RuntimeError: boom" in json.loads(line)["exc"]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_secrets_never_reach_the_log(log_to: Callable[..., Path], log_format: str) -> None:
    path = log_to(log_format, secrets=(SECRET, "tok-4f9a8e7d"))
    log = logging.getLogger("s3pod.anything")
    log.info("settings secret=%s", SECRET)  # in the args
    log.warning("connecting to redis://s3pod:hunter2-pw@10.0.0.5:6379/0")  # a URL's password
    log.warning("rediss://:only-pw@cache:6380 and unix:///run/r.sock?password=sockpw&db=1")
    log.info("api token tok-4f9a8e7d given", extra={"fields": {"auth": "Bearer tok-4f9a8e7d"}})
    log.info("retry job=%s error=%s", "j", f"InvalidAccessKeyId for {SECRET}")  # a field
    try:
        raise ValueError(f"bad signature for {SECRET}")
    except ValueError:
        log.exception("upload failed")
    logging.getLogger("botocore.endpoint").warning("sent key %s", SECRET)  # a library's logger too
    text = "\n".join(lines(path))
    for secret in (SECRET, "hunter2-pw", "only-pw", "sockpw", "tok-4f9a8e7d"):
        assert secret not in text
    assert "redis://s3pod:***@10.0.0.5:6379/0" in text
    assert "rediss://:***@cache:6380" in text
    assert "password=***&db=1" in text
    assert text.count("***") >= 8
    assert len(lines(path)) == 7
    if log_format == "json":
        retry = json.loads(lines(path)[4])
        assert retry["error"] == "InvalidAccessKeyId for ***"


def test_redact_leaves_ordinary_text_alone() -> None:
    assert (
        redact("uploaded s3://bucket/key bytes=10 http://host:9000/x")
        == "uploaded s3://bucket/key bytes=10 http://host:9000/x"
    )
    assert redact("https://user:pw@host/") == "https://user:***@host/"


def test_configuring_twice_does_not_double_lines(log_to: Callable[..., Path]) -> None:
    log_to("json")
    path = log_to("json")
    logging.getLogger("s3pod").info("once")
    assert len(lines(path)) == 1


class HeldStream(io.StringIO):
    """A stream whose first write waits until ``go`` is set, as a write to a slow disk does."""

    def __init__(self) -> None:
        super().__init__()
        self.go, self.writing = threading.Event(), threading.Event()

    def write(self, text: str) -> int:
        if not self.writing.is_set():
            self.writing.set()
            self.go.wait(10)
        return super().write(text)


def test_no_thread_waits_for_another_ones_write_and_no_line_is_lost() -> None:
    stream = HeldStream()
    handler = CombiningStreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("s3pod.test.writer")
    log.propagate, log.level = False, logging.INFO
    log.addHandler(handler)
    try:
        first = threading.Thread(target=log.info, args=("line 0",))
        first.start()
        assert stream.writing.wait(10)  # that thread is in its write now

        def others() -> None:
            for i in range(1, 101):
                log.info("line %d", i)

        other = threading.Thread(target=others)
        other.start()
        other.join(5)
        assert not other.is_alive(), "logging waited for another thread's write"
        stream.go.set()
        first.join(10)
        assert stream.getvalue().splitlines() == [f"line {i}" for i in range(101)]  # written by the first
        log.info("line 101")  # no write running: written before the call returns
        assert stream.getvalue().splitlines()[-1] == "line 101"
    finally:
        stream.go.set()
        log.removeHandler(handler)
        handler.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_a_forked_child_writes_its_lines_and_the_parents_are_written_once(log_to: Callable[..., Path]) -> None:
    path = log_to("text")
    log = logging.getLogger("s3pod.test.fork")
    log.info("before the fork")
    pid = os.fork()
    if pid == 0:  # the child, as a detached daemon after its fork
        log.info("in the child")
        logging.shutdown()
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    log.info("in the parent")
    text = "\n".join(lines(path))
    assert [text.count(m) for m in ("before the fork", "in the child", "in the parent")] == [1, 1, 1]
