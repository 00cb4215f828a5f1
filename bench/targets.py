"""The targets of the benchmark (issue 20's table, and issue 9's where 20 does not restate them), each checked against a case's results.

Every target says which issue set it (``issue``); the report shows it beside the target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from measure import Results

MiB = 1024 * 1024


class Target(Protocol):
    @property
    def issue(self) -> int: ...

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
    issue: int = 20

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
    issue: int = 9

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
    issue: int = 20

    def describe(self) -> str:
        return f"{self.subject}: peak RSS ≤ {self.at_most_mib:.0f} MiB"

    def check(self, results: Results) -> tuple[str, bool]:
        peak = results.peak_rss_bytes(self.subject) / MiB
        return f"{peak:.0f} MiB", peak <= self.at_most_mib


@dataclass(frozen=True)
class FasterThanBest:
    """``subject`` is at least ``at_least`` × as fast as the fastest of ``peers`` (those measured)."""

    subject: str
    peers: tuple[str, ...]
    at_least: float
    issue: int = 20

    def describe(self) -> str:
        return f"{self.subject}: ≥ {self.at_least:.2f}× the best of {', '.join(self.peers)}"

    def check(self, results: Results) -> tuple[str, bool]:
        measured = [p for p in self.peers if p in results.samples]
        if not measured:
            raise KeyError(self.peers[0])
        best = min(measured, key=results.median_s)
        ratio = results.ratio(self.subject, best)
        return f"{ratio:.2f}× {best}", ratio >= self.at_least


@dataclass(frozen=True)
class CpuPerGiB:
    """``subject``'s client CPU seconds (median) per GiB sent is at most ``at_most``."""

    subject: str
    gib: float
    at_most: float
    issue: int = 20

    def describe(self) -> str:
        return f"{self.subject}: ≤ {self.at_most:g} CPU-s per GiB"

    def check(self, results: Results) -> tuple[str, bool]:
        per_gib = results.median_cpu_s(self.subject) / self.gib
        return f"{per_gib:.2f} CPU-s per GiB", per_gib <= self.at_most


@dataclass(frozen=True)
class LessCpu:
    """``subject``'s client CPU seconds (median, for the same work) are at most ``peer``'s."""

    subject: str
    peer: str
    issue: int = 20

    def describe(self) -> str:
        return f"{self.subject}: client CPU ≤ {self.peer}'s"

    def check(self, results: Results) -> tuple[str, bool]:
        ratio = results.median_cpu_s(self.subject) / results.median_cpu_s(self.peer)
        return f"{ratio:.2f}× its CPU", ratio <= 1.0
