"""The status page at fleet scale: failing relays first, a filter in the query string, pages
whose links keep the filter, everything echoed escaped; the store keeps a bounded history and
the transcripts the page and /status.json show."""

from __future__ import annotations

import asyncio
import gzip
import html
import json
import re
import urllib.request
from pathlib import Path

from exporter.app import App
from exporter.model import Phase, Reason, TranscriptLine
from exporter.relay import RelayInfo, RelayResult, ResultStore, Snapshot
from exporter.web.statusjson import status_document, status_json
from exporter.web.statuspage import render_status_page
from tests.conftest import ENV, write_config
from tests.helpers import http
from tests.servers.scripted import refused_port

T0 = 1_800_000_000.0


def _result(name: str, *, ok: bool = True, at: float = T0, line: str = "") -> RelayResult:
    phases = {Phase.CONNECT: 0.01, Phase.TLS: 0.02} | ({} if ok else {Phase.AUTH: 0.2})
    return RelayResult(
        relay=name, success=ok, started_at=at, duration=sum(phases.values()), phases=phases,
        reason=None if ok else Reason.AUTH_FAILED,
        hint=None if ok else "The relay refused the credentials.",
        reply=None if ok else "535 5.7.8 Authentication credentials invalid",
        transcript=(TranscriptLine(0.0, "S", "220 ready"),
                    TranscriptLine(0.1, "S", line or ("235 ok" if ok else "535 5.7.8 no"))),
    )


def _store(count: int, failing: set[int]) -> ResultStore:
    """``count`` relays relay-000 to relay-NNN on hosts mx-NNN.example.net; the ones in
    ``failing`` failed their last probe."""
    store = ResultStore()
    names = [f"relay-{i:03d}" for i in range(count)]
    store.configure([RelayInfo(name=n, host=f"MX-{n[6:]}.Example.NET", port=587,
                               tls="starttls", auth="plain") for n in names],
                    warnings=(), source="test")
    for i, name in enumerate(names):
        store.record(_result(name, ok=i not in failing))
    return store


def _text(page: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]*>", " ", page)).split())


def _rows(page: str) -> list[str]:
    """The relay names in the table, in order."""
    return re.findall(r"<tr><td><b>(relay-\d+)</b><br>", page)


def test_failing_relays_come_first_then_the_rest_by_name_one_page_at_a_time() -> None:
    """250 relays, 3 failing: page 1 lists those 3 first, then 97 by name, and says so."""
    snap = _store(250, failing={7, 200, 150}).snapshot()
    page = render_status_page(snap)
    rows = _rows(page)
    assert rows[:4] == ["relay-007", "relay-150", "relay-200", "relay-000"]
    assert len(rows) == 100
    assert "3 failing of 250 relays; showing 1\u2013100" in _text(page)
    assert "page 1 of 3" in _text(page)
    last = render_status_page(snap, query="page=3")
    assert _rows(last)[-1] == "relay-249" and len(_rows(last)) == 50
    assert "showing 201\u2013250" in _text(last)
    # a page past the end shows the last one; nonsense is page 1
    assert _rows(render_status_page(snap, query="page=99")) == _rows(last)
    assert _rows(render_status_page(snap, query="page=-2&state=bogus")) == rows
    for nonsense in ("page=%C2%B2", "page=" + "9" * 5000, "page=0", "page=&page=2"):
        assert len(_rows(render_status_page(snap, query=nonsense))) == 100, nonsense
    assert "none to show" in _text(render_status_page(snap, query="q=%ff"))  # not UTF-8


def test_filter_by_name_or_host_and_by_state() -> None:
    """``q`` matches a substring of the name or the host in any case; ``state`` keeps the
    failing or the ok relays, and the page counts what matched."""
    snap = _store(250, failing={7, 17, 150}).snapshot()
    assert _rows(render_status_page(snap, query="q=ELAY-01")) == [
        "relay-017", *(f"relay-{i:03d}" for i in range(10, 20) if i != 17)]
    assert _rows(render_status_page(snap, query="q=mx-150.example")) == ["relay-150"]
    failing = render_status_page(snap, query="state=failing")
    assert _rows(failing) == ["relay-007", "relay-017", "relay-150"]
    assert "3 failing of 250 relays; 3 match state failing; showing 1\u20133" in _text(failing)
    both = render_status_page(snap, query="q=relay-01&state=ok")
    assert "relay-017" not in _rows(both) and len(_rows(both)) == 9
    nothing = render_status_page(snap, query="q=nowhere")
    assert _rows(nothing) == [] and "0 match “nowhere”; none to show" in _text(nothing)


def test_page_links_keep_the_filter_and_the_form_shows_it() -> None:
    """Next, previous, first and last carry q and state; the form is a plain GET form
    pre-filled with the filter, so it works without JavaScript."""
    snap = _store(450, failing=set(range(0, 450, 2))).snapshot()
    page = render_status_page(snap, query="q=relay&state=failing&page=2")
    hrefs = re.findall(r'<a href="([^"]*)">([^<]*)</a>', page)
    pager = {html.unescape(label): html.unescape(href) for href, label in hrefs
             if href.startswith("?")}
    assert pager == {"« first": "?q=relay&state=failing",
                     "\u2039 previous": "?q=relay&state=failing",
                     "next \u203a": "?q=relay&state=failing&page=3",
                     "last »": "?q=relay&state=failing&page=3"}
    assert '<form method="get" action="/">' in page and "<script" not in page
    assert 'name="q" size="30" value="relay"' in page
    assert '<option value="failing" selected>' in page
    assert "page 2 of 3" in _text(page)


def test_the_echoed_filter_is_escaped() -> None:
    """A filter with markup comes back as text, in the box and in the counts, never as HTML."""
    snap = _store(3, failing=set()).snapshot()
    page = render_status_page(snap, query="q=%22%3E%3Cscript%3Ealert(1)%3C/script%3E")
    assert "<script>" not in page
    assert 'value="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in page
    assert "0 match “\"><script>alert(1)</script>”" in _text(page)


def test_failed_transcripts_are_those_of_the_relays_on_the_page() -> None:
    """The last-failure sections follow the filter: a failing relay elsewhere is not shown."""
    snap = _store(250, failing={7, 200}).snapshot()
    page = render_status_page(snap, query="q=relay-20")
    assert "relay-200: last failure, auth_failed" in _text(page)
    assert "relay-007: last failure" not in _text(page)
    assert "Last failed probes of the relays above" in _text(page)
    # the row links to its failure section below
    assert '<a href="#fail-relay-200">last failure</a>' in page
    assert '<h3 id="fail-relay-200">' in page


def test_history_is_bounded_and_transcripts_kept_where_shown() -> None:
    """After 100 probes a relay's chart has 60 bars; the last failure's transcript stays on
    the page after later successes, and /status.json keeps the last probe's transcript."""
    store = _store(1, failing=set())
    store.record(_result("relay-000", ok=False, at=T0 + 1, line="535 remembered failure"))
    for n in range(98):
        store.record(_result("relay-000", at=T0 + 2 + n, line=f"235 success {n}"))
    view = store.snapshot().relays["relay-000"]
    assert len(view.recent) == 60 and view.probes == 100
    page = render_status_page(store.snapshot())
    assert page.count('height="3" fill="#cf222e"') == 0  # the failure scrolled out of the chart
    assert "535 remembered failure" in page and "success 96" not in page
    assert "success 97" not in _text(page)
    [doc] = status_document(store.snapshot(), None)
    assert doc["transcript"][-1]["line"] == "235 success 97"
    bars = list(view.recent)
    assert bars[-1].started_at == T0 + 99 and bars[-1].phases == {
        Phase.CONNECT: 0.009999999776482582, Phase.TLS: 0.019999999552965164}


def test_chart_marks_failures_with_their_reason() -> None:
    """A failed probe in the history draws a red foot titled with its reason."""
    store = _store(1, failing={0})
    page = render_status_page(store.snapshot())
    assert "<title>auth_failed</title>" in page and "<title>auth 200.0 ms</title>" in page


def test_status_json_is_complete_and_takes_the_same_filter() -> None:
    """Without a query, every relay in name order; with q or state, only those that match."""
    snap = _store(30, failing={3, 21})
    everything = json.loads(status_json(snap.snapshot(), None))
    assert [r["relay"] for r in everything] == [f"relay-{i:03d}" for i in range(30)]
    assert everything[3]["reason"] == "auth_failed" and everything[3]["transcript"]
    failing = json.loads(status_json(snap.snapshot(), None, query="state=failing"))
    assert [r["relay"] for r in failing] == ["relay-003", "relay-021"]
    assert [r["relay"] for r in json.loads(status_json(snap.snapshot(), None,
                                                       query="q=MX-02"))] == [
        f"relay-{i:03d}" for i in range(20, 30)]


def test_a_relay_without_a_probe_is_listed_but_neither_failing_nor_ok() -> None:
    """A relay waiting for its first probe shows under "all" only."""
    store = ResultStore()
    store.configure([RelayInfo(name="new", host="h", port=25, tls="none", auth="none")],
                    warnings=(), source="test")
    snap: Snapshot = store.snapshot()
    assert "waiting for first probe" in render_status_page(snap)
    assert "none to show" in _text(render_status_page(snap, query="state=ok"))
    assert "none to show" in _text(render_status_page(snap, query="state=failing"))


async def test_the_server_passes_the_filter_and_gzips_the_page(tmp_path: Path) -> None:
    """GET /?q=... and /status.json?state=... over HTTP filter as the functions do, and a
    browser that accepts gzip gets the page and the document compressed."""
    port = refused_port()
    cfg = write_config(tmp_path / "config.yaml",
                       *({"name": n, "port": port, "tls": "none", "interval": "1h"}
                         for n in ("alpha", "beta", "gamma")))
    app = App(str(cfg), listen=("127.0.0.1", 0), environ=ENV)
    await app.start()
    try:
        assert app.web is not None
        base = f"http://127.0.0.1:{app.web.port}"
        status, page, _ = await asyncio.to_thread(http, base + "/?q=ET")
        assert status == 200 and _rows_named(page) == ["beta"]
        assert "alpha" not in page  # nor in the DNS rows, which follow the relays shown
        _, doc, _ = await asyncio.to_thread(http, base + "/status.json?q=amm")
        assert [r["relay"] for r in json.loads(doc)] == ["gamma"]
        for path in ("/?q=a", "/status.json"):
            req = urllib.request.Request(base + path, headers={"Accept-Encoding": "gzip"})
            with await asyncio.to_thread(urllib.request.urlopen, req, timeout=5) as resp:
                assert resp.headers["Content-Encoding"] == "gzip"
                assert b"alpha" in gzip.decompress(resp.read())
    finally:
        await app.stop()


def _rows_named(page: str) -> list[str]:
    return re.findall(r"<tr><td><b>([a-z]+)</b><br>", page)
