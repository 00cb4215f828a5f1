"""Bandwidth limits: ``--bwlimit`` parsed, the timetable and the token bucket with numbers, and real limited transfers."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest
from test_transfer import PART, SMALL, make_engine, no_uploads_left  # noqa: F401 - a fixture

from s3po_client.errors import ConfigError, UploadError
from s3po_client.settings import KiB, MiB
from s3po_client.transfer import TransferEngine
from s3po_client.transfer.bandwidth import BURST_S, OFF, Limiter, Rates, TokenBucket, parse_bwlimit, parse_rate

MONDAY = datetime(2026, 12, 7)  # a Monday


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """``day`` days after Monday, at ``hour:minute``."""
    return MONDAY.replace(day=MONDAY.day + day, hour=hour, minute=minute)


# -- parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("10M", 10 * MiB),
        ("512K", 512 * KiB),
        ("512k", 512 * KiB),
        ("1.5M", 1536 * KiB),
        ("2MiB", 2 * MiB),
        ("1G", 1024 * MiB),
        ("4096B", 4096),
        ("off", None),
        ("OFF", None),
        ("0", None),
    ],
)
def test_a_rate_is_bytes_per_second_with_a_binary_unit(text: str, rate: int | None) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("512", "write 512K, 512M or 512B"),
        ("fast", "bad rate 'fast'"),
        ("100B", "at least 1K"),
        ("10X", "bad rate '10X'"),
        ("-1M", "bad rate '-1M'"),
    ],
)
def test_a_bad_rate_is_one_clear_line(text: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_rate(text)
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_up_and_down_are_given_apart_as_rclone_writes_them() -> None:
    assert Rates.parse("10M") == Rates(10 * MiB, 10 * MiB)
    assert Rates.parse("10M:512K") == Rates(10 * MiB, 512 * KiB)
    assert Rates.parse("10M:off") == Rates(10 * MiB, None)
    assert Rates.parse("off") == OFF
    assert [str(Rates.parse(t)) for t in ("10M", "10M:512K", "off:1M", "off", "1.5M")] == [
        "10M",
        "10M:512K",
        "off:1M",
        "off",
        "1536K",
    ]


def test_a_daily_timetable_holds_from_each_time_and_wraps_round_midnight() -> None:
    schedule = parse_bwlimit("08:00,512K 12:00,10M;19:00,off")
    assert not schedule.is_constant
    assert schedule.rate_at(at(0, 7, 59)) == OFF  # still 19:00 of the night before
    assert schedule.rate_at(at(0, 8)) == Rates(512 * KiB, 512 * KiB)
    assert schedule.rate_at(at(3, 12, 30)) == Rates(10 * MiB, 10 * MiB)
    assert schedule.rate_at(at(6, 23, 59)) == OFF
    assert schedule.rate_at(at(0, 0, 0)) == OFF


def test_a_weekly_timetable_names_days_and_mixes_with_daily_entries() -> None:
    schedule = parse_bwlimit("Mon-00:00,512K Fri-23:59,10M Saturday-10:00,1M:off 12:00,2M sun-20:00,off")
    assert schedule.rate_at(at(0, 11)) == Rates(512 * KiB, 512 * KiB)
    assert schedule.rate_at(at(1, 12)) == Rates(2 * MiB, 2 * MiB)  # every day's 12:00
    assert schedule.rate_at(at(4, 23, 59)) == Rates(10 * MiB, 10 * MiB)
    assert schedule.rate_at(at(5, 11)) == Rates(1 * MiB, None)
    assert schedule.rate_at(at(6, 21)) == OFF
    assert parse_bwlimit("5M").is_constant and parse_bwlimit("5M").rate_at(at(2, 3)) == Rates(5 * MiB, 5 * MiB)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty bandwidth limit"),
        ("08:00", "bad timetable entry '08:00'"),
        ("08:00,1M 25:00,off", "bad time in timetable entry '25:00,off'"),
        ("Mon-08:60,1M", "bad time"),
        ("Someday-08:00,1M", "bad weekday 'Someday'"),
        ("08:00,1M Mon-08:00,2M", "a second limit for the same day and time"),
        ("08:00,lots", "bad rate 'lots'"),
    ],
)
def test_a_bad_timetable_is_one_line_naming_the_entry(text: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_bwlimit(text)
    assert says in str(caught.value) and "\n" not in str(caught.value)


# -- the token bucket, with numbers --------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_starts_empty_and_makes_each_taker_wait_for_the_bytes_before_it() -> None:
    clock = Clock()
    bucket = TokenBucket(1000 * KiB, clock=clock)
    assert bucket.try_take(64 * KiB) == 0  # the balance is not negative: its turn
    assert bucket.try_take(64 * KiB) == pytest.approx(64 * KiB / (1000 * KiB))  # repays the first
    clock.now += 0.0641
    assert bucket.try_take(64 * KiB) == 0
    clock.now += 0.032
    assert bucket.try_take(1) == pytest.approx(0.032, abs=1e-3)


def test_a_burst_after_a_pause_is_at_most_a_quarter_second_of_the_rate() -> None:
    clock = Clock()
    rate = 1000 * KiB
    bucket = TokenBucket(rate, clock=clock)
    clock.now += 3600  # an hour idle
    passed = 0
    while bucket.try_take(4 * KiB) == 0:
        passed += 4 * KiB
    assert passed <= rate * BURST_S + 4 * KiB
    assert passed >= rate * BURST_S


def test_over_ten_seconds_the_bytes_that_pass_stay_within_the_rate() -> None:
    clock = Clock()
    rate = 2 * MiB
    bucket = TokenBucket(rate, clock=clock)
    passed = 0
    end = clock.now + 10
    while clock.now < end:
        wait = bucket.try_take(16 * KiB)
        if wait:
            clock.now += wait
        else:
            passed += 16 * KiB
    assert rate * 10 * 0.98 <= passed <= rate * 10 * 1.05


def test_no_limit_lets_everything_through_and_still_counts() -> None:
    bucket = TokenBucket()
    assert bucket.try_take(10**12) == 0
    assert bucket.body(b"abc") == b"abc"
    bucket.take(5)
    assert bucket.bytes_total == 8


def test_a_new_rate_wakes_a_taker_already_waiting() -> None:
    bucket = TokenBucket(1 * KiB)
    bucket.take(64 * KiB)  # its turn at once; the next waits about a minute
    done = threading.Event()
    threading.Thread(target=lambda: (bucket.take(64 * KiB), done.set()), daemon=True).start()
    assert not done.wait(0.3)
    bucket.set_rate(None)
    assert done.wait(2)


def test_threads_sharing_one_bucket_share_its_rate() -> None:
    bucket = TokenBucket(4 * MiB)
    started = time.monotonic()

    def move() -> None:
        for _ in range(32):
            bucket.take(16 * KiB)

    threads = [threading.Thread(target=move) for _ in range(8)]  # 8 × 512 KiB = 4 MiB
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed <= 1.5, elapsed


def test_the_limiter_follows_its_timetable_as_the_minutes_pass() -> None:
    now = [at(0, 7, 59)]
    limiter = Limiter(parse_bwlimit("08:00,1M 19:00,off"), now=lambda: now[0])
    assert limiter.rates == OFF
    now[0] = at(0, 8, 0)
    assert limiter.up.rate == 1 * MiB and limiter.rates == Rates(1 * MiB, 1 * MiB)
    now[0] = at(0, 19, 0)
    assert limiter.down.rate is None
    limiter.set_rate(Rates(5 * MiB, None))  # replaces the timetable
    now[0] = at(1, 8, 0)
    assert limiter.rates == Rates(5 * MiB, None)
    assert limiter.status()["bwlimit"] == "5M:off"


# -- real transfers through a limit (SeaweedFS) --------------------------------------------
# 8 MiB at 2 MiB/s is 4 s; the band is generous (a loaded machine is slower, never faster).

RATE = 2 * MiB


def timed(run: Callable[[], Any]) -> float:
    started = time.monotonic()
    run()
    elapsed = time.monotonic() - started
    print(f"measured: {elapsed:.3f} s")
    return elapsed


def limited_engine(
    make_engine: Callable[..., TransferEngine], bwlimit: str, endpoint: str | None = None, **settings: Any
) -> TransferEngine:
    engine = make_engine(replace(SMALL, **settings), endpoint=endpoint)
    engine.limiter = Limiter(parse_bwlimit(bwlimit))
    engine.warm_up()
    return engine


def test_a_multipart_upload_keeps_to_the_limit(
    make_engine: Callable[..., TransferEngine], s3: Any, bucket: str
) -> None:
    engine = limited_engine(make_engine, "2M:off")
    data = os.urandom(8 * MiB)
    elapsed = timed(lambda: engine.upload_bytes(bucket, "big", data))
    assert 3.6 <= elapsed <= 5.0, elapsed
    assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == data
    assert engine.limiter.up.bytes_total >= len(data)


def test_a_download_keeps_to_the_limit(make_engine: Callable[..., TransferEngine], s3: Any, bucket: str) -> None:
    data = os.urandom(8 * MiB)
    s3.put_object(Bucket=bucket, Key="big", Body=data)
    engine = limited_engine(make_engine, "off:2M")
    got: list[bytes] = []
    elapsed = timed(lambda: got.append(engine.download_bytes(bucket, "big")))
    assert 3.6 <= elapsed <= 5.0, elapsed
    assert got == [data]
    assert engine.limiter.down.bytes_total == len(data)


@pytest.mark.parametrize(
    "how",
    [
        {},  # the direct PUT (direct_put.py)
        {"lean_put": False},  # boto3's put_object
        {"lean_put": False, "sign_payload": True},  # the signer reads the body first: not charged twice
    ],
    ids=["direct", "boto3", "signed"],
)
def test_a_single_put_keeps_to_the_limit(
    make_engine: Callable[..., TransferEngine], s3: Any, bucket: str, how: dict[str, bool]
) -> None:
    engine = limited_engine(make_engine, "2M", **how)
    data = os.urandom(4 * MiB)  # below the multipart threshold: one PUT
    elapsed = timed(lambda: engine.upload_bytes(bucket, "one", data))
    assert 1.8 <= elapsed <= 2.6, elapsed
    assert s3.get_object(Bucket=bucket, Key="one")["Body"].read() == data


def test_a_compressed_upload_is_limited_by_the_bytes_it_sends(
    make_engine: Callable[..., TransferEngine], s3: Any, bucket: str
) -> None:
    engine = limited_engine(make_engine, "2M")
    data = os.urandom(3 * MiB) + b"\0" * (32 * MiB)  # compresses to about 3 MiB: 1.5 s, not 17
    result: list[Any] = []
    elapsed = timed(lambda: result.append(engine.upload_bytes(bucket, "z", data, compress="zstd")))
    assert result[0].bytes_sent < 4 * MiB
    assert result[0].bytes_sent / RATE * 0.9 <= elapsed <= result[0].bytes_sent / RATE + 1.0, elapsed


def test_a_new_rate_applies_to_the_transfer_under_way(
    make_engine: Callable[..., TransferEngine], s3: Any, bucket: str
) -> None:
    engine = limited_engine(make_engine, "512K")
    data = os.urandom(8 * MiB)  # 16 s at 512K
    threading.Timer(1.0, engine.limiter.set_rate, [OFF]).start()
    elapsed = timed(lambda: engine.upload_bytes(bucket, "big", data))
    assert elapsed < 4, elapsed
    assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == data


@pytest.mark.parametrize("action", ["reset", "corrupt"])
def test_a_limited_upload_sends_a_failed_part_again_alone_and_verifies_it(
    make_engine: Callable[..., TransferEngine], fault_proxy: Any, s3: Any, bucket: str, action: str
) -> None:
    engine = limited_engine(make_engine, "16M", fault_proxy.url, request_backoff_base_s=0.01)
    data = os.urandom(3 * PART)
    rule = fault_proxy.add_rule(action, method="PUT", query="partNumber=2")
    assert engine.upload_bytes(bucket, "k", data) is not False
    assert rule.hits == 1
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == data
    assert no_uploads_left(s3, bucket)
    assert engine.limiter.up.bytes_total >= len(data) + PART // 2, "the bytes sent again were charged again"


def test_a_limited_upload_that_fails_for_good_is_aborted(
    make_engine: Callable[..., TransferEngine], fault_proxy: Any, s3: Any, bucket: str
) -> None:
    engine = limited_engine(make_engine, "16M", fault_proxy.url)
    fault_proxy.add_rule("error", method="PUT", query="partNumber=2", status=403, code="AccessDenied")
    with pytest.raises(UploadError, match="AccessDenied"):
        engine.upload_bytes(bucket, "k", os.urandom(3 * PART))
    assert no_uploads_left(s3, bucket)
