"""The SPF check: one record, its syntax, DNS lookups and void lookups through include and
redirect (RFC 7208 4.6.4), the ``all`` qualifier and the includes a config expects."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from exporter.dns.finding import Finding, count_words
from exporter.dns.records import SPFRecord, dns_lookup_terms, is_spf_record, parse_spf
from exporter.dns.resolver import DNSResolver, failure_message
from exporter.dns.result import CheckStatus

__all__ = ["LOOKUP_LIMIT", "VOID_LIMIT", "check_spf"]

LOOKUP_LIMIT = 10
VOID_LIMIT = 2
_MAX_DEPTH = 10  # include/redirect nesting followed; deeper is already far past the limit
_MAX_RECORDS = 40  # records fetched per check, however wide the include tree is


@dataclass
class _Walk:
    lookups: int = 0
    records: int = 0
    includes: set[str] = field(default_factory=set)
    voids: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)  # included records that are wrong
    loops: list[str] = field(default_factory=list)


async def check_spf(
    domain: str, *, resolver: DNSResolver, expect_includes: Sequence[str] = ()
) -> Finding:
    """Check the SPF record of ``domain``; ``spf_lookups`` is the total lookup count."""
    answer = await resolver.query(domain, "TXT")
    if answer.failed:
        return Finding(CheckStatus.ERROR, failure_message(answer))
    records = [r for r in answer.records if is_spf_record(r)]
    if not records:
        return Finding(CheckStatus.ERROR, f"no SPF record at {domain}; "
                       "publish one such as v=spf1 include:<your provider> -all")
    if len(records) > 1:
        return Finding(CheckStatus.ERROR,
                       f"{count_words(len(records))} v=spf1 records; merge them into one")
    record = parse_spf(records[0])
    if record.errors:
        return Finding(CheckStatus.ERROR, f"SPF syntax error: {record.errors[0]}; fix the record")
    walk = _Walk()
    all_qualifier = await _follow(domain, record, resolver, walk, (domain.lower(),))
    problems = _problems(walk, all_qualifier, expect_includes)
    if problems:
        status, message = problems[0]
        return Finding(status, message, spf_lookups=walk.lookups)
    return Finding(CheckStatus.OK, f"one SPF record, {walk.lookups} of {LOOKUP_LIMIT} DNS "
                   f"lookups, ends in {all_qualifier}all", spf_lookups=walk.lookups)


def _problems(
    walk: _Walk, all_qualifier: str | None, expect_includes: Sequence[str]
) -> list[tuple[CheckStatus, str]]:
    error, warning = CheckStatus.ERROR, CheckStatus.WARNING
    found: list[tuple[CheckStatus, str]] = []
    voids = sorted(set(walk.voids))
    if walk.failures:
        found.append((error, f"SPF incomplete: {sorted(walk.failures)[0]}"))
    if walk.loops:
        found.append((error, f"SPF include loop through {walk.loops[0]}; remove the loop"))
    if walk.lookups > LOOKUP_LIMIT:
        found.append((error, f"SPF needs {walk.lookups} DNS lookups (limit {LOOKUP_LIMIT}): "
                      "flatten includes or remove unused ones"))
    if walk.broken:
        found.append((error, sorted(walk.broken)[0]))
    if len(walk.voids) > VOID_LIMIT:
        found.append((error, f"SPF has {len(walk.voids)} void lookups (limit {VOID_LIMIT}): "
                      f"{', '.join(voids)}; remove terms for names that do not exist"))
    missing = [n for n in expect_includes if n.rstrip(".").lower() not in walk.includes]
    if missing:
        names = ", ".join(f"include:{n}" for n in missing)
        found.append((error, f"SPF lacks {names}; add it, or mail sent through that "
                      "provider fails SPF"))
    if all_qualifier == "+":
        found.append((error, "SPF ends in +all: anyone may send as this domain; "
                      "use ~all or -all"))
    if walk.voids and len(walk.voids) <= VOID_LIMIT:
        found.append((warning, f"SPF has {count_words(len(walk.voids))} void lookup"
                      f"{'s' if len(walk.voids) > 1 else ''}: {', '.join(voids)}; "
                      "remove terms for names that do not exist"))
    if all_qualifier == "?":
        found.append((warning, "SPF ends in ?all: receivers treat unlisted senders as "
                      "neutral; use ~all or -all"))
    if all_qualifier is None:
        found.append((warning, "SPF has no all term: unlisted senders are neutral; "
                      "end it with ~all or -all"))
    return found


async def _follow(
    domain: str, record: SPFRecord, resolver: DNSResolver, walk: _Walk, path: tuple[str, ...]
) -> str | None:
    """Count this record's lookups, follow its includes and redirect concurrently; return
    the qualifier of the ``all`` that ends it (its own, else the redirect target's)."""
    walk.lookups += dns_lookup_terms(record)
    jobs = []
    for term in record.terms:
        target = _target(term.value, domain)
        if term.mechanism == "include" and term.value:
            jobs.append(_include(term.value, "include:", resolver, walk, path))
        elif "%" in target:
            continue  # macros expand per message; nothing to look up here
        elif term.mechanism == "a":
            jobs.append(_void(target, ("A", "AAAA"), resolver, walk))
        elif term.mechanism == "mx":
            jobs.append(_void(target, ("MX",), resolver, walk))
        elif term.mechanism == "exists":
            jobs.append(_void(target, ("A",), resolver, walk))
    redirect = None
    if record.redirect is not None and record.all_qualifier is None:
        redirect = _include(record.redirect, "redirect=", resolver, walk, path)
    results = await asyncio.gather(*jobs, *([redirect] if redirect else []))
    return results[-1] if redirect else record.all_qualifier


def _target(value: str | None, domain: str) -> str:
    if not value or value.startswith("/"):
        return domain
    return value.split("/", 1)[0]


async def _void(name: str, rdtypes: tuple[str, ...], resolver: DNSResolver, walk: _Walk) -> None:
    for rdtype in rdtypes:
        answer = await resolver.query(name, rdtype)
        if answer.failed:
            walk.failures.append(failure_message(answer))
            return
        if answer.outcome == "ok":
            return
    walk.voids.append(name)


async def _include(
    target: str, how: str, resolver: DNSResolver, walk: _Walk, path: tuple[str, ...]
) -> str | None:
    """Fetch and follow an included or redirected record; the all qualifier it ends in."""
    key = target.rstrip(".").lower()
    if how == "include:":
        walk.includes.add(key)
    if "%" in key:
        return None
    if key in path:
        walk.loops.append(f"{how}{target}")
        return None
    walk.records += 1
    if len(path) > _MAX_DEPTH or walk.records > _MAX_RECORDS:
        return None  # bounded; the count is already far past the limit
    answer = await resolver.query(target, "TXT")
    if answer.failed:
        walk.failures.append(failure_message(answer))
        return None
    records = [r for r in answer.records if is_spf_record(r)]
    if answer.outcome != "ok":
        walk.voids.append(target)
    if len(records) != 1:
        what = "no SPF record" if not records else f"{count_words(len(records))} SPF records"
        walk.broken.append(f"{how}{target} has {what}; fix or remove the {how.strip(':=')}")
        return None
    record = parse_spf(records[0])
    if record.errors:
        walk.broken.append(f"SPF syntax error in {how}{target}: {record.errors[0]}; "
                           f"fix or remove the {how.strip(':=')}")
        return None
    return await _follow(target, record, resolver, walk, (*path, key))
