"""Log lines: logfmt and JSON carry the structured fields a failure log needs."""

from __future__ import annotations

import json
import logging

from exporter.logs import JsonFormatter, LogfmtFormatter


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
