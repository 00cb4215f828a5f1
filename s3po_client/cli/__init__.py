"""The ``s3po`` command: move files to and from S3 now, queue them for s3pod, look after the queue.

=============  ==============================================================
``upload``     ``s3po upload``: files, trees, standard input; delete once verified
``download``   ``s3po download`` (an object or a prefix) and ``s3po ls``
``jobs``       ``s3po enqueue``, ``s3po status``, ``s3po dead``: jobs for s3pod
``top``        ``s3po top``: the queue, its workers and uploads in flight, live
``batch``      many transfers at once (``--jobs``), stopped cleanly by Ctrl-C
``tree``       S3 URLs, directory walks, ``--exclude``/``--include``
``output``     records, ``--json``, progress bars, one-line errors
``options``    the shared options and their ``S3PO_*`` variables
=============  ==============================================================
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import click

from .. import __version__
from .download import download, ls
from .jobs import dead, enqueue_command, status
from .top import top
from .upload import upload

HELP = """Move files to and from S3 (and S3-compatible stores): verified, compressed on
the way if asked, multipart and parallel; or queue them for the s3pod daemon.

\b
Examples:
  s3po upload report.csv s3://my-bucket/reports/    # then deletes report.csv; --keep keeps it
  s3po upload --keep logs/ s3://my-bucket/logs/ --compress gzip --exclude '*.tmp'
  s3po download s3://my-bucket/logs/ ./logs
  s3po ls s3://my-bucket/logs/
  s3po enqueue /var/spool/app/ s3://my-bucket/spool/ # for s3pod
  s3po status

Every option can be set in the environment too: S3PO_<OPTION> for options shared by
commands (S3PO_ENDPOINT_URL, S3PO_KEEP, S3PO_JOBS, ...), S3PO_<COMMAND>_<OPTION>
for the others (S3PO_DOWNLOAD_RAW). Exit status: 0 done, 1 something failed,
2 bad usage, 130 interrupted.
"""


@click.group(help=HELP, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="s3po")
def cli() -> None:
    pass


cli.add_command(upload)
cli.add_command(download)
cli.add_command(ls)
cli.add_command(enqueue_command)
cli.add_command(status)
cli.add_command(dead)
cli.add_command(top)


def main(argv: Sequence[str] | None = None) -> None:
    """Run ``s3po``; every error is one line on standard error (a traceback only with --debug)."""
    state: dict[str, Any] = {"debug": os.environ.get("S3PO_DEBUG", "").lower() in ("1", "true", "yes", "on")}
    args = list(argv) if argv is not None else sys.argv[1:]
    if os.environ.get("_S3PO_COMPLETE"):  # shell completion (README): click's own machinery
        cli.main(args=args, prog_name="s3po", auto_envvar_prefix="S3PO", obj=state)
    try:
        # make_context and invoke rather than cli.main: the errors below are ours to print, once
        with cli.make_context("s3po", args, obj=state, auto_envvar_prefix="S3PO") as ctx:
            cli.invoke(ctx)
    except click.exceptions.Exit as exc:  # --help, --version
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "s3po"
        click.echo(f"{where}: error: {exc.format_message()} (see '{where} --help')", err=True)
        sys.exit(exc.exit_code)
    except click.Abort as exc:
        if isinstance(exc.__context__, KeyboardInterrupt) or isinstance(exc.__cause__, KeyboardInterrupt):
            click.echo("s3po: interrupted", err=True)
            sys.exit(130)
        click.echo("s3po: aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        click.echo(f"s3po: error: {' '.join(exc.format_message().split())}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("s3po: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        # the reader went away (| head): nothing more to say, and nothing to flush at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001 - a bug: one line, or the traceback with --debug
        if state["debug"]:
            traceback.print_exc()
        else:
            click.echo(f"s3po: error: {type(exc).__name__}: {exc} (--debug for the traceback)", err=True)
        sys.exit(1)
    sys.exit(0)


__all__ = ["cli", "main"]
