"""The ``s3pod`` command: parse options, build settings, configure logging, run the daemon."""

from __future__ import annotations

import logging
import sys

import click

from s3po_client import __version__
from s3po_client.errors import ConfigError
from s3po_client.keys import DEFAULT_PREFIX
from s3po_client.redaction import url_secrets
from s3po_client.redis_url import resolve_redis_url
from s3po_client.retry import DEFAULT_BACKOFF_BASE_S, RetryPolicy
from s3po_client.settings import S3Settings

from .app import Address, ServiceSettings, run
from .budget import MiB
from .config import DEFAULT_CLAIM_BATCH, WorkerConfig, default_concurrency
from .safety import PathPolicy
from .service.logs import LOG_FORMATS, configure_logging
from .service.pidfile import AlreadyRunningError

logger = logging.getLogger("s3pod")


def env(name: str) -> str:
    return f"S3POD_{name}"


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, prog_name="s3pod")
@click.option(
    "--access-id",
    envvar=env("ACCESS_ID"),
    show_envvar=True,
    help="AWS access key id; default: boto3's credential chain.",
)
@click.option(
    "--secret-key",
    envvar=env("SECRET_KEY"),
    show_envvar=True,
    help="AWS secret key; prefer the environment variable to the command line.",
)
@click.option("--profile", envvar=env("PROFILE"), show_envvar=True, help="AWS profile name.")
@click.option("--region", envvar=env("REGION"), show_envvar=True, help="AWS region.")
@click.option(
    "--endpoint-url", envvar=env("ENDPOINT_URL"), show_envvar=True, help="S3 endpoint URL, for S3-compatible stores."
)
@click.option(
    "--redis-url",
    envvar=env("REDIS_URL"),
    show_envvar=True,
    help="Redis URL; default: $S3PO_REDIS_URL, else redis://127.0.0.1:6379/0.",
)
@click.option(
    "--prefix",
    envvar=env("PREFIX"),
    show_envvar=True,
    default=DEFAULT_PREFIX,
    help="Redis key prefix (use {s3po} on Redis Cluster).",
)
@click.option(
    "--concurrency",
    envvar=env("CONCURRENCY"),
    show_envvar=True,
    type=click.IntRange(1, 256),
    default=default_concurrency(),
    help="Jobs in flight at once (default: 8 per CPU, 8 to 32).",
)
@click.option(
    "--claim-batch",
    envvar=env("CLAIM_BATCH"),
    show_envvar=True,
    type=click.IntRange(1, 1000),
    default=DEFAULT_CLAIM_BATCH,
    help=f"Most jobs a job thread claims in one round trip while the queue "
    f"is deep (default {DEFAULT_CLAIM_BATCH}; 1 claims one job at a time).",
)
@click.option(
    "--max-memory",
    envvar=env("MAX_MEMORY"),
    show_envvar=True,
    type=click.IntRange(16),
    default=512,
    help="MiB that all uploads in flight may hold at once; large uploads wait for room.",
)
@click.option(
    "--allow-dir",
    "allow_dirs",
    envvar=env("ALLOW_DIR"),
    show_envvar=True,
    multiple=True,
    type=click.Path(file_okay=False),
    help="Only read and delete files under this directory "
    "(repeatable; the environment variable takes a space-separated list).",
)
@click.option(
    "--backoff-base",
    envvar=env("BACKOFF_BASE"),
    show_envvar=True,
    type=click.FloatRange(0),
    default=DEFAULT_BACKOFF_BASE_S,
    help="Seconds before the first retry; doubles each attempt.",
)
@click.option(
    "--heartbeat-timeout",
    envvar=env("HEARTBEAT_TIMEOUT"),
    show_envvar=True,
    type=click.FloatRange(0.3),
    default=30.0,
    help="Seconds without a heartbeat after which a worker's jobs are put back "
    "(use one value for every s3pod on a queue).",
)
@click.option(
    "--shutdown-timeout",
    envvar=env("SHUTDOWN_TIMEOUT"),
    show_envvar=True,
    type=click.FloatRange(0),
    default=30.0,
    help="Seconds jobs in flight may take after SIGTERM before they are put back.",
)
@click.option("--burst", is_flag=True, help="Drain the queue, then exit.")
@click.option(
    "--log-level",
    envvar=env("LOG_LEVEL"),
    show_envvar=True,
    default="INFO",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
@click.option(
    "--log-format",
    envvar=env("LOG_FORMAT"),
    show_envvar=True,
    default="text",
    type=click.Choice(LOG_FORMATS),
    help="json: one JSON object per line.",
)
@click.option(
    "--log-file",
    envvar=env("LOG_FILE"),
    show_envvar=True,
    type=click.Path(dir_okay=False),
    help="Write the log to this file instead of stderr (required with --daemon).",
)
@click.option(
    "--metrics-listen",
    envvar=env("METRICS_LISTEN"),
    show_envvar=True,
    metavar="HOST:PORT",
    help="Serve Prometheus metrics at /metrics on this address.",
)
@click.option(
    "--api-listen",
    envvar=env("API_LISTEN"),
    show_envvar=True,
    metavar="HOST:PORT",
    help="Serve the HTTP enqueue API on this address (loopback unless --api-token is set).",
)
@click.option(
    "--api-token",
    envvar=env("API_TOKEN"),
    show_envvar=True,
    help="Bearer token the HTTP API requires; needed when it listens beyond loopback.",
)
@click.option(
    "--daemon",
    "detach",
    envvar=env("DAEMON"),
    show_envvar=True,
    is_flag=True,
    help="Detach into the background (not under systemd); needs --pidfile and --log-file.",
)
@click.option(
    "--pidfile",
    envvar=env("PIDFILE"),
    show_envvar=True,
    type=click.Path(dir_okay=False),
    help="With --daemon: the pidfile, locked while the daemon runs.",
)
def command(
    access_id: str | None,
    secret_key: str | None,
    profile: str | None,
    region: str | None,
    endpoint_url: str | None,
    redis_url: str | None,
    prefix: str,
    concurrency: int,
    claim_batch: int,
    max_memory: int,
    allow_dirs: tuple[str, ...],
    backoff_base: float,
    heartbeat_timeout: float,
    shutdown_timeout: float,
    burst: bool,
    log_level: str,
    log_format: str,
    log_file: str | None,
    metrics_listen: str | None,
    api_listen: str | None,
    api_token: str | None,
    detach: bool,
    pidfile: str | None,
) -> None:
    """Upload the files queued in Redis to S3; runs in the foreground until SIGTERM."""
    url = resolve_redis_url(redis_url)
    try:
        # A URL's passwords are redacted by pattern too; naming them also catches them out of a URL.
        configure_logging(
            log_level, log_format, log_file, secrets=[s for s in (secret_key, api_token, *url_secrets(url)) if s]
        )
    except OSError as exc:
        raise click.UsageError(f"cannot open --log-file {log_file!r}: {exc.strerror}") from None
    try:
        given = (
            ("--secret-key", secret_key),
            ("--api-token", api_token),
            ("--redis-url", redis_url if redis_url and url_secrets(redis_url) else None),
        )
        for option, value in given:
            if value and any(a == option or a.startswith(f"{option}=") for a in sys.argv):
                what = "a password in --redis-url" if option == "--redis-url" else option
                logger.warning(
                    "%s on the command line is visible to other users; set %s in the "
                    "environment file (/etc/s3po/s3pod.env) instead",
                    what,
                    env(option[2:].replace("-", "_").upper()),
                )
        service = ServiceSettings(
            daemon=detach,
            pidfile=pidfile,
            log_file=log_file,
            log_format=log_format,
            metrics_listen=Address.parse(metrics_listen) if metrics_listen else None,
            api_listen=Address.parse(api_listen) if api_listen else None,
            api_token=api_token,
        )
        s3 = S3Settings(
            access_id=access_id, secret_key=secret_key, profile=profile, region=region, endpoint_url=endpoint_url
        )
        config = WorkerConfig(
            prefix=prefix,
            concurrency=concurrency,
            claim_batch=claim_batch,
            max_memory_bytes=max_memory * MiB,
            paths=PathPolicy.from_dirs(allow_dirs),
            retry=RetryPolicy(base_s=backoff_base),
            heartbeat_timeout_s=heartbeat_timeout,
            shutdown_timeout_s=shutdown_timeout,
        )
        status = run(s3, url, config, service, burst=burst)
    except AlreadyRunningError as exc:
        click.echo(f"s3pod: {exc}", err=True)
        sys.exit(1)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    sys.exit(status)


def main() -> None:
    command(prog_name="s3pod")
