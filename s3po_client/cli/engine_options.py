"""The options that build :class:`~s3po_client.settings.S3Settings` and :class:`~s3po_client.settings.TransferSettings`, and ``--backoff-base``.

Defined once for both commands: ``s3po`` reads them from ``S3PO_*`` variables, ``s3pod``
from ``S3POD_*`` ones (the factories take the prefix). Their defaults are the settings'
own (``TransferSettings()``, ``DEFAULT_BACKOFF_BASE_S``), so ``--help`` shows what a
library user gets too. A command takes them as parameters and hands those to
:func:`s3_settings` and :func:`transfer_settings`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..errors import ConfigError
from ..retry import DEFAULT_BACKOFF_BASE_S
from ..settings import (
    CHECKSUM_MODES,
    MAX_PART_SIZE_BYTES,
    MAX_SINGLE_PUT_BYTES,
    MIN_PART_SIZE_BYTES,
    MiB,
    S3Settings,
    TransferSettings,
)

if TYPE_CHECKING:  # importing s3po_client.transfer imports boto3: only when a transfer runs
    from ..transfer.bandwidth import Schedule

F = TypeVar("F", bound=Callable[..., Any])


def option(*decls: str, **attrs: Any) -> Callable[[F], F]:
    """``click.option`` that shows its environment variable in ``--help``."""
    attrs.setdefault("show_envvar", True)
    return click.option(*decls, **attrs)


def apply(func: F, *decorators: Callable[[F], F]) -> F:
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def s3_options_for(env_prefix: str) -> Callable[[F], F]:
    """The options of :class:`S3Settings` (``--endpoint-url``, ``--region``, ``--profile``, ``--access-id``,
    ``--secret-key``), each reading ``<env_prefix>_<NAME>``; :func:`s3_settings` builds the value."""

    def decorate(func: F) -> F:
        return apply(
            func,
            option(
                "--endpoint-url",
                envvar=f"{env_prefix}_ENDPOINT_URL",
                metavar="URL",
                help="S3 endpoint, for S3-compatible stores (default: AWS).",
            ),
            option("--region", envvar=f"{env_prefix}_REGION", help="AWS region."),
            option("--profile", envvar=f"{env_prefix}_PROFILE", help="AWS profile name."),
            option(
                "--access-id",
                envvar=f"{env_prefix}_ACCESS_ID",
                help="Access key id (default: boto3's credential chain).",
            ),
            option(
                "--secret-key",
                envvar=f"{env_prefix}_SECRET_KEY",
                help="Secret key; prefer the environment variable to the command line.",
            ),
            option(
                "--ca-bundle",
                envvar=f"{env_prefix}_CA_BUNDLE",
                metavar="PEM",
                type=click.Path(exists=True, dir_okay=False),
                help="CA certificates that verify the store's TLS certificate (a private CA); default: AWS_CA_BUNDLE, else the system's.",
            ),
        )

    return decorate


#: the S3 options of ``s3po``
s3_options = s3_options_for("S3PO")
#: the parameters the S3 options give a command, as named in S3Settings
S3_OPTIONS = ("endpoint_url", "region", "profile", "access_id", "secret_key", "ca_bundle")


def s3_settings(values: Mapping[str, Any]) -> S3Settings:
    """Return the S3Settings that a command's S3 options (in ``values``, its parameters) describe."""
    try:
        return S3Settings(**{name: values[name] for name in S3_OPTIONS})
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


#: what ``--help`` shows as the transfer options' defaults: the engine's own
TRANSFER_DEFAULTS = TransferSettings()


def transfer_options_for(env_prefix: str) -> Callable[[F], F]:
    """The options of :class:`TransferSettings`, each reading ``<env_prefix>_<NAME>``; :func:`transfer_settings` builds the value."""
    d = TRANSFER_DEFAULTS
    seconds = click.FloatRange(0, min_open=True)
    specs: list[tuple[str, Any, Any, str | None, str]] = [  # name, type, default, metavar, help
        (
            "--part-size",
            click.IntRange(MIN_PART_SIZE_BYTES // MiB, MAX_PART_SIZE_BYTES // MiB),
            d.part_size_bytes // MiB,
            "MiB",
            "Size of each part of a multipart transfer; memory: one per part in flight.",
        ),
        (
            "--multipart-threshold",
            click.IntRange(1, MAX_SINGLE_PUT_BYTES // MiB),
            d.multipart_threshold_bytes // MiB,
            "MiB",
            "Objects from this size on go in parts, in parallel.",
        ),
        (
            "--part-concurrency",
            click.IntRange(1, 64),
            d.max_concurrency,
            None,
            "Parts in flight at once for one transfer.",
        ),
        (
            "--request-retries",
            click.IntRange(0),
            d.request_retries,
            None,
            "Retries of one S3 request (a part, a PUT) within an attempt.",
        ),
        (
            "--checksum",
            click.Choice(CHECKSUM_MODES),
            d.checksum,
            None,
            "How each request proves its bytes: auto (CRC32 while the store proves it, else MD5), md5, crc32.",
        ),
        ("--compress-level", click.IntRange(0, 22), None, None, "Compression level (default: the codec's fast level)."),
        ("--connect-timeout", seconds, d.connect_timeout_s, "SECONDS", "Wait for a TCP connection to the store."),
        ("--read-timeout", seconds, d.read_timeout_s, "SECONDS", "Wait for the next bytes of an answer."),
    ]
    limit = bwlimit_option_for(env_prefix)
    decorators = [
        option(
            name,
            envvar=f"{env_prefix}_{name[2:].replace('-', '_').upper()}",
            type=kind,
            default=default,
            show_default=default is not None,
            metavar=metavar,
            help=text,
        )
        for name, kind, default, metavar, text in specs
    ]
    return lambda func: apply(func, *decorators, limit)


def parse_bwlimit_option(ctx: click.Context, param: click.Parameter, value: str | None) -> Schedule | None:
    """``--bwlimit``'s value as a Schedule (:func:`~s3po_client.transfer.bandwidth.parse_bwlimit`); None when not given."""
    from ..transfer.bandwidth import parse_bwlimit

    if value is None:
        return None
    try:
        return parse_bwlimit(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def bwlimit_option_for(env_prefix: str) -> Callable[[F], F]:
    """``--bwlimit``: the process's bandwidth limit (reads ``<env_prefix>_BWLIMIT``); the command gets a Schedule or None."""
    return option(
        "--bwlimit",
        envvar=f"{env_prefix}_BWLIMIT",
        metavar="RATE",
        callback=parse_bwlimit_option,
        help="Bandwidth limit, bytes per second: 10M, 512K, UP:DOWN (10M:off), or a timetable "
        "'08:00,512K 19:00,off' (Mon-08:00,… for weekdays); shared by every transfer at once (default: off).",
    )


#: the parameters the transfer options give a command
TRANSFER_OPTIONS = (
    "part_size",
    "multipart_threshold",
    "part_concurrency",
    "request_retries",
    "checksum",
    "compress_level",
    "connect_timeout",
    "read_timeout",
    "bwlimit",
)


def transfer_settings(values: Mapping[str, Any], *, transfers_at_once: int) -> TransferSettings:
    """Return the TransferSettings a command's transfer options describe, pooled for ``transfers_at_once``."""
    try:
        return TransferSettings(
            part_size_bytes=values["part_size"] * MiB,
            multipart_threshold_bytes=values["multipart_threshold"] * MiB,
            max_concurrency=values["part_concurrency"],
            request_retries=values["request_retries"],
            checksum=values["checksum"],
            compress_level=values["compress_level"],
            connect_timeout_s=values["connect_timeout"],
            read_timeout_s=values["read_timeout"],
        ).pooled_for(transfers_at_once)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def backoff_option_for(env_prefix: str) -> Callable[[F], F]:
    """``--backoff-base``: the wait before a job's first retry (reads ``<env_prefix>_BACKOFF_BASE``)."""
    return option(
        "--backoff-base",
        envvar=f"{env_prefix}_BACKOFF_BASE",
        type=click.FloatRange(0),
        default=DEFAULT_BACKOFF_BASE_S,
        show_default=True,
        metavar="SECONDS",
        help="Wait before the first retry; doubles each attempt, with full jitter below that ceiling.",
    )


__all__ = [
    "S3_OPTIONS",
    "TRANSFER_DEFAULTS",
    "TRANSFER_OPTIONS",
    "apply",
    "backoff_option_for",
    "bwlimit_option_for",
    "option",
    "s3_options",
    "s3_options_for",
    "s3_settings",
    "transfer_options_for",
    "transfer_settings",
]
