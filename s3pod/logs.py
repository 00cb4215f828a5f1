"""Log records as text or JSON lines, one line per job outcome, and no secret ever written.

``configure_logging`` is what the ``s3pod`` command calls (the only place handlers are
set up). Structured fields travel in ``extra={"fields": {...}}``: the JSON formatter
writes them as keys of the object, the text formatter as ``key=value`` after the message.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
from typing import Any, Iterable, Literal

from .events import Outcome, OutcomeKind

logger = logging.getLogger(__name__)

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[str, ...] = ("text", "json")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

#: ``scheme://user:password@host`` → ``scheme://user:***@host``
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@\s/]+(?=@)")
#: ``?password=...`` or ``&password=...`` in a URL's query string
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&](?:password|passwd|secret|token)=)[^&\s]+", re.IGNORECASE)

REDACTED = "***"

_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Return ``text`` with each secret, and any password in a URL, replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + REDACTED, text)
    return _QUERY_PASSWORD.sub(lambda m: m.group("head") + REDACTED, text)


class RedactingFilter(logging.Filter):
    """Rewrites every record passing a handler so that no secret reaches the output.

    Attach it to handlers, not loggers: a logger's filters do not see records that
    propagate from child loggers (``s3pod.worker``, ``botocore``...).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Longest first, so a secret containing another is replaced whole.
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = redact(message, self.secrets)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
            record.exc_info = None  # the redacted text is what gets written
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            record.fields = {k: redact(v, self.secrets) if isinstance(v, str) else v
                             for k, v in fields.items()}
        return True


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return dict(fields) if isinstance(fields, dict) else {}


class TextFormatter(logging.Formatter):
    """``time LEVEL logger message key=value...`` on one line (tracebacks included)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = _fields(record)
        if fields and not getattr(record, "fields_in_message", False):
            line += " " + " ".join(f"{k}={_text_value(v)}" for k, v in fields.items())
        # One record, one line: journald and grep see a traceback as part of its record.
        return line.replace("\n", "\\n")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message``, the fields, ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _fields(record).items():
            data.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            data["exc"] = record.exc_text
        return json.dumps(data, default=str, ensure_ascii=False)


def make_formatter(log_format: str) -> logging.Formatter:
    """Return the formatter for ``text`` or ``json``."""
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return TextFormatter()
    raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")


def configure_logging(level: str = "INFO", log_format: str = "text", log_file: str | None = None,
                      secrets: Iterable[str] = ()) -> logging.Handler:
    """Send every record to stderr (or ``log_file``), formatted and redacted; return the handler.

    Replaces the root logger's handlers, so calling it twice (after daemonizing, say)
    does not double the lines.
    """
    handler: logging.Handler
    if log_file:
        handler = logging.FileHandler(log_file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(make_formatter(log_format))
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper())
    # boto's DEBUG output includes signed headers; keep it out even at DEBUG.
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, root.level))
    return handler


class OutcomeLogger:
    """A Listener that logs one line per job outcome, with its fields.

    ``uploaded`` is INFO, ``retry`` WARNING, ``dead`` and ``invalid`` ERROR.
    """

    LEVELS = {
        OutcomeKind.UPLOADED: logging.INFO,
        OutcomeKind.RETRY: logging.WARNING,
        OutcomeKind.DEAD: logging.ERROR,
        OutcomeKind.INVALID: logging.ERROR,
    }

    def __init__(self, log: logging.Logger | None = None) -> None:
        self.log = log or logging.getLogger("s3pod.jobs")

    def on_outcome(self, outcome: Outcome) -> None:
        fields: dict[str, Any] = {
            "event": outcome.kind.value,
            "job": outcome.job_id,
            "bucket": outcome.bucket,
            "key": outcome.key,
            "bytes": outcome.bytes_sent,
            "duration_s": round(outcome.duration_s, 3),
            "attempt": outcome.attempt,
        }
        if outcome.error:
            fields["error"] = outcome.error
        message = " ".join([outcome.kind.value] + [f"{k}={_text_value(v)}" for k, v in fields.items()
                                                   if k != "event"])
        self.log.log(self.LEVELS[outcome.kind], "%s", message,
                     extra={"fields": fields, "fields_in_message": True})


def _text_value(value: Any) -> str:
    text = "-" if value is None else str(value)
    return json.dumps(text) if (not text or any(c.isspace() or c in '"=' for c in text)) else text
