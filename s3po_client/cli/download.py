"""``s3po download`` (an object, or every object under a prefix) and ``s3po ls`` (what is stored)."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from ..errors import TransferError
from .batch import Task, run_batch
from .engine_options import bwlimit_option_for, s3_settings
from .options import (
    destination_named,
    destination_options,
    filters_of,
    make_engine,
    make_reporter,
    option,
    output_options,
    parse_url,
    s3_options,
    tree_options,
)
from .output import Outcome, ProgressCallback, Status, display_path, human_bytes
from .tree import BadArgument, S3Url, local_target

if TYPE_CHECKING:
    from ..transfer.bandwidth import Schedule
    from ..transfer.results import StoredObject

logger = logging.getLogger(__name__)

DOWNLOAD_EXAMPLES = """\b
Examples:
  s3po download s3://my-bucket/reports/report.csv           # to ./report.csv, decoded
  s3po download s3://my-bucket/logs/2024-06-01/ logs/        # every object under the prefix
  s3po download s3://my-bucket/logs/ . --include '*.log' --exclude '*/old/*'
  s3po download --raw s3://my-bucket/app.log.gz - | zcat | less
  s3po download --config /etc/s3po/s3pod.toml --destination backup s3://backups/db.dump
"""

LS_EXAMPLES = """\b
Examples:
  s3po ls                                 # your buckets
  s3po ls s3://my-bucket/logs/2024-06-01/
  s3po ls --json s3://my-bucket | jq -r 'select(.size > 1e9) | .key'
"""


@dataclass(frozen=True, slots=True)
class Remote:
    """One object to fetch and where it goes (``-``: standard output); its size when listed."""

    url: S3Url
    path: str
    size: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DownloadOutcome(Outcome):
    """A download's outcome, with what its bytes were checked against (``verified``, see ``DownloadResult``)."""

    verified: str | None = None

    def to_dict(self) -> dict[str, Any]:
        row = Outcome.to_dict(self)
        row["verified"] = self.verified
        return row


@click.command(epilog=DOWNLOAD_EXAMPLES)
@click.argument("source", metavar="s3://BUCKET/KEY")
@click.argument("path", required=False, type=click.Path(allow_dash=True))
@option("--raw", is_flag=True, help="Keep the stored bytes (do not decode Content-Encoding).")
@option(
    "--retries",
    type=click.IntRange(0),
    default=3,
    show_default=True,
    envvar="S3PO_RETRIES",
    help="Retries after the first attempt of each object.",
)
@tree_options
@s3_options
@bwlimit_option_for("S3PO")
@destination_options
@output_options
def download(
    source: str,
    path: str | None,
    raw: bool,
    retries: int,
    exclude: tuple[str, ...],
    include: tuple[str, ...],
    jobs: int,
    bwlimit: Schedule | None,
    destination: str | None,
    config: str | None,
    as_json: bool,
    quiet: bool,
    debug: bool,
    **s3: str | None,
) -> None:
    """Download an object to PATH, or every object under a prefix (KEY ending with /) into a directory.

    PATH defaults to the key's file name (for a prefix: the current directory); - writes
    standard output. A Content-Encoding of gzip, deflate or zstd is decoded unless --raw.
    Each file appears whole or not at all: bytes go to a temporary file beside it, put in
    place once verified, and removed on failure or Ctrl-C. Exit status: 0 all fetched,
    1 an object failed, 2 bad usage, 130 interrupted.
    """
    src = parse_url(source)
    reporter = make_reporter(as_json, quiet, debug)
    engine = engine_for(s3, bwlimit, destination, config, jobs)
    try:
        remotes, unsafe = what_to_fetch(engine, src, path, filters_of(exclude, include))
        for outcome in unsafe:
            reporter.record(outcome)

        tasks = [
            Task(
                item=r,
                label=r.url.key[len(src.key) :] if src.is_prefix else os.path.basename(r.url.key),
                total=r.size,
                interrupted=interrupted_outcome(r),
            )
            for r in remotes
        ]
        started = time.monotonic()
        reporter.start_bars((len(remotes), sum(r.size or 0 for r in remotes)) if src.is_prefix else None)
        try:
            summary = run_batch(
                tasks, lambda r, progress: download_one(engine, r, raw, retries, progress), jobs=jobs, reporter=reporter
            )
        finally:
            reporter.stop_bars()
    finally:
        engine.close()
    if src.is_prefix and not as_json:
        reporter.say(
            f"downloaded {summary.count(Status.DOWNLOADED)} of {len(remotes)} objects "
            f"({human_bytes(summary.bytes_read())}) in {time.monotonic() - started:.1f} s"
            + (f"; {summary.failed} failed" if summary.failed else "")
        )
    if reporter.failures:
        raise SystemExit(1)


def engine_for(
    s3: dict[str, str | None], bwlimit: Schedule | None, destination: str | None, config: str | None, jobs: int
) -> Any:
    """The engine of the command's S3 options, or of a destination's over them (its store,
    credentials and limit, unless ``--bwlimit``)."""
    settings = s3_settings(s3)
    if destination is not None:
        named = destination_named(destination, config)
        settings, bwlimit = named.s3_settings(settings), bwlimit or named.schedule()
    return make_engine(settings, jobs=jobs, bwlimit=bwlimit)


def what_to_fetch(engine: Any, src: S3Url, path: str | None, filters: Any) -> tuple[list[Remote], list[Outcome]]:
    """Return the objects to fetch and where each goes, and those whose keys are unsafe there."""
    if src.is_prefix:
        if path == "-":
            raise click.UsageError("a prefix downloads into a directory, not to standard output")
        return list_prefix(engine, src, path or ".", filters)
    target = path or os.path.basename(src.key)
    if target != "-" and os.path.isdir(target):
        target = os.path.join(target, os.path.basename(src.key))
    return [Remote(src, target)], []


def list_objects(engine: Any, url: S3Url) -> Iterator[StoredObject]:
    """Yield every object under ``url``'s key, in key order (a listing that fails ends the command)."""
    try:
        yield from engine.list_objects(url.bucket, url.key)
    except TransferError as exc:
        raise click.ClickException(str(exc)) from None


def list_prefix(engine: Any, src: S3Url, directory: str, filters: Any) -> tuple[list[Remote], list[Outcome]]:
    """Return the objects under ``src`` to fetch into ``directory``, and those whose keys are unsafe there."""
    remotes: list[Remote] = []
    unsafe: list[Outcome] = []
    for obj in list_objects(engine, src):
        key = obj.key
        relative = key[len(src.key) :]
        if not relative or key.endswith("/") or not filters.accepts(relative):
            continue  # "directory" placeholder objects hold nothing to write
        try:
            target = local_target(directory, relative)
        except BadArgument as exc:
            unsafe.append(
                Outcome(
                    path=None, bucket=src.bucket, key=key, status=Status.FAILED, error=f"s3://{src.bucket}/{key}: {exc}"
                )
            )
            continue
        remotes.append(Remote(S3Url(src.bucket, key), target, obj.size))
    return remotes, unsafe


def download_one(engine: Any, remote: Remote, raw: bool, retries: int, progress: ProgressCallback) -> Outcome:
    """Fetch one object to its file (or standard output); return its outcome."""
    url = remote.url
    shown = remote.path if remote.path == "-" else display_path(remote.path)
    path = remote.path if remote.path == "-" else os.path.abspath(remote.path)
    try:
        if remote.path == "-":
            writer = _ReportingWriter(sys.stdout.buffer, progress)
            result = engine.get_fileobj(url.bucket, url.key, writer, raw=raw, retries=retries)
            sys.stdout.buffer.flush()
        else:
            result = engine.get_file(url.bucket, url.key, remote.path, raw=raw, retries=retries, progress=progress)
    except TransferError as exc:
        logger.debug("download failed url=%s path=%s", url, shown, exc_info=True)  # the traceback, with --debug
        return DownloadOutcome(path=path, bucket=url.bucket, key=url.key, status=Status.FAILED, error=str(exc))
    except OSError as exc:
        return DownloadOutcome(
            path=path,
            bucket=url.bucket,
            key=url.key,
            status=Status.FAILED,
            error=f"{url}: cannot write {shown!r}: {exc.strerror}",
        )
    return DownloadOutcome(
        path=path,
        bucket=url.bucket,
        key=url.key,
        status=Status.DOWNLOADED,
        bytes_read=result.bytes_written,
        bytes_stored=result.bytes_stored,
        checksum=result.etag,
        verified=result.verified,
    )


def interrupted_outcome(remote: Remote) -> Callable[[], Outcome]:
    return lambda: Outcome(
        path=os.path.abspath(remote.path),
        bucket=remote.url.bucket,
        key=remote.url.key,
        status=Status.INTERRUPTED,
        error=f"{remote.url}: interrupted; nothing written",
    )


class _ReportingWriter:
    """Standard output for ``download_fileobj``, reporting each write (so Ctrl-C and the bar reach it)."""

    def __init__(self, out: Any, progress: ProgressCallback) -> None:
        self.out = out
        self.progress = progress
        self.count = 0

    def write(self, data: bytes) -> int:
        self.progress(self.count, None)
        self.out.write(data)
        self.count += len(data)
        self.progress(self.count, None)
        return len(data)

    def seekable(self) -> bool:
        return False  # a retry cannot take back what a pipe got


@click.command("ls", epilog=LS_EXAMPLES)
@click.argument("url", required=False, metavar="[s3://BUCKET[/PREFIX]]")
@s3_options
@output_options
def ls(
    url: str | None,
    as_json: bool,
    quiet: bool,
    debug: bool,
    **s3: str | None,
) -> None:
    """List the objects under a prefix (date, size, key), or the buckets when no URL is given.

    Dates are UTC; sizes are the stored bytes. With --json, one object per line: bucket,
    key, size, last_modified, etag, storage_class.
    """
    reporter = make_reporter(as_json, quiet, debug)
    engine = make_engine(s3_settings(s3))
    try:
        if url is None:
            list_buckets(engine, as_json)
            return
        where = parse_url(url)
        count = total = 0
        for obj in list_objects(engine, where):
            count += 1
            total += obj.size
            when = obj.last_modified.strftime("%Y-%m-%d %H:%M:%S")
            if as_json:
                click.echo(
                    json.dumps(
                        {
                            "bucket": where.bucket,
                            "key": obj.key,
                            "size": obj.size,
                            "last_modified": obj.last_modified.isoformat(),
                            "etag": obj.etag,
                            "storage_class": obj.storage_class,
                        }
                    )
                )
            else:
                click.echo(f"{when}  {obj.size:>12}  {obj.key}")
        if not as_json:
            reporter.notice(f"{count} object(s), {human_bytes(total)}, under {where}")
    finally:
        engine.close()


def list_buckets(engine: Any, as_json: bool) -> None:
    try:
        buckets = engine.list_buckets()
    except TransferError as exc:
        raise click.ClickException(str(exc)) from None
    for b in buckets:
        if as_json:
            click.echo(json.dumps({"bucket": b.name, "created": b.created.isoformat()}))
        else:
            click.echo(f"{b.created.strftime('%Y-%m-%d %H:%M:%S')}  {b.name}")


__all__ = ["download", "ls"]
