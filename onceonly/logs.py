"""Structured logs: one JSON object per line, the change's identity on it, and no secret in it.

Operators search logs by event id and holder ("what happened to this change at the tax office?"), so every line
written while a change is handled carries them: pass them as ``extra=`` or open a ``log_context(...)`` once.
Secrets reach log calls by accident (a config dict, a URL with a password, an exception text), so redaction runs
on every line, whatever the caller passed.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import IO, Any

from pydantic import SecretBytes, SecretStr

REDACTED = "***"

# Fields every change-related line carries (null when unknown), so a log query never has to guess the key.
CHANGE_FIELDS = ("event_id", "holder", "topic")

_SECRET_KEY = re.compile(
    r"(^|[_.-])(pass(word|wd|phrase)?|pwd|secret|token|credentials?|authorization)([_.-]|$)|api[_.-]?keys?|private[_.-]?key"
)
_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # key=value and key: value forms: password=..., sasl.password: '...', "api_key": "..."
    (
        re.compile(
            r"""(?P<k>["']?[\w.-]*(?:pass(?:word|wd|phrase)?|secret|token|api[_.-]?key|credential)["']?\s*[=:]\s*)"""
            r"""(?P<q>["']?)(?P<v>(?:SecretStr\(')?[^\s"',;)}\]]+)"""
        ),
        rf"\g<k>\g<q>{REDACTED}",
    ),
    # JAAS: ... password="s3cret";
    (re.compile(r'(password\s*=\s*")[^"]*(")'), rf"\g<1>{REDACTED}\g<2>"),
    # URLs with credentials: redis://:pw@host, postgresql://user:pw@host
    (re.compile(r"(\b[a-zA-Z][\w+.-]*://[^/\s:@]*:)[^@\s]+(@)"), rf"\g<1>{REDACTED}\g<2>"),
    # HTTP auth headers
    (re.compile(r"(?i)(authorization\s*[:=]\s*(?:bearer|basic)\s+)[\w.~+/=-]+"), rf"\g<1>{REDACTED}"),
    (re.compile(r"(?i)(x-api-key\s*[:=]\s*)[\w.~+/=-]+"), rf"\g<1>{REDACTED}"),
    # API keys in the platform's own format (onceonly.signing.generate_api_key), wherever they appear
    (re.compile(r"\b(ook_[0-9a-f]{12}_)[\w-]+"), rf"\g<1>{REDACTED}"),
)

_context: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "onceonly_log_context", default=None
)


def _current() -> Mapping[str, Any]:
    return _context.get() or {}


# Attributes every LogRecord has; anything else on a record came from ``extra=`` or from ``log_context``.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "taskName"}


def redact(text: str) -> str:
    """``text`` with every secret-looking value replaced by ``***``."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def is_secret_key(name: str) -> bool:
    """True for field names that hold secrets (``sasl.password``, ``api_key``, ``ssl_key_password`` ...)."""
    return bool(_SECRET_KEY.search(name.lower()))


def redact_value(value: Any, key: str = "") -> Any:
    """A JSON-ready copy of ``value``: secret-named keys masked, strings scrubbed, nested containers walked."""
    if key and is_secret_key(key) and value is not None:
        return REDACTED
    if isinstance(value, SecretStr | SecretBytes):
        return REDACTED
    if isinstance(value, Mapping):
        return {str(k): redact_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(v) for v in value]
    if isinstance(value, bytes):
        return redact(value.decode("utf-8", "backslashreplace"))
    if isinstance(value, str | int | float | bool) or value is None:
        return redact(value) if isinstance(value, str) else value
    return redact(str(value))


def change_fields(
    event_id: str | None = None,
    holder: str | None = None,
    topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
    **more: Any,
) -> dict[str, Any]:
    """``extra=`` for a line about one change; built only where such a line is logged, so the hot path pays nothing.

    Unknown (None) fields are left out, so they do not hide what a ``log_context`` around the line says.
    """
    fields = {"event_id": event_id, "holder": holder, "topic": topic, "partition": partition, "offset": offset}
    return {k: v for k, v in {**fields, **more}.items() if v is not None}


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Attach fields (event_id, holder, topic, ...) to every line logged inside the block, in this task/thread."""
    token = _context.set({**_current(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


_NOISE = frozenset({"color_message"})  # uvicorn's copy of the message with terminal colour codes


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {
        k: v for k, v in record.__dict__.items() if k not in _STANDARD and k not in _NOISE and not k.startswith("_")
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the change fields, every extra field."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        fields = {**{f: None for f in CHANGE_FIELDS}, **_current(), **_extras(record)}
        for key, value in fields.items():
            doc.setdefault(key, redact_value(value, key))
        if record.exc_info:
            doc["exception"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            doc["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(doc, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The human format for a terminal, with the same fields appended as ``key=value`` and the same redaction."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = {**_current(), **_extras(record)}
        if fields:
            line += " " + " ".join(f"{k}={redact_value(v, k)}" for k, v in fields.items())
        return redact(line)


_HANDLER_MARK = "_onceonly_handler"


def configure_logging(
    level: int | str = "INFO", *, json: bool = True, stream: IO[str] | None = None
) -> logging.Handler:
    """Send the root logger to ``stream`` (stderr) as JSON lines (or text); calling it again replaces, not adds."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, _HANDLER_MARK, False):
            root.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if json else TextFormatter())
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler


def configure_service_logging(log_format: str = "auto", level: str = "INFO") -> logging.Handler:
    """How every long-running service logs: JSON lines for collectors, text when a person watches a terminal."""
    as_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    handler = configure_logging(level, json=as_json)
    for noisy in ("httpx", "httpcore", "kafka", "aiokafka", "faust", "mode"):  # their INFO is lifecycle chatter
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    return handler
