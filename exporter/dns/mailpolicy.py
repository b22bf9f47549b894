"""The mail DNS checks of a domain other than SPF: MX, DKIM, DMARC, MTA-STS and TLS-RPT."""

from __future__ import annotations

import asyncio

from exporter.dns.finding import Finding, count_words
from exporter.dns.records import parse_dkim_key, parse_dmarc, parse_mta_sts, parse_tls_rpt
from exporter.dns.resolver import Answer, DNSResolver, failure_message
from exporter.dns.result import CheckStatus

__all__ = [
    "check_dkim",
    "check_dmarc",
    "check_mta_sts",
    "check_mx",
    "check_tls_rpt",
    "org_domain",
]

OK, WARNING, ERROR = CheckStatus.OK, CheckStatus.WARNING, CheckStatus.ERROR
_SECOND_LEVEL = frozenset({"ac", "co", "com", "edu", "gov", "net", "org", "ne", "or", "go"})


def org_domain(domain: str) -> str:
    """The organisational domain, approximated without the Public Suffix List: the last two
    labels, or three when the TLD has two letters and the label before it is a generic
    second-level label (``co.uk``, ``com.au``, ``ac.jp``...). Wrong for suffixes such as
    ``github.io``; good enough to find the parent's ``_dmarc`` record."""
    labels = domain.rstrip(".").lower().split(".")
    keep = 3 if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVEL else 2
    return ".".join(labels[-keep:])


async def check_mx(domain: str, *, resolver: DNSResolver) -> Finding:
    """MX records exist (or a null MX says the domain takes no mail) and each resolves."""
    answer = await resolver.query(domain, "MX")
    if answer.failed:
        return Finding(ERROR, failure_message(answer))
    if answer.outcome != "ok":
        return Finding(ERROR, f"no MX record for {domain}; publish MX records for your "
                       'mail servers, or a null MX "0 ." if the domain receives no mail')
    hosts = sorted({r.split()[-1].rstrip(".").lower() for r in answer.records})
    if hosts == [""]:
        return Finding(OK, f"null MX: {domain} receives no mail (RFC 7505)")
    results = await asyncio.gather(*(_resolves(host, resolver) for host in hosts))
    for host, problem in zip(hosts, results, strict=True):
        if problem is not None:
            return Finding(ERROR, problem if problem.startswith(("SERVFAIL", "timeout", "DNS"))
                           else f"MX {host} {problem}; fix its address or the MX record")
    return Finding(OK, f"{count_words(len(hosts))} MX host{'s' if len(hosts) > 1 else ''}, "
                   "each resolves")


async def _resolves(host: str, resolver: DNSResolver) -> str | None:
    answers = await asyncio.gather(resolver.query(host, "A"), resolver.query(host, "AAAA"))
    if any(a.outcome == "ok" for a in answers):
        return None
    failed = [a for a in answers if a.failed]
    return failure_message(failed[0]) if failed else "does not resolve (no A or AAAA)"


async def check_dkim(domain: str, selector: str, *, resolver: DNSResolver) -> Finding:
    """The selector's key exists, parses, is not revoked and is large enough."""
    name = f"{selector}._domainkey.{domain}"
    answer = await resolver.query(name, "TXT")
    if answer.failed:
        return Finding(ERROR, failure_message(answer))
    if not answer.records:
        return Finding(ERROR, f"no DKIM key at {name}; publish the selector's public key "
                       "or remove the selector from the config")
    if len(answer.records) > 1:
        return Finding(ERROR, f"{count_words(len(answer.records))} TXT records at {name}; "
                       "keep only the DKIM key")
    key = parse_dkim_key(answer.records[0])
    what = f"DKIM key for selector {selector}"
    if key.revoked and not key.errors:
        return Finding(ERROR, f"{what} is revoked (empty p=); sign with another selector "
                       "or remove it from the config")
    if key.errors or key.bits is None:
        problem = key.errors[0] if key.errors else "no key"
        return Finding(ERROR, f"{what} does not parse: {problem}; republish the key")
    size = "ed25519" if key.key_type == "ed25519" else f"{key.bits}-bit RSA"
    if key.key_type == "rsa" and key.bits < 1024:
        return Finding(ERROR, f"{what} is {size}: broken; publish a 2048-bit key",
                       dkim_bits=key.bits)
    if key.key_type == "rsa" and key.bits < 2048:
        return Finding(WARNING, f"{what} is {size}: weak; publish a 2048-bit key",
                       dkim_bits=key.bits)
    if key.testing:
        return Finding(WARNING, f"{what} is in testing mode (t=y): receivers treat failures "
                       "as unsigned; remove t=y", dkim_bits=key.bits)
    return Finding(OK, f"{what} is {size}", dkim_bits=key.bits)


async def check_dmarc(domain: str, *, resolver: DNSResolver) -> Finding:
    """One DMARC record at ``_dmarc``, or the organisational domain's; its policy and reports."""
    name = f"_dmarc.{domain}"
    answer = await resolver.query(name, "TXT")
    records = _dmarc_records(answer)
    org = org_domain(domain)
    inherited = not answer.failed and not records and org != domain.rstrip(".").lower()
    if inherited:
        answer = await resolver.query(f"_dmarc.{org}", "TXT")
        records = _dmarc_records(answer)
    if answer.failed:
        return Finding(ERROR, failure_message(answer))
    if not records:
        return Finding(ERROR, f"no DMARC record at {name}; publish v=DMARC1; p=none; "
                       "rua=mailto:... to start")
    if len(records) > 1:
        return Finding(ERROR, f"{count_words(len(records))} DMARC records at {answer.name}; "
                       "receivers ignore both: merge them into one")
    record = parse_dmarc(records[0])
    if record.errors:
        return Finding(ERROR, f"DMARC syntax error at {answer.name}: {record.errors[0]}; "
                       "fix the record")
    assert record.p is not None  # parse_dmarc reports a missing p as an error
    policy = (record.sp or record.p) if inherited else record.p
    tag = "sp" if inherited and record.sp else "p"
    prefix = f"DMARC inherited from {org}: " if inherited else "DMARC "

    def facts(status: CheckStatus, message: str) -> Finding:
        return Finding(status, message, dmarc_policy=policy,
                       dmarc_subdomain_policy=record.sp or record.p, dmarc_pct=record.pct)

    if policy == "none":
        return facts(WARNING, f"{prefix}{tag}=none only monitors; move to quarantine or "
                     "reject once reports are clean")
    if record.pct < 100:
        return facts(WARNING, f"{prefix}pct={record.pct} applies {tag}={policy} to part "
                     "of the mail only; raise pct to 100")
    if not record.rua:
        return facts(WARNING, f"{prefix}{tag}={policy} without rua: no aggregate reports; "
                     "add rua=mailto:...")
    return facts(OK, f"{prefix}{tag}={policy}, reports to {record.rua[0]}")


def _dmarc_records(answer: Answer) -> list[str]:
    return [r for r in answer.records if r.lstrip().lower().startswith("v=dmarc")]


async def check_mta_sts(domain: str, *, resolver: DNSResolver) -> Finding:
    """The ``_mta-sts`` TXT record is present (recommended) and valid."""
    name = f"_mta-sts.{domain}"
    answer = await resolver.query(name, "TXT")
    if answer.failed:
        return Finding(ERROR, failure_message(answer))
    records = [r for r in answer.records if r.lstrip().lower().startswith("v=sts")]
    if not records:
        return Finding(WARNING, f"no MTA-STS record at {name}; optional but recommended: "
                       "publish v=STSv1; id=... and a policy at https://mta-sts."
                       f"{domain}/.well-known/mta-sts.txt")
    if len(records) > 1:
        return Finding(ERROR, f"{count_words(len(records))} MTA-STS records at {name}; "
                       "senders ignore them all: keep one")
    record = parse_mta_sts(records[0])
    if record.errors:
        return Finding(ERROR, f"MTA-STS record at {name} is invalid: {record.errors[0]}")
    return Finding(OK, f"MTA-STS record id={record.id}")


async def check_tls_rpt(domain: str, *, resolver: DNSResolver) -> Finding:
    """The ``_smtp._tls`` TXT record is present (recommended) and valid."""
    name = f"_smtp._tls.{domain}"
    answer = await resolver.query(name, "TXT")
    if answer.failed:
        return Finding(ERROR, failure_message(answer))
    records = [r for r in answer.records if r.lstrip().lower().startswith("v=tlsrpt")]
    if not records:
        return Finding(WARNING, f"no TLS-RPT record at {name}; optional but recommended: "
                       "publish v=TLSRPTv1; rua=mailto:...")
    if len(records) > 1:
        return Finding(ERROR, f"{count_words(len(records))} TLS-RPT records at {name}; "
                       "keep one")
    record = parse_tls_rpt(records[0])
    if record.errors:
        return Finding(ERROR, f"TLS-RPT record at {name} is invalid: {record.errors[0]}")
    return Finding(OK, f"TLS-RPT reports to {', '.join(record.rua)}")
