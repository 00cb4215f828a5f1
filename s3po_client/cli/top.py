"""``s3po top``: the dashboard's numbers in a terminal, redrawn every second; ``q`` quits.

On a terminal it is rich's live display (over SSH too: it needs nothing but the terminal);
when standard output is not one (a pipe, a log), it prints the same as plain lines each
interval, like ``top -b``. It reads Redis only, a fixed number of commands whatever the
queue's length (:mod:`s3po_client.activity`).
"""

from __future__ import annotations

import os
import select
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click
import redis

from ..activity import Activity, read_activity
from .jobs import open_redis
from .options import option, redis_options
from .output import human_bytes, one_line

if TYPE_CHECKING:
    from rich.console import RenderableType

#: Failures listed under the uploads.
FAILURES_SHOWN = 5
#: Columns of a plain line before it is cut.
PLAIN_WIDTH = 160


def count_line(activity: Activity) -> str:
    """``pending 3  delayed 0  in flight 1  dead 2  workers 1/1``"""
    c = activity.counts
    alive = sum(w.alive for w in activity.workers)
    return (
        f"pending {c.pending}  delayed {c.delayed}  in flight {c.processing}  dead {c.dead}  "
        f"workers {alive}/{len(activity.workers)}"
    )


def rate_line(activity: Activity) -> str:
    """What the last five minutes did, and the last hour."""
    rates = activity.rates()
    return (
        f"last 5 min: {rates['jobs_per_s']:.2f} jobs/s, {human_bytes(int(rates['bytes_per_s']))}/s, "
        f"{rates['failures']:.0f} failed; last hour: {sum(m.uploaded for m in activity.history)} uploaded, "
        f"{sum(m.failed for m in activity.history)} failed"
    )


def plain_lines(activity: Activity) -> list[str]:
    """The view as plain text, one fact a line."""
    lines = [time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(activity.read_at)), count_line(activity)]
    lines.append(rate_line(activity))
    for w in activity.workers:
        lines.append(
            f"worker {w.id} pid={w.pid or '-'} version={w.version or '-'} "
            f"heartbeat={w.heartbeat_age_s:.1f}s jobs={w.holding}{'' if w.alive else ' (gone)'}"
        )
    for u in activity.uploads:
        lines.append(
            f"upload {u.job_id} {u.path} -> s3://{u.bucket}/{u.key} {human_bytes(u.done_bytes)}/"
            f"{human_bytes(u.total_bytes)} {u.fraction:.0%} {human_bytes(int(u.rate_bps))}/s"
        )
    for f in activity.failures[:FAILURES_SHOWN]:
        when = time.strftime("%H:%M:%S", time.localtime(f.at))
        lines.append(f"failed {when} {f.kind} {f.job_id or '-'} s3://{f.bucket}/{f.key}: {one_line(f.error)}")
    return [line[:PLAIN_WIDTH] for line in lines if line]


def render(activity: Activity) -> RenderableType:
    """The view as rich renderables: counts, workers, uploads with bars, the last failures."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    head = Text(count_line(activity), style="bold")
    workers = Table("worker", "pid", "version", "heartbeat", "jobs", title="workers", title_justify="left", expand=True)
    for w in activity.workers:
        beat = f"{w.heartbeat_age_s:.1f}s ago" + ("" if w.alive else " (gone)")
        workers.add_row(w.id, str(w.pid or "–"), w.version or "–", beat, str(w.holding))
    uploads = Table("file", "to", "progress", "", "rate", title="uploads in flight", title_justify="left", expand=True)
    for u in activity.uploads:
        bar = ProgressBar(total=max(1, u.total_bytes), completed=u.done_bytes, width=24)
        size = f"{human_bytes(u.done_bytes)}/{human_bytes(u.total_bytes)}"
        uploads.add_row(u.path, f"s3://{u.bucket}/{u.key}", bar, size, f"{human_bytes(int(u.rate_bps))}/s")
    failures = Table("when", "outcome", "job", "reason", title="last failures", title_justify="left", expand=True)
    for f in activity.failures[:FAILURES_SHOWN]:
        failures.add_row(time.strftime("%H:%M:%S", time.localtime(f.at)), f.kind, f.job_id or "–", one_line(f.error))
    footer = Text("q quits", style="dim")
    return Group(head, Text(rate_line(activity)), workers, uploads, failures, footer)


@contextmanager
def keys_pressed() -> Iterator[int | None]:
    """Standard input's descriptor, one key at a time without echo, while in the block (None: not a terminal)."""
    fd = sys.stdin.fileno() if sys.stdin is not None and sys.stdin.isatty() else None
    if fd is None:
        yield None
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield fd
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def wait_for_quit(fd: int | None, timeout_s: float) -> bool:
    """Wait ``timeout_s``; return True if ``q`` was pressed meanwhile."""
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        if fd is None:
            time.sleep(left)
            return False
        ready, _, _ = select.select([fd], [], [], left)
        if ready and os.read(fd, 32).lower().startswith(b"q"):
            return True
    return False


def read_or_say(client: redis.Redis, prefix: str) -> Activity | str:
    try:
        return read_activity(client, prefix)
    except redis.RedisError as exc:
        return f"cannot read Redis: {exc}; retrying"


@click.command("top")
@redis_options
@option("--interval", type=click.FloatRange(min=0.2), default=1.0, show_default=True, help="Seconds between redraws.")
@option(
    "-n",
    "--iterations",
    type=click.IntRange(min=1),
    help="Stop after this many redraws (default: until q or Ctrl-C).",
)
def top(redis_url: str | None, prefix: str, interval: float, iterations: int | None) -> None:
    """Watch the queue live: counts, workers, uploads in flight with bars, the last failures.

    On a terminal, q quits. When standard output is not a terminal, prints plain lines
    each interval (-n 1: once).
    """
    client = open_redis(redis_url)
    try:
        if sys.stdout.isatty():
            _live(client, prefix, interval, iterations)
        else:
            _plain(client, prefix, interval, iterations)
    except KeyboardInterrupt:
        pass


def _plain(client: redis.Redis, prefix: str, interval: float, iterations: int | None) -> None:
    shown = 0
    while True:
        seen = read_or_say(client, prefix)
        click.echo("\n".join(plain_lines(seen)) if isinstance(seen, Activity) else seen)
        click.echo("", nl=True)
        shown += 1
        if iterations is not None and shown >= iterations:
            return
        sys.stdout.flush()
        time.sleep(interval)


def _live(client: redis.Redis, prefix: str, interval: float, iterations: int | None) -> None:
    from rich.live import Live
    from rich.text import Text

    def view() -> RenderableType:
        seen = read_or_say(client, prefix)
        return render(seen) if isinstance(seen, Activity) else Text(seen, style="red")

    shown = 0
    with keys_pressed() as fd, Live(view(), auto_refresh=False, screen=True) as live:
        while True:
            shown += 1
            if iterations is not None and shown >= iterations:
                return
            if wait_for_quit(fd, interval):
                return
            live.update(view(), refresh=True)
