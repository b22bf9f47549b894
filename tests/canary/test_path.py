"""The delivery path: hops in order from the relay, delays that add up, clock skew shown and
counted, missing dates, the 10-hop cap, and the metric series a canary's path becomes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric

from exporter.canary import canary_families
from exporter.canary.path import (
    MAX_HOP_LABELS,
    DeliveryPath,
    delivery_path,
    hop_delays,
    path_to_dict,
)
from exporter.canary.store import ArrivalReport, CanaryStore
from tests.helpers import assert_promtool_accepts, value

BED = json.loads((Path(__file__).resolve().parents[1] / "data" / "received"
                  / "testbed-path.json").read_text(encoding="utf-8"))
T0 = 1_800_000_000.0  # a whole second: Received dates have no fraction


def _date(t: float) -> str:
    return format_datetime(datetime.fromtimestamp(t).astimezone())


def _received(by: str, at: float | None, *, with_: str = "ESMTPS") -> tuple[str, str]:
    date = "" if at is None else f"; {_date(at)}"
    return ("Received", f"from prev.example (prev.example [192.0.2.1]) by {by} with {with_} "
                        f"id Q1{date}")


def _headers(*hops: tuple[str, str]) -> list[tuple[str, str]]:
    """Headers as a mailbox returns them: the newest Received on top, the message's below."""
    return [*reversed(hops), ("From", "canary@example.test"), ("Subject", "canary")]


def test_testbed_path_is_three_hops_relay_first_and_not_encrypted() -> None:
    """The bed's real headers: submission, MX, Dovecot LMTP; the LMTP hop over a unix socket
    is plaintext, so the path is not encrypted, and the delays add up to INTERNALDATE."""
    internal = datetime.strptime(BED["internal_date"], "%d-%b-%Y %H:%M:%S %z").timestamp()
    headers = [("Received", v) for v in BED["received"]] + [tuple(h) for h in BED["other_headers"]]
    path = delivery_path(headers, sent_at=BED["sent_at"], internal_date=internal)
    assert [[h.hop.by, h.hop.with_, h.hop.encrypted] for h in path.hops] == BED["expected"]["path"]
    assert path.encrypted is BED["expected"]["encrypted"]
    assert (path.skewed, path.parse_failures) == (0, 0)
    # The relay stamped 00:01:23 for an accept at 00:01:23.94: rounding, not skew.
    assert path.hops[0].raw_delay == pytest.approx(-0.94, abs=0.01)
    assert [h.delay for h in path.hops] == pytest.approx([0.0, 0.059, 0.0], abs=0.001)
    assert path.total == pytest.approx(internal - BED["sent_at"])


def test_delays_are_the_time_before_each_hop_and_sum_to_the_delivery_time() -> None:
    path = delivery_path(_headers(_received("relay.example", T0 + 2),
                                  _received("mx.example", T0 + 7),
                                  _received("store.example", T0 + 8, with_="LMTPS")),
                         sent_at=T0 + 0.5, internal_date=T0 + 9)
    assert [h.hop.by for h in path.hops] == ["relay.example", "mx.example", "store.example"]
    assert [h.delay for h in path.hops] == [1.5, 5.0, 2.0]  # the last ends at INTERNALDATE
    assert path.total == 8.5 and path.encrypted
    assert hop_delays(path) == [("1", 1.5), ("2", 5.0), ("3", 2.0)]


def test_clock_skew_is_zero_counted_and_the_raw_value_kept() -> None:
    """A hop stamped 4 s before the hop ahead of it: delay 0, raw -4 kept, counted once; the
    later hop is measured from the latest time seen, so the sum still matches."""
    path = delivery_path(_headers(_received("relay.example", T0 + 5),
                                  _received("mx.example", T0 + 1),
                                  _received("store.example", T0 + 7)),
                         sent_at=T0, internal_date=None)
    assert [h.raw_delay for h in path.hops] == [5.0, -4.0, 6.0]
    assert [h.delay for h in path.hops] == [5.0, 0.0, 2.0]
    assert [h.skewed for h in path.hops] == [False, True, False]
    assert path.skewed == 1 and path.total == 7.0
    hop = path_to_dict(path)["path"][1]
    assert (hop["delay"], hop["raw_delay"], hop["clock_skew"]) == (0.0, -4.0, True)


def test_missing_date_leaves_that_hop_unknown_and_the_next_spans_both() -> None:
    path = delivery_path(_headers(_received("relay.example", T0 + 1),
                                  _received("mx.example", None),
                                  _received("store.example", T0 + 6)),
                         sent_at=T0, internal_date=None)
    assert [h.delay for h in path.hops] == [1.0, None, 5.0]
    assert path.parse_failures == 1 and path.skewed == 0
    assert hop_delays(path) == [("1", 1.0), ("3", 5.0)]
    assert path_to_dict(path)["path"][1]["error"] == "no date after a ';'"


def test_more_than_ten_hops_keep_ten_labels_whose_sum_is_the_delivery_time() -> None:
    hops = [_received(f"h{i}.example", T0 + i) for i in range(1, 15)]
    path = delivery_path(_headers(*hops), sent_at=T0, internal_date=T0 + 14)
    assert len(path.hops) == 14
    delays = hop_delays(path)
    assert [label for label, _ in delays] == [str(i) for i in range(1, MAX_HOP_LABELS + 1)]
    assert delays[-1] == ("10", 5.0)  # hops 10 to 14
    assert sum(s for _, s in delays) == path.total == 14.0


def test_encrypted_needs_every_hop_after_the_relay_to_say_tls() -> None:
    """The relay's own hop does not count (the exporter's session to it is probed apart); one
    plain hop after it, or one that did not parse, makes the path not encrypted."""
    relay_plain = _headers(_received("relay.example", T0, with_="ESMTP"),
                           _received("mx.example", T0, with_="ESMTPS"))
    assert delivery_path(relay_plain, sent_at=T0, internal_date=None).encrypted
    for last in (_received("mx.example", T0, with_="SMTP"),
                 ("Received", "garbage; Tue, 1 Aug 2023 10:00:00 +0000")):
        headers = _headers(_received("relay.example", T0), last)
        assert not delivery_path(headers, sent_at=T0, internal_date=None).encrypted
    assert not delivery_path([("From", "a@b")], sent_at=T0, internal_date=None).encrypted


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(-30, 30)), max_size=15),
       st.one_of(st.none(), st.integers(-30, 60)), st.floats(0, 0.999))
def test_delays_never_negative_and_sum_to_the_latest_time(
        offsets: list[int | None], end: int | None, fraction: float) -> None:
    """Any stamps, skewed or missing: every delay is 0 or more, and together they run from the
    relay's accept to the latest time seen (INTERNALDATE standing for the last hop's)."""
    sent_at = T0 + fraction
    hops = [_received(f"h{i}.example", None if o is None else T0 + o)
            for i, o in enumerate(offsets)]
    internal = None if end is None else T0 + end
    path = delivery_path(_headers(*hops), sent_at=sent_at, internal_date=internal)
    assert len(path.hops) == len(offsets)
    assert all(h.delay is None or h.delay >= 0 for h in path.hops)
    times = [T0 + o for o in offsets[:-1] if o is not None]
    last = internal if internal is not None else (
        None if not offsets or offsets[-1] is None else T0 + offsets[-1])
    if offsets and last is not None:
        times.append(last)
    assert path.total == pytest.approx(max([sent_at, *times]) - sent_at)
    assert sum(s for _, s in hop_delays(path)) == pytest.approx(path.total)


def _report(path: DeliveryPath) -> ArrivalReport:
    return ArrivalReport(relay="r", mailbox="m", token="t", folder="inbox", folder_name="INBOX",
                         sent_at=T0, seen_at=T0 + 9, latency=9.0, receiver_delay=8.0,
                         verdicts={}, dmarc_aligned=True, path=path)


def _scrape(store: CanaryStore) -> str:
    class Collector:
        def collect(self) -> Iterator[Metric]:
            return canary_families(store.snapshot())

    registry = CollectorRegistry()
    registry.register(Collector())
    return generate_latest(registry).decode()


def test_metrics_show_the_last_path_and_count_skew_and_failures_over_canaries() -> None:
    """hops, per-hop delay and encrypted follow the last canary; skew and parse failures add
    up over canaries; before the first canary only the counters show (at 0)."""
    store = CanaryStore()
    store.configure([("r", "m")], [("m", False)])
    before = _scrape(store)
    assert value(before, "smtp_canary_hops", relay="r", mailbox="m") is None
    assert value(before, "smtp_canary_hop_clock_skew_total", relay="r", mailbox="m") == 0
    assert value(before, "smtp_canary_hop_parse_failures_total", relay="r", mailbox="m") == 0
    skewed = delivery_path(_headers(_received("a.example", T0 + 5),
                                    _received("b.example", T0 + 1),
                                    ("Received", "from x by y with LMTP; no date")),
                           sent_at=T0, internal_date=T0 + 8)
    store.arrived(_report(skewed))
    clean = delivery_path(_headers(_received("a.example", T0 + 1),
                                   _received("b.example", T0 + 2, with_="LMTPS")),
                          sent_at=T0, internal_date=T0 + 2)
    store.arrived(_report(clean))
    text = _scrape(store)
    assert_promtool_accepts(text)
    labels: dict[str, Any] = {"relay": "r", "mailbox": "m"}
    assert value(text, "smtp_canary_hops", **labels) == 2
    assert value(text, "smtp_canary_path_encrypted", **labels) == 1
    assert value(text, "smtp_canary_hop_delay_seconds", hop="1", **labels) == 1.0
    assert value(text, "smtp_canary_hop_delay_seconds", hop="2", **labels) == 1.0
    assert value(text, "smtp_canary_hop_delay_seconds", hop="3", **labels) is None
    assert value(text, "smtp_canary_hop_clock_skew_total", **labels) == 1
    assert value(text, "smtp_canary_hop_parse_failures_total", **labels) == 1
