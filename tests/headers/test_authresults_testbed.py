"""Authentication-Results exactly as the test bed's MX wrote them (tests/testbed: policyd-spf,
OpenDKIM and OpenDMARC behind Postfix): three headers per message, top first, one per method."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from exporter.canary.judge import judge
from exporter.headers.authresults import parse_authentication_results

FIXTURES = (Path(__file__).resolve().parents[1] / "data" / "headers"
            / "testbed-authentication-results.json")
ITEMS: list[dict[str, Any]] = json.loads(FIXTURES.read_text(encoding="utf-8"))
CASES = [pytest.param(item, id=item["from_domain"]) for item in ITEMS]


def _value(header: str) -> str:
    return header.split(":", 1)[1]


def test_fixtures_cover_every_bed_domain() -> None:
    assert [item["from_domain"] for item in ITEMS] == [
        "example.test", "spf-fail.test", "dkim-fail.test", "no-dmarc.test",
        "dmarc-none.test", "spoof.test",
    ]
    assert all(len(item["headers"]) == 3 for item in ITEMS)


@pytest.mark.parametrize("item", CASES)
def test_each_header_parses_with_one_method(item: dict[str, Any]) -> None:
    methods = []
    for header in item["headers"]:
        parsed = parse_authentication_results(_value(header))
        assert parsed.error is None, (header, parsed.error)
        assert parsed.authserv_id == "mx.example.test"
        methods.append([r.method for r in parsed.results])
    # OpenDMARC's header on top, OpenDKIM's (with the dkim-atps ptype result) next, SPF last.
    assert methods == [["dmarc"], ["dkim", "dkim-atps"], ["spf"]]


@pytest.mark.parametrize("item", CASES)
def test_verdicts(item: dict[str, Any]) -> None:
    expected = item["expected"]
    verdicts = judge([_value(h) for h in item["headers"]],
                     trusted_authserv_ids=["mx.example.test"],
                     from_domain=item["from_domain"])
    assert (verdicts.spf, verdicts.dkim, verdicts.dmarc, verdicts.arc) == (
        expected["spf"], expected["dkim"], expected["dmarc"], "none")
    assert verdicts.dmarc_aligned is expected["dmarc_aligned"]
    assert [list(pair) for pair in verdicts.dkim_domains] == expected["dkim_domains"]
    assert verdicts.spf_domain == expected["spf_domain"]
    assert verdicts.trusted_header == _value(item["headers"][0])


@pytest.mark.parametrize("item", CASES)
def test_untrusted_receiver_reads_none(item: dict[str, Any]) -> None:
    verdicts = judge([_value(h) for h in item["headers"]],
                     trusted_authserv_ids=["mx.other.example"],
                     from_domain=item["from_domain"])
    assert (verdicts.spf, verdicts.dkim, verdicts.dmarc) == ("none", "none", "none")
    assert verdicts.dmarc_aligned is False
