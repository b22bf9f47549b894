"""Mail DNS records as values: SPF (RFC 7208), DMARC (RFC 7489), DKIM keys (RFC 6376),
MTA-STS (RFC 8461) and TLS-RPT (RFC 8460) TXT records.

Every parser takes the record's text (TXT strings already joined), never raises, runs in
time linear in the text, and reports problems as one-line strings in ``errors``.
"""

from __future__ import annotations

import binascii
import ipaddress
import re
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

__all__ = [
    "DKIMKey",
    "DMARCRecord",
    "MTASTSRecord",
    "SPFRecord",
    "SPFTerm",
    "TLSRPTRecord",
    "TagList",
    "dns_lookup_terms",
    "is_spf_record",
    "parse_dkim_key",
    "parse_dmarc",
    "parse_mta_sts",
    "parse_spf",
    "parse_tag_list",
    "parse_tls_rpt",
]

_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_SPF_MECHANISMS = frozenset({"all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"})
_LOOKUP_MECHANISMS = frozenset({"include", "a", "mx", "ptr", "exists"})
_MODIFIER = re.compile(r"([A-Za-z][A-Za-z0-9_.-]*)=(.*)\Z", re.DOTALL)
_MECHANISM = re.compile(r"([+?~-]?)([A-Za-z0-9_.-]*)(.*)\Z", re.DOTALL)
_DUAL_CIDR = re.compile(r"(?:/(\d{1,3}))?(?://(\d{1,3}))?\Z")
_DOMAIN_SPEC = re.compile(r"[!-~]+\Z")  # visible ASCII; macros are checked apart
_MACRO_ESCAPE = re.compile(r"%(?:[%_-]|\{[slodiphcrtv]\d{0,3}r?[.+,/_=-]*\})", re.IGNORECASE)
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+\Z")
_STS_ID = re.compile(r"[A-Za-z0-9]{1,32}\Z")
_POLICIES = ("none", "quarantine", "reject")


@dataclass(frozen=True, slots=True)
class TagList:
    """An RFC 6376 tag list: ``tag=value`` pairs separated by ``;``, in order."""

    tags: tuple[tuple[str, str], ...]
    errors: tuple[str, ...] = ()

    def get(self, name: str) -> str | None:
        """The value of tag ``name`` (case-insensitive name), or None when absent."""
        for tag, value in self.tags:
            if tag.lower() == name:
                return value
        return None


def parse_tag_list(text: str) -> TagList:
    """Split ``text`` into tags; empty specs (e.g. a trailing ``;``) are skipped."""
    tags: list[tuple[str, str]] = []
    errors: list[str] = []
    seen: set[str] = set()
    for spec in text.split(";"):
        if not spec.strip():
            continue
        name, eq, value = spec.partition("=")
        name = name.strip()
        if not eq or not _TAG_NAME.match(name):
            errors.append(f"malformed tag {_clip(spec.strip())!r}: expected name=value")
            continue
        if name.lower() in seen:
            errors.append(f"duplicate tag {name}")
            continue
        seen.add(name.lower())
        tags.append((name, value.strip()))
    return TagList(tuple(tags), tuple(errors))


@dataclass(frozen=True, slots=True)
class SPFTerm:
    """One SPF mechanism: qualifier (``+ - ~ ?``), lower-case name, value after ``:`` or ``/``."""

    qualifier: str
    mechanism: str
    value: str | None = None


@dataclass(frozen=True, slots=True)
class SPFRecord:
    """A parsed ``v=spf1`` record."""

    terms: tuple[SPFTerm, ...]
    redirect: str | None = None
    exp: str | None = None
    all_qualifier: str | None = None  # qualifier of the ``all`` mechanism, None without one
    errors: tuple[str, ...] = ()


def is_spf_record(text: str) -> bool:
    """True when ``text`` is an SPF record: ``v=spf1`` alone or followed by a space."""
    head = text.lstrip()[:7].lower()
    return head == "v=spf1" or head == "v=spf1 "


def parse_spf(text: str) -> SPFRecord:
    """Parse an SPF record; a record that does not start with ``v=spf1`` has an error."""
    words = text.split()
    errors: list[str] = []
    if not words or words[0].lower() != "v=spf1":
        errors.append("record does not start with v=spf1")
    terms: list[SPFTerm] = []
    modifiers: dict[str, str] = {}
    all_qualifier: str | None = None
    for word in words[1:]:
        modifier = _MODIFIER.match(word)
        if modifier:
            name, value = modifier.group(1).lower(), modifier.group(2)
            if name in ("redirect", "exp"):
                if name in modifiers:
                    errors.append(f"{name}= appears twice")
                elif not _domain_spec_ok(value):
                    errors.append(f"{name}= needs a domain, got {_clip(value)!r}")
                modifiers.setdefault(name, value)
            continue
        term, error = _mechanism(word)
        if error:
            errors.append(error)
        if term is not None:
            terms.append(term)
            if term.mechanism == "all" and all_qualifier is None:
                all_qualifier = term.qualifier
    return SPFRecord(tuple(terms), modifiers.get("redirect"), modifiers.get("exp"),
                     all_qualifier, tuple(errors))


def _mechanism(word: str) -> tuple[SPFTerm | None, str | None]:
    match = _MECHANISM.match(word)
    assert match is not None  # the pattern matches any string
    qualifier, name, rest = match.group(1) or "+", match.group(2).lower(), match.group(3)
    if name not in _SPF_MECHANISMS:
        return None, f"unknown mechanism {_clip(word)!r}"
    value = rest[1:] if rest.startswith(":") else rest or None
    term = SPFTerm(qualifier, name, value)
    if name == "all":
        return term, f"all takes no value, got {_clip(word)!r}" if rest else None
    if name in ("include", "exists"):
        ok = rest.startswith(":") and _domain_spec_ok(rest[1:])
        return term, None if ok else f"{name} needs a domain: {name}:example.com"
    if name in ("ip4", "ip6"):
        return term, None if rest.startswith(":") and _ip_ok(name, rest[1:]) else (
            f"bad {name} network {_clip(word)!r}")
    domain, cidr = rest, ""
    if rest.startswith(":"):
        slash = rest.find("/")
        domain, cidr = (rest[1:], "") if slash < 0 else (rest[1:slash], rest[slash:])
        if not _domain_spec_ok(domain):
            return term, f"{name} has an empty or bad domain in {_clip(word)!r}"
    else:
        cidr = rest
    if name == "ptr":
        return term, f"ptr takes no CIDR length: {_clip(word)!r}" if cidr else None
    cidr_match = _DUAL_CIDR.match(cidr)
    if not cidr_match or int(cidr_match.group(1) or 0) > 32 or int(cidr_match.group(2) or 0) > 128:
        return term, f"bad CIDR length in {_clip(word)!r}"
    return term, None


def _ip_ok(name: str, value: str) -> bool:
    try:
        if name == "ip4":
            ipaddress.IPv4Network(value, strict=False)
        else:
            ipaddress.IPv6Network(value, strict=False)
    except ValueError:
        return False
    return True


def _domain_spec_ok(value: str) -> bool:
    if not _DOMAIN_SPEC.match(value) or value.startswith(".") or ".." in value:
        return False
    return "%" not in _MACRO_ESCAPE.sub("", value)


def dns_lookup_terms(record: SPFRecord) -> int:
    """DNS-querying terms of this record alone: include, a, mx, ptr, exists, and redirect
    (which RFC 7208 6.1 ignores when the record has an ``all``)."""
    count = sum(1 for term in record.terms if term.mechanism in _LOOKUP_MECHANISMS)
    return count + (1 if record.redirect is not None and record.all_qualifier is None else 0)


@dataclass(frozen=True, slots=True)
class DMARCRecord:
    """A parsed DMARC record; defaults per RFC 7489 (pct 100, relaxed alignment)."""

    p: str | None
    sp: str | None = None
    pct: int = 100
    adkim: str = "r"
    aspf: str = "r"
    rua: tuple[str, ...] = ()
    ruf: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()


def parse_dmarc(text: str) -> DMARCRecord:
    """Parse a DMARC record: the first tag must be ``v=DMARC1`` and ``p`` must be valid."""
    tags = parse_tag_list(text)
    errors = list(tags.errors)
    if not tags.tags or tags.tags[0] != ("v", "DMARC1"):
        errors.append("the first tag must be v=DMARC1")
    p = _policy(tags.get("p"), "p", errors, required=True)
    sp = _policy(tags.get("sp"), "sp", errors, required=False)
    pct = 100
    raw_pct = tags.get("pct")
    if raw_pct is not None:
        digits = raw_pct.lstrip("0") or "0"
        if raw_pct.isascii() and raw_pct.isdigit() and len(digits) <= 3 and int(digits) <= 100:
            pct = int(digits)
        else:
            errors.append(f"pct={_clip(raw_pct)} is not a whole number from 0 to 100")
    alignment: dict[str, str] = {}
    for tag in ("adkim", "aspf"):
        value = tags.get(tag) or "r"
        if value.lower() not in ("r", "s"):
            errors.append(f"{tag}={_clip(value)} is not r (relaxed) or s (strict)")
        alignment[tag] = value.lower()
    rua, ruf = _uris(tags.get("rua"), "rua", errors), _uris(tags.get("ruf"), "ruf", errors)
    return DMARCRecord(p, sp, pct, alignment["adkim"], alignment["aspf"], rua, ruf,
                       tuple(errors))


def _policy(value: str | None, tag: str, errors: list[str], *, required: bool) -> str | None:
    if value is None:
        if required:
            errors.append("p= is missing; it must be none, quarantine or reject")
        return None
    if value.lower() not in _POLICIES:
        errors.append(f"{tag}={_clip(value)} is not none, quarantine or reject")
        return None
    return value.lower()


def _uris(value: str | None, tag: str, errors: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    uris = tuple(u.strip() for u in value.split(",") if u.strip())
    for uri in uris:
        if not _URI.match(uri):
            errors.append(f"{tag} has {_clip(uri)!r}, not a URI such as mailto:dmarc@example.com")
            break
    return uris


@dataclass(frozen=True, slots=True)
class DKIMKey:
    """A DKIM public key record: key type, base64 key, revoked (empty ``p=``) and size."""

    key_type: str
    public_key: str
    revoked: bool
    bits: int | None = None  # RSA modulus size; 256 for ed25519; None when unknown
    testing: bool = False  # t=y
    errors: tuple[str, ...] = ()


def parse_dkim_key(text: str) -> DKIMKey:
    """Parse a ``_domainkey`` TXT record; accepts SubjectPublicKeyInfo and PKCS#1 RSA keys."""
    tags = parse_tag_list(text)
    errors = list(tags.errors)
    version = tags.get("v")
    if version is not None and (version != "DKIM1" or tags.tags[0][0] != "v"):
        errors.append("v= must be DKIM1 and come first")
    key_type = (tags.get("k") or "rsa").lower()
    raw = tags.get("p")
    key = "".join((raw or "").split())
    testing = "y" in (tags.get("t") or "").lower().split(":")
    if raw is None:
        errors.append("p= is missing; publish the base64 public key in p=")
    if key_type not in ("rsa", "ed25519"):
        errors.append(f"unknown key type k={_clip(key_type)}; use rsa or ed25519")
    if not key or errors:
        return DKIMKey(key_type, key, raw is not None and not key, None, testing, tuple(errors))
    try:
        der = binascii.a2b_base64(key, strict_mode=True)
    except (binascii.Error, ValueError):
        errors.append("p= is not valid base64")
        return DKIMKey(key_type, key, False, None, testing, tuple(errors))
    bits = _key_bits(key_type, der, errors)
    return DKIMKey(key_type, key, False, bits, testing, tuple(errors))


def _key_bits(key_type: str, der: bytes, errors: list[str]) -> int | None:
    if key_type == "ed25519":
        if len(der) != 32:
            errors.append(f"ed25519 key is {len(der)} bytes, not 32")
            return None
        try:
            ed25519.Ed25519PublicKey.from_public_bytes(der)
        except ValueError:
            errors.append("p= is not an ed25519 public key")
            return None
        return 256
    try:
        public = load_der_public_key(der)
    except (ValueError, TypeError, NotImplementedError):
        errors.append("p= does not hold a DER RSA public key")
        return None
    if not isinstance(public, rsa.RSAPublicKey):
        errors.append("p= holds a key that is not RSA; set k= to its type")
        return None
    return public.key_size


@dataclass(frozen=True, slots=True)
class MTASTSRecord:
    """An ``_mta-sts`` TXT record: ``v=STSv1; id=...``."""

    id: str | None
    errors: tuple[str, ...] = ()


def parse_mta_sts(text: str) -> MTASTSRecord:
    """Parse an MTA-STS TXT record; ``id`` is 1 to 32 letters and digits."""
    tags = parse_tag_list(text)
    errors = list(tags.errors)
    if not tags.tags or tags.tags[0] != ("v", "STSv1"):
        errors.append("the first tag must be v=STSv1")
    sts_id = tags.get("id")
    if sts_id is None:
        errors.append("id= is missing; set it to a new value at each policy change")
    elif not _STS_ID.match(sts_id):
        errors.append(f"id={_clip(sts_id)} must be 1 to 32 letters and digits")
    return MTASTSRecord(sts_id, tuple(errors))


@dataclass(frozen=True, slots=True)
class TLSRPTRecord:
    """An ``_smtp._tls`` TXT record: ``v=TLSRPTv1; rua=mailto:...,https://...``."""

    rua: tuple[str, ...]
    errors: tuple[str, ...] = ()


def parse_tls_rpt(text: str) -> TLSRPTRecord:
    """Parse a TLS-RPT TXT record; every ``rua`` URI must be mailto: or https:."""
    tags = parse_tag_list(text)
    errors = list(tags.errors)
    if not tags.tags or tags.tags[0] != ("v", "TLSRPTv1"):
        errors.append("the first tag must be v=TLSRPTv1")
    raw = tags.get("rua")
    rua = tuple(u.strip() for u in (raw or "").split(",") if u.strip())
    if not rua:
        errors.append("rua= is missing; set rua=mailto:tls-reports@example.com")
    for uri in rua:
        lower = uri.lower()
        if not (lower.startswith("mailto:") and len(uri) > 7) and not (
                lower.startswith("https://") and len(uri) > 8):
            errors.append(f"rua {_clip(uri)!r} is not a mailto: or https: URI")
            break
    return TLSRPTRecord(rua, tuple(errors))


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
