"""``s3po upload``: files, trees and standard input to S3, now, deleting each file once its object is verified."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from ..errors import JobError, SourceChangedError, TransferError
from ..settle import delete_uploaded
from .batch import Interrupted, Summary, Task, run_batch
from .engine_options import backoff_option_for, s3_settings, transfer_options_for, transfer_settings
from .options import (
    destination_named,
    destination_options,
    filters_of,
    make_engine,
    make_reporter,
    option,
    output_options,
    parse_headers,
    parse_url,
    s3_options,
    tree_options,
    upload_options,
)
from .output import Outcome, ProgressCallback, Reporter, Status, display_path, human_bytes
from .tree import Filters, LocalFile, S3Url, Unusable, walk

if TYPE_CHECKING:
    from ..settings import S3Settings, TransferSettings
    from ..transfer.bandwidth import Schedule

logger = logging.getLogger(__name__)

EXAMPLES = """\b
Examples:
  s3po upload report.csv s3://my-bucket/reports/          # key reports/report.csv; report.csv deleted
  s3po upload --keep report.csv s3://my-bucket/r/latest.csv
  s3po upload logs/ s3://my-bucket/logs/2024-06-01/ --compress gzip --exclude '*.tmp'
  s3po upload --json -j 8 spool/ s3://my-bucket/in/ > uploaded.jsonl
  pg_dump mydb | s3po upload - s3://my-bucket/backups/mydb.sql.zst --compress zstd
  s3po upload --config /etc/s3po/s3pod.toml --destination backup db.dump s3://backups/
"""


@click.command(epilog=EXAMPLES)
@click.argument("sources", nargs=-1, required=True, metavar="PATH...", type=click.Path(allow_dash=True))
@click.argument("target", metavar="s3://BUCKET/KEY")
@upload_options
@tree_options
@option(
    "--follow-symlinks",
    is_flag=True,
    envvar="S3PO_FOLLOW_SYMLINKS",
    help="Follow symlinks in a directory (uploaded, never deleted).",
)
@backoff_option_for("S3PO")
@s3_options
@transfer_options_for("S3PO")
@destination_options
@output_options
def upload(
    sources: tuple[str, ...],
    target: str,
    headers: tuple[str, ...],
    compress: str | None,
    retries: int,
    keep: bool,
    exclude: tuple[str, ...],
    include: tuple[str, ...],
    jobs: int,
    follow_symlinks: bool,
    backoff_base: float,
    destination: str | None,
    config: str | None,
    as_json: bool,
    quiet: bool,
    debug: bool,
    **settings: Any,
) -> None:
    """Upload files, directories or standard input (-) to S3 now, and wait.

    Each file is deleted once its object is stored and verified (and only if it did not
    change meanwhile), unless --keep. A directory uploads every regular file under it to
    s3://BUCKET/PREFIX/ plus its path below the directory; several PATHs, or a KEY ending
    with /, put each file under that prefix by name. Exit status: 0 all stored, 1 a file
    failed (the others still go), 2 bad usage, 130 interrupted.
    """
    dest = parse_url(target)
    parsed = parse_headers(headers)
    s3, transfer, parsed, bwlimit = through_destination(destination, config, settings, jobs, parsed)
    check_headers(parsed, compress)
    reporter = make_reporter(as_json, quiet, debug)
    items, skipped, is_tree = collect(sources, dest, follow_symlinks, filters_of(exclude, include))
    engine = make_engine(s3, backoff_base_s=backoff_base, jobs=jobs, transfer=transfer, bwlimit=bwlimit)
    stop = threading.Event()  # set by Ctrl-C: ends a transfer's backoff at once

    def work(item: LocalFile, progress: ProgressCallback) -> Outcome:
        where = dest_of(dest, item, is_tree, len(sources))
        return upload_one(engine, item, where, Upload(parsed, compress, retries, keep, stop), progress)

    for unusable in skipped:
        reporter.record(skipped_outcome(unusable, dest))
    say_delete_rule(reporter, items, keep)
    started = time.monotonic()
    reporter.start_bars((len(items), sum(i.size for i in items)) if is_tree else None)
    try:
        tasks = [task_of(i, dest_of(dest, i, is_tree, len(sources)), is_tree) for i in items]
        summary = run_batch(tasks, work, jobs=jobs, reporter=reporter, cancel=stop)
    finally:
        reporter.stop_bars()
        engine.close()
    if is_tree and not as_json:
        say_summary(reporter, summary, len(items), time.monotonic() - started)
    if reporter.failures:
        raise SystemExit(1)


def through_destination(
    name: str | None, config: str | None, settings: dict[str, Any], jobs: int, headers: dict[str, str]
) -> tuple[S3Settings, TransferSettings, dict[str, str], Schedule | None]:
    """Return the S3 and transfer settings, headers and limit: the command's, or a destination's over them.

    A destination's settings replace the command's S3 ones; its headers go under ``-H``'s and its
    limit applies unless ``--bwlimit`` is given.
    """
    s3, transfer = s3_settings(settings), transfer_settings(settings, transfers_at_once=jobs)
    bwlimit: Schedule | None = settings["bwlimit"]
    if name is None:
        return s3, transfer, headers, bwlimit
    named = destination_named(name, config)
    return (
        named.s3_settings(s3),
        named.transfer_settings(transfer),
        named.headers_under(headers),
        bwlimit or named.schedule(),
    )


def task_of(item: LocalFile, dest: S3Url, is_tree: bool) -> Task[LocalFile]:
    """Return the batch task that uploads ``item`` to ``dest``: its bar's label and size, its outcome if stopped."""
    return Task(
        item=item,
        label=item.relative if is_tree else os.path.basename(item.path),
        total=None if item.path == "-" else item.size,
        interrupted=interrupted_outcome(item, dest),
    )


def say_summary(reporter: Reporter, summary: Summary, files: int, elapsed_s: float) -> None:
    """Tell a person at a terminal what a tree's upload did, in one line."""
    reporter.say(
        f"uploaded {summary.count(Status.UPLOADED)} of {files} files ({human_bytes(summary.bytes_read())}, "
        f"{human_bytes(summary.bytes_stored())} stored) in {elapsed_s:.1f} s"
        + (f"; {summary.failed} failed" if summary.failed else "")
    )


def check_headers(headers: dict[str, str], compress: str | None) -> None:
    """Raise a usage error for a header s3po cannot map, before any file is read."""
    from ..transfer.headers import object_args

    try:
        object_args(headers, compress=compress, name="x")
    except JobError as exc:
        raise click.UsageError(str(exc)) from None


def collect(
    sources: tuple[str, ...], dest: S3Url, follow_symlinks: bool, filters: Filters
) -> tuple[list[LocalFile], list[Unusable], bool]:
    """Return the files to upload, what was left out, and whether this is a tree (keys under a prefix)."""
    if "-" in sources:
        if len(sources) > 1 or dest.is_prefix:
            raise click.UsageError("- (standard input) goes alone, to a full s3://BUCKET/KEY")
        return [LocalFile("-", "-", 0)], [], False
    if len(sources) > 1 and not dest.is_prefix:
        raise click.UsageError(f"several PATHs go under a prefix: end {dest} with /")
    items: list[LocalFile] = []
    skipped: list[Unusable] = []
    is_tree = len(sources) > 1
    for source in sources:
        try:
            st = os.stat(source)
        except FileNotFoundError:
            if os.path.islink(source):
                raise click.UsageError(f"path {source!r} is a broken symlink") from None
            raise click.UsageError(f"path {source!r} does not exist") from None
        except OSError as exc:
            raise click.UsageError(f"path {source!r} cannot be read: {exc.strerror}") from None
        if os.path.isdir(source):
            is_tree = True
            for found in walk(source, follow_symlinks=follow_symlinks, filters=filters):
                (items if isinstance(found, LocalFile) else skipped).append(found)  # type: ignore[arg-type]
        else:
            items.append(LocalFile(source, os.path.basename(source), st.st_size, os.path.islink(source)))
    return items, skipped, is_tree


def dest_of(dest: S3Url, item: LocalFile, is_tree: bool, n_sources: int) -> S3Url:
    """Return where ``item`` goes: under the prefix by its relative name, or at the key given."""
    if is_tree or dest.is_prefix:
        prefix = dest if dest.is_prefix else S3Url(dest.bucket, dest.key + "/")
        return prefix.join(item.relative)
    return dest


@dataclass(frozen=True, slots=True)
class Upload:
    """What every file of one ``s3po upload`` gets: its object settings, its retries, whether it is kept."""

    headers: dict[str, str]
    compress: str | None
    retries: int
    keep: bool
    #: set by Ctrl-C: a backoff in progress ends at once
    stop: threading.Event


def upload_one(engine: Any, item: LocalFile, dest: S3Url, how: Upload, progress: ProgressCallback) -> Outcome:
    """Upload one file (or standard input), then delete it unless kept; return its outcome."""
    shown = "-" if item.path == "-" else display_path(item.path)
    path = "-" if item.path == "-" else os.path.abspath(item.path)
    try:
        result = send(engine, item, dest, how, progress)
    except (TransferError, JobError) as exc:
        if how.stop.is_set():
            raise Interrupted() from None
        logger.debug("upload failed path=%s url=%s", shown, dest, exc_info=True)  # the traceback, with --debug
        return Outcome(
            path=path,
            bucket=dest.bucket,
            key=dest.key,
            status=Status.FAILED,
            error=failure_text(exc, shown, dest),
            deleted=False,
        )
    deleted, error = False, None
    if item.path != "-" and not how.keep and not item.via_symlink:
        try:
            deleted = delete_uploaded(result, given_path=item.path)
            if not deleted:
                error = f"{dest}: stored, but {shown!r} could not be deleted"
        except SourceChangedError as exc:
            error = f"{dest}: stored, but {exc}"
    return Outcome(
        path=path,
        bucket=dest.bucket,
        key=dest.key,
        status=Status.UPLOADED,
        bytes_read=result.bytes_read,
        bytes_stored=result.bytes_sent,
        checksum=result.etag,
        error=error,
        deleted=deleted,
    )


def send(engine: Any, item: LocalFile, dest: S3Url, how: Upload, progress: ProgressCallback) -> Any:
    """Store ``item`` at ``dest``: one attempt at a time, through the one retry loop (Ctrl-C ends its waits)."""
    if item.path == "-":  # read once: the engine retries it only if it can read it again
        return engine.upload_fileobj(
            dest.bucket,
            dest.key,
            sys.stdin.buffer,
            headers=how.headers,
            compress=how.compress,
            retries=how.retries,
            progress=progress,
        )

    def attempt() -> Any:
        return engine.upload_file(
            dest.bucket, dest.key, item.path, headers=how.headers, compress=how.compress, retries=0, progress=progress
        )

    def told(next_attempt: int, delay_s: float, error: Exception) -> None:
        logger.warning(
            "retry path=%s url=%s attempt=%d in=%.1fs error=%s", item.path, dest, next_attempt, delay_s, error
        )

    return engine.retry.call(attempt, retries=how.retries, stop=how.stop, on_retry=told)


def failure_text(exc: BaseException, shown: str | None, dest: S3Url) -> str:
    """Return the error's message, naming the file or object when it does not already."""
    text = str(exc)
    if str(dest) in text or (shown and shown in text) or text.startswith(f"s3://{dest.bucket}/"):
        return text
    return f"{shown or dest}: {text}"


def interrupted_outcome(item: LocalFile, dest: S3Url) -> Callable[[], Outcome]:
    shown = "-" if item.path == "-" else display_path(item.path)
    path = "-" if item.path == "-" else os.path.abspath(item.path)
    return lambda: Outcome(
        path=path,
        bucket=dest.bucket,
        key=dest.key,
        status=Status.INTERRUPTED,
        error=f"{dest}: interrupted; {shown} kept",
        deleted=False,
    )


def skipped_outcome(unusable: Unusable, dest: S3Url) -> Outcome:
    where = (dest if dest.is_prefix else S3Url(dest.bucket, dest.key + "/")).join(unusable.relative)
    return Outcome(
        path=os.path.abspath(unusable.path),
        bucket=where.bucket,
        key=where.key,
        status=Status.FAILED if unusable.failed else Status.SKIPPED,
        error=unusable.reason if unusable.failed else None,
        note=None if unusable.failed else unusable.reason,
    )


def say_delete_rule(reporter: Reporter, items: list[LocalFile], keep: bool) -> None:
    """Tell a person at a terminal, before the first byte, whether the files will be deleted."""
    files = [i for i in items if i.path != "-"]
    if not files:
        return
    linked = sum(1 for i in files if i.via_symlink)
    if keep:
        what = display_path(files[0].path) if len(files) == 1 else f"the {len(files)} files"
        reporter.notice(f"keeping {what} after the upload (--keep)")
    elif len(files) == 1 and linked:
        reporter.notice(
            f"keeping {display_path(files[0].path)}: it is a symlink, and s3po deletes only files it "
            "reads by their own name"
        )
    elif len(files) == 1:
        reporter.notice(f"deleting {display_path(files[0].path)} after a verified upload; --keep to keep it")
    else:
        kept = f" ({linked} reached through symlinks are kept)" if linked else ""
        reporter.notice(f"deleting each of the {len(files)} files after its verified upload{kept}; --keep to keep them")


__all__ = ["upload"]
