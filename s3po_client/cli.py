"""The ``s3po`` command: admin and transfer commands for people and scripts."""

from __future__ import annotations

import json
import time

import click
import redis

from . import __version__
from .errors import ConfigError
from .deadletters import list_dead, purge_dead, retry_dead
from .queue import DEFAULT_PREFIX, QueueKeys, connect, count_jobs, redact_url, resolve_redis_url


def redis_options(func):  # type: ignore[no-untyped-def]
    """Add ``--redis-url`` and ``--prefix`` (with their S3PO_* variables) to a command."""
    func = click.option("--prefix", envvar="S3PO_PREFIX", show_envvar=True, default=DEFAULT_PREFIX,
                        show_default=True, help="Redis key prefix.")(func)
    func = click.option("--redis-url", envvar="S3PO_REDIS_URL", show_envvar=True,
                        help="Redis URL; default redis://127.0.0.1:6379/0.")(func)
    return func


def open_redis(redis_url: str | None) -> redis.Redis:
    try:
        client = connect(redis_url)
        client.ping()
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    except redis.RedisError as exc:
        raise click.ClickException(f"cannot reach Redis at {redact_url(resolve_redis_url(redis_url))}: {exc}")
    return client


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="s3po")
def cli() -> None:
    """s3po: queue uploads for s3pod, and look after the queue."""


@cli.command()
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


@cli.group()
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
        when = (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(entry.failed_at))
                if isinstance(entry.failed_at, (int, float)) else "?")
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
        count = client.llen(QueueKeys(prefix).dead)
        click.confirm(f"delete {count} dead job(s) from {prefix}:dead?", abort=True)
    click.echo(f"purged {purge_dead(client, prefix)} dead job(s)")


def main() -> None:
    cli(prog_name="s3po")
if __name__ == "__main__":
    main()
