"""Relay results for people and programs: the JSON shape and the text table of ``probe``.
Both show text only through ``peertext.visible``: whatever reached a result, a terminal gets
no control character and a JSON parser no lone surrogate."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from exporter.model import Phase
from exporter.peertext import visible
from exporter.relay.result import RelayResult

__all__ = ["format_table", "iso_time", "result_to_dict", "status_word"]


def iso_time(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_word(result: RelayResult) -> str:
    if result.success:
        return f"ok (saw {result.expected.value})" if result.expected else "ok"
    return "FAIL"


def result_to_dict(result: RelayResult, *, transcript: bool = True) -> dict[str, Any]:
    """The JSON object of one probe: stable keys, seconds for durations, RFC 3339 times.
    Every string in it has been through ``visible``; the keys are the product's own."""
    tls = result.tls
    out: dict[str, Any] = {
        "relay": _shown(result.relay),
        "success": result.success,
        "reason": result.reason.value if result.reason else None,
        "hint": _shown(result.hint),
        "cause": _shown(result.cause),
        "detail": _shown(result.detail),
        "reply": _shown(result.reply),
        "failed_phase": result.failed_phase.value if result.failed_phase else None,
        "expected": result.expected.value if result.expected else None,
        "observed": result.observed.value if result.observed else None,
        "started_at": iso_time(result.started_at),
        "duration": round(result.duration, 6),
        "phases": {p.value: round(s, 6) for p, s in result.phases.items()},
        "tls": None if tls is None else {
            "version": _shown(tls.version),
            "cipher": _shown(tls.cipher),
            "verified": tls.verified,
            "not_after": iso_time(tls.not_after),
            "not_after_timestamp": tls.not_after,
            "issuer": _shown(tls.issuer),
            "subject": _shown(tls.subject),
        },
        "auth_mechanisms": [_shown(m) for m in result.auth_mechanisms],
    }
    if transcript:
        out["transcript"] = [
            {"t": line.offset, "dir": _shown(line.direction), "line": _shown(line.text)}
            for line in result.transcript
        ]
    return out


def _shown(text: str | None) -> str | None:
    """``text`` through ``visible``; printable ASCII, nearly every string, is kept as it is."""
    if text is None or (text.isascii() and text.isprintable()):
        return text
    return visible(text)


_TABLE_PHASES = [p for p in Phase if p is not Phase.DATA]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def _expiry(result: RelayResult, now: float) -> str:
    tls = result.tls
    if tls is None or tls.not_after is None:
        return "-"
    days = (tls.not_after - now) / 86400
    return f"{iso_time(tls.not_after)[:10]} ({days:.0f}d)"  # type: ignore[index]


def format_table(results: Sequence[RelayResult], *, transcript: bool = False) -> str:
    """A fixed-width table, one row per relay, then the hint and reply of each failure."""
    now = time.time()
    header = ["RELAY", "RESULT", "REASON", *(f"{p.value}_ms" for p in _TABLE_PHASES), "TLS",
              "CERT_EXPIRES"]
    rows = [header]
    for r in results:
        rows.append([
            visible(r.relay),
            status_word(r),
            r.reason.value if r.reason else "-",
            *(_ms(r.phases.get(p)) for p in _TABLE_PHASES),
            visible(r.tls.version) if r.tls else "-",
            _expiry(r, now),
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    for r in results:
        if r.success and not transcript:
            continue
        lines.append("")
        lines.append(f"{visible(r.relay)}: {status_word(r)}"
                     + (f" {r.reason.value}" if r.reason else ""))
        for label, value in (("phase", r.failed_phase and r.failed_phase.value),
                             ("hint", r.hint), ("cause", r.cause),
                             ("detail", r.detail), ("reply", r.reply)):
            if value:
                lines.append(f"  {label}: {visible(value)}")
        if transcript or not r.success:
            lines.append("  transcript:")
            lines.extend(f"    {t.offset * 1000:9.1f}ms {t.direction}: {visible(t.text)}"
                         for t in r.transcript)
    return "\n".join(lines) + "\n"
