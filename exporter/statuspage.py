"""The status page at ``/``: each relay, its last result, the transcript of its last failure."""

from __future__ import annotations

import time
from html import escape

from exporter import __version__
from exporter.report import iso_time, status_word
from exporter.results import Phase, RelayResult
from exporter.store import RelayView, Snapshot

__all__ = ["render_status_page"]

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border-bottom:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1a7f37;font-weight:600}.fail{color:#cf222e;font-weight:600}.wait{color:#777}
.warn{background:#fff8c5;padding:.4em .8em;border-left:4px solid #d4a72c;margin:.3em 0}
pre{background:#f6f8fa;padding:.6em;overflow:auto;font-size:12px}
small{color:#666}
"""


def _phase_cells(result: RelayResult | None) -> str:
    cells = []
    for phase in Phase:
        value = result.phases.get(phase) if result else None
        cells.append(f'<td class="num">{"" if value is None else f"{value * 1000:.1f}"}</td>')
    return "".join(cells)


def _status_cell(view: RelayView) -> str:
    last = view.last
    if last is None:
        return '<td class="wait">waiting for first probe</td>'
    css = "ok" if last.success else "fail"
    return f'<td class="{css}">{escape(status_word(last))}</td>'


def _tls_cell(view: RelayView, now: float) -> str:
    tls = view.tls
    if tls is None:
        return "<td></td>"
    text = f"{tls.version}"
    if tls.not_after is not None:
        text += f", expires {iso_time(tls.not_after)} ({(tls.not_after - now) / 86400:.0f} days)"
    if not tls.verified:
        text += ", <b>not verified</b>"
        return f"<td>{escape(text).replace('&lt;b&gt;', '<b>').replace('&lt;/b&gt;', '</b>')}</td>"
    return f"<td>{escape(text)}</td>"


def _relay_row(name: str, view: RelayView, now: float) -> str:
    last = view.last
    i = view.info
    where = f"{i.host}:{i.port} {i.tls}" + (f" (preset {i.preset})" if i.preset else "")
    reason = last.reason.value if last and last.reason else ""
    hint = last.hint if last and last.reason else ""
    ago = f"{now - last.started_at:.0f}s ago" if last else ""
    verify = "" if i.tls_verify or i.tls == "none" else ' <b class="fail">tls_verify off</b>'
    return (
        f"<tr><td><b>{escape(name)}</b><br><small>{escape(where)}</small>{verify}</td>"
        f"{_status_cell(view)}<td>{escape(reason)}</td><td>{escape(hint or '')}"
        f"{'<br><small>' + escape(last.reply or '') + '</small>' if last and last.reason else ''}"
        f"</td>{_phase_cells(last)}{_tls_cell(view, now)}<td>{escape(ago)}<br>"
        f"<small>{view.probes} probes, {sum(view.failures.values())} failed</small></td></tr>"
    )


def _failure_section(name: str, failure: RelayResult) -> str:
    lines = "\n".join(
        f"{t.offset * 1000:9.1f}ms {t.direction}: {t.text}" for t in failure.transcript
    )
    reason = failure.reason.value if failure.reason else ""
    return (
        f'<h3 id="fail-{escape(name)}">{escape(name)}: last failure, {escape(reason)} at '
        f"{escape(iso_time(failure.started_at) or '')}</h3>"
        f"<p>{escape(failure.hint or '')}<br><small>{escape(failure.detail or '')}</small></p>"
        f"<pre>{escape(lines)}</pre>"
    )


def render_status_page(snap: Snapshot) -> str:
    """The whole page as one HTML string; every value from the config or a server is escaped."""
    now = time.time()
    rows = "".join(_relay_row(n, v, now) for n, v in sorted(snap.relays.items()))
    phase_heads = "".join(f"<th>{p.value} ms</th>" for p in Phase)
    warnings = "".join(f'<div class="warn">{escape(w)}</div>' for w in snap.warnings)
    reload = "" if snap.reload_ok else (
        '<div class="warn">The last configuration reload failed; the previous configuration '
        "is still running. See the log.</div>"
    )
    failures = "".join(
        _failure_section(n, v.last_failure)
        for n, v in sorted(snap.relays.items())
        if v.last_failure is not None
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="15">
<title>smtp-canary-exporter</title><style>{_CSS}</style></head><body>
<h1>smtp-canary-exporter</h1>
<p><small>version {escape(__version__)} · config {escape(snap.config_source)} · up
{now - snap.started_at:.0f}s · <a href="/metrics">metrics</a> ·
<a href="/status.json">status.json</a></small></p>
{reload}{warnings}
<h2>Relays</h2>
<table><tr><th>relay</th><th>result</th><th>reason</th><th>hint / reply</th>{phase_heads}
<th>TLS</th><th>last probe</th></tr>
{rows}</table>
<h2>Last failed probes</h2>
{failures or "<p>No probe has failed.</p>"}
</body></html>
"""
