"""The ``s3po`` command: admin and transfer commands for people and scripts."""

from __future__ import annotations

import json

import click
import redis

from . import __version__
from .errors import ConfigError
from .queue import DEFAULT_PREFIX, connect, count_jobs, redact_url, resolve_redis_url


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
    """Show how many jobs are pending, processing, delayed and dead."""
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


def main() -> None:
    cli(prog_name="s3po")
if __name__ == "__main__":
    main()
