"""Log lines as logfmt or JSON, with the structured fields passed through ``extra=``. Every
line is valid UTF-8 and holds no raw control character: C0 controls are JSON-escaped as
always, and DEL, C1 controls (the 8-bit CSI, U+009B, among them), line separators and
bidirectional overrides too (``\\u009b``); lone surrogates become U+FFFD."""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import re
import sys
import time
from collections.abc import Iterator
from logging.handlers import QueueHandler, QueueListener
from typing import Any

__all__ = ["LEVELS", "logging_thread", "setup_logging"]

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
          "error": logging.ERROR}
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_LEVEL_NAMES = {"WARNING": "warn", "CRITICAL": "error"}
# What json.dumps(ensure_ascii=False) leaves raw that a terminal or a line reader acts on.
_RAW = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_SURROGATES = re.compile("[\ud800-\udfff]")


def _json(value: Any) -> str:
    """``value`` as JSON text with no raw control character and no lone surrogate. Outside
    its strings JSON text is ASCII, so the characters replaced here are all inside strings,
    where ``\\u009b`` is a valid escape."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    text = _SURROGATES.sub("\ufffd", text)
    return _RAW.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        + f".{int(record.msecs):03d}Z",
        "level": _LEVEL_NAMES.get(record.levelname, record.levelname.lower()),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    for key, value in vars(record).items():
        if key not in _STANDARD and not key.startswith("_") and value is not None:
            out[key] = value
    if record.exc_info and record.exc_info[0] is not None:
        out["exc"] = f"{record.exc_info[0].__name__}: {record.exc_info[1]}"
    return out


def _logfmt_value(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' ="\\') or not text.isprintable():
        return _json(text)
    return text


class LogfmtFormatter(logging.Formatter):
    """``ts=... level=warn msg="probe failed" relay=x reason=auth_failed``"""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={_logfmt_value(v)}" for k, v in _fields(record).items())


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        return _json(_fields(record))


def setup_logging(level: str = "info", fmt: str = "logfmt") -> None:
    """Configure the root logger to write to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS.get(level, logging.INFO))
    logging.getLogger("asyncio").setLevel(max(logging.WARNING, root.level))
    # aiosmtpd (the demo relay) logs every session and its own deprecations under mail.log.
    logging.getLogger("mail.log").setLevel(logging.ERROR)


class _FormattingQueueHandler(QueueHandler):
    """Formats each line on the caller's thread and queues the finished text."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return logging.makeLogRecord({"msg": self.format(record), "name": record.name,
                                      "levelno": record.levelno,
                                      "levelname": record.levelname})


@contextlib.contextmanager
def logging_thread() -> Iterator[None]:
    """While inside, lines are written to stderr by a thread of their own: the event loop only
    formats a line, and a stderr that blocks (a full pipe, a slow log collector) cannot hold
    up the probes. Leaving writes every queued line first. Does nothing unless the root
    logger has the one stream handler ``setup_logging`` gave it."""
    root = logging.getLogger()
    originals = root.handlers[:]
    original = originals[0] if len(originals) == 1 else None
    if not isinstance(original, logging.StreamHandler):
        yield
        return
    lines: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    front = _FormattingQueueHandler(lines)
    front.setFormatter(original.formatter)
    front.setLevel(original.level)
    writer = logging.StreamHandler(original.stream)
    writer.setFormatter(logging.Formatter("%(message)s"))
    listener = QueueListener(lines, writer)
    listener.start()
    root.handlers[:] = [front]
    try:
        yield
    finally:
        root.handlers[:] = originals
        listener.stop()
