"""Received headers into hops: the test bed's and public examples' real forms, the ones that
do not parse, and the parser's promises (never raises, linear time)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.headers.received import Hop, parse_received
from tests.test_fuzz import assert_linear

CORPUS = Path(__file__).resolve().parents[1] / "data" / "received" / "received.json"
ITEMS: list[dict[str, Any]] = json.loads(CORPUS.read_text(encoding="utf-8"))


def _utc(hop: Hop) -> str | None:
    if hop.timestamp is None:
        return None
    return datetime.fromtimestamp(hop.timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_corpus_covers_every_writer_the_exporter_meets() -> None:
    """The corpus holds the bed's three hops and public examples of each major writer."""
    sources = " ".join(item["source"] for item in ITEMS)
    for writer in ("tests/testbed: Postfix", "tests/testbed: Dovecot", "Exim", "Microsoft 365",
                   "Gmail", "Amazon SES", "Postfix MX with smtpd_tls_received_header"):
        assert writer in sources, writer


@pytest.mark.parametrize("item", ITEMS, ids=[item["source"][:70] for item in ITEMS])
def test_real_header_parses_to_its_hop(item: dict[str, Any]) -> None:
    """Each real header gives the from, by, with, TLS facts and UTC time a reader sees in it."""
    hop = parse_received(item["header"])
    assert hop.error is None, hop.error
    assert {
        "from": hop.from_, "by": hop.by, "with": hop.with_, "tls_version": hop.tls_version,
        "tls_cipher": hop.tls_cipher, "encrypted": hop.encrypted, "utc": _utc(hop),
    } == item["expected"]
    assert "\n" not in hop.raw and "\r" not in hop.raw


@pytest.mark.parametrize(("value", "error"), [
    ("", "no date after a ';'"),
    ("from a.example by b.example with ESMTP id 1", "no date after a ';'"),
    ("from a.example by b.example;", "no date after the last ';'"),
    ("from a.example by b.example; yesterday at noon", "bad date 'yesterday at noon'"),
    ("from a.example (unclosed by b.example; Tue, 1 Aug 2023 10:00:00 +0000",
     "unterminated comment at offset 15"),
    ("from a.example) by b.example; Tue, 1 Aug 2023 10:00:00 +0000",
     "unbalanced ')' at offset 14"),
    ("hello world; Tue, 1 Aug 2023 10:00:00 +0000",
     "expected from, by, with, id or for, found 'hello'"),
    ("from a.example by b.example; Tue, 1 Aug 1900 10:00:00 +0000",
     "date out of range 'Tue, 1 Aug 1900 10:00:00 +0000'"),
    ("from a\x00b by b.example; Tue, 1 Aug 2023 10:00:00 +0000",
     "character U+0000 not allowed at offset 6"),
    ("from a by b; Tue, 1 Aug 2023 10:00:00 +0000\r\nX-Injected: yes",
     "another header field 'X-Injected' begins at offset 43"),
])
def test_unparsable_header_is_an_error_value_with_its_raw_text(value: str, error: str) -> None:
    """A header that does not parse gives an error (one line) and keeps its text, made safe."""
    hop = parse_received(value)
    assert hop.error == error
    # A clause error leaves a good date readable: the hop's delay is still known.
    assert (hop.timestamp is not None) == error.startswith("expected from")
    assert hop.raw == " ".join(value.split()).replace("\x00", "\\x00")


def test_clauses_read_before_a_bad_date_are_kept() -> None:
    """A bad date still leaves the hop's from, by and with for the status page."""
    hop = parse_received("from a.example by b.example with ESMTPS id 1; not a date")
    assert (hop.from_, hop.by, hop.with_, hop.encrypted) == (
        "a.example", "b.example", "ESMTPS", True)
    assert hop.error is not None and hop.timestamp is None


def test_peer_text_is_made_safe_and_capped() -> None:
    """Control characters a peer wrote show escaped and a huge name is capped, in every field."""
    hop = parse_received("from \x1b[31mevil" + "x" * 1000 + " by b.example with \u202eESMTP; "
                         "Tue, 1 Aug 2023 10:00:00 +0000")
    assert hop.error == "character U+001B not allowed at offset 5"
    assert "\x1b" not in hop.raw and "\\x1b" in hop.raw and len(hop.raw) <= 500
    hop = parse_received("from " + "y" * 1000 + " by b.example with \u202eESMTP; "
                         "Tue, 1 Aug 2023 10:00:00 +0000")
    assert hop.error is None
    assert hop.from_ is not None and len(hop.from_) <= 120
    assert hop.with_ == "\\u202eESMTP" and not hop.encrypted


def test_field_name_is_optional() -> None:
    value = "from a.example by b.example with ESMTPS; Tue, 1 Aug 2023 10:00:00 +0000"
    assert parse_received("Received: " + value) == parse_received(value)


def test_forged_version_inside_a_helo_name_is_not_tls() -> None:
    """Only a version= that starts a comment's word counts: a HELO name cannot fake TLS."""
    hop = parse_received("from x (helo=version=TLS1_3) by b.example with ESMTP; "
                         "Tue, 1 Aug 2023 10:00:00 +0000")
    assert (hop.tls_version, hop.encrypted) == (None, False)


# --- never raises, linear time -------------------------------------------------------------

_PIECES = [*'()";\\[]<>@: \t\r\n\x00', "from", "by", "with", "ESMTPS", "id", "for", "tls",
           "(using TLSv1.3 with cipher X)", "(version=TLS1_2, cipher=Y)", "(TLS1.3)",
           "; Tue, 1 Aug 2023 10:00:00 +0000", "Dec", "2026", "+0000", "-0000"]
_piece = st.one_of(st.sampled_from(_PIECES), st.characters())
_header_text = st.lists(_piece, max_size=80).map("".join)
_repeated = st.tuples(st.lists(st.sampled_from(_PIECES), min_size=1, max_size=6).map("".join),
                      st.integers(1, 5_000)).map(lambda pair: pair[0] * pair[1])


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(), _header_text, _repeated))
def test_never_raises(text: str) -> None:
    """Any text gives a Hop: an error on one line, or a parse; never an exception."""
    hop = parse_received(text)
    assert isinstance(hop, Hop)
    assert hop.error is None or "\n" not in hop.error
    assert "\n" not in hop.raw and len(hop.raw) <= 500


LONG_INPUTS: dict[str, Callable[[int], str]] = {
    "many-clauses": lambda n: "from a by b with ESMTPS " + "id x for <a@b> " * n
    + "; Tue, 1 Aug 2023 10:00:00 +0000",
    "nested-comment": lambda n: "from a " + "(" * n + ")" * n + " by b; 1 Aug 2023 10:00 +0000",
    "escapes-in-comment": lambda n: "from a (" + "\\)" * n + ") by b; 1 Aug 2023 10:00 +0000",
    "many-comments": lambda n: "from a " + "(version=TLS1_2 cipher=X) " * n + "; 1 Aug 2023",
    "long-with": lambda n: "from a by b with " + "Microsoft SMTP Server " * n + "; 1 Aug 2023",
    "semicolons": lambda n: "from a by b for <a@b>" + ";" * n + " 1 Aug 2023 10:00 +0000",
    "unterminated-quote": lambda n: 'from a "' + "x" * n,
    "postfix-like-comment": lambda n: "from a (using " + "TLSv1.3 with " * n + ") by b; x",
    "long-date": lambda n: "from a by b; " + "Tue, 1 Aug 2023 " * n,
    "garbage": lambda n: "=;(\"\\" * n,
}


@pytest.mark.parametrize("case", list(LONG_INPUTS))
def test_parse_takes_linear_time_on_long_input(case: str) -> None:
    """The parse of ten times the input costs about ten times as much, never a hundred."""
    make = LONG_INPUTS[case]

    def cost(n: int) -> float:
        text = make(n)
        start = time.process_time()
        parse_received(text)
        return time.process_time() - start

    assert_linear(cost, 1000)
