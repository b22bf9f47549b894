"""The demo's canaries show a two-hop delivery path: the relay, then the mailbox."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import assert_promtool_accepts, http, value, wait_for
from tests.test_cli import Daemon, port_from_log


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[str]:
    d = Daemon(["demo", "--web.listen-address", "127.0.0.1:0", "--demo.interval", "2s"],
               tmp_path / "log")
    try:
        yield f"http://127.0.0.1:{port_from_log(d)}"
    finally:
        d.stop()


def test_demo_metrics_show_two_hops_and_which_path_is_encrypted(demo: str) -> None:
    """Both demo canary relays show 2 hops whose delays add up to the receiver delay; the
    inbox path is encrypted, the Junk one is not (plain LMTP); no skew, no parse failure."""

    def both_seen() -> bool:
        text = http(demo + "/metrics")[1]
        return all(value(text, "smtp_canary_hops", relay=r, mailbox="demo-mailbox") is not None
                   for r in ("demo-starttls", "demo-implicit"))

    wait_for(both_seen, what="a canary from both demo canary relays", timeout=60)
    text = http(demo + "/metrics")[1]
    assert_promtool_accepts(text)
    for relay, encrypted in (("demo-starttls", 1.0), ("demo-implicit", 0.0)):
        labels = {"relay": relay, "mailbox": "demo-mailbox"}
        assert value(text, "smtp_canary_hops", **labels) == 2
        assert value(text, "smtp_canary_path_encrypted", **labels) == encrypted
        assert value(text, "smtp_canary_hop_clock_skew_total", **labels) == 0
        assert value(text, "smtp_canary_hop_parse_failures_total", **labels) == 0
        delays = [value(text, "smtp_canary_hop_delay_seconds", hop=str(h), **labels)
                  for h in (1, 2, 3)]
        assert delays[0] is not None and delays[1] is not None and delays[2] is None
        receiver = value(text, "smtp_canary_last_receiver_delay_seconds", **labels)
        assert receiver is not None and abs(delays[0] + delays[1] - receiver) < 1e-6


def test_demo_status_shows_the_path(demo: str) -> None:
    """The status page draws each path with a lock per TLS hop; /status.json carries it."""

    def path_of(relay: str) -> dict[str, object] | None:
        doc = json.loads(http(demo + "/status.json")[1])
        entry = next(e for e in doc if e["relay"] == relay)
        last = entry["canaries"][0]["last"]
        return None if last is None else dict(last["path"])

    wait_for(lambda: path_of("demo-starttls") is not None, what="a demo canary", timeout=60)
    path = path_of("demo-starttls")
    assert path is not None
    hops = path["path"]
    assert isinstance(hops, list)
    assert [(h["by"], h["with"], h["encrypted"]) for h in hops] == [
        ("demo-relay.localhost", "ESMTPSA", True), ("demo-mailbox", "LMTPS", True)]
    assert hops[0]["tls"]["version"].startswith("TLSv1.")
    assert path["hops"] == 2 and path["encrypted"] is True
    wait_for(lambda: path_of("demo-implicit") is not None, what="a Junk canary", timeout=60)
    junk = path_of("demo-implicit")
    assert junk is not None and isinstance(junk["path"], list)
    assert [(h["by"], h["with"], h["encrypted"]) for h in junk["path"]] == [
        ("demo-relay.localhost", "ESMTPSA", True), ("demo-mailbox", "LMTP", False)]
    assert junk["encrypted"] is False
    page = html.unescape(re.sub(r"<[^>]*>", "", http(demo + "/")[1]))
    assert "path (2 hops, encrypted): 1 demo-relay.localhost ESMTPSA +" in page
    assert "🔒 → 2 demo-mailbox LMTPS" in page
