"""What ``s3po`` prints: one record per file (a line, or a JSON object), progress bars, notices, errors.

Streams: standard output carries data (JSON records, listings, job ids, downloaded bytes);
standard error carries everything said to a person: per-file lines, notices, one line per
error, and the progress bars. Bars and notices appear only when standard error is a
terminal and ``--quiet`` was not given; they are drawn by ``rich``, imported only then.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import click

#: ``progress(done, total)``: what the transfer engine calls as bytes move
ProgressCallback = Callable[[int, "int | None"], None]


class Status(str, Enum):
    """What happened to one file."""

    UPLOADED = "uploaded"
    DOWNLOADED = "downloaded"
    QUEUED = "queued"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """One file's result, as ``--json`` prints it.

    ``path`` is absolute (``-`` for standard input or output).
    ``bytes_read`` counts the local file's bytes (read for an upload, written for a
    download), ``bytes_stored`` the object's bytes in the store (fewer when compressed);
    ``checksum`` is the object's ETag; ``error`` is None exactly when all went well.
    """

    path: str | None
    bucket: str
    key: str
    status: Status
    bytes_read: int | None = None
    bytes_stored: int | None = None
    checksum: str | None = None
    error: str | None = None
    #: uploads: whether the local file was deleted; None for other commands
    deleted: bool | None = None
    #: enqueue: the job id
    job_id: str | None = None
    #: why a file was skipped
    note: str | None = None

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def to_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "path": self.path,
            "bucket": self.bucket,
            "key": self.key,
            "bytes_read": self.bytes_read,
            "bytes_stored": self.bytes_stored,
            "checksum": self.checksum,
            "status": self.status.value,
            "error": self.error,
        }
        if self.deleted is not None:
            row["deleted"] = self.deleted
        if self.job_id is not None:
            row["id"] = self.job_id
        if self.note is not None:
            row["note"] = self.note
        return row


def human_bytes(n: int | None) -> str:
    """Return ``n`` bytes as a short binary size: ``'812 B'``, ``'4.0 MiB'``.

    >>> human_bytes(3 * 1024 * 1024)
    '3.0 MiB'
    """
    if n is None:
        return "? B"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def display_path(path: str) -> str:
    """Return ``path`` as a person typed it: relative to the current directory when below it."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


def describe(outcome: Outcome) -> str:
    """Return the line a person reads for one file."""
    where = display_path(outcome.path) if outcome.path and outcome.path != "-" else "-"
    if outcome.status is Status.UPLOADED:
        stored = "" if outcome.bytes_stored == outcome.bytes_read else f", {human_bytes(outcome.bytes_stored)} stored"
        gone = ", deleted" if outcome.deleted else ""
        return f"uploaded {where} -> {outcome.url} ({human_bytes(outcome.bytes_read)}{stored}){gone}"
    if outcome.status is Status.DOWNLOADED:
        return f"downloaded {outcome.url} -> {where} ({human_bytes(outcome.bytes_read)})"
    if outcome.status is Status.QUEUED:
        return f"queued {where} -> {outcome.url} (job {outcome.job_id})"
    if outcome.status is Status.SKIPPED:
        return f"skipped {where}: {outcome.note}"
    return f"{outcome.status.value} {where} -> {outcome.url}"


class Reporter:
    """Says what happens, on the right stream, in the right form; one per command run.

    ``json_lines``: print each record as one JSON object on standard output.
    ``quiet``: say nothing but errors. ``debug``: tracebacks and debug logs.
    """

    def __init__(
        self, *, json_lines: bool = False, quiet: bool = False, debug: bool = False, records_on_stdout: bool = False
    ) -> None:
        self.json_lines = json_lines
        self.quiet = quiet
        self.debug = debug
        #: print the per-file lines on standard output (``ls``-like commands) rather than standard error
        self.records_on_stdout = records_on_stdout
        self.terminal = sys.stderr.isatty()
        self.bars: Bars | None = None
        self.failures = 0

    @property
    def chatty(self) -> bool:
        """Whether notices and bars are wanted: a terminal, and no ``--quiet``."""
        return self.terminal and not self.quiet

    # -- text -------------------------------------------------------------------------

    def say(self, text: str) -> None:
        """Print a line for a person on standard error (unless quiet), above any bars."""
        if not self.quiet:
            self.write_err(text)

    def notice(self, text: str) -> None:
        """Print a line only a person at a terminal needs (what will happen, before it does)."""
        if self.chatty:
            self.write_err(f"s3po: {text}")

    def error(self, text: str) -> None:
        """Print one error line on standard error, whatever the options."""
        self.write_err(f"s3po: error: {one_line(text)}")

    def write_err(self, text: str) -> None:
        """Write ``text`` as it is on standard error (above any bars), whatever the options."""
        if self.bars is not None:
            self.bars.print(text)
        else:
            click.echo(text, err=True)

    def out(self, text: str) -> None:
        """Print data on standard output (through the bars' console when both are the same terminal)."""
        if self.bars is not None and sys.stdout.isatty():
            self.bars.print(text)
        else:
            click.echo(text)

    # -- records ----------------------------------------------------------------------

    def record(self, outcome: Outcome) -> None:
        """Report one file's outcome: its JSON object or its line, and its error line."""
        if outcome.error is not None:
            self.failures += 1
            self.error(outcome.error)
        if self.json_lines:
            self.out(json.dumps(outcome.to_dict(), sort_keys=False))
        elif outcome.error is None:
            if self.records_on_stdout:
                self.out(describe(outcome))
            else:
                self.say(describe(outcome))

    # -- bars -------------------------------------------------------------------------

    def start_bars(self, overall: tuple[int, int | None] | None = None) -> None:
        """Start drawing bars, if wanted; ``overall`` (files, bytes) adds a bar for the whole tree."""
        if self.chatty and self.bars is None:
            self.bars = Bars(overall)

    def stop_bars(self) -> None:
        if self.bars is not None:
            bars, self.bars = self.bars, None
            bars.stop()

    def bar(self, label: str, total: int | None) -> FileBar:
        """Return the bar of one transfer (one that draws nothing when bars are off)."""
        return FileBar(self.bars, label, total)


def one_line(text: str) -> str:
    """Return ``text`` on one line (a store's message may hold newlines)."""
    return " ".join(str(text).split())


class Bars:
    """rich's progress display on standard error: a bar per transfer in flight and one overall.

    Every write to the terminal (a redraw, or a line printed above the bars) happens under
    one lock, from whichever thread: rich's own refresh thread is off, because a redraw racing
    a line printed by a transfer's thread leaves a stale bar on the screen.
    """

    #: redraws per second
    REFRESH_HZ = 8

    def __init__(self, overall: tuple[int, int | None] | None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True, highlight=False),
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
            auto_refresh=False,
        )
        self.files_total = overall[0] if overall else 0
        self.files_done = 0
        self.overall = self.progress.add_task(self._overall_label(), total=overall[1]) if overall else None
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        with self._lock:
            self.progress.start()
        self._ticker = threading.Thread(target=self._tick, name="s3po-bars", daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        while not self._stopped.wait(1 / self.REFRESH_HZ):
            with self._lock:
                self.progress.refresh()

    def _overall_label(self) -> str:
        return f"total: {self.files_done}/{self.files_total} files"

    def print(self, text: str) -> None:
        with self._lock:
            self.progress.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def add(self, label: str, total: int | None) -> Any:
        return self.progress.add_task(shorten(label), total=total)

    def update(self, task: Any, done: int, total: int | None, advance_overall: int) -> None:
        self.progress.update(task, completed=done, total=total)
        if self.overall is not None and advance_overall:
            self.progress.advance(self.overall, advance_overall)

    def finish(self, task: Any) -> None:
        self.progress.remove_task(task)
        if self.overall is not None:
            self.files_done += 1
            self.progress.update(self.overall, description=self._overall_label())

    def stop(self) -> None:
        self._stopped.set()
        self._ticker.join()
        with self._lock:
            self.progress.stop()


def shorten(label: str, width: int = 32) -> str:
    """Return ``label`` cut to ``width`` characters, keeping its end (the file's name).

    >>> shorten("reports/2024/06/01/very-long-file-name.csv", 20)
    '…ry-long-file-name.csv'
    """
    return label if len(label) <= width else "…" + label[-(width - 1) :]


class FileBar:
    """One transfer's bar; feeds the overall bar with the bytes it moves."""

    def __init__(self, bars: Bars | None, label: str, total: int | None) -> None:
        self.bars = bars
        self.done = 0
        self.task = bars.add(label, total) if bars is not None else None

    def update(self, done: int, total: int | None) -> None:
        if self.bars is not None:
            self.bars.update(self.task, done, total, max(0, done - self.done))
        self.done = max(self.done, done)

    def close(self) -> None:
        if self.bars is not None:
            self.bars.finish(self.task)
            self.bars = None


class StderrHandler(logging.Handler):
    """Log lines (the engine's retries and warnings) on standard error, above any bars."""

    def __init__(self, reporter: Reporter) -> None:
        super().__init__()
        self.reporter = reporter

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.reporter.write_err(self.format(record))
        except Exception:  # noqa: BLE001 - a log line must never break a transfer
            self.handleError(record)


def configure_logging(reporter: Reporter) -> None:
    """Send s3po's log records to standard error: warnings, or everything with ``--debug``."""
    handler = StderrHandler(reporter)
    handler.setFormatter(logging.Formatter("s3po: %(levelname)s %(message)s"))
    root = logging.getLogger("s3po_client")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if reporter.debug else logging.WARNING)
    root.propagate = False


__all__ = ["Outcome", "ProgressCallback", "Reporter", "Status", "configure_logging", "describe", "human_bytes"]
