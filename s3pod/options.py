"""The ``s3pod`` command's options, in groups (queue, worker, service, watches, config file).

Each reads an ``S3POD_*`` variable, shown in ``--help``; the command gets them as one mapping.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from s3po_client.cli.engine_options import apply, backoff_option_for
from s3po_client.keys import DEFAULT_PREFIX

from .budget import MiB
from .config import DEFAULT_CLAIM_BATCH, WorkerConfig, default_concurrency
from .configfile import read_config_file
from .service.logs import LOG_FORMATS
from .watchspec import DEFAULT_QUIET_S

F = TypeVar("F", bound=Callable[..., Any])

#: ``--max-memory`` default, in MiB: the worker's own default bound
DEFAULT_MAX_MEMORY_MIB = WorkerConfig.max_memory_bytes // MiB


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
            help="Jobs in flight at once (default: 16 per CPU, 16 to 64).",
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


def config_options(func: F) -> F:
    """``--config FILE`` (read before the other options: its values are their defaults) and ``--check-config``."""
    return apply(
        func,
        option(
            "--config",
            envvar=env("CONFIG"),
            type=click.Path(dir_okay=False),
            is_eager=True,
            callback=read_config_file,
            help="Read options from this TOML file; the command line and the environment override it.",
        ),
        click.option(
            "--check-config",
            is_flag=True,
            help="Check the options and the config file, print the effective settings (secrets redacted), exit.",
        ),
    )
