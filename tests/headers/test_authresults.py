"""Tests for parsing Authentication-Results headers and judging the verdicts we trust."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.canary.judge import Verdicts, judge
from exporter.headers.authresults import AuthResults, MethodResult, parse_authentication_results

HEADERS = Path(__file__).resolve().parents[1] / "data" / "headers"
ITEMS: list[dict[str, Any]] = json.loads(
    (HEADERS / "authentication-results.json").read_text(encoding="utf-8")
)


def _case_id(index: int, item: dict[str, Any]) -> str:
    return f"{index:03d}-{item['authserv_id'] or 'no-authserv-id'}"


REFERENCE = [pytest.param(item, id=_case_id(n, item)) for n, item in enumerate(ITEMS)]
ARC_REFERENCE = [
    pytest.param(item, id=_case_id(n, item))
    for n, item in enumerate(ITEMS)
    if item["header"].lower().startswith("arc-")
]


def _triples(results: tuple[MethodResult, ...]) -> list[tuple[str, str, dict[str, str]]]:
    return [(r.method, r.result, r.properties) for r in results]


def _expected(item: dict[str, Any]) -> list[tuple[str, str, dict[str, str]]]:
    """The item's results as the parser gives them: method, result and property names lower."""
    return [
        (r["method"].lower(), r["result"].lower(),
         {key.lower(): value for key, value in r["properties"].items()})
        for r in item["results"]
    ]


def _parse_ok(value: str) -> AuthResults:
    parsed = parse_authentication_results(value)
    assert parsed.error is None, parsed.error
    return parsed


# --- the reference set ---------------------------------------------------------------------


def test_reference_set_is_complete() -> None:
    """The copied reference set holds all 100 headers, each with its source."""
    assert len(ITEMS) == 100
    assert all(item["source"] for item in ITEMS)


@pytest.mark.parametrize("item", REFERENCE)
def test_reference_header(item: dict[str, Any]) -> None:
    """Each reference header yields the authserv-id and (method, result, properties) it lists,
    names compared without case and values exactly."""
    parsed = parse_authentication_results(item["header"])
    assert parsed.error is None  # none of the 100 is malformed; the "none" ones parse empty
    assert parsed.authserv_id == item["authserv_id"]
    assert _triples(parsed.results) == _expected(item)


@pytest.mark.parametrize("item", ARC_REFERENCE)
def test_reference_arc_instance(item: dict[str, Any]) -> None:
    """Each ARC-Authentication-Results header reports the instance its notes name."""
    match = re.search(r"instance i=(\d+)", item["notes"])
    assert match is not None
    assert parse_authentication_results(item["header"]).instance == int(match.group(1))


# --- parsing details -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "Authentication-Results: example.com; spf=pass smtp.mailfrom=example.net",
        "authentication-results:example.com; spf=pass smtp.mailfrom=example.net",
        "AUTHENTICATION-RESULTS :  example.com; spf=pass smtp.mailfrom=example.net",
        "example.com; spf=pass smtp.mailfrom=example.net",
    ],
)
def test_field_name_is_optional_and_case_insensitive(line: str) -> None:
    """A leading field name is stripped whatever its case; a bare value parses the same."""
    parsed = _parse_ok(line)
    assert parsed.authserv_id == "example.com"
    assert _triples(parsed.results) == [("spf", "pass", {"smtp.mailfrom": "example.net"})]


def test_authres_version_and_method_version() -> None:
    """An authserv-id "example.org 1" sets the header version and "dkim/1" the method's."""
    parsed = _parse_ok("example.org 1; dkim/1=pass header.d=example.org")
    assert (parsed.authserv_id, parsed.version) == ("example.org", "1")
    assert (parsed.results[0].method, parsed.results[0].version) == ("dkim", "1")


def test_comments_everywhere_rfc8601_b7() -> None:
    """RFC 8601's comment-heavy example keeps both versions and joins "policy . expired"."""
    parsed = _parse_ok(ITEMS[10]["header"])
    assert parsed.version == "1"
    assert parsed.results == (
        MethodResult("dkim", "fail", None, {"policy.expired": "1362471462"}, version="1"),
    )


def test_folding_with_crlf() -> None:
    """CRLF folding (including inside a comment) is whitespace."""
    value = "example.com;\r\n\tdkim=pass (2048-bit\r\n key) header.d=example.com;\r\n spf=fail"
    assert _triples(_parse_ok(value).results) == [
        ("dkim", "pass", {"header.d": "example.com"}),
        ("spf", "fail", {}),
    ]


def test_nested_comment_with_escaped_parentheses() -> None:
    """A nested comment holding escaped parentheses, quotes and ";" is dropped whole."""
    value = r'example.com; dkim=pass (a \) b (c; "d) e) header.d=example.com'
    assert _triples(_parse_ok(value).results) == [("dkim", "pass", {"header.d": "example.com"})]


def test_quoted_reason_with_escapes() -> None:
    """reason= is unquoted and unescaped, and kept both as .reason and as a property."""
    parsed = _parse_ok(r'example.com; dkim=fail reason="bad \"sig\"; retry" header.d=x.example')
    result = parsed.results[0]
    assert result.reason == 'bad "sig"; retry'
    assert result.properties == {"reason": 'bad "sig"; retry', "header.d": "x.example"}


def test_odd_spacing_and_case() -> None:
    """Method, result, ptype and property name are lower-cased; the id and values keep case."""
    parsed = _parse_ok("Example.COM ;SPF = Pass  SMTP . MailFrom = User@Example.NET ;")
    assert parsed.authserv_id == "Example.COM"
    assert _triples(parsed.results) == [("spf", "pass", {"smtp.mailfrom": "User@Example.NET"})]


def test_values_with_at_dots_equals_and_quotes() -> None:
    """Values keep "@", dots, "=" and "/" unquoted, and quoted values lose their quotes."""
    value = (
        "mx.example; spf=pass smtp.mailfrom=bounces+1-a=b.example@sg.example.net "
        'header.b="Kf/yv26g" policy.iprev="2001:db8::1" header.i=@d.example'
    )
    assert _parse_ok(value).results[0].properties == {
        "smtp.mailfrom": "bounces+1-a=b.example@sg.example.net",
        "header.b": "Kf/yv26g",
        "policy.iprev": "2001:db8::1",
        "header.i": "@d.example",
    }


def test_arc_prefix_and_quoted_authserv_id() -> None:
    """ARC's "i=2;" prefix becomes the instance, and a quoted authserv-id is unquoted."""
    parsed = _parse_ok('ARC-Authentication-Results: i=2; "mx.example.org"; arc=pass')
    assert (parsed.instance, parsed.authserv_id) == (2, "mx.example.org")
    assert _triples(parsed.results) == [("arc", "pass", {})]


def test_microsoft_form_without_authserv_id() -> None:
    """Microsoft's header has no authserv-id; its bare tenant tokens are skipped."""
    parsed = _parse_ok(
        "spf=pass (sender IP is 1.2.3.4) smtp.mailfrom=x.example; contoso.com; dkim=none "
        "(message not signed) header.d=none;dmarc=pass action=none header.from=x.example;"
        "compauth=pass reason=100"
    )
    assert parsed.authserv_id == ""
    assert _triples(parsed.results) == [
        ("spf", "pass", {"smtp.mailfrom": "x.example"}),
        ("dkim", "none", {"header.d": "none"}),
        ("dmarc", "pass", {"action": "none", "header.from": "x.example"}),
        ("compauth", "pass", {"reason": "100"}),
    ]
    assert parsed.results[3].reason == "100"


@pytest.mark.parametrize("value", ["example.com; none", "example.com;", "example.com"])
def test_no_results(value: str) -> None:
    """The "none" result set, a lone ";" and a bare authserv-id all mean no results, no error."""
    parsed = _parse_ok(value)
    assert (parsed.authserv_id, parsed.results) == ("example.com", ())


def test_stray_property_is_skipped() -> None:
    """A resinfo that is really a property ("smtp.remote-ip=1.2.3.4", as Exim writes) is
    skipped, not read as a method."""
    parsed = _parse_ok("test.ex; smtp.remote-ip=127.0.0.1; iprev=pass")
    assert _triples(parsed.results) == [("iprev", "pass", {})]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "empty header value"),
        ("Authentication-Results:  (only a comment)", "empty header value"),
        ("(" * 10, "unterminated comment"),
        ('"example.com', "unterminated quoted string"),
        ("example.com; dkim=pass reason=\"open", "unterminated quoted string"),
        ("example.com; dkim=pass (open", "unterminated comment"),
        ("example.com; dkim=pass )", "unbalanced ')'"),
        ("example.com; ) dkim=pass", "unbalanced ')'"),
        ("example.com dkim=pass", "expected ';' after the authserv-id"),
        ("example.com 1x; dkim=pass", "bad authres-version"),
        ("; spf=pass", "expected an authserv-id"),
        ("i=1234567890; example.com; arc=pass", "ARC instance out of range"),
        ("test.ex; iprev=pass; x=1.2", "bad result '1.2'"),
        ("test.ex; iprev=pass; y=", "expected a result after 'y='"),
        ("test.ex; iprev=pass; =z", "expected a method, found '='"),
    ],
)
def test_malformed_header_reports_error(value: str, message: str) -> None:
    """Malformed input gives a one-line error naming the problem, and no results."""
    parsed = parse_authentication_results(value)
    assert parsed.error is not None
    assert message in parsed.error
    assert "\n" not in parsed.error
    assert parsed.results == ()


def test_error_keeps_authserv_id() -> None:
    """An error after the authserv-id still reports which server wrote the header."""
    value = "mx.example; spf=pass; dkim=pass (unclosed"
    parsed = parse_authentication_results(value)
    assert (parsed.authserv_id, parsed.results) == ("mx.example", ())
    assert parsed.error == f"unterminated comment at offset {value.index('(')}"


# --- never raises, linear time -------------------------------------------------------------

_PIECES = [*'()";=./\\@: \t\r\n\x00\x7f', "i=1;", "example.com", "dkim", "pass", "header.d"]
_piece = st.one_of(st.sampled_from(_PIECES), st.characters())
_header_text = st.lists(_piece, max_size=80).map("".join)
_repeated = st.tuples(st.lists(st.sampled_from(_PIECES), min_size=1, max_size=6).map("".join),
                      st.integers(1, 20_000)).map(lambda pair: pair[0] * pair[1])


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(), _header_text, _repeated, _header_text.map(lambda t: "a; " + t)))
def test_never_raises(text: str) -> None:
    """Any text parses to an AuthResults (maybe with a one-line error), never an exception."""
    parsed = parse_authentication_results(text)
    assert isinstance(parsed, AuthResults)
    if parsed.error is not None:
        assert parsed.results == ()
        assert "\n" not in parsed.error


_SIZE = 200_000
ADVERSARIAL = {
    "open-parens": "(" * _SIZE,
    "quotes": '"' * _SIZE,
    "semicolons": ";" * _SIZE,
    "semicolons-after-id": "example.com" + ";" * _SIZE,
    "balanced-nesting": "example.com; dkim=pass " + "(" * (_SIZE // 2) + ")" * (_SIZE // 2),
    "backslashes-in-comment": "example.com; dkim=pass (" + "\\" * _SIZE,
    "dotted-name": "example.com; dkim=pass " + "a." * (_SIZE // 2),
    "comment-dots": "example.com; dkim=pass " + "a (c) . " * (_SIZE // 8),
    "bare-words": "example.com; dkim=pass " + "a " * (_SIZE // 2),
    "equals": "example.com; " + "x=" * (_SIZE // 2),
    "resinfos": "example.com; " + "dkim=pass header.d=a;" * (_SIZE // 21),
    "arc-prefixes": "i=" * (_SIZE // 2),
    "long-value": "example.com; spf=pass smtp.mailfrom=" + "=" * _SIZE,
}


@pytest.mark.parametrize("text", list(ADVERSARIAL.values()), ids=list(ADVERSARIAL))
def test_adversarial_input_parses_in_linear_time(text: str) -> None:
    """A 200 KB adversarial header parses in well under a second."""
    # Guards against quadratic behaviour (backtracking, rescanning): linear work on 200 KB
    # takes milliseconds, quadratic work takes minutes, so 1 s is a generous bound.
    started = time.perf_counter()
    parse_authentication_results(text)
    assert time.perf_counter() - started < 1.0


# --- judge() -------------------------------------------------------------------------------

GOOGLE = (
    "mx.google.com; dkim=pass header.i=@example.com header.s=s1 header.b=abc; "
    "spf=pass smtp.mailfrom=bounce@example.com; dmarc=pass header.from=example.com; arc=none"
)
ATTACKER = (
    "mx.google.com.evil.example; dkim=pass header.d=example.com; spf=pass "
    "smtp.mailfrom=example.com; dmarc=pass header.from=example.com; arc=pass"
)
FAILING = "mx.google.com; dkim=fail header.d=example.com; spf=softfail smtp.mailfrom=x.example"


def _judge(*headers: str, trusted: tuple[str, ...] = ("mx.google.com",),
           from_domain: str = "example.com") -> Verdicts:
    return judge(headers, trusted_authserv_ids=trusted, from_domain=from_domain)


def test_trusted_header_gives_its_verdicts() -> None:
    """The receiver's own header gives spf/dkim/dmarc/arc, domains and alignment."""
    verdicts = _judge(GOOGLE)
    assert (verdicts.spf, verdicts.dkim, verdicts.dmarc, verdicts.arc) == (
        "pass", "pass", "pass", "none")
    assert verdicts.dkim_domains == (("example.com", "s1"),)
    assert verdicts.spf_domain == "example.com"
    assert verdicts.dmarc_aligned is True
    assert verdicts.trusted_header == GOOGLE


@pytest.mark.parametrize("order", ["attacker-above", "attacker-below"])
def test_untrusted_header_is_ignored(order: str) -> None:
    """A header with another authserv-id cannot turn the receiver's fail into a pass."""
    headers = (ATTACKER, FAILING) if order == "attacker-above" else (FAILING, ATTACKER)
    verdicts = _judge(*headers)
    assert (verdicts.spf, verdicts.dkim, verdicts.dmarc, verdicts.arc) == (
        "softfail", "fail", "none", "none")
    assert verdicts.dmarc_aligned is False
    assert verdicts.trusted_header == FAILING


def test_only_untrusted_headers_give_none() -> None:
    """With no trusted header every verdict is "none", never pass."""
    verdicts = _judge(ATTACKER)
    assert (verdicts.spf, verdicts.dkim, verdicts.dmarc, verdicts.arc) == ("none",) * 4
    assert (verdicts.dkim_domains, verdicts.spf_domain, verdicts.trusted_header) == ((), None, None)
    assert verdicts.dmarc_aligned is False


def test_missing_header_gives_none() -> None:
    """A message without Authentication-Results is "none" everywhere."""
    verdicts = _judge()
    assert (verdicts.spf, verdicts.dkim, verdicts.dmarc, verdicts.arc) == ("none",) * 4


def test_empty_trusted_list_trusts_nothing() -> None:
    """An empty list of trusted authserv-ids trusts no header at all."""
    assert _judge(GOOGLE, trusted=()).dkim == "none"


def test_authserv_id_matches_case_insensitively() -> None:
    """The trusted id matches whatever the case on either side."""
    assert _judge(GOOGLE.replace("mx.google.com", "MX.Google.COM"), trusted=("mx.GOOGLE.com",)
                  ).spf == "pass"


def test_whole_header_lines_are_accepted() -> None:
    """judge() takes full "Authentication-Results: ..." lines as well as values."""
    assert _judge("Authentication-Results: " + GOOGLE).dmarc == "pass"


@pytest.mark.parametrize(
    ("dkim_domain", "from_domain", "aligned"),
    [
        ("example.com", "example.com", True),
        ("Example.COM", "example.com", True),
        ("example.com", "news.example.com", True),  # d= is the From domain's parent
        ("mail.example.com", "example.com", True),  # d= is a subdomain
        ("esp.example.net", "example.com", False),  # unrelated ESP domain
        ("notexample.com", "example.com", False),  # a suffix, not a subdomain
        ("com", "example.com", False),  # a TLD aligns with nothing
    ],
)
def test_dkim_alignment(dkim_domain: str, from_domain: str, aligned: bool) -> None:
    """A passing DKIM signature aligns when d= is the From domain, its parent or its child."""
    header = f"mx.google.com; dkim=pass header.d={dkim_domain}; spf=fail smtp.mailfrom=x.test"
    assert _judge(header, from_domain=from_domain).dmarc_aligned is aligned


def test_failing_dkim_does_not_align() -> None:
    """A failing signature from the From domain does not count for alignment."""
    assert _judge("mx.google.com; dkim=fail header.d=example.com").dmarc_aligned is False


@pytest.mark.parametrize(
    ("spf", "aligned"),
    [
        ("spf=pass smtp.mailfrom=bounce@mail.example.com", True),
        ("spf=pass smtp.mailfrom=bounce@esp.example.net", False),
        ("spf=softfail smtp.mailfrom=bounce@example.com", False),
        ("spf=pass smtp.helo=mta.example.com", True),
    ],
)
def test_spf_alignment(spf: str, aligned: bool) -> None:
    """A passing SPF aligns when its mail-from (or HELO) domain shares the From domain."""
    verdicts = _judge(f"mx.google.com; dkim=none; {spf}", from_domain="user@Example.com")
    assert verdicts.dmarc_aligned is aligned


def test_spf_domain_prefers_mailfrom_then_helo() -> None:
    """spf_domain is the mail-from domain, or the HELO name when there is no mail-from."""
    both = "mx.google.com; spf=pass smtp.helo=mta.example.net smtp.mailfrom=b@Example.org"
    assert _judge(both).spf_domain == "example.org"
    assert _judge("mx.google.com; spf=none smtp.helo=mta.example.net").spf_domain == (
        "mta.example.net")


def test_one_failing_and_one_passing_dkim_signature() -> None:
    """Any valid signature makes dkim pass, and the passing domain is listed first."""
    header = (
        "mx.google.com; dkim=fail (bad signature) header.d=example.com header.s=old; "
        "dkim=pass header.d=esp.example.net header.s=s2"
    )
    verdicts = _judge(header)
    assert verdicts.dkim == "pass"
    assert verdicts.dkim_domains == (("esp.example.net", "s2"), ("example.com", "old"))
    assert verdicts.dmarc_aligned is False  # the passing one does not align


def test_several_trusted_headers_combine_per_method() -> None:
    """One header per check (iCloud) combine; the topmost trusted header decides each method."""
    headers = (
        "dmarc.icloud.com; dmarc=pass header.from=example.com",
        "dkim-verifier.icloud.com; dkim=pass header.d=example.com header.s=s1",
        "spf.icloud.com; spf=pass smtp.mailfrom=example.com",
        "spf.icloud.com; spf=fail smtp.mailfrom=example.com",
    )
    trusted = ("dmarc.icloud.com", "dkim-verifier.icloud.com", "spf.icloud.com")
    verdicts = _judge(*headers, trusted=trusted)
    assert (verdicts.spf, verdicts.dkim, verdicts.dmarc) == ("pass", "pass", "pass")
    assert verdicts.trusted_header == headers[0]


def test_first_result_wins_for_spf() -> None:
    """For methods other than dkim the first result in the header decides."""
    header = "mx.google.com; spf=fail smtp.mailfrom=a.example; spf=pass smtp.helo=b.example"
    assert _judge(header).spf == "fail"


def test_unregistered_results_are_ignored() -> None:
    """Results outside the registry ("bestguesspass", arc "reject") never count; hardfail=fail."""
    header = "mx.google.com; dmarc=bestguesspass; arc=reject; spf=hardfail; dkim=dkim_pass"
    verdicts = _judge(header)
    assert (verdicts.spf, verdicts.dkim, verdicts.dmarc, verdicts.arc) == (
        "fail", "none", "none", "none")


def test_arc_verdict_comes_from_arc_results() -> None:
    """The arc verdict is the trusted header's arc= entry."""
    assert _judge(ITEMS[93]["header"], trusted=("gmr-mx.google.com",)).arc == "fail"


def test_microsoft_header_trusted_only_by_explicit_empty_id() -> None:
    """Microsoft's header has no authserv-id, so it is trusted only when "" is listed."""
    header = ITEMS[57]["header"]
    assert _judge(header, from_domain="163.com").dkim == "none"
    verdicts = _judge(header, trusted=("",), from_domain="163.com")
    assert (verdicts.spf, verdicts.dkim, verdicts.dmarc) == ("pass", "pass", "pass")
    assert verdicts.dmarc_aligned is True


def test_malformed_trusted_header_gives_none() -> None:
    """A trusted header that does not parse is recorded but says nothing."""
    header = "mx.google.com; dkim=pass header.d=example.com (unclosed"
    verdicts = _judge(header)
    assert verdicts.dkim == "none"
    assert verdicts.trusted_header == header
