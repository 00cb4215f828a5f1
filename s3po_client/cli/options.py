"""The options ``s3po`` commands share, each with its ``S3PO_*`` environment variable.

An option shared by several commands reads ``S3PO_<NAME>`` (``S3PO_ENDPOINT_URL``,
``S3PO_KEEP``, ``S3PO_JOBS``, …); any other reads ``S3PO_<COMMAND>_<NAME>`` (click's
``auto_envvar_prefix``), e.g. ``S3PO_DOWNLOAD_RAW=1``.

The options that build the S3 and transfer settings are in :mod:`.engine_options`, shared
with ``s3pod``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..errors import ConfigError
from ..job import CODECS, DEFAULT_RETRIES
from ..retry import DEFAULT_BACKOFF_BASE_S
from ..settings import S3Settings, TransferSettings
from .engine_options import TRANSFER_DEFAULTS, apply, option, s3_options
from .output import Reporter, configure_logging
from .tree import BadArgument, Filters, S3Url, filter_order

if TYPE_CHECKING:
    from ..destinations import Destination
    from ..transfer.bandwidth import Schedule

F = TypeVar("F", bound=Callable[..., Any])

#: ``--jobs`` default: files in flight at once, chosen with bench/cli_jobs.py (figures in the
#: README, "Trees"): with a store 50 ms away, 8 sent 300 small files 1.5 times as fast as 4
#: (20 ms away, or on loopback: about as fast); large files went as fast as with 4 or 16, or
#: faster. Memory: at most about 8 × 40 MiB when every file in flight is large.
DEFAULT_JOBS = 8


def redis_options(func: F) -> F:
    """``--redis-url`` and ``--prefix``."""
    from ..keys import DEFAULT_PREFIX

    return apply(
        func,
        option(
            "--redis-url", envvar="S3PO_REDIS_URL", metavar="URL", help="Redis URL (default: redis://127.0.0.1:6379/0)."
        ),
        option("--prefix", envvar="S3PO_PREFIX", default=DEFAULT_PREFIX, show_default=True, help="Redis key prefix."),
    )


def output_options(func: F) -> F:
    """``--json``, ``--quiet``, ``--debug``: how a command reports."""
    return apply(
        func,
        option(
            "--json",
            "as_json",
            is_flag=True,
            envvar="S3PO_JSON",
            help="Print one JSON object per file on standard output.",
        ),
        option(
            "--quiet",
            "-q",
            is_flag=True,
            envvar="S3PO_QUIET",
            help="Print nothing but errors (no bars, no per-file lines).",
        ),
        option(
            "--debug",
            is_flag=True,
            envvar="S3PO_DEBUG",
            callback=_remember_debug,
            expose_value=True,
            help="Log every request and show tracebacks.",
        ),
    )


def _remember_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value and isinstance(ctx.obj, dict):
        ctx.obj["debug"] = True  # read by main() for errors raised outside a command's own handling
    return value


def upload_options(func: F) -> F:
    """``--header``, ``--compress``, ``--retries``, ``--keep/--delete``: what an upload stores and keeps."""
    return apply(
        func,
        # Not click's envvar: it would split the variable at spaces, and a value holds spaces.
        click.option(
            "--header",
            "-H",
            "headers",
            multiple=True,
            metavar="'NAME: VALUE'",
            allow_from_autoenv=False,
            help="Object setting, e.g. 'Content-Type: text/html' (repeatable).  [env var: S3PO_HEADER, one per line]",
        ),
        option(
            "--compress",
            type=click.Choice(CODECS),
            envvar="S3PO_COMPRESS",
            help="Compress on the way (sets Content-Encoding).",
        ),
        option(
            "--retries",
            type=click.IntRange(0),
            default=DEFAULT_RETRIES,
            show_default=True,
            envvar="S3PO_RETRIES",
            help="Retries after the first attempt of each file.",
        ),
        option(
            "--keep/--delete",
            default=False,
            envvar="S3PO_KEEP",
            help="Keep the local file after its verified upload (default: delete it).",
        ),
    )


def filter_options(func: F) -> F:
    """``--exclude`` and ``--include``: which files of a tree (or objects under a prefix)."""
    return apply(
        func,
        option(
            "--exclude",
            multiple=True,
            metavar="GLOB",
            help="Leave out files whose path (relative to the directory or prefix) matches GLOB.",
        ),
        option(
            "--include",
            multiple=True,
            metavar="GLOB",
            help="Take files matching GLOB even if an earlier --exclude left them out.",
        ),
    )


def tree_options(func: F) -> F:
    """The filters, and ``--jobs``: how many files at once."""
    return apply(
        filter_options(func),
        option(
            "--jobs",
            "-j",
            type=click.IntRange(1, 64),
            default=DEFAULT_JOBS,
            show_default=True,
            envvar="S3PO_JOBS",
            help="Files transferred at once.",
        ),
    )


def make_reporter(as_json: bool, quiet: bool, debug: bool, **extra: Any) -> Reporter:
    reporter = Reporter(json_lines=as_json, quiet=quiet, debug=debug, **extra)
    configure_logging(reporter)
    return reporter


def filters_of(exclude: tuple[str, ...], include: tuple[str, ...]) -> Filters:
    """Return the filters in the order the command line gave them (environment ones first)."""
    ordered = filter_order(sys.argv[1:])
    given = [("exclude", g) for g in exclude] + [("include", g) for g in include]
    if sorted(ordered) == sorted(given):
        return Filters(ordered)
    from_env = [r for r in given if r not in ordered]
    return Filters(tuple(from_env) + tuple(r for r in ordered if r in given))


def parse_url(value: str) -> S3Url:
    try:
        return S3Url.parse(value)
    except BadArgument as exc:
        raise click.UsageError(str(exc)) from None


def parse_headers(values: tuple[str, ...]) -> dict[str, str]:
    """Return ``--header`` values (else ``$S3PO_HEADER``'s lines) as a dict; a usage error for a bad one."""
    if not values:
        values = tuple(line for line in os.environ.get("S3PO_HEADER", "").splitlines() if line.strip())
    headers = {}
    for value in values:
        name, sep, text = value.partition(":")
        if not sep or not name.strip():
            raise click.UsageError(f"--header takes 'Name: value', got {value!r}")
        headers[name.strip()] = text.strip()
    return headers


def destination_options(func: F) -> F:
    """``--destination NAME`` and ``--config FILE``: transfer through a destination of s3pod's config file."""
    return apply(
        func,
        option(
            "--destination",
            envvar="S3PO_DESTINATION",
            metavar="NAME",
            help="Go through this [destinations.NAME] of the config file: its store, credentials, headers, limit.",
        ),
        option(
            "--config",
            envvar="S3PO_CONFIG",
            metavar="FILE",
            help="The s3pod config file (TOML) naming the destinations (e.g. /etc/s3po/s3pod.toml).",
        ),
    )


def destination_named(name: str, config: str | None) -> Destination:
    """Return the destination ``name`` of the config file; a one-line usage error naming the known ones."""
    from ..destinations import read_destinations

    if config is None:
        raise click.UsageError("--destination needs --config FILE (or S3PO_CONFIG): the config file naming it")
    try:
        known = read_destinations(config)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    if name not in known:
        raise click.UsageError(
            f"unknown destination {name!r} in {config} (known: {', '.join(sorted(known)) or 'none configured'})"
        )
    return known[name]


def make_engine(
    s3: S3Settings,
    *,
    backoff_base_s: float = DEFAULT_BACKOFF_BASE_S,
    jobs: int = DEFAULT_JOBS,
    transfer: TransferSettings | None = None,
    bwlimit: Schedule | None = None,
) -> Any:
    """Return a transfer engine sized for ``jobs`` transfers at once, limited to ``bwlimit`` (this is where boto3 gets imported)."""
    from ..retry import RetryPolicy
    from ..transfer import TransferEngine
    from ..transfer.bandwidth import Limiter

    try:
        return TransferEngine(
            s3,
            (transfer or TRANSFER_DEFAULTS).pooled_for(jobs),
            retry=RetryPolicy(base_s=backoff_base_s),
            limiter=Limiter(bwlimit),
        )
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


__all__ = [
    "DEFAULT_JOBS",
    "destination_named",
    "destination_options",
    "filters_of",
    "make_engine",
    "make_reporter",
    "option",
    "output_options",
    "parse_headers",
    "parse_url",
    "redis_options",
    "s3_options",
    "filter_options",
    "tree_options",
    "upload_options",
]
