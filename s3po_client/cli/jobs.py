"""``s3po enqueue`` (files and trees for s3pod), ``s3po status`` and ``s3po dead`` (the queue's state)."""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable
from typing import Any

import click
import redis

from ..admin import count_jobs, list_dead, purge_dead, retry_dead
from ..errors import ConfigError, JobError
from ..job import Job
from ..producer import make_job, push_jobs
from ..redaction import redact_url
from ..redis_url import connect, resolve_redis_url
from .options import (
    filter_options,
    filters_of,
    make_reporter,
    option,
    output_options,
    parse_headers,
    parse_url,
    redis_options,
    upload_options,
)
from .output import Outcome, Reporter, Status, display_path
from .tree import LocalFile, S3Url
from .upload import collect, dest_of, skipped_outcome

#: jobs sent to Redis in one LPUSH: one round trip per batch, bounded command size
ENQUEUE_BATCH = 1000

ENQUEUE_EXAMPLES = """\b
Examples:
  s3po enqueue /var/spool/app/app.log s3://my-bucket/logs/app.log --compress gzip
  s3po enqueue /var/spool/app/ s3://my-bucket/spool/ --exclude '*.partial'
  s3po enqueue --keep --json report.csv s3://my-bucket/reports/
"""


def open_redis(redis_url: str | None) -> redis.Redis:
    try:
        client = connect(redis_url)
        client.ping()
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    except redis.RedisError as exc:
        raise click.ClickException(f"cannot reach Redis at {redact_url(resolve_redis_url(redis_url))}: {exc}") from exc
    return client


@click.command("enqueue", epilog=ENQUEUE_EXAMPLES)
@click.argument("sources", nargs=-1, required=True, metavar="PATH...", type=click.Path())
@click.argument("target", metavar="s3://BUCKET/KEY")
@upload_options
@filter_options
@option(
    "--follow-symlinks",
    is_flag=True,
    envvar="S3PO_FOLLOW_SYMLINKS",
    help="Follow symlinks in a directory (their files are uploaded, never deleted).",
)
@option("--silent", is_flag=True, help="On final failure, s3pod logs at a lower level.")
@option("--destination", metavar="NAME", help="Upload through this destination of s3pod's config file.")
@redis_options
@output_options
def enqueue_command(
    sources: tuple[str, ...],
    target: str,
    headers: tuple[str, ...],
    compress: str | None,
    retries: int,
    keep: bool,
    exclude: tuple[str, ...],
    include: tuple[str, ...],
    follow_symlinks: bool,
    silent: bool,
    destination: str | None,
    redis_url: str | None,
    prefix: str,
    as_json: bool,
    quiet: bool,
    debug: bool,
) -> None:
    """Queue files (or every file under a directory) for upload by s3pod; print each job id.

    s3pod deletes each file once its object is stored and verified, unless --keep. Paths
    are made absolute; s3pod must be allowed to read them (its --allow-dir). The jobs go
    to Redis in pipelined batches. Keys are as for s3po upload. Exit status: 0 all queued,
    1 a file could not be queued, 2 bad usage.
    """
    dest = parse_url(target)
    parsed = parse_headers(headers)
    reporter = make_reporter(as_json, quiet, debug, records_on_stdout=False)
    items, skipped, is_tree = collect(sources, dest, follow_symlinks, filters_of(exclude, include))
    if items and items[0].path == "-":
        raise click.UsageError("s3pod reads files: enqueue takes paths, not - (use s3po upload -)")
    for unusable in skipped:
        reporter.record(skipped_outcome(unusable, dest))
    say_delete_rule(reporter, items, keep)
    client, queued = open_redis(redis_url), 0

    job_of = functools.partial(
        job_for, headers=parsed, compress=compress, retries=retries, keep=keep, silent=silent, destination=destination
    )
    try:
        batch: list[tuple[LocalFile, S3Url, Job]] = []
        for item in items:
            where = dest_of(dest, item, is_tree, len(sources))
            job = checked_job(job_of, item, where, reporter, is_tree)
            if job is not None:
                batch.append((item, where, job))
            if len(batch) >= ENQUEUE_BATCH:
                queued += send(client, prefix, batch, reporter, as_json)
                batch = []
        queued += send(client, prefix, batch, reporter, as_json)
    finally:
        client.close()
    if is_tree and not as_json:
        reporter.say(f"queued {queued} of {len(items)} files for s3pod")
    if reporter.failures:
        raise SystemExit(1)


def job_for(
    item: LocalFile,
    where: S3Url,
    *,
    headers: dict[str, str],
    compress: Any,
    retries: int,
    keep: bool,
    silent: bool,
    destination: str | None = None,
) -> Job:
    """Return the job that uploads ``item`` to ``where``; a file reached through a symlink is never deleted."""
    delete = not keep and not item.via_symlink
    return make_job(
        where.bucket,
        where.key,
        item.path,
        headers=headers,
        compress=compress,
        retries=retries,
        delete=delete,
        silent=silent,
        destination=destination,
    )


def checked_job(
    build: Callable[[LocalFile, S3Url], Job], item: LocalFile, where: S3Url, reporter: Reporter, is_tree: bool
) -> Job | None:
    """Return ``build(item, where)``; for a file of a tree that is no valid job, report its failure and return None.

    A single file that is no valid job is a usage error.
    """
    try:
        return build(item, where)
    except JobError as exc:
        if not is_tree:
            raise click.UsageError(str(exc)) from None
        reporter.record(
            Outcome(
                path=os.path.abspath(item.path),
                bucket=where.bucket,
                key=where.key,
                status=Status.FAILED,
                error=str(exc),
            )
        )
        return None


def send(
    client: redis.Redis, prefix: str, batch: list[tuple[LocalFile, S3Url, Job]], reporter: Reporter, as_json: bool
) -> int:
    """LPUSH one batch of jobs; report each; return how many were queued."""
    if not batch:
        return 0
    try:
        push_jobs([job for _, _, job in batch], client=client, prefix=prefix)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    for item, where, job in batch:
        outcome = Outcome(
            path=job.path,
            bucket=where.bucket,
            key=where.key,
            status=Status.QUEUED,
            bytes_read=item.size,
            job_id=job.id,
            deleted=None,
        )
        if as_json:
            reporter.record(outcome)
        else:
            click.echo(job.id)
    return len(batch)


def say_delete_rule(reporter: Reporter, items: list[LocalFile], keep: bool) -> None:
    """Tell a person at a terminal what s3pod will do with the files once uploaded."""
    if not items:
        return
    what = display_path(items[0].path) if len(items) == 1 else f"each of the {len(items)} files"
    linked = sum(1 for i in items if i.via_symlink)
    if keep:
        reporter.notice(f"s3pod keeps {what} after the upload (--keep)")
    elif linked == len(items):
        reporter.notice(f"s3pod keeps {what}: reached through a symlink")
    else:
        kept = f" ({linked} reached through symlinks are kept)" if linked else ""
        reporter.notice(
            f"s3pod deletes {what} after a verified upload{kept}; --keep to keep {'it' if len(items) == 1 else 'them'}"
        )


@click.command()
@redis_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status(redis_url: str | None, prefix: str, as_json: bool) -> None:
    """Show how many jobs are pending, processing, delayed and dead, and which workers beat."""
    counts = count_jobs(open_redis(redis_url), prefix)
    if as_json:
        click.echo(json.dumps(counts.to_dict(), sort_keys=True))
        return
    click.echo(f"pending     {counts.pending}")
    click.echo(f"processing  {counts.processing}")
    for worker, n in sorted(counts.processing_by_worker.items()):
        click.echo(f"  {worker}  {n}")
    click.echo(f"delayed     {counts.delayed}")
    click.echo(f"dead        {counts.dead}")
    click.echo(f"workers     {len(counts.heartbeat_age_s)}")
    for worker, age in sorted(counts.heartbeat_age_s.items()):
        click.echo(f"  {worker}  last heartbeat {age:.1f}s ago")


@click.group()
def dead() -> None:
    """Look after the jobs that failed for good (the dead-letter list)."""


@dead.command("list")
@redis_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, newest first.")
def dead_list(redis_url: str | None, prefix: str, as_json: bool) -> None:
    """List dead jobs, newest first: when, id, attempts, where to, and why."""
    entries = list_dead(open_redis(redis_url), prefix)
    if as_json:
        click.echo(json.dumps([e.to_dict() for e in entries], sort_keys=True))
        return
    for entry in entries:
        row = entry.to_dict()
        when = (
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(entry.failed_at))
            if isinstance(entry.failed_at, (int, float))
            else "?"
        )
        where = f"s3://{row['bucket']}/{row['key']}" if row["bucket"] else "(invalid job)"
        click.echo(f"{when}  {row['id'] or '-'}  attempts={entry.attempts}  {where}  {entry.error}")
    if not entries:
        click.echo("no dead jobs", err=True)


@dead.command("retry")
@redis_options
@click.argument("ids", nargs=-1)
@click.option("--all", "retry_all", is_flag=True, help="Retry every dead job that is a valid job.")
def dead_retry(redis_url: str | None, prefix: str, ids: tuple[str, ...], retry_all: bool) -> None:
    """Queue dead jobs again (by job id, or --all), with their attempt count reset."""
    if bool(ids) == retry_all:
        raise click.UsageError("give job ids or --all (not both)")
    report = retry_dead(open_redis(redis_url), None if retry_all else ids, prefix)
    click.echo(f"queued {len(report.queued)} job(s) again")
    for entry in report.invalid:
        click.echo(f"not retried (not a valid job; fix it and enqueue it anew): {entry.job_text[:200]}", err=True)
    if report.not_found:
        raise click.ClickException(f"no dead job with id {', '.join(report.not_found)}")


@dead.command("purge")
@redis_options
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def dead_purge(redis_url: str | None, prefix: str, yes: bool) -> None:
    """Delete every dead entry (the local files are not touched)."""
    client = open_redis(redis_url)
    if not yes:
        count = count_jobs(client, prefix).dead
        click.confirm(f"delete {count} dead job(s) from {prefix}:dead?", abort=True)
    click.echo(f"purged {purge_dead(client, prefix)} dead job(s)")


__all__ = ["dead", "enqueue_command", "status"]
