"""The ``s3pod`` command: parse options, build settings, configure logging, run the daemon.

The S3 options and ``--backoff-base`` are ``s3po``'s own (``s3po_client.cli.engine_options``),
read from ``S3POD_*`` variables. Options come in groups (queue, worker, service); the command
gets them as one mapping and hands it to the functions that build each settings value.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click

from s3po_client import __version__
from s3po_client.cli.engine_options import (
    apply,
    backoff_option_for,
    s3_options_for,
    s3_settings,
    transfer_options_for,
    transfer_settings,
)
from s3po_client.errors import ConfigError
from s3po_client.keys import DEFAULT_PREFIX
from s3po_client.redaction import url_secrets
from s3po_client.redis_url import resolve_redis_url
from s3po_client.retry import RetryPolicy

from .app import Address, ServiceSettings, run
from .budget import MiB
from .config import DEFAULT_CLAIM_BATCH, WorkerConfig, default_concurrency
from .safety import PathPolicy
from .service.logs import LOG_FORMATS, configure_logging
from .service.pidfile import AlreadyRunningError
from .watchspec import DEFAULT_QUIET_S, SpoolSettings, WatchSpec

logger = logging.getLogger("s3pod")

F = TypeVar("F", bound=Callable[..., Any])

#: ``--max-memory`` default, in MiB: the worker's own default bound
DEFAULT_MAX_MEMORY_MIB = WorkerConfig.max_memory_bytes // MiB
#: the options whose value is a secret: given on the command line, they are warned about
SECRET_OPTIONS = ("--secret-key", "--api-token", "--redis-url")


def env(name: str) -> str:
    return f"S3POD_{name}"


def option(*decls: str, **attrs: Any) -> Callable[[F], F]:
    """``click.option`` that shows its environment variable in ``--help``."""
    attrs.setdefault("show_envvar", True)
    return click.option(*decls, **attrs)


def queue_options(func: F) -> F:
    """``--redis-url`` and ``--prefix``: which queue."""
    return apply(
        func,
        option(
            "--redis-url",
            envvar=env("REDIS_URL"),
            help="Redis URL; default: $S3PO_REDIS_URL, else redis://127.0.0.1:6379/0.",
        ),
        option(
            "--prefix",
            envvar=env("PREFIX"),
            default=DEFAULT_PREFIX,
            help="Redis key prefix (use {s3po} on Redis Cluster).",
        ),
    )


def worker_options(func: F) -> F:
    """How the worker runs: concurrency, claims, memory, allowed directories, timeouts, burst."""
    return apply(
        func,
        option(
            "--concurrency",
            envvar=env("CONCURRENCY"),
            type=click.IntRange(1, 256),
            default=default_concurrency(),
            help="Jobs in flight at once (default: 8 per CPU, 8 to 32).",
        ),
        option(
            "--claim-batch",
            envvar=env("CLAIM_BATCH"),
            type=click.IntRange(1, 1000),
            default=DEFAULT_CLAIM_BATCH,
            help="Most jobs a job thread claims in one round trip while the queue is deep (1 claims one at a time).",
        ),
        option(
            "--max-memory",
            envvar=env("MAX_MEMORY"),
            type=click.IntRange(16),
            default=DEFAULT_MAX_MEMORY_MIB,
            metavar="MiB",
            help="What all uploads in flight may hold at once; large uploads wait for room.",
        ),
        option(
            "--allow-dir",
            "allow_dirs",
            envvar=env("ALLOW_DIR"),
            multiple=True,
            type=click.Path(file_okay=False),
            help="Only read and delete files under this directory "
            "(repeatable; the environment variable takes a space-separated list).",
        ),
        backoff_option_for("S3POD"),
        option(
            "--heartbeat-timeout",
            envvar=env("HEARTBEAT_TIMEOUT"),
            type=click.FloatRange(0.3),
            default=WorkerConfig.heartbeat_timeout_s,
            metavar="SECONDS",
            help="Time without a heartbeat after which a worker's jobs are put back "
            "(use one value for every s3pod on a queue).",
        ),
        option(
            "--shutdown-timeout",
            envvar=env("SHUTDOWN_TIMEOUT"),
            type=click.FloatRange(0),
            default=WorkerConfig.shutdown_timeout_s,
            metavar="SECONDS",
            help="Time jobs in flight may take after SIGTERM before they are put back.",
        ),
        click.option("--burst", is_flag=True, help="Drain the queue, then exit."),
    )


def service_options(func: F) -> F:
    """How the process runs as a service: logging, metrics, the HTTP API, detaching."""
    return apply(
        func,
        option(
            "--log-level",
            envvar=env("LOG_LEVEL"),
            default="INFO",
            type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
        ),
        option(
            "--log-format",
            envvar=env("LOG_FORMAT"),
            default="text",
            type=click.Choice(LOG_FORMATS),
            help="json: one JSON object per line.",
        ),
        option(
            "--log-file",
            envvar=env("LOG_FILE"),
            type=click.Path(dir_okay=False),
            help="Write the log to this file instead of stderr (required with --daemon).",
        ),
        option(
            "--metrics-listen",
            envvar=env("METRICS_LISTEN"),
            metavar="HOST:PORT",
            help="Serve Prometheus metrics at /metrics on this address.",
        ),
        option(
            "--api-listen",
            envvar=env("API_LISTEN"),
            metavar="HOST:PORT",
            help="Serve the HTTP enqueue API on this address (loopback unless --api-token is set).",
        ),
        option(
            "--api-token",
            envvar=env("API_TOKEN"),
            help="Bearer token the HTTP API requires; needed when it listens beyond loopback.",
        ),
        option(
            "--api-redact-paths",
            envvar=env("API_REDACT_PATHS"),
            is_flag=True,
            help="The dashboard shows readers without the token file names only, never full local paths.",
        ),
        option(
            "--daemon",
            "detach",
            envvar=env("DAEMON"),
            is_flag=True,
            help="Detach into the background (not under systemd); needs --pidfile and --log-file.",
        ),
        option(
            "--pidfile",
            envvar=env("PIDFILE"),
            type=click.Path(dir_okay=False),
            help="With --daemon: the pidfile, locked while the daemon runs.",
        ),
    )


def watch_options(func: F) -> F:
    """Spool directories: ``--watch DIR=s3://BUCKET/PREFIX`` and the settings every watch shares."""
    return apply(
        func,
        option(
            "--watch",
            "watches",
            envvar=env("WATCH"),
            multiple=True,
            metavar="DIR=s3://BUCKET/PREFIX",
            help="Upload each file closed after writing in, or moved into, DIR (and its subdirectories) "
            "to PREFIX + its path below DIR (repeatable; the environment variable takes a space-separated list).",
        ),
        option(
            "--watch-compress",
            envvar=env("WATCH_COMPRESS"),
            type=click.Choice(["gzip", "zlib", "zstd"]),
            help="Compress watched files on the way.",
        ),
        option("--watch-keep", envvar=env("WATCH_KEEP"), is_flag=True, help="Keep watched files after their upload."),
        option(
            "--watch-include",
            envvar=env("WATCH_INCLUDE"),
            multiple=True,
            metavar="GLOB",
            help="Take only the watched files whose path or name matches (repeatable).",
        ),
        option(
            "--watch-exclude",
            envvar=env("WATCH_EXCLUDE"),
            multiple=True,
            metavar="GLOB",
            help="Leave the watched files whose path or name matches (repeatable; *.tmp, *.part and .* always are).",
        ),
        option(
            "--watch-prune-empty-dirs",
            envvar=env("WATCH_PRUNE_EMPTY_DIRS"),
            is_flag=True,
            help="Remove empty subdirectories of watched directories (never the watched directory itself).",
        ),
        option(
            "--watch-poll",
            envvar=env("WATCH_POLL"),
            type=click.FloatRange(0.1),
            metavar="SECONDS",
            help="Scan watched directories at this interval instead of using inotify (network filesystems).",
        ),
        option(
            "--watch-quiet",
            envvar=env("WATCH_QUIET"),
            type=click.FloatRange(0),
            default=DEFAULT_QUIET_S,
            metavar="SECONDS",
            help="A file found by a scan is taken once its size and mtime stayed the same this long.",
        ),
    )


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, prog_name="s3pod")
@s3_options_for("S3POD")
@transfer_options_for("S3POD")
@queue_options
@worker_options
@service_options
@watch_options
def command(**options: Any) -> None:
    """Upload the files queued in Redis to S3; runs in the foreground until SIGTERM."""
    url = resolve_redis_url(options["redis_url"])
    start_logging(options, url)
    try:
        spool = spool_settings(options)
    except ConfigError as exc:  # one line naming the watch (no usage text): a service log reads it
        click.echo(f"s3pod: {exc}", err=True)
        sys.exit(2)
    try:
        warn_of_secrets_on_the_command_line(options)
        status = run(
            s3_settings(options),
            url,
            worker_config(options),
            service_settings(options),
            transfer=transfer_settings(options, transfers_at_once=options["concurrency"]),
            burst=options["burst"],
            spool=spool,
            bwlimit=options["bwlimit"],
        )
    except AlreadyRunningError as exc:
        click.echo(f"s3pod: {exc}", err=True)
        sys.exit(1)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    sys.exit(status)


def start_logging(options: Mapping[str, Any], redis_url: str) -> None:
    """Configure logging, with every secret given (keys, tokens, the Redis URL's passwords) redacted."""
    # A URL's passwords are redacted by pattern too; naming them also catches them out of a URL.
    secrets = [s for s in (options["secret_key"], options["api_token"], *url_secrets(redis_url)) if s]
    try:
        configure_logging(options["log_level"], options["log_format"], options["log_file"], secrets=secrets)
    except OSError as exc:
        raise click.UsageError(f"cannot open --log-file {options['log_file']!r}: {exc.strerror}") from None


def warn_of_secrets_on_the_command_line(options: Mapping[str, Any]) -> None:
    """Warn about each secret given as a command-line argument (``ps`` shows it to every user)."""
    for name in SECRET_OPTIONS:
        value = options[name[2:].replace("-", "_")]
        if name == "--redis-url" and value and not url_secrets(value):
            continue
        if value and any(a == name or a.startswith(f"{name}=") for a in sys.argv):
            logger.warning(
                "%s on the command line is visible to other users; set %s in the "
                "environment file (/etc/s3po/s3pod.env) instead",
                "a password in --redis-url" if name == "--redis-url" else name,
                env(name[2:].replace("-", "_").upper()),
            )


def worker_config(options: Mapping[str, Any]) -> WorkerConfig:
    """Return the worker's settings from its options."""
    return WorkerConfig(
        prefix=options["prefix"],
        concurrency=options["concurrency"],
        claim_batch=options["claim_batch"],
        max_memory_bytes=options["max_memory"] * MiB,
        paths=PathPolicy.from_dirs(options["allow_dirs"]),
        retry=RetryPolicy(base_s=options["backoff_base"]),
        heartbeat_timeout_s=options["heartbeat_timeout"],
        shutdown_timeout_s=options["shutdown_timeout"],
    )


def spool_settings(options: Mapping[str, Any]) -> SpoolSettings:
    """Return the spool directories and how they are watched, each directory checked (ConfigError)."""
    shared = {
        "compress": options["watch_compress"],
        "delete": not options["watch_keep"],
        "include": tuple(options["watch_include"]),
        "exclude": tuple(options["watch_exclude"]),
        "prune_empty_dirs": options["watch_prune_empty_dirs"],
    }
    settings = SpoolSettings(
        watches=tuple(WatchSpec.parse(text, **shared) for text in options["watches"]),
        poll_s=options["watch_poll"],
        quiet_s=options["watch_quiet"],
    )
    return settings.checked(PathPolicy.from_dirs(options["allow_dirs"]).allow_dirs)


def service_settings(options: Mapping[str, Any]) -> ServiceSettings:
    """Return how the process runs as a service, from its options."""
    return ServiceSettings(
        daemon=options["detach"],
        pidfile=options["pidfile"],
        log_file=options["log_file"],
        log_format=options["log_format"],
        metrics_listen=Address.parse(options["metrics_listen"]) if options["metrics_listen"] else None,
        api_listen=Address.parse(options["api_listen"]) if options["api_listen"] else None,
        api_token=options["api_token"],
        api_redact_paths=options["api_redact_paths"],
    )


def main() -> None:
    command(prog_name="s3pod")
