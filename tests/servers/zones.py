"""Test zones for the DNS checks: one good domain with every record right, and one broken
domain or relay per failure, all under ``.test`` with documentation addresses."""

from __future__ import annotations

import base64
import functools
import random

import dns.reversename
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from exporter.demo.dns import Records, txt

__all__ = ["SERVFAIL", "TIMEOUT", "dkim_rsa", "ptr", "txt", "zones"]

SERVFAIL = {"servfail.test", "_dmarc.servfail.test", "10.2.0.192.broken-bl.test"}
TIMEOUT = {"_dmarc.slow.test", "slow.test"}


def ptr(address: str) -> str:
    """The reverse name of an address, as a records key."""
    return dns.reversename.from_address(address).to_text().rstrip(".").lower()


def _b64(der: bytes) -> str:
    return base64.b64encode(der).decode()


@functools.cache
def dkim_rsa(bits: int, *, pkcs1: bool = False) -> str:
    """A DKIM TXT value with an RSA key of ``bits`` (keys below 1024 bits are random moduli:
    cryptography will not generate them, and only the size matters here)."""
    if bits < 1024:
        modulus = random.Random(bits).getrandbits(bits) | (1 << (bits - 1)) | 1
        public = rsa.RSAPublicNumbers(65537, modulus).public_key()
    else:
        public = rsa.generate_private_key(public_exponent=65537, key_size=bits).public_key()
    fmt = PublicFormat.PKCS1 if pkcs1 else PublicFormat.SubjectPublicKeyInfo
    return f"v=DKIM1; k=rsa; p={_b64(public.public_bytes(Encoding.DER, fmt))}"


@functools.cache
def dkim_ed25519() -> str:
    """A DKIM TXT value with an ed25519 key."""
    public = ed25519.Ed25519PrivateKey.generate().public_key()
    return f"v=DKIM1; k=ed25519; p={_b64(public.public_bytes(Encoding.Raw, PublicFormat.Raw))}"


def _spf(*names_and_values: tuple[str, str]) -> Records:
    return {name: [("TXT", txt(value))] for name, value in names_and_values}


@functools.cache
def _zones() -> Records:
    records: Records = {
        # good.test: every record right; SPF has 3 lookups (mx, a, include)
        "good.test": [("MX", "10 mx1.good.test."), ("A", "192.0.2.10"),
                      ("TXT", txt("google-site-verification=abc123")),
                      ("TXT", txt("v=spf1 mx a include:_spf.provider.test ~all"))],
        "mx1.good.test": [("A", "192.0.2.25"), ("AAAA", "2001:db8::25")],
        "_spf.provider.test": [("TXT", txt("v=spf1 ip4:198.51.100.0/24 ip6:2001:db8::/32 -all"))],
        "s2048._domainkey.good.test": [("TXT", txt(dkim_rsa(2048)))],
        "ed._domainkey.good.test": [("TXT", txt(dkim_ed25519()))],
        "pkcs1._domainkey.good.test": [("TXT", txt(dkim_rsa(2048, pkcs1=True)))],
        "_dmarc.good.test": [("TXT", txt("v=DMARC1; p=reject; rua=mailto:dmarc@good.test"))],
        "_mta-sts.good.test": [("TXT", txt("v=STSv1; id=20240101T000000"))],
        "_smtp._tls.good.test": [("TXT", txt("v=TLSRPTv1; rua=mailto:tls@good.test"))],
        "sub.good.test": [("MX", "10 mx1.good.test.")],
        # DKIM: weak, broken, revoked and unparseable keys
        "s512._domainkey.keys.test": [("TXT", txt(dkim_rsa(512)))],
        "s1024._domainkey.keys.test": [("TXT", txt(dkim_rsa(1024)))],
        "revoked._domainkey.keys.test": [("TXT", txt("v=DKIM1; k=rsa; p="))],
        "junk._domainkey.keys.test": [("TXT", txt("v=DKIM1; k=rsa; p=AAAA"))],
        # DMARC
        "_dmarc.pnone.test": [("TXT", txt("v=DMARC1; p=none; rua=mailto:d@pnone.test"))],
        "_dmarc.dmarcsyntax.test": [("TXT", txt("v=DMARC1; p=block"))],
        "_dmarc.parent.test": [("TXT", txt(
            "v=DMARC1; p=reject; sp=quarantine; rua=mailto:d@parent.test"))],
        "mail.parent.test": [("A", "192.0.2.30")],
        "_dmarc.pct.test": [("TXT", txt("v=DMARC1; p=quarantine; pct=50; rua=mailto:d@pct.test"))],
        "_dmarc.norua.test": [("TXT", txt("v=DMARC1; p=reject"))],
        "_dmarc.twodmarc.test": [("TXT", txt("v=DMARC1; p=reject")),
                                 ("TXT", txt("v=DMARC1; p=none"))],
        # MX
        "nomx.test": [("A", "192.0.2.40")],
        "nullmx.test": [("MX", "0 .")],
        "mxbroken.test": [("MX", "10 nowhere.mxbroken.test.")],
        # MTA-STS and TLS-RPT with bad syntax
        "_mta-sts.badsts.test": [("TXT", txt("v=STSv1; id=not-valid!"))],
        "_smtp._tls.badsts.test": [("TXT", txt("v=TLSRPTv1; rua=ftp://reports.badsts.test"))],
        # relays: FCrDNS holds, PTR mismatch, no PTR, listed on bl.test
        "relay-ok.test": [("A", "192.0.2.10"), ("AAAA", "2001:db8::10")],
        ptr("192.0.2.10"): [("PTR", "relay-ok.test.")],
        ptr("2001:db8::10"): [("PTR", "relay-ok.test.")],
        "relay-mismatch.test": [("A", "192.0.2.11")],
        ptr("192.0.2.11"): [("PTR", "other.test.")],
        "other.test": [("A", "192.0.2.99")],
        "relay-noptr.test": [("A", "192.0.2.12")],
        "relay-listed.test": [("A", "192.0.2.20")],
        ptr("192.0.2.20"): [("PTR", "relay-listed.test.")],
        "relay-alias.test": [("CNAME", "relay-ok.test.")],
        "20.2.0.192.bl.test": [("A", "127.0.0.2"), ("TXT", txt("listed: see bl.test"))],
        "10.2.0.192.block.test": [("A", "127.255.255.254")],
        # the apex of the servfail test domain has MX so only its _dmarc fails
        "slowish.test": [("MX", "10 mx1.good.test.")],
    }
    records |= _spf(
        ("twospf.test", "v=spf1 -all"),
        ("plusall.test", "v=spf1 ip4:192.0.2.0/24 +all"),
        ("spfsyntax.test", "v=spf1 ip4:192.0.2.300 -all"),
        ("void.test", "v=spf1 a:gone1.void.test a:gone2.void.test exists:gone3.void.test -all"),
        # 11 lookups through nested includes: 2 + 2 + 2 + 2 + 1 + 1 + 1
        ("deep.test", "v=spf1 include:a.deep.test include:b.deep.test -all"),
        ("a.deep.test", "v=spf1 include:c.deep.test include:d.deep.test ~all"),
        ("b.deep.test", "v=spf1 include:e.deep.test a:mx1.good.test ~all"),
        ("c.deep.test", "v=spf1 mx:good.test a:mx1.good.test ip4:198.51.100.1 ~all"),
        ("d.deep.test", "v=spf1 exists:mx1.good.test ip6:2001:db8::/32 ~all"),
        ("e.deep.test", "v=spf1 include:f.deep.test ~all"),
        ("f.deep.test", "v=spf1 a:mx1.good.test ~all"),
        ("loop.test", "v=spf1 include:loop2.test -all"),
        ("loop2.test", "v=spf1 include:loop.test -all"),
        ("redirect.test", "v=spf1 redirect=_spf.provider.test"),
        ("badinclude.test", "v=spf1 include:missing.provider.test -all"),
    )
    records["twospf.test"].append(("TXT", txt("v=spf1 include:_spf.provider.test ~all")))
    return records


def zones() -> Records:
    """A fresh copy of every test zone (tests may change their copy)."""
    return {name: list(values) for name, values in _zones().items()}
