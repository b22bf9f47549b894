"""Log lines: logfmt and JSON carry the structured fields a failure log needs, and never a raw
control character."""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import time
from collections.abc import Iterator

import pytest

from exporter.logs import JsonFormatter, LogfmtFormatter, logging_thread, setup_logging


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord("exporter.scheduler", logging.WARNING, __file__, 1,
                               "probe failed", None, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_logfmt_quotes_values_with_spaces_and_keeps_plain_ones_bare() -> None:
    """logfmt: level warn, plain values bare, values with spaces or quotes quoted and escaped."""
    line = LogfmtFormatter().format(_record(relay="sendgrid", reason="auth_failed",
                                            reply='535 5.7.8 "bad" credentials'))
    assert 'level=warn logger=exporter.scheduler msg="probe failed"' in line
    assert "relay=sendgrid reason=auth_failed" in line
    assert 'reply="535 5.7.8 \\"bad\\" credentials"' in line
    assert "\n" not in line


def test_json_lines_parse_and_skip_empty_fields() -> None:
    """JSON: one object per line with the extra fields; fields that are None are left out."""
    line = JsonFormatter().format(_record(relay="r1", hint=None, duration=0.25))
    doc = json.loads(line)
    assert doc["msg"] == "probe failed"
    assert doc["level"] == "warn"
    assert doc["relay"] == "r1"
    assert doc["duration"] == 0.25
    assert "hint" not in doc
    assert doc["ts"].endswith("Z")


RAW = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def test_controls_c1_and_lone_surrogates_are_escaped_in_both_formats() -> None:
    """ESC, BEL, the 8-bit CSI (U+009B), U+2028, a bidi override and a lone surrogate in a
    message or a field: neither format writes them raw, and each line is valid UTF-8."""
    hostile = "220 \x1b]0;title\x07 \x9b31m red \u2028 next \u202e esrever \udcff end"
    record = _record(reply=hostile)
    record.msg = hostile
    for line in (LogfmtFormatter().format(record), JsonFormatter().format(record)):
        assert not RAW.search(line), repr(line)
        line.encode("utf-8")
        assert "\\u009b31m" in line and "\\u001b]0;title\\u0007" in line
        assert "\\u2028" in line and "\\u202e" in line and "\ufffd" in line
    doc = json.loads(JsonFormatter().format(record))
    assert doc["reply"] == doc["msg"] == hostile.replace("\udcff", "\ufffd")


class StuckStream(io.StringIO):
    """stderr as a full pipe: each write waits until the test lets it through (at most 5 s)."""

    def __init__(self) -> None:
        super().__init__()
        self.open = threading.Event()

    def write(self, text: str) -> int:
        self.open.wait(timeout=5)
        return super().write(text)


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Puts the root logger back as it was after a test that set it up."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_a_stuck_stderr_does_not_hold_up_the_logging_caller(
    monkeypatch: pytest.MonkeyPatch, root_logging: None,
) -> None:
    """In the daemon a log call returns at once while stderr does not take writes; the line
    is written, in the configured format, once stderr moves again, and every queued line is
    out when the daemon stops."""
    stream = StuckStream()
    monkeypatch.setattr("sys.stderr", stream)
    setup_logging("info", "json")
    with logging_thread():
        started = time.monotonic()
        logging.getLogger("exporter.relay.scheduler").warning(
            "probe failed", extra={"relay": "r1", "reason": "timeout"})
        assert time.monotonic() - started < 1  # not the 5 s the write waits
        assert stream.getvalue() == ""
        stream.open.set()
    doc = json.loads(stream.getvalue())
    assert (doc["msg"], doc["level"], doc["relay"]) == ("probe failed", "warn", "r1")
    assert doc["logger"] == "exporter.relay.scheduler"
