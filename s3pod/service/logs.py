"""Log records as text or JSON lines, and no secret ever written.

``configure_logging`` is what the ``s3pod`` command calls (the only place handlers are
set up). s3pod's log lines have a fixed shape, a verb then ``key=%s`` fields with %-args
(``"uploaded job=%s bucket=%s key=%s bytes=%d duration=%.3fs attempt=%d"``): the JSON
formatter turns each ``key=%x`` of the template into a field holding its argument, typed
(``"bytes": 1024``, ``"duration": 0.25``), so each job transition the worker logs is one
parseable line without a second logging call. More fields may come in
``extra={"fields": {...}}``: JSON gets them as keys, text as ``key=value`` at the end.

No thread that logs waits for another one's write (:class:`CombiningStreamHandler`): a
record is handed to the thread writing, if one is.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import logging
import os
import re
import sys
import threading
import weakref
from collections.abc import Iterable
from typing import Any, TextIO

from s3po_client.redaction import redact

logger = logging.getLogger(__name__)

LOG_FORMATS: tuple[str, ...] = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
#: one %-conversion of a log template, with the ``key=`` right before it when there is one
_CONVERSION = re.compile(
    r"(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)=)?%(?P<spec>[-#0 +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[diouxXeEfFgGcrsa%])"
)


def template_fields(record: logging.LogRecord) -> dict[str, Any]:
    """Return ``{key: argument}`` for each ``key=%x`` in the record's template.

    Numbers and booleans keep their type; anything else becomes its ``str``.
    """
    args = record.args
    if not isinstance(args, tuple) or not isinstance(record.msg, str):
        return {}
    found: dict[str, Any] = {}
    for name, index in _template_names(record.msg):
        if index >= len(args):
            break
        value = args[index]
        found[name] = value if value is None or isinstance(value, (bool, int, float)) else str(value)
    return found


#: template → its (field name, argument index) pairs: a daemon logs a few dozen templates,
#: millions of times each, so each is parsed once
_TEMPLATES: dict[str, tuple[tuple[str, int], ...]] = {}
_TEMPLATES_MAX = 1024


def _template_names(template: str) -> tuple[tuple[str, int], ...]:
    names = _TEMPLATES.get(template)
    if names is not None:
        return names
    pairs: list[tuple[str, int]] = []
    index = 0
    for match in _CONVERSION.finditer(template):
        spec = match.group("spec")
        if spec == "%":
            continue
        if "*" in spec:
            break  # a width taken from the arguments: stop pairing rather than guess
        if match.group("name"):
            pairs.append((match.group("name"), index))
        index += 1
    names = tuple(pairs)
    if len(_TEMPLATES) < _TEMPLATES_MAX:  # a template built per call (an f-string) is parsed each time
        _TEMPLATES[template] = names
    return names


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """Return the fields passed with ``extra={"fields": {...}}``."""
    fields = getattr(record, "fields", None)
    return dict(fields) if isinstance(fields, dict) else {}


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """Return every field of a record: its template's, then its extra ones."""
    fields = getattr(record, "all_fields", None)  # set by RedactingFilter, already redacted
    if isinstance(fields, dict):
        return dict(fields)
    return {**template_fields(record), **extra_fields(record)}


class RedactingFilter(logging.Filter):
    """Rewrites every record passing a handler so that no secret reaches the output.

    Attach it to handlers, not loggers: a logger's filters do not see records that
    propagate from child loggers (``s3pod.loop``, ``botocore``...).
    """

    def __init__(self, secrets: Iterable[str] = (), *, template_fields: bool = True) -> None:
        super().__init__()
        # Longest first, so a secret containing another is replaced whole. Very short
        # "secrets" would blank ordinary words; they are not worth hiding anyway.
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
        #: whether the formatter writes the template's fields apart (JSON); text has them in the message
        self.template_fields = template_fields

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "redacted", False):
            return True  # done already (a record can pass several handlers)

        def clean(fields: dict[str, Any]) -> dict[str, Any]:
            return {k: redact(v, self.secrets) if isinstance(v, str) else v for k, v in fields.items()}

        # Fields first, from the arguments as given (typed); then the message, formatted once.
        # Without template fields, only the extra ones are kept: the message carries the rest.
        record.all_fields = clean(record_fields(record) if self.template_fields else extra_fields(record))
        record.redacted = True
        if isinstance(getattr(record, "fields", None), dict):
            record.fields = clean(extra_fields(record))
        record.msg = redact(record.getMessage(), self.secrets)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
            record.exc_info = None  # the redacted text is what gets written
        return True


class TextFormatter(logging.Formatter):
    """``time LEVEL logger message key=value...`` on one line, traceback included."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = extra_fields(record)  # the template's fields are in the message already
        if fields:
            line += " " + " ".join(f"{k}={_text_value(v)}" for k, v in fields.items())
        # One record, one line: journald and grep keep a traceback with its record.
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
        for key, value in record_fields(record).items():
            data.setdefault(key, value)  # a field never hides ts, level, logger or message
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


def configure_logging(
    level: str = "INFO", log_format: str = "text", log_file: str | None = None, secrets: Iterable[str] = ()
) -> logging.Handler:
    """Send every record to stderr (or ``log_file``), formatted and redacted; return the handler.

    Replaces the root logger's handlers, so calling it again (after daemonizing, say)
    does not double the lines.
    """
    if log_file:
        handler = CombiningStreamHandler(open(log_file, "a", encoding="utf-8"), owns_stream=True)  # noqa: SIM115
    else:
        handler = CombiningStreamHandler(sys.stderr)
    handler.setFormatter(make_formatter(log_format))
    handler.addFilter(RedactingFilter(secrets, template_fields=log_format == "json"))
    # Neither format writes a process id or name: no getpid() and no lookup for them per record.
    logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    set_level(level)
    return handler


def set_level(level: str) -> None:
    """Log records of ``level`` and above (``INFO``, any case); the libraries' own at INFO and above."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    # botocore's DEBUG output includes request headers; keep libraries at INFO and above.
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, root.level))


_LIVE: weakref.WeakSet[CombiningStreamHandler] = weakref.WeakSet()


class CombiningStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes records to ``stream`` without making a thread that logs wait for another one's write.

    Sixteen job threads writing through one handler queue on its lock while each write
    runs: a fifth of a busy daemon's samples, and a thread switch a line. Here a record is
    filtered (redacted) by the thread that logs it, so what is written is fixed then, and
    appended to a list; the thread then writes every record listed, in one write, unless
    another thread is writing, in which case that one writes it right after its own: it
    looks at the list again each time it lets go of the writing. So a line is in the
    stream when the call returns, unless another thread's write was running, and then a
    moment later; lines keep the order in which they were logged. ``owns_stream``:
    :meth:`close` closes the stream (a log file).
    """

    def __init__(self, stream: TextIO, *, owns_stream: bool = False) -> None:
        super().__init__(stream)
        self.owns_stream = owns_stream
        self._pending: collections.deque[logging.LogRecord] = collections.deque()
        self._writing = threading.Lock()
        _LIVE.add(self)

    def handle(self, record: logging.LogRecord) -> bool:
        passed = self.filter(record)
        if passed:
            self._pending.append(record)  # first, then try: see _write_pending
            self._write_pending(wait=False)
        return bool(passed)

    def flush(self) -> None:
        self._write_pending(wait=True)

    def close(self) -> None:
        self._write_pending(wait=True)
        if self.owns_stream and not self.stream.closed:
            self.stream.close()
        super().close()

    def _write_pending(self, wait: bool) -> None:
        """Write every record listed; without ``wait``, leave them to a thread writing already.

        Whoever writes looks at the list again after letting go, so a record appended while
        it wrote (whose thread found the writing taken) is never left behind.
        """
        pending = self._pending
        while pending or wait:
            if not self._writing.acquire(blocking=wait):
                return
            try:
                lines: list[str] = []
                last: logging.LogRecord | None = None
                while pending:
                    last = pending.popleft()
                    try:
                        lines.append(self.format(last) + self.terminator)
                    except Exception:  # noqa: BLE001 - as logging does: said on stderr, the daemon goes on
                        self.handleError(last)
                if lines and last is not None and not self.stream.closed:
                    try:
                        self.stream.write("".join(lines))
                        self.stream.flush()
                    except Exception:  # noqa: BLE001 - as above, told with the last record of the write
                        self.handleError(last)
            finally:
                self._writing.release()
            wait = False


def _after_fork_in_child() -> None:
    # A thread of the parent's may have held the writing at the fork, and the records listed
    # are the parent's to write: the child starts with a free lock and an empty list.
    for handler in list(_LIVE):
        handler._writing = threading.Lock()
        handler._pending.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _text_value(value: Any) -> str:
    text = "-" if value is None else str(value)
    return json.dumps(text) if (not text or any(c.isspace() or c in '"=' for c in text)) else text
