"""The ``s3pod`` command: parse options, build settings, configure logging, run the daemon.

The S3 options and ``--backoff-base`` are ``s3po``'s own (``s3po_client.cli.engine_options``),
read from ``S3POD_*`` variables; the others are in :mod:`s3pod.options`. The command gets
them as one mapping and hands it to the functions that build each settings value.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any

import click

from s3po_client import __version__
from s3po_client.cli.engine_options import (
    s3_options_for,
    s3_settings,
    transfer_options_for,
    transfer_settings,
)
from s3po_client.errors import ConfigError
from s3po_client.redaction import url_secrets
from s3po_client.redis_url import resolve_redis_url
from s3po_client.retry import RetryPolicy

from . import configfile
from .app import Address, ServiceSettings, run
from .budget import MiB
from .config import WorkerConfig
from .configrun import OVERRIDES, Reloader, effective_settings
from .options import config_options, env, queue_options, service_options, watch_options, worker_options
from .safety import PathPolicy
from .service.logs import configure_logging
from .service.pidfile import AlreadyRunningError
from .watchspec import SpoolSettings, WatchSpec

logger = logging.getLogger("s3pod")

#: the options whose value is a secret: given on the command line, they are warned about
SECRET_OPTIONS = ("--secret-key", "--api-token", "--redis-url")


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, prog_name="s3pod")
@config_options
@s3_options_for("S3POD")
@transfer_options_for("S3POD")
@queue_options
@worker_options
@service_options
@watch_options
def command(**options: Any) -> None:
    """Upload the files queued in Redis to S3; runs in the foreground until SIGTERM."""
    ctx = click.get_current_context()
    url = resolve_redis_url(options["redis_url"])
    file: configfile.FileConfig | None = options["config"]
    from_file = file is not None and ctx.get_parameter_source("watches") not in OVERRIDES
    try:
        spool = spool_settings(options, file.watches if file is not None and from_file else ())
        if options["check_config"]:
            check_config(ctx, options, url, spool)
    except (ConfigError, click.UsageError) as exc:  # one line (no usage text): a service log reads it
        click.echo(f"s3pod: {exc}", err=True)
        sys.exit(2)
    start_logging(options, url)
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
            on_reload=Reloader(ctx, file, lambda tables: spool_settings(options, tables)).reload if file else None,
            destinations=file.destinations if file is not None else (),
        )
    except AlreadyRunningError as exc:
        click.echo(f"s3pod: {exc}", err=True)
        sys.exit(1)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    sys.exit(status)


def start_logging(options: Mapping[str, Any], redis_url: str) -> None:
    """Configure logging, with every secret given (keys, tokens, the Redis URL's passwords) redacted."""
    try:
        configure_logging(
            options["log_level"], options["log_format"], options["log_file"], secrets=secrets_of(options, redis_url)
        )
    except OSError as exc:
        raise click.UsageError(f"cannot open --log-file {options['log_file']!r}: {exc.strerror}") from None


def secrets_of(options: Mapping[str, Any], redis_url: str) -> list[str]:
    """Return every secret given: the keys, the API token, the Redis URL's passwords (what is redacted)."""
    # A URL's passwords are redacted by pattern too; naming them also catches them out of a URL.
    return [s for s in (options["secret_key"], options["api_token"], *url_secrets(redis_url)) if s]


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


def check_config(ctx: click.Context, options: Mapping[str, Any], url: str, spool: SpoolSettings) -> None:
    """``--check-config``: build every settings value (ConfigError if one is wrong), print them, exit 0."""
    worker_config(options)
    service_settings(options)
    s3_settings(options)
    transfer_settings(options, transfers_at_once=options["concurrency"])
    secrets = secrets_of(options, url)
    file: configfile.FileConfig | None = options["config"]
    for line in effective_settings(ctx, options, spool, secrets, file.destinations if file is not None else ()):
        click.echo(line)
    sys.exit(0)


def spool_settings(options: Mapping[str, Any], tables: tuple[configfile.WatchTable, ...] = ()) -> SpoolSettings:
    """Return the spool directories and how they are watched, each directory checked (ConfigError).

    ``tables`` are the config file's ``[[watch]]`` tables: each sets its own fields over the
    ``--watch-*`` options.
    """
    shared = {
        "compress": options["watch_compress"],
        "delete": not options["watch_keep"],
        "include": tuple(options["watch_include"]),
        "exclude": tuple(options["watch_exclude"]),
        "prune_empty_dirs": options["watch_prune_empty_dirs"],
    }
    settings = SpoolSettings(
        watches=(
            *(WatchSpec.parse(text, **shared) for text in options["watches"]),
            *(WatchSpec.parse(t.text, **{**shared, **t.fields}) for t in tables),
        ),
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
