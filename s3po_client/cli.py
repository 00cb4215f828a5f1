"""The ``s3po`` command: admin and transfer commands for people and scripts."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Callable, TypeVar

import click
import redis

from . import __version__
from .queue.dead import list_dead, purge_dead, retry_dead
from .errors import ConfigError, JobError, TransferError
from .job import CODECS, DEFAULT_RETRIES
from .queue import DEFAULT_PREFIX, connect, count_jobs, enqueue, redact_url, resolve_redis_url


F = TypeVar("F", bound=Callable[..., Any])


def redis_options(func: F) -> F:
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


def s3_options(func: F) -> F:
    """Add the S3 connection options (with their S3PO_* variables) to a command."""
    for name, env, text in reversed([
        ("--endpoint-url", "S3PO_ENDPOINT_URL", "S3 endpoint URL, for S3-compatible stores."),
        ("--region", "S3PO_REGION", "AWS region."),
        ("--profile", "S3PO_PROFILE", "AWS profile name."),
        ("--access-id", "S3PO_ACCESS_ID", "AWS access key id; default: boto3's credential chain."),
        ("--secret-key", "S3PO_SECRET_KEY", "AWS secret key; prefer the environment variable."),
    ]):
        func = click.option(name, envvar=env, show_envvar=True, help=text)(func)
    return func


def s3_url(value: str) -> tuple[str, str]:
    """Return (bucket, key) of ``s3://bucket/key``; raise a usage error otherwise."""
    if not value.startswith("s3://") or "/" not in value[5:] or value[5:].startswith("/") or value.endswith("/"):
        raise click.UsageError(f"expected s3://BUCKET/KEY, got {value!r}")
    bucket, key = value[5:].split("/", 1)
    return bucket, key


def parse_headers(values: tuple[str, ...]) -> dict[str, str]:
    headers = {}
    for value in values:
        name, sep, text = value.partition(":")
        if not sep or not name.strip():
            raise click.UsageError(f"--header takes 'Name: value', got {value!r}")
        headers[name.strip()] = text.strip()
    return headers


def make_engine(endpoint_url: str | None, region: str | None, profile: str | None, access_id: str | None,
                secret_key: str | None, backoff_base_s: float = 60.0) -> Any:
    """Return a transfer engine (this is where boto3 gets imported)."""
    from .retry import RetryPolicy
    from .settings import S3Settings
    from .transfer import TransferEngine

    try:
        return TransferEngine(S3Settings(access_id=access_id, secret_key=secret_key, profile=profile,
                                         region=region, endpoint_url=endpoint_url),
                              retry=RetryPolicy(base_s=backoff_base_s))
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


class Progress:
    """A click progress bar fed by the engine's ``progress(done, total)`` callback (stderr, TTY only)."""

    def __init__(self, label: str, enabled: bool) -> None:
        self.label = label
        self.enabled = enabled and sys.stderr.isatty()
        self.bar: Any = None
        self.done = 0

    def __call__(self, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr, show_pos=True)
            self.bar.__enter__()
        self.bar.update(done - self.done)
        self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def run_transfer(action: Callable[[Progress], Any], label: str, progress: bool) -> Any:
    """Run one transfer; turn our errors into one line and the right exit code."""
    bar = Progress(label, progress)
    try:
        return action(bar)
    except JobError as exc:
        raise click.UsageError(str(exc)) from None
    except TransferError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        bar.close()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="s3po")
def cli() -> None:
    """s3po: upload and download files, queue uploads for s3pod, and look after the queue.

    Exit status: 0 done, 1 failed, 2 bad usage.
    """


header_option = click.option("--header", "-H", "headers", multiple=True, metavar="'NAME: VALUE'",
                             help="Object setting, e.g. 'Content-Type: text/html' (repeatable).")
compress_option = click.option("--compress", type=click.Choice(CODECS), help="Compress on the way.")
retries_option = click.option("--retries", type=click.IntRange(0), default=DEFAULT_RETRIES, show_default=True,
                              help="Retries after the first attempt.")


@cli.command("enqueue")
@redis_options
@click.argument("path", type=click.Path(dir_okay=False))
@click.argument("target", metavar="s3://BUCKET/KEY")
@header_option
@compress_option
@retries_option
@click.option("--keep", is_flag=True, help="Keep the local file after the upload (default: delete it).")
@click.option("--silent", is_flag=True, help="On final failure, log at a lower level.")
def enqueue_command(redis_url: str | None, prefix: str, path: str, target: str, headers: tuple[str, ...],
                    compress: str | None, retries: int, keep: bool, silent: bool) -> None:
    """Queue PATH for upload by s3pod; print the job id."""
    bucket, key = s3_url(target)
    try:
        job_id = enqueue(bucket, key, path, headers=parse_headers(headers), compress=compress,  # type: ignore[arg-type]
                         retries=retries, delete=not keep, silent=silent, redis_url=redis_url, prefix=prefix)
    except JobError as exc:
        raise click.UsageError(str(exc)) from None
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(job_id)


@cli.command()
@s3_options
@click.argument("path", type=click.Path(dir_okay=False, allow_dash=True))
@click.argument("target", metavar="s3://BUCKET/KEY")
@header_option
@compress_option
@retries_option
@click.option("--delete", is_flag=True, help="Delete PATH once the object is stored and verified.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar on a terminal.")
@click.option("--backoff-base", type=click.FloatRange(0), default=60.0, show_default=True,
              help="Seconds before the first retry; doubles each attempt.")
def upload(endpoint_url: str | None, region: str | None, profile: str | None, access_id: str | None,
           secret_key: str | None, path: str, target: str, headers: tuple[str, ...], compress: str | None,
           retries: int, delete: bool, progress: bool, backoff_base: float) -> None:
    """Upload PATH (or - for standard input) to s3://BUCKET/KEY now, and wait for it."""

    bucket, key = s3_url(target)
    engine = make_engine(endpoint_url, region, profile, access_id, secret_key, backoff_base)
    parsed = parse_headers(headers)

    def action(bar: Progress) -> Any:
        if path == "-":
            return engine.upload_fileobj(bucket, key, sys.stdin.buffer, headers=parsed, compress=compress,
                                         retries=retries, progress=bar)
        result = engine.upload_file(bucket, key, path, headers=parsed, compress=compress, retries=retries,
                                    progress=bar)
        if delete:
            result.delete_source()
        return result

    try:
        result = run_transfer(action, key, progress)
    finally:
        engine.close()
    click.echo(f"uploaded s3://{bucket}/{key} ({result.bytes_read} bytes read, {result.bytes_sent} stored)", err=True)


@cli.command()
@s3_options
@click.argument("source", metavar="s3://BUCKET/KEY")
@click.argument("path", required=False, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--raw", is_flag=True, help="Keep the stored bytes (do not decode Content-Encoding).")
@retries_option
@click.option("--progress/--no-progress", default=True, help="Show a progress bar on a terminal.")
def download(endpoint_url: str | None, region: str | None, profile: str | None, access_id: str | None,
             secret_key: str | None, source: str, path: str | None, raw: bool, retries: int,
             progress: bool) -> None:
    """Download s3://BUCKET/KEY to PATH (default: the key's file name; - for standard output)."""
    bucket, key = s3_url(source)
    target = path or key.rsplit("/", 1)[-1]
    engine = make_engine(endpoint_url, region, profile, access_id, secret_key)

    def action(bar: Progress) -> Any:
        if target == "-":
            return engine.download_fileobj(bucket, key, sys.stdout.buffer, raw=raw, retries=retries)
        return engine.download_file(bucket, key, target, raw=raw, retries=retries, progress=bar)

    try:
        run_transfer(action, key, progress)
    finally:
        engine.close()


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
        count = count_jobs(client, prefix).dead
        click.confirm(f"delete {count} dead job(s) from {prefix}:dead?", abort=True)
    click.echo(f"purged {purge_dead(client, prefix)} dead job(s)")


def main() -> None:
    cli(prog_name="s3po")


if __name__ == "__main__":
    main()
