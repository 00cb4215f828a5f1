"""The options that build :class:`~s3po_client.settings.S3Settings` and :class:`~s3po_client.settings.TransferSettings`, and ``--backoff-base``.

Defined once for both commands: ``s3po`` reads them from ``S3PO_*`` variables, ``s3pod``
from ``S3POD_*`` ones (the factories take the prefix). Their defaults are the settings'
own (``TransferSettings()``, ``DEFAULT_BACKOFF_BASE_S``), so ``--help`` shows what a
library user gets too. A command takes them as parameters and hands those to
:func:`s3_settings` and :func:`transfer_settings`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

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
        )

    return decorate


#: the S3 options of ``s3po``
s3_options = s3_options_for("S3PO")
#: the parameters the S3 options give a command, as named in S3Settings
S3_OPTIONS = ("endpoint_url", "region", "profile", "access_id", "secret_key")


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

    def decorate(func: F) -> F:
        return apply(
            func,
            option(
                "--part-size",
                envvar=f"{env_prefix}_PART_SIZE",
                type=click.IntRange(MIN_PART_SIZE_BYTES // MiB, MAX_PART_SIZE_BYTES // MiB),
                default=d.part_size_bytes // MiB,
                show_default=True,
                metavar="MiB",
                help="Size of each part of a multipart transfer; memory: one per part in flight.",
            ),
            option(
                "--multipart-threshold",
                envvar=f"{env_prefix}_MULTIPART_THRESHOLD",
                type=click.IntRange(1, MAX_SINGLE_PUT_BYTES // MiB),
                default=d.multipart_threshold_bytes // MiB,
                show_default=True,
                metavar="MiB",
                help="Objects from this size on go in parts, in parallel.",
            ),
            option(
                "--part-concurrency",
                envvar=f"{env_prefix}_PART_CONCURRENCY",
                type=click.IntRange(1, 64),
                default=d.max_concurrency,
                show_default=True,
                help="Parts in flight at once for one transfer.",
            ),
            option(
                "--request-retries",
                envvar=f"{env_prefix}_REQUEST_RETRIES",
                type=click.IntRange(0),
                default=d.request_retries,
                show_default=True,
                help="Retries of one S3 request (a part, a PUT) within an attempt.",
            ),
            option(
                "--checksum",
                envvar=f"{env_prefix}_CHECKSUM",
                type=click.Choice(CHECKSUM_MODES),
                default=d.checksum,
                show_default=True,
                help="How each request proves its bytes: auto (CRC32 while the store proves it, else MD5), md5, crc32.",
            ),
            option(
                "--compress-level",
                envvar=f"{env_prefix}_COMPRESS_LEVEL",
                type=click.IntRange(0, 22),
                help="Compression level (default: the codec's fast level).",
            ),
            option(
                "--connect-timeout",
                envvar=f"{env_prefix}_CONNECT_TIMEOUT",
                type=click.FloatRange(0, min_open=True),
                default=d.connect_timeout_s,
                show_default=True,
                metavar="SECONDS",
                help="Wait for a TCP connection to the store.",
            ),
            option(
                "--read-timeout",
                envvar=f"{env_prefix}_READ_TIMEOUT",
                type=click.FloatRange(0, min_open=True),
                default=d.read_timeout_s,
                show_default=True,
                metavar="SECONDS",
                help="Wait for the next bytes of an answer.",
            ),
        )

    return decorate


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
    "option",
    "s3_options",
    "s3_options_for",
    "s3_settings",
    "transfer_options_for",
    "transfer_settings",
]
