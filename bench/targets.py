"""The targets of the benchmark (issue 9's table), each checked against a case's results."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from measure import Results

MiB = 1024 * 1024


class Target(Protocol):
    def describe(self) -> str: ...

    def check(self, results: Results) -> tuple[str, bool]:
        """Return what was measured (as shown in the report) and whether the target is met."""
        ...


@dataclass(frozen=True)
class Faster:
    """``subject`` takes at most 1/``at_least`` of ``peer``'s time: ``peer's time / subject's`` ≥ ``at_least``."""

    subject: str
    peer: str
    at_least: float
    wording: str = ""
    #: show ``subject's / peer's`` (for a latency: "its p50 is 22× LPUSH's") rather than the speed ratio
    inverse: bool = False

    def describe(self) -> str:
        return f"{self.subject}: {self.wording or f'≥ {self.at_least:.2f}× {self.peer}'}"

    def check(self, results: Results) -> tuple[str, bool]:
        ratio = results.ratio(self.subject, self.peer)
        shown = f"{1 / ratio:.2f}× the peer's" if self.inverse else f"{ratio:.2f}×"
        return shown, ratio >= self.at_least


@dataclass(frozen=True)
class Smaller:
    """``subject``'s output (``extra["bytes_out"]``) is at most ``at_most`` × ``peer``'s."""

    subject: str
    peer: str
    at_most: float

    def describe(self) -> str:
        return f"{self.subject}: output ≤ {self.at_most:.2f}× {self.peer}'s size"

    def check(self, results: Results) -> tuple[str, bool]:
        ratio = results.median_extra(self.subject, "bytes_out") / results.median_extra(self.peer, "bytes_out")
        return f"{ratio:.3f}× its size", ratio <= self.at_most


@dataclass(frozen=True)
class PeakRss:
    """``subject``'s peak RSS is at most ``at_most_mib``."""

    subject: str
    at_most_mib: float

    def describe(self) -> str:
        return f"{self.subject}: peak RSS ≤ {self.at_most_mib:.0f} MiB"

    def check(self, results: Results) -> tuple[str, bool]:
        peak = results.peak_rss_bytes(self.subject) / MiB
        return f"{peak:.0f} MiB", peak <= self.at_most_mib
