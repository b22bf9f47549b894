"""Pure parsers of SPF, DMARC, DKIM, MTA-STS and TLS-RPT records, over real-world records."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.dns.records import (
    SPFTerm,
    dns_lookup_terms,
    is_spf_record,
    parse_dkim_key,
    parse_dmarc,
    parse_mta_sts,
    parse_spf,
    parse_tag_list,
    parse_tls_rpt,
)
from tests.servers.zones import dkim_ed25519, dkim_rsa

MICROSOFT_SPF = (
    "v=spf1 ip4:40.92.0.0/15 ip4:40.107.0.0/16 ip4:52.100.0.0/15 ip4:52.102.0.0/16 "
    "ip4:52.103.0.0/16 ip4:104.47.0.0/17 ip6:2a01:111:f400::/48 ip6:2a01:111:f403::/49 "
    "ip6:2a01:111:f403:8000::/51 ip6:2a01:111:f403:c000::/51 ip6:2a01:111:f403:f000::/52 -all"
)


@pytest.mark.parametrize(("text", "lookups", "all_qualifier"), [
    ("v=spf1 include:_spf.google.com ~all", 1, "~"),
    ("v=spf1 include:_netblocks.google.com include:_netblocks2.google.com "
     "include:_netblocks3.google.com ~all", 3, "~"),
    ("v=spf1 include:spf.protection.outlook.com -all", 1, "-"),
    (MICROSOFT_SPF, 0, "-"),
    ("v=spf1 include:amazonses.com include:mailgun.org include:sendgrid.net ?all", 3, "?"),
    ("v=spf1 exists:%{i}._spf.mta.salesforce.com -all", 1, "-"),
    ("v=spf1 a mx ptr ip4:192.0.2.1 redirect=_spf.example.com", 4, None),
    ("v=spf1 a/24 mx:example.com/24//64 -all redirect=_spf.example.com", 2, "-"),
    ("V=SPF1 +A -ALL", 1, "-"),
    ("v=spf1", 0, None),
])
def test_spf_real_world_records_parse(text: str, lookups: int, all_qualifier: str | None) -> None:
    """Records published by Google, Microsoft, SES and Salesforce parse without errors."""
    record = parse_spf(text)
    assert record.errors == ()
    assert dns_lookup_terms(record) == lookups
    assert record.all_qualifier == all_qualifier
    assert is_spf_record(text)


def test_spf_terms_and_modifiers() -> None:
    """Terms keep qualifier, lower-case mechanism and value; redirect and exp are modifiers."""
    record = parse_spf("v=spf1 -ip4:192.0.2.0/24 ~include:_spf.example.com A/24 "
                       "redirect=_spf.example.net exp=explain.example.com unknown=x")
    assert record.terms == (SPFTerm("-", "ip4", "192.0.2.0/24"),
                            SPFTerm("~", "include", "_spf.example.com"),
                            SPFTerm("+", "a", "/24"))
    assert (record.redirect, record.exp) == ("_spf.example.net", "explain.example.com")


@pytest.mark.parametrize(("text", "error"), [
    ("v=spf1 foo:bar -all", "unknown mechanism 'foo:bar'"),
    ("v=spf1 include -all", "include needs a domain: include:example.com"),
    ("v=spf1 include: -all", "include needs a domain: include:example.com"),
    ("v=spf1 exists -all", "exists needs a domain: exists:example.com"),
    ("v=spf1 ip4:10.0.0.0/33 -all", "bad ip4 network 'ip4:10.0.0.0/33'"),
    ("v=spf1 ip4:2001:db8::/32 -all", "bad ip4 network 'ip4:2001:db8::/32'"),
    ("v=spf1 ip6 -all", "bad ip6 network 'ip6'"),
    ("v=spf1 a:example.com/40 -all", "bad CIDR length in 'a:example.com/40'"),
    ("v=spf1 mx: -all", "mx has an empty or bad domain in 'mx:'"),
    ("v=spf1 ptr/24 -all", "ptr takes no CIDR length: 'ptr/24'"),
    ("v=spf1 -all:foo", "all takes no value, got '-all:foo'"),
    ("v=spf1 redirect= ", "redirect= needs a domain, got ''"),
    ("v=spf1 redirect=a.example redirect=b.example", "redirect= appears twice"),
    ("v=spf1 include:%{z}.example.com -all", "include needs a domain: include:example.com"),
    ("spf1 -all", "record does not start with v=spf1"),
])
def test_spf_syntax_errors(text: str, error: str) -> None:
    """Each syntax problem is one line naming the bad term."""
    assert parse_spf(text).errors[0] == error


@pytest.mark.parametrize(("text", "expected"), [
    ("v=spf1 -all", True), ("v=spf1", True), ("  v=spf1 mx", True), ("V=SPF1 mx", True),
    ("v=spf10 -all", False), ("spf2.0/pra include:x", False), ("v=DMARC1; p=none", False),
    ("google-site-verification=abc", False), ("", False),
])
def test_is_spf_record(text: str, expected: bool) -> None:
    """Only v=spf1 alone or followed by a space is an SPF record (RFC 7208 4.5)."""
    assert is_spf_record(text) is expected


@pytest.mark.parametrize(("text", "fields"), [
    ("v=DMARC1; p=reject; rua=mailto:mailauth-reports@google.com",
     ("reject", None, 100, "r", "r", ("mailto:mailauth-reports@google.com",), ())),
    ("v=DMARC1; p=none; sp=quarantine; rua=mailto:mailauth-reports@google.com",
     ("none", "quarantine", 100, "r", "r", ("mailto:mailauth-reports@google.com",), ())),
    ("v=DMARC1; p=reject; pct=100; rua=mailto:d@rua.agari.com; ruf=mailto:d@ruf.agari.com; "
     "fo=1", ("reject", None, 100, "r", "r", ("mailto:d@rua.agari.com",),
              ("mailto:d@ruf.agari.com",))),
    ("v=DMARC1;p=quarantine;pct=25;adkim=s;aspf=s;rua=mailto:a@x.example,mailto:b@y.example!10m;",
     ("quarantine", None, 25, "s", "s", ("mailto:a@x.example", "mailto:b@y.example!10m"), ())),
    ("v=DMARC1; p=REJECT; pct=007", ("reject", None, 7, "r", "r", (), ())),
])
def test_dmarc_real_world_records(text: str, fields: tuple[object, ...]) -> None:
    """Google's, Gmail's and Microsoft's DMARC records parse with RFC 7489 defaults."""
    r = parse_dmarc(text)
    assert r.errors == ()
    assert (r.p, r.sp, r.pct, r.adkim, r.aspf, r.rua, r.ruf) == fields


@pytest.mark.parametrize(("text", "error"), [
    ("p=reject; v=DMARC1", "the first tag must be v=DMARC1"),
    ("v=DMARC1; rua=mailto:d@example.com", "p= is missing; it must be none, quarantine or reject"),
    ("v=DMARC1; p=block", "p=block is not none, quarantine or reject"),
    ("v=DMARC1; p=reject; sp=maybe", "sp=maybe is not none, quarantine or reject"),
    ("v=DMARC1; p=reject; pct=150", "pct=150 is not a whole number from 0 to 100"),
    ("v=DMARC1; p=reject; pct=-1", "pct=-1 is not a whole number from 0 to 100"),
    ("v=DMARC1; p=reject; adkim=x", "adkim=x is not r (relaxed) or s (strict)"),
    ("v=DMARC1; p=reject; rua=d@example.com",
     "rua has 'd@example.com', not a URI such as mailto:dmarc@example.com"),
    ("v=DMARC1; p=reject; p=none", "duplicate tag p"),
    ("v=DMARC1; p=reject; garbage", "malformed tag 'garbage': expected name=value"),
])
def test_dmarc_errors(text: str, error: str) -> None:
    """Each DMARC problem is reported as one line."""
    assert parse_dmarc(text).errors[0] == error


def test_tag_list_strips_whitespace_and_skips_empty_specs() -> None:
    """Folding whitespace around names and values goes; a trailing ';' is fine."""
    tags = parse_tag_list(" v = DKIM1 ;\tk=rsa;  p = AB CD ; ;")
    assert tags.tags == (("v", "DKIM1"), ("k", "rsa"), ("p", "AB CD"))
    assert tags.errors == ()
    assert tags.get("p") == "AB CD" and tags.get("x") is None


@pytest.mark.parametrize(("text", "key_type", "bits", "revoked"), [
    (dkim_rsa(2048), "rsa", 2048, False),
    (dkim_rsa(2048, pkcs1=True), "rsa", 2048, False),
    (dkim_rsa(1024), "rsa", 1024, False),
    (dkim_rsa(512), "rsa", 512, False),
    (dkim_ed25519(), "ed25519", 256, False),
    ("v=DKIM1; k=rsa; p=", "rsa", None, True),
    ("v=DKIM1; p=", "rsa", None, True),
])
def test_dkim_keys(text: str, key_type: str, bits: int | None, revoked: bool) -> None:
    """Key type, size (SPKI or PKCS#1 RSA, ed25519) and revocation come from the record."""
    key = parse_dkim_key(text)
    assert (key.key_type, key.bits, key.revoked, key.errors) == (key_type, bits, revoked, ())


def test_dkim_key_split_over_strings_and_spaces() -> None:
    """Spaces inside p= (from split TXT strings or folding) are removed before decoding."""
    text = dkim_rsa(2048)
    head, key = text.split("p=")
    spaced = head + "p=" + " ".join(key[i:i + 60] for i in range(0, len(key), 60))
    assert parse_dkim_key(spaced).bits == 2048
    assert parse_dkim_key("k=rsa; t=y; " + "p=" + key).testing


@pytest.mark.parametrize(("text", "error"), [
    ("v=DKIM1; k=rsa; p=!!!!", "p= is not valid base64"),
    ("v=DKIM1; k=rsa; p=AAAA", "p= does not hold a DER RSA public key"),
    ("v=DKIM1; k=dsa; p=AAAA", "unknown key type k=dsa; use rsa or ed25519"),
    ("v=DKIM1; k=ed25519; p=AAAA", "ed25519 key is 3 bytes, not 32"),
    ("v=DKIM1; k=rsa", "p= is missing; publish the base64 public key in p="),
    ("k=rsa; v=DKIM1; p=", "v= must be DKIM1 and come first"),
])
def test_dkim_errors(text: str, error: str) -> None:
    """Bad base64, an unparseable key, an unknown type and a missing p= are errors."""
    assert parse_dkim_key(text).errors[0] == error


def test_dkim_key_of_the_wrong_type() -> None:
    """An ed25519 SubjectPublicKeyInfo under k=rsa is reported, not sized."""
    import base64

    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    der = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    key = parse_dkim_key("v=DKIM1; p=" + base64.b64encode(der).decode())
    assert key.errors == ("p= holds a key that is not RSA; set k= to its type",)


@pytest.mark.parametrize(("text", "sts_id", "errors"), [
    ("v=STSv1; id=20190429T010101;", "20190429T010101", ()),
    ("v=STSv1;id=1", "1", ()),
    ("v=STSv1; id=" + "a" * 33, "a" * 33, ("id=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa must be 1 to 32 "
                                           "letters and digits",)),
    ("v=STSv1; id=2024-01-01", "2024-01-01", ("id=2024-01-01 must be 1 to 32 letters and digits",)),
    ("v=STSv1", None, ("id= is missing; set it to a new value at each policy change",)),
    ("id=1; v=STSv1", "1", ("the first tag must be v=STSv1",)),
])
def test_mta_sts(text: str, sts_id: str | None, errors: tuple[str, ...]) -> None:
    """MTA-STS needs v=STSv1 first and an id of 1 to 32 letters and digits."""
    record = parse_mta_sts(text)
    assert (record.id, record.errors) == (sts_id, errors)


@pytest.mark.parametrize(("text", "rua", "errors"), [
    ("v=TLSRPTv1;rua=mailto:sts-reports@google.com", ("mailto:sts-reports@google.com",), ()),
    ("v=TLSRPTv1; rua=mailto:tls@example.com,https://reports.example.com/tls",
     ("mailto:tls@example.com", "https://reports.example.com/tls"), ()),
    ("v=TLSRPTv1; rua=ftp://x.example", ("ftp://x.example",),
     ("rua 'ftp://x.example' is not a mailto: or https: URI",)),
    ("v=TLSRPTv1", (), ("rua= is missing; set rua=mailto:tls-reports@example.com",)),
    ("v=TLSRPTv2; rua=mailto:a@b.example", ("mailto:a@b.example",),
     ("the first tag must be v=TLSRPTv1",)),
])
def test_tls_rpt(text: str, rua: tuple[str, ...], errors: tuple[str, ...]) -> None:
    """TLS-RPT needs v=TLSRPTv1 first and mailto: or https: report URIs."""
    record = parse_tls_rpt(text)
    assert (record.rua, record.errors) == (rua, errors)


PARSERS: list[Callable[[str], object]] = [
    parse_spf, is_spf_record, parse_dmarc, parse_dkim_key, parse_mta_sts, parse_tls_rpt,
    parse_tag_list, lambda text: dns_lookup_terms(parse_spf(text)),
]
RECORD_ALPHABET = "v=spf1DMARCKIMSTLRPTa ;:/.,+-~?%{}_ip46lxnudeqrtsmoy0123456789AZ!\t"


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(), st.text(alphabet=RECORD_ALPHABET)))
def test_parsers_never_raise(text: str) -> None:
    """Every parser takes any text without raising."""
    for parser in PARSERS:
        parser(text)
        parser("v=spf1 " + text)
        parser("v=DMARC1; p=" + text)
        parser("v=DKIM1; k=rsa; p=" + text)


ADVERSARIAL = [
    "v=spf1 " + "include:%{" * 400,
    "v=spf1 " + "a:" + "." * 2000 + " ip4:" + "1" * 2000,
    "v=spf1 " + "mx/" * 1000 + "-all",
    "v=DMARC1; p=reject; rua=" + "mailto:a@b," * 400 + ";" * 2000,
    "v=DKIM1; k=rsa; p=" + "MIIB" * 1000,
    "v=STSv1; id=" + "a=" * 1000,
    "v=TLSRPTv1; rua=" + "," * 4000,
    "=;" * 2000,
]


def _best_of(parser: Callable[[str], object], text: str) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        parser(text)
        best = min(best, time.perf_counter() - start)
    return best


@pytest.mark.parametrize("parser", PARSERS)
def test_parsers_run_in_linear_time(parser: Callable[[str], object]) -> None:
    """Eight times the input costs far less than 64 times the time (no quadratic paths)."""
    for text in ADVERSARIAL:
        small, large = _best_of(parser, text), _best_of(parser, text * 8)
        assert large < max(small, 1e-4) * 30, (text[:30], small, large)
