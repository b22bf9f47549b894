"""The status page at ``/``: each relay, its last result, the transcript of its last failure;
one page of relays at a time, failing ones first, filtered by the query string."""

from __future__ import annotations

import time
from html import escape
from urllib.parse import quote

from exporter import __version__
from exporter.canary import CanarySnapshot, DeliveryPath
from exporter.dns import DNSSnapshot, DomainReport, RelayDNSReport
from exporter.model import Phase
from exporter.relay import RelayResult, RelayView, Snapshot, iso_time, status_word
from exporter.web.charts import latency_chart, phase_chart, phase_legend
from exporter.web.relaylist import STATES, PageQuery, RelayPage, select_relays

__all__ = ["render_status_page"]

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border-bottom:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1a7f37;font-weight:600}.fail{color:#cf222e;font-weight:600}.wait{color:#777}
.warnc{color:#9a6700;font-weight:600}
.warn{background:#fff8c5;padding:.4em .8em;border-left:4px solid #d4a72c;margin:.3em 0}
pre{background:#f6f8fa;padding:.6em;overflow:auto;font-size:12px}
small{color:#666}
form{margin:.5em 0}nav{margin:.5em 0}nav a,nav span{margin-right:.8em}
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
    cause = last.cause if last and last.reason else ""
    hint = last.hint if last and last.reason else ""
    ago = f"{now - last.started_at:.0f}s ago" if last else ""
    verify = "" if i.tls_verify or i.tls == "none" else ' <b class="fail">tls_verify off</b>'
    return (
        f"<tr><td><b>{escape(name)}</b><br><small>{escape(where)}</small>{verify}"
        f"<br>{phase_chart(list(view.recent))}</td>"
        f"{_status_cell(view)}<td>{escape(reason)}"
        f"{'<br><small>' + escape(cause) + '</small>' if cause else ''}</td>"
        f"<td>{escape(hint or '')}"
        f"{'<br><small>' + escape(last.reply or '') + '</small>' if last and last.reason else ''}"
        f"</td>{_phase_cells(last)}{_tls_cell(view, now)}<td>{escape(ago)}<br>"
        f"<small>{view.probes} probes, {sum(view.failures.values())} failed</small>"
        f"{_transcript_link(name) if view.last_failure else ''}</td></tr>"
    )


def _transcript_link(name: str) -> str:
    """To the relay's last failure below: with a hundred on a page, a long way down."""
    return f'<br><small><a href="#{escape(quote("fail-" + name))}">last failure</a></small>'


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


def _canary_section(canaries: CanarySnapshot | None, now: float) -> str:
    if canaries is None or not (canaries.pairs or canaries.mailboxes):
        return ""
    rows = []
    for (relay, mailbox), pair in sorted(canaries.pairs.items()):
        sender = canaries.senders.get(relay)
        send = sender.last if sender else None
        send_cell = "" if send is None else (
            '<span class="ok">sent</span>' if send.success else
            f'<span class="fail">{escape(send.reason.value if send.reason else "")}</span>'
            f"{'<br><small>' + escape(send.cause) + '</small>' if send.cause else ''}"
            f"<br><small>{escape(send.hint or '')}<br>{escape(send.reply or '')}</small>")
        last = pair.last
        if last is None:
            seen = '<td class="wait" colspan="4">no canary seen yet</td>'
        else:
            verdicts = " ".join(
                f'<span class="{_verdict_css(m, last.verdicts.get(m, "none"))}">'
                f"{m}={escape(last.verdicts.get(m, 'none'))}</span>"
                for m in ("spf", "dkim", "dmarc", "arc"))
            aligned = "aligned" if last.dmarc_aligned else '<b class="fail">not aligned</b>'
            folder_css = "ok" if last.folder == "inbox" else "fail"
            receiver = ("" if last.receiver_delay is None
                        else f" (stored after {last.receiver_delay:.1f}s)")
            seen = (
                f"<td>{last.latency:.2f}s{escape(receiver)}<br><small>"
                f"{now - last.seen_at:.0f}s ago · {escape(last.token)}</small></td>"
                f'<td class="{folder_css}">{escape(last.folder)}<br>'
                f"<small>{escape(last.folder_name)}</small></td>"
                f"<td>{verdicts}<br>{aligned}</td>"
                f"<td><small>{escape(last.trusted_header or 'no trusted header')}</small></td>"
            )
        counts = ", ".join(f"{k} {v}" for k, v in sorted(pair.received.items())) or "none"
        rows.append(
            f"<tr><td><b>{escape(relay)}</b> → {escape(mailbox)}<br>"
            f"{latency_chart(pair.recent)}</td><td>{send_cell}</td>"
            f"{seen}<td><small>received {escape(counts)}; in flight {pair.in_flight}; "
            f"lost {pair.lost}; late {pair.late}</small></td></tr>")
        if last is not None and last.path is not None:
            rows.append(f'<tr><td colspan="7">{_path_line(last.path)}</td></tr>')
    boxes = []
    for name, box in sorted(canaries.mailboxes.items()):
        state = '<span class="ok">up</span>' if box.up else '<span class="fail">down</span>'
        idle = {True: "IDLE", False: "polling", None: "?"}[box.idle_supported]
        folders = ", ".join(f"{label}={folder}" for label, folder in box.folders)
        boxes.append(f"<tr><td><b>{escape(name)}</b></td><td>{state}</td><td>{idle}</td>"
                     f"<td>{escape(folders)}</td><td>{escape(box.error or '')}</td></tr>")
    state_warning = "" if canaries.state_error is None else (
        f'<div class="warn">Canary state not saved: {escape(canaries.state_error)}</div>')
    return (
        f"<h2>Canaries</h2>{state_warning}<table><tr><th>relay → mailbox</th><th>last send</th>"
        "<th>last delivery</th><th>folder</th><th>verdicts</th>"
        "<th>trusted Authentication-Results</th><th>counts</th></tr>"
        + "".join(rows) + "</table><h2>Mailboxes</h2><table><tr><th>mailbox</th><th>state</th>"
        "<th>watching</th><th>folders</th><th>last error</th></tr>" + "".join(boxes)
        + "</table>"
    )


def _path_line(path: DeliveryPath) -> str:
    """The hops in order, each with the time spent before it and a lock when it says TLS; a
    hop stamped before the one ahead shows its clock's lag, an unparsed one its raw header."""
    if not path.hops:
        return '<small class="wait">path: no Received header</small>'
    hops, unparsed = [], []
    for index, step in enumerate(path.hops, start=1):
        hop = step.hop
        tls = " ".join(x for x in (hop.tls_version, hop.tls_cipher) if x)
        lock = (f'<span title="{escape(tls or hop.with_ or "TLS")}">🔒</span>' if hop.encrypted
                else '<span class="warnc">open</span>')
        delay = "?" if step.delay is None else f"+{step.delay:.1f}s"
        skew = ("" if not step.skewed or step.raw_delay is None
                else f' <span class="fail">clock {step.raw_delay:+.1f}s</span>')
        name = hop.by or hop.from_ or "?"
        hops.append(f"{index} {escape(name)} <small>{escape(hop.with_ or '')}</small> "
                    f"{escape(delay)}{skew} {lock}")
        if hop.error is not None:
            unparsed.append(f"<br><small>hop {index} unparsed ({escape(hop.error)}): "
                            f"Received: {escape(hop.raw)}</small>")
    state = "encrypted" if path.encrypted else '<b class="warnc">not all TLS</b>'
    return (f"<small>path ({len(path.hops)} hops, {state}):</small> " + " → ".join(hops)
            + "".join(unparsed))


def _dns_section(dns: DNSSnapshot | None, shown: set[str]) -> str:
    """Every domain, and the relays of this page."""
    if dns is None or not (dns.domains or dns.relays):
        return ""
    rows = []
    reports: list[tuple[str, DomainReport | RelayDNSReport | None]] = [
        *sorted(dns.domains.items()),
        *sorted((name, report) for name, report in dns.relays.items() if name in shown)]
    for subject, report in reports:
        if report is None:
            rows.append(f'<tr><td><b>{escape(subject)}</b></td><td colspan="3" class="wait">'
                        "not checked yet</td></tr>")
            continue
        for check in report.checks:
            css = {"ok": "ok", "warning": "warnc", "error": "fail"}[check.status.value]
            what = check.check.value + "".join(f" {x}" for x in (check.selector, check.zone) if x)
            rows.append(f"<tr><td><b>{escape(subject)}</b></td><td>{escape(what)}</td>"
                        f'<td class="{css}">{escape(check.status.value)}</td>'
                        f"<td>{escape(check.message)}</td></tr>")
    return ("<h2>DNS</h2><table><tr><th>domain or relay</th><th>check</th><th>status</th>"
            "<th>what it found, and the fix</th></tr>" + "".join(rows) + "</table>")


def _where(snap: Snapshot) -> str:
    """Which exporter this is: its instance, the location it probes from, and its shard."""
    parts = []
    if snap.instance:
        parts.append(f"instance <b>{escape(snap.instance)}</b>")
    if snap.location:
        parts.append(f"location <b>{escape(snap.location)}</b>")
    if snap.shard.sharded:
        parts.append(f"shard <b>{snap.shard.index} of {snap.shard.total}</b>")
    return "".join(part + " · " for part in parts)


def _filter_form(query: PageQuery) -> str:
    """A GET form: the filter works without JavaScript, and the address can be shared."""
    options = "".join(
        f'<option value="{s}"{" selected" if s == query.state else ""}>{s}</option>'
        for s in STATES)
    clear = ' <a href="/">show all</a>' if query.filtered else ""
    return (f'<form method="get" action="/"><input type="search" name="q" size="30" '
            f'value="{escape(query.q)}" placeholder="relay name or host" aria-label="filter">'
            f' <select name="state" aria-label="state">{options}</select> '
            f'<button type="submit">Filter</button>{clear}</form>')


def _counts(page: RelayPage) -> str:
    """"12 failing of 10,000 relays; 230 match “mx”; showing 1 to 100"."""
    text = f"{page.failing:,} failing of {page.total:,} relays"
    if page.query.filtered:
        what = " and ".join(x for x in (
            f"state {page.query.state}" if page.query.state != "all" else "",
            f"“{page.query.q}”" if page.query.q else "") if x)
        text += f"; {page.matched:,} match {what}"
    shown = f"showing {page.first:,}&ndash;{page.last:,}" if page.rows else "none to show"
    return f"<p>{escape(text)}; {shown}</p>"


def _pager(page: RelayPage) -> str:
    """First, previous, next and last page links; each keeps the filter."""
    if page.pages == 1:
        return ""
    at, q = page.query.page, page.query
    links = [(1, "&laquo; first"), (at - 1, "&lsaquo; previous"), (at + 1, "next &rsaquo;"),
             (page.pages, "last &raquo;")]
    parts = [f'<a href="{escape(q.link(n))}">{label}</a>' if 1 <= n <= page.pages and n != at
             else f"<span>{label}</span>" for n, label in links]
    parts.insert(2, f"<span>page {at:,} of {page.pages:,}</span>")
    return f'<nav aria-label="pages">{"".join(parts)}</nav>'


def render_status_page(snap: Snapshot, canaries: CanarySnapshot | None = None,
                       dns: DNSSnapshot | None = None, *, query: str = "") -> str:
    """The whole page as one HTML string; every value from the config or a server is escaped.
    ``query`` is the request's query string: ``q``, ``state`` and ``page`` pick the relays."""
    now = time.time()
    page = select_relays(snap.relays, PageQuery.parse(query))
    rows = "".join(_relay_row(n, v, now) for n, v in page.rows)
    phase_heads = "".join(f"<th>{p.value} ms</th>" for p in Phase)
    warnings = "".join(f'<div class="warn">{escape(w)}</div>' for w in snap.warnings)
    reload = "" if snap.reload_ok else (
        '<div class="warn">The last configuration reload failed; the previous configuration '
        "is still running. See the log.</div>"
    )
    failures = "".join(
        _failure_section(n, v.last_failure) for n, v in page.rows if v.last_failure is not None
    )
    of_these = " of the relays above" if page.pages > 1 or page.query.filtered else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="15">
<title>smtp-canary-exporter</title><style>{_CSS}</style></head><body>
<h1>smtp-canary-exporter</h1>
<p><small>version {escape(__version__)} · {_where(snap)}config {escape(snap.config_source)} · up
{now - snap.started_at:.0f}s · <a href="/metrics">metrics</a> ·
<a href="/status.json">status.json</a></small></p>
{reload}{warnings}
<h2>Relays</h2>
{_filter_form(page.query)}{_counts(page)}{_pager(page)}
<p><small>Bars: the last probes' phases, {phase_legend()}; a red foot marks a failure.</small></p>
<table><tr><th>relay</th><th>result</th><th>reason / cause</th><th>hint / reply</th>{phase_heads}
<th>TLS</th><th>last probe</th></tr>
{rows}</table>
{_pager(page)}
{_canary_section(canaries, now)}
{_dns_section(dns, {name for name, _ in page.rows})}
<h2>Last failed probes{of_these}</h2>
{failures or f"<p>No probe{of_these} has failed.</p>"}
</body></html>
"""


def _verdict_css(method: str, result: str) -> str:
    """pass is good; no ARC seal is normal for mail that was not forwarded; the rest is bad."""
    if result == "pass":
        return "ok"
    return "wait" if method == "arc" and result == "none" else "fail"
