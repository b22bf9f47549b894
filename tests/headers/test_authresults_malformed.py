"""A header the parser cannot read as one well-formed Authentication-Results field is an error
with no results, and so gives no verdict: each case is a real header shape (RFC 8601 examples,
Gmail, Microsoft 365, Yahoo, Fastmail, Proofpoint, Mimecast, OpenDMARC) with one defect."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from exporter.canary.judge import Verdicts, judge
from exporter.headers.authresults import AuthResults, parse_authentication_results

DATA = Path(__file__).resolve().parents[1] / "data" / "headers"
ITEMS: list[dict[str, Any]] = json.loads(
    (DATA / "authentication-results.json").read_text(encoding="utf-8"))
TESTBED: list[dict[str, Any]] = json.loads(
    (DATA / "testbed-authentication-results.json").read_text(encoding="utf-8"))
GMAIL = (
    "mx.google.com;\r\n"
    "       dkim=pass header.i=@example.com header.s=s1 header.b=Kf/yv26g;\r\n"
    "       spf=pass (google.com: domain of bounce@example.com designates 192.0.2.1 as"
    " permitted sender) smtp.mailfrom=bounce@example.com;\r\n"
    "       dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=example.com"
)
MICROSOFT = (
    "spf=pass (sender IP is 192.0.2.1)\r\n smtp.mailfrom=example.com; contoso.com; dkim=pass"
    " (signature was verified)\r\n header.d=example.com;contoso.com; dmarc=pass"
    " action=none\r\n header.from=example.com;compauth=pass reason=100"
)
TRUSTED = ("mx.google.com", "", "example.net", "example.org", "atlas206.free.mail.ne1.yahoo.com",
           "mx1.messagingengine.com", "relay.mimecast.com", "ppops.net", "mx.example.com",
           "mx.example.test")


def _refused(value: str, message: str) -> AuthResults:
    """Parse ``value``, check it is refused with ``message``, and that no verdict passes."""
    parsed = parse_authentication_results(value)
    assert parsed.error is not None, parsed
    assert message in parsed.error
    assert parsed.results == ()
    assert "pass" not in _verdicts(judge([value], trusted_authserv_ids=TRUSTED,
                                         from_domain="example.com"))
    return parsed


def _verdicts(verdicts: Verdicts) -> tuple[str, ...]:
    return (verdicts.spf, verdicts.dkim, verdicts.dmarc, verdicts.arc,
            "pass" if verdicts.dmarc_aligned else "unaligned")


# --- an authserv-id with "/" is no Microsoft-form header ---------------------------------


@pytest.mark.parametrize("value", [
    "example/net; dkim=pass (good signature) header.i=@newyork.example.com",  # RFC 8601 B.4
    "Authentication-Results: example/net 1; dkim=pass header.d=example.com",
    "example/1; spf=pass smtp.mailfrom=example.com",
    "mx.google.com@evil.example; dkim=pass header.i=@example.com",
])
def test_authserv_id_with_tspecials_is_an_error(value: str) -> None:
    """An authserv-id holding "/" or "@" is an error, not a method of a header without id that
    a trusted "" would accept."""
    assert _refused(value, "bad authserv-id").authserv_id == ""


def test_microsoft_form_with_method_version_still_has_no_authserv_id() -> None:
    """``dkim/1=pass`` at the start is a versioned method, so the header is Microsoft's form."""
    parsed = parse_authentication_results("dkim/1=pass header.d=example.com; spf=fail")
    assert (parsed.error, parsed.authserv_id) == (None, "")
    assert [(r.method, r.version, r.result) for r in parsed.results] == [
        ("dkim", "1", "pass"), ("spf", None, "fail")]


def test_microsoft_header_still_trusted_by_empty_id() -> None:
    """Microsoft 365's header, bare receiving-domain tokens and all, still parses and counts."""
    verdicts = judge([MICROSOFT], trusted_authserv_ids=("",), from_domain="example.com")
    assert _verdicts(verdicts) == ("pass", "pass", "pass", "none", "pass")


# --- invalid syntax is reported, never skipped ---------------------------------------------


@pytest.mark.parametrize(("value", "message"), [
    # RFC 8601 B.2's "none", then a result: nothing after "none" counts.
    ("Authentication-Results: example.org 1; none dkim=pass header.d=example.org",
     "nothing may follow 'none'"),
    ("Authentication-Results: example.org 1; none; dkim=pass header.d=example.org",
     "nothing may follow 'none'"),
    ("example.org; none (Nothing here) dmarc=pass", "nothing may follow 'none'"),
    ("none; dkim=pass header.d=example.com", "'none' where the authserv-id belongs"),
    (GMAIL + "; none", "'none' must be the only result"),
    # Yahoo's header with a doubled "=", and with a result missing.
    ("atlas206.free.mail.ne1.yahoo.com; dkim = = pass header.i=@example.com;"
     " spf=pass smtp.mailfrom=example.com", "expected a result after 'dkim='"),
    ("atlas206.free.mail.ne1.yahoo.com; dkim=pass header.i=@example.com; dmarc=;",
     "expected a result after 'dmarc='"),
    # Fastmail's header with a stray word, a stray quoted string, a property without "=".
    ("mx1.messagingengine.com; dkim=pass (2048-bit rsa key sha256) header.d=example.com"
     " stray header.s=fm3", "expected '=' after 'stray'"),
    ('mx1.messagingengine.com; dkim=pass "header.d=example.com"', "expected a property"),
    ("mx1.messagingengine.com; spf=pass smtp.mailfrom", "expected '=' after 'smtp.mailfrom'"),
    # Mimecast's header with a bare word where a result belongs, and a bad method version.
    ("relay.mimecast.com; auth; spf=pass smtp.mailfrom=example.com", "expected '=' after 'auth'"),
    ("relay.mimecast.com; dkim/x=pass header.d=example.com", "bad method version 'x'"),
    # Proofpoint's header with a result that is not a keyword.
    ("ppops.net; spf=pass/ok smtp.mailfrom=example.com", "bad result 'pass/ok'"),
    # OpenDMARC's header with a word after its last property.
    ("mx.example.test; dmarc=pass (p=reject dis=none) header.from=example.test none",
     "expected '=' after 'none'"),
    # A bare domain token is Microsoft's alone, and only between results.
    ("mx.google.com; contoso.com; dkim=pass header.i=@example.com", "expected '=' after"),
    ("spf=pass smtp.mailfrom=example.com; contoso.com dkim=pass", "expected ';', found 'd'"),
])
def test_invalid_syntax_is_an_error(value: str, message: str) -> None:
    """Invalid syntax in a resinfo makes the whole header an error instead of being skipped."""
    _refused(value, message)


@pytest.mark.parametrize("value", [
    "example.org 1; none", "example.org; none;", "example.org; none ; ;", "example.com;",
])
def test_lone_none_is_no_result_and_no_error(value: str) -> None:
    """A lone "none" (with trailing ";" or not) and an empty result list stay valid."""
    parsed = parse_authentication_results(value)
    assert (parsed.error, parsed.results) == (None, ())


# --- ptype and property are case-insensitive -----------------------------------------------


def test_property_names_are_lower_cased_values_kept() -> None:
    """``header.D`` and ``smtp.MailFrom`` become ``header.d`` and ``smtp.mailfrom``; values and
    ``Reason`` keep their text."""
    parsed = parse_authentication_results(
        'example.com; dkim=fail Reason="Bad Sig" HEADER.D=Example.COM smtp.MailFrom=A@B.example')
    assert parsed.error is None
    assert parsed.results[0].properties == {
        "reason": "Bad Sig", "header.d": "Example.COM", "smtp.mailfrom": "A@B.example"}
    assert parsed.results[0].reason == "Bad Sig"


@pytest.mark.parametrize("header", [
    "mx.google.com; dkim=pass header.I=@Example.com header.S=s1;"
    " spf=pass smtp.MailFrom=bounce@Example.com; dmarc=pass header.From=example.com",
    "mx.google.com; dkim=pass Header.D=example.com HEADER.S=s1;"
    " spf=pass SMTP.MAILFROM=bounce@example.com; dmarc=pass header.from=example.com",
])
def test_judge_reads_mixed_case_properties(header: str) -> None:
    """judge() finds the DKIM domain and selector and the SPF domain whatever the case of the
    property names, so alignment is judged."""
    verdicts = judge([header], trusted_authserv_ids=("mx.google.com",), from_domain="example.com")
    assert verdicts.dkim_domains == (("example.com", "s1"),)
    assert verdicts.spf_domain == "example.com"
    assert verdicts.dmarc_aligned is True


def test_microsoft_mixed_case_smtp_mailfrom_aligns() -> None:
    """Microsoft's ``smtp.MailFrom`` with a failing DKIM still gives SPF's domain and alignment."""
    header = MICROSOFT.replace("smtp.mailfrom", "smtp.MailFrom").replace("dkim=pass", "dkim=fail")
    verdicts = judge([header], trusted_authserv_ids=("",), from_domain="example.com")
    assert (verdicts.spf_domain, verdicts.dmarc_aligned) == ("example.com", True)


# --- one header value, never two ------------------------------------------------------------

FORGED = "Authentication-Results: mx.google.com; dkim=pass header.d=example.com"
FAILING = "mx.google.com; dkim=fail header.d=example.com; spf=softfail smtp.mailfrom=example.com"


@pytest.mark.parametrize(("value", "message"), [
    (FAILING + "\r\n" + FORGED, "another header field 'Authentication-Results' begins"),
    (FAILING + "\n" + FORGED, "another header field 'Authentication-Results' begins"),
    (FAILING + "\r" + FORGED, "another header field 'Authentication-Results' begins"),
    ("Authentication-Results: " + FAILING + "\r\n" + FORGED, "another header field"),
    (FAILING + "\r\nAuthentication-Results : mx.google.com; dkim=pass", "another header field"),
    (FAILING + "\r\nARC-Authentication-Results: i=1; mx.google.com; arc=pass",
     "another header field 'ARC-Authentication-Results' begins"),
    (FAILING + "\r\nX-Forged: mx.google.com; dkim=pass", "another header field 'X-Forged'"),
    (FAILING + "\r\n\r\ndkim=pass", "empty line inside the header value"),
    ("Authentication-Results:\r\n" + FORGED, "another header field"),
])
def test_second_header_field_is_refused(value: str, message: str) -> None:
    """A value holding a line break followed by another field name (or an empty line) is an
    error, so a forged header below cannot lend its pass to the trusted id above it."""
    assert _refused(value, message).authserv_id in ("mx.google.com", "")


@pytest.mark.parametrize("item", TESTBED, ids=[item["from_domain"] for item in TESTBED])
def test_testbed_headers_joined_into_one_value_are_refused(item: dict[str, Any]) -> None:
    """The test bed's OpenDMARC, OpenDKIM and policyd-spf headers handed over as one value are
    an error, whichever of them passes."""
    _refused("\r\n".join(item["headers"]), "another header field 'Authentication-Results'")


@pytest.mark.parametrize("name", [
    "X-Original-Authentication-Results", "X-Forged-Authentication-Results",
    "Authentication-Results: Authentication-Results",
])
def test_only_authentication_results_field_names_are_stripped(name: str) -> None:
    """A leading field name other than [ARC-|X-MS-Exchange-]Authentication-Results (such as an
    earlier hop's X-Original- copy) is a bad authserv-id, not a header to trust."""
    _refused(f"{name}: mx.google.com; dkim=pass header.d=example.com", "bad authserv-id")


@pytest.mark.parametrize("value", [
    GMAIL,
    GMAIL.replace("\r\n", "\n"),
    GMAIL + "\r\n",
    "mx.google.com; spf=pass (google.com: domain of\r\n X-Note: designates 192.0.2.1)"
    " smtp.mailfrom=example.com",
    "Authentication-Results: mx.google.com;\r\n\tdkim=pass header.i=@example.com",
])
def test_folded_continuation_lines_are_one_field(value: str) -> None:
    """Lines that begin with a space or tab continue the field, even when they hold "Name:"."""
    parsed = parse_authentication_results(value)
    assert parsed.error is None
    assert parsed.authserv_id == "mx.google.com"


def test_unfolded_bare_lf_lines_without_a_field_name_still_parse() -> None:
    """The reference header whose lines are joined by bare LF (no field name on them) parses."""
    assert parse_authentication_results(ITEMS[80]["header"]).error is None


# --- characters no header holds -------------------------------------------------------------


@pytest.mark.parametrize("char", ["\xa0", "\x00", "\u2003", "\u200b", "\ufeff", "\x0b", "\x85"])
@pytest.mark.parametrize("where", ["in-word", "between-properties", "in-comment"])
def test_invisible_or_control_character_is_an_error(char: str, where: str) -> None:
    """A NUL, non-breaking space or other control or Unicode space is reported, wherever it is,
    instead of silently dropping the entry that holds it."""
    damaged = {
        "in-word": GMAIL.replace("dkim=pass", "dkim=pass" + char),
        "between-properties": GMAIL.replace(" header.s=s1", char + "header.s=s1"),
        "in-comment": GMAIL.replace("(google.com: domain", "(google.com:" + char + "domain"),
    }[where]
    parsed = _refused(damaged, f"character U+{ord(char):04X} not allowed")
    assert parsed.authserv_id == "mx.google.com"


def test_nul_in_a_result_silences_the_whole_header() -> None:
    """Proofpoint's header whose spf result holds a NUL gives neither spf nor its dkim pass."""
    damaged = "ppops.net; spf=fail\x00 smtp.mailfrom=example.com; dkim=pass header.d=example.com"
    parsed = parse_authentication_results(damaged)
    assert parsed.error == "character U+0000 not allowed at offset 19"
    verdicts = judge([damaged], trusted_authserv_ids=("ppops.net",), from_domain="example.com")
    assert (verdicts.spf, verdicts.dkim) == ("none", "none")
