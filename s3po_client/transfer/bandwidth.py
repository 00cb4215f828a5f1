"""Bandwidth limits: ``--bwlimit`` parsed, a timetable, and the token buckets every transfer of a process shares.

``--bwlimit`` is written as rclone writes it: ``10M`` (upload and download each limited to
10 MiB/s), ``10M:512K`` (upload:download), ``off``, or a timetable of ``[WEEKDAY-]HH:MM,RATE``
entries (``"08:00,512K 19:00,off"``; ``Mon-08:00,…``), separated by spaces or semicolons.
A rate is bytes per second with a binary unit (``B``, ``K``, ``M``, ``G``, ``T``).

One :class:`Limiter` serves a whole process: a :class:`TokenBucket` for the bytes sent and one
for those received, shared by every transfer and part in flight. A bucket holds at most
:data:`BURST_S` of its rate and starts empty: over any span, at most ``rate × span`` plus a
quarter of a second's worth and one block pass.
"""

from __future__ import annotations

import bisect
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from ..errors import ConfigError
from ..settings import KiB, MiB

logger = logging.getLogger(__name__)

_Data = TypeVar("_Data", bound=bytes | bytearray | memoryview)

#: a bucket holds at most this many seconds of its rate: the largest burst after a pause
BURST_S = 0.25
#: the most bytes one limited read takes at once (and the least, for a very low rate)
MAX_BLOCK_BYTES = 64 * KiB
MIN_BLOCK_BYTES = 1 * KiB
#: the lowest limit accepted: below it one block would take longer than a second
MIN_RATE_BYTES = 1 * KiB

UNITS = {"b": 1, "k": KiB, "m": MiB, "g": 1024 * MiB, "t": 1024 * 1024 * MiB}
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MINUTES_PER_DAY = 24 * 60
_RATE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)", re.IGNORECASE)
_WHEN = re.compile(r"(?:([a-z]+)-)?(\d\d?):(\d\d)", re.IGNORECASE)


def parse_rate(text: str) -> int | None:
    """Return the bytes per second ``text`` means (``512K``, ``10M``, ``1.5G``), or None for ``off``/``0``.

    Raises ConfigError, in one line, for anything else: a number needs its unit.
    """
    word = text.strip()
    if word.lower() in ("off", "0"):
        return None
    match = _RATE.fullmatch(word)
    if match is None:
        hint = f": write {word}K, {word}M or {word}B" if re.fullmatch(r"\d+(\.\d+)?", word) else ""
        raise ConfigError(f"bad rate {text!r}{hint} (bytes per second, e.g. 512K, 10M, or off)")
    rate = int(float(match.group(1)) * UNITS[match.group(2)[0].lower()])
    if rate < MIN_RATE_BYTES:
        raise ConfigError(f"bad rate {text!r}: a limit must be at least 1K (1 KiB/s), or off")
    return rate


def format_rate(rate: int | None) -> str:
    """``10M``, ``1536K``, ``off``: the shortest exact spelling ``parse_rate`` reads back."""
    if rate is None:
        return "off"
    for unit in "tgmk":
        if rate % UNITS[unit] == 0:
            return f"{rate // UNITS[unit]}{unit.upper()}"
    return f"{rate}B"


@dataclass(frozen=True, slots=True)
class Rates:
    """An upload and a download limit, bytes per second (None: no limit)."""

    up: int | None = None
    down: int | None = None

    @classmethod
    def parse(cls, text: str) -> Rates:
        """``10M`` (both ways), ``10M:1M`` (up:down), ``10M:off``, ``off``."""
        up, sep, down = text.partition(":")
        if not sep:
            rate = parse_rate(up)
            return cls(rate, rate)
        return cls(parse_rate(up), parse_rate(down))

    def __str__(self) -> str:
        if self.up == self.down:
            return format_rate(self.up)
        return f"{format_rate(self.up)}:{format_rate(self.down)}"


OFF = Rates()


@dataclass(frozen=True, slots=True)
class Schedule:
    """A weekly timetable of rates; one entry without a time is a constant limit.

    ``slots`` are (minute of the week from Monday 00:00, rates), sorted; an entry that names
    no weekday stands for every day. Before the week's first slot, the last one holds still.
    """

    slots: tuple[tuple[int, Rates], ...]
    text: str

    @classmethod
    def constant(cls, rates: Rates) -> Schedule:
        return cls(((0, rates),), str(rates))

    @property
    def is_constant(self) -> bool:
        return len({rates for _, rates in self.slots}) == 1

    def rate_at(self, when: datetime) -> Rates:
        """Return the rates in force at ``when`` (local time, as the timetable is written)."""
        minute = when.weekday() * MINUTES_PER_DAY + when.hour * 60 + when.minute
        index = bisect.bisect_right([start for start, _ in self.slots], minute) - 1
        return self.slots[index][1]  # -1 wraps round to the end of the week before


def parse_bwlimit(text: str) -> Schedule:
    """Return the limit or timetable ``--bwlimit`` gives (see the module's docstring).

    Raises ConfigError in one line naming the entry at fault.
    """
    entries = [entry for entry in re.split(r"[\s;]+", text.strip()) if entry]
    if not entries:
        raise ConfigError("empty bandwidth limit: give a rate (10M, 10M:1M, off) or a timetable (08:00,10M 19:00,off)")
    if len(entries) == 1 and "," not in entries[0] and not _WHEN.fullmatch(entries[0]):
        return Schedule.constant(Rates.parse(entries[0]))
    slots: dict[int, Rates] = {}
    for entry in entries:
        when, sep, rate = entry.partition(",")
        if not sep:
            raise ConfigError(f"bad timetable entry {entry!r}: expected [WEEKDAY-]HH:MM,RATE (e.g. Mon-08:00,10M)")
        rates = Rates.parse(rate)
        for start in _starts(when, entry):
            if start in slots:
                raise ConfigError(f"timetable entry {entry!r}: a second limit for the same day and time")
            slots[start] = rates
    return Schedule(tuple(sorted(slots.items())), " ".join(entries))


def _starts(when: str, entry: str) -> list[int]:
    """The minutes of the week an entry's ``[WEEKDAY-]HH:MM`` starts at (seven without a weekday)."""
    match = _WHEN.fullmatch(when)
    if match is None or int(match.group(2)) > 23 or int(match.group(3)) > 59:
        raise ConfigError(f"bad time in timetable entry {entry!r}: expected [WEEKDAY-]HH:MM, HH:MM from 00:00 to 23:59")
    minute = int(match.group(2)) * 60 + int(match.group(3))
    day = match.group(1)
    if day is None:
        return [d * MINUTES_PER_DAY + minute for d in range(7)]
    names = [d for d in DAYS if day.lower() in (d, d[:3])]
    if not names:
        raise ConfigError(f"bad weekday {day!r} in timetable entry {entry!r}: Mon, Tue, … or Monday, Tuesday, …")
    return [DAYS.index(names[0]) * MINUTES_PER_DAY + minute]


class TokenBucket:
    """One direction's limit: ``take(n)`` returns once ``n`` bytes may pass. Thread-safe.

    The balance refills at ``rate`` up to :data:`BURST_S` of it; a taker whose turn comes
    while the balance is not negative takes its bytes at once (the balance may go below
    zero), and the next waits until it is repaid. ``set_rate`` applies at once, to those
    waiting too. Every byte is counted in ``bytes_total``, limited or not.
    """

    def __init__(self, rate: int | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._rate: int | None = None
        self._tokens = 0.0
        self._last = clock()
        self._total = 0
        self.set_rate(rate)

    @property
    def rate(self) -> int | None:
        return self._rate

    @property
    def bytes_total(self) -> int:
        return self._total

    @property
    def block_bytes(self) -> int:
        """The most bytes one limited read or write should take at once."""
        rate = self._rate
        if rate is None:
            return MAX_BLOCK_BYTES
        return max(MIN_BLOCK_BYTES, min(MAX_BLOCK_BYTES, int(rate * BURST_S)))

    def set_rate(self, rate: int | None) -> None:
        """Limit to ``rate`` bytes per second from now on (None: no limit); an unlimited bucket starts empty."""
        with self._cond:
            now = self._clock()
            if self._rate is None:
                self._tokens = 0.0
            else:
                self._refill(now)
            self._last = now
            self._rate = rate
            if rate is not None:
                self._tokens = min(self._tokens, rate * BURST_S)
            self._cond.notify_all()

    def take(self, n: int) -> None:
        """Wait until ``n`` more bytes may pass (at once when there is no limit), and count them."""
        with self._cond:
            self._total += n
            while True:
                wait = self.try_take(n)
                if wait <= 0:
                    return
                self._cond.wait(wait)

    def try_take(self, n: int) -> float:
        """Take ``n`` bytes (uncounted) and return 0 if it is their turn; else return the seconds until it is."""
        with self._cond:
            rate = self._rate
            if rate is None:
                return 0.0
            self._refill(self._clock())
            if self._tokens >= 0:
                self._tokens -= n
                return 0.0
            return -self._tokens / rate

    def count(self, n: int) -> None:
        """Count ``n`` bytes that went unlimited."""
        with self._cond:
            self._total += n

    def body(self, data: _Data) -> _Data | LimitedBody:
        """Return what to send for ``data``: itself when unlimited (counted now), else a :class:`LimitedBody`."""
        if self._rate is None:
            self.count(len(data))
            return data
        return LimitedBody(data, self)

    def _refill(self, now: float) -> None:
        assert self._rate is not None
        self._tokens = min(self._rate * BURST_S, self._tokens + (now - self._last) * self._rate)
        self._last = now


class LimitedBody:
    """A request body read through a bucket: each read waits for its bytes (at most one block a read).

    A file-like object for boto3 and urllib3, seekable. ``charging`` is off while botocore's
    signer reads the body to hash it (see :func:`charge_after_signing`): those bytes are
    not on the wire.
    """

    def __init__(self, data: bytes | bytearray | memoryview, bucket: TokenBucket) -> None:
        self._view = memoryview(data)
        self._pos = 0
        self._bucket = bucket
        self.charging = True

    def __len__(self) -> int:
        return len(self._view)

    def read(self, size: int | None = -1) -> bytes:
        left = len(self._view) - self._pos
        n = left if size is None or size < 0 else min(size, left)
        if self.charging and n > 0:
            if size is not None and size >= 0:
                n = min(n, self._bucket.block_bytes)
            self._bucket.take(n)
        chunk = self._view[self._pos : self._pos + n].tobytes()
        self._pos += n
        return chunk

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (0, self._pos, len(self._view))[whence]
        self._pos = max(0, min(len(self._view), base + offset))
        return self._pos

    def tell(self) -> int:
        return self._pos

    def seekable(self) -> bool:
        return True


def charge_after_signing(client: Any) -> None:
    """Make a boto3 client's requests charge a :class:`LimitedBody` only once signed.

    With payload signing on, botocore's signer reads the body to hash it when the request is
    created; the handlers run first and last around it (botocore's ``request-created`` event).
    """
    events = client.meta.events
    events.register_first("request-created.s3", _stop_charging, unique_id="s3po-bwlimit-signing")
    events.register_last("request-created.s3", _start_charging, unique_id="s3po-bwlimit-sending")


def _stop_charging(request: Any, **_: Any) -> None:
    if isinstance(getattr(request, "data", None), LimitedBody):
        request.data.charging = False


def _start_charging(request: Any, **_: Any) -> None:
    if isinstance(getattr(request, "data", None), LimitedBody):
        request.data.charging = True


class Limiter:
    """A process's bandwidth limits: the ``up`` and ``down`` buckets, following a :class:`Schedule`.

    Share one among every engine of a process. A timetable is applied again at each new
    minute, when a bucket or the rates are next asked for. ``set_rate`` and ``follow``
    change the limits while transfers run.

    >>> limiter = Limiter(parse_bwlimit("10M:1M"))
    >>> str(limiter.rates), limiter.up.rate
    ('10M:1M', 10485760)
    """

    def __init__(self, schedule: Schedule | None = None, *, now: Callable[[], datetime] = datetime.now) -> None:
        self._now = now
        self._lock = threading.Lock()
        self._up = TokenBucket()
        self._down = TokenBucket()
        self._schedule = Schedule.constant(OFF)
        self._recheck_at: datetime | None = None
        self.follow(schedule or self._schedule)

    @property
    def schedule(self) -> Schedule:
        return self._schedule

    @property
    def up(self) -> TokenBucket:
        """The bucket of the bytes sent (upload bodies)."""
        self._refresh()
        return self._up

    @property
    def down(self) -> TokenBucket:
        """The bucket of the bytes received (download bodies)."""
        self._refresh()
        return self._down

    @property
    def rates(self) -> Rates:
        """The limits in force now."""
        self._refresh()
        return Rates(self._up.rate, self._down.rate)

    def set_rate(self, rates: Rates) -> None:
        """Limit to ``rates`` from now on, replacing any timetable."""
        self.follow(Schedule.constant(rates))

    def follow(self, schedule: Schedule) -> None:
        """Follow ``schedule`` from now on (a constant limit, or a timetable)."""
        with self._lock:
            self._schedule = schedule
            self._apply()

    def status(self) -> dict[str, Any]:
        """What the API and ``s3po``'s log show: the timetable, the rates now (bytes/s, None: off), the bytes so far."""
        rates = self.rates
        return {
            "bwlimit": self._schedule.text,
            "rate": str(rates),
            "up_bytes_per_second": rates.up,
            "down_bytes_per_second": rates.down,
            "sent_bytes": self._up.bytes_total,
            "received_bytes": self._down.bytes_total,
        }

    def _refresh(self) -> None:
        if self._recheck_at is None or self._now() < self._recheck_at:
            return
        with self._lock:
            if self._recheck_at is not None and self._now() >= self._recheck_at:
                self._apply()

    def _apply(self) -> None:
        """Set the buckets to the schedule's rates now; with a timetable, look again at the next minute."""
        now = self._now()
        rates, was = self._schedule.rate_at(now), Rates(self._up.rate, self._down.rate)
        if rates != was:
            self._up.set_rate(rates.up)
            self._down.set_rate(rates.down)
            logger.info("bandwidth limit rate=%s was=%s bwlimit=%r", rates, was, self._schedule.text)
        minute = now.replace(second=0, microsecond=0)
        self._recheck_at = None if self._schedule.is_constant else minute + timedelta(minutes=1)


__all__ = ["OFF", "LimitedBody", "Limiter", "Rates", "Schedule", "TokenBucket", "parse_bwlimit", "parse_rate"]
