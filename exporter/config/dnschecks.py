"""The DNS health checks' config: sending domains to check, and blocklist zones."""

from __future__ import annotations

from exporter.config.model import DomainConfig, RelayConfig
from exporter.config.reader import Problems, Reader, as_mapping, check_keys, read_list
from exporter.config.values import describe, is_hostname, is_ip, kind, to_str

__all__ = ["check_domains", "parse_blocklists", "parse_domains"]

_DOMAIN_KEYS = ("dkim_selectors", "expect_spf_includes", "name")


def _to_domain(value: object) -> str:
    text = to_str(value).lower().removesuffix(".")
    if not text or not is_hostname(text) or "." not in text or is_ip(text):
        raise ValueError(f'"{text}" is not a domain name; use e.g. example.com')
    return text


def _to_selector(value: object) -> str:
    text = to_str(value)
    labels = text.split(".")
    if not text or not all(part and part.replace("-", "").replace("_", "").isalnum()
                           for part in labels):
        raise ValueError(f'"{text}" is not a DKIM selector; use the label before ._domainkey')
    return text


def parse_domains(value: object, problems: Problems) -> tuple[DomainConfig, ...]:
    """``domains:``: each sending domain with its DKIM selectors and expected SPF includes."""
    if value is None:
        return ()
    if not isinstance(value, list):
        problems.error("domains", f"expected a list of domains, got {describe(value)}")
        return ()
    domains: list[DomainConfig] = []
    seen: dict[str, str] = {}
    for index, item in enumerate(value):
        path = f"domains[{index}]"
        if not isinstance(item, dict):
            problems.error(path, f"expected a mapping with name and dkim_selectors, got "
                                 f"{kind(item)}")
            continue
        block = as_mapping(item, path, problems, "domain settings")
        check_keys(block, path, _DOMAIN_KEYS, problems)
        reader = Reader(((block, path),), problems)
        if not reader.is_set("name"):
            problems.error(reader.at("name"), "missing; set the sending domain, e.g. example.com")
            continue
        name = reader.get("name", _to_domain, "")
        if not name:
            continue
        if name in seen:
            problems.error(reader.at("name"), f"{name} is listed twice (also {seen[name]}); "
                                              "list each domain once")
            continue
        seen[name] = path
        domains.append(DomainConfig(
            name=name,
            dkim_selectors=read_list(block.get("dkim_selectors"), reader.at("dkim_selectors"),
                                  problems, _to_selector, "DKIM selectors"),
            expect_spf_includes=read_list(block.get("expect_spf_includes"),
                                       reader.at("expect_spf_includes"), problems, _to_domain,
                                       "domains"),
        ))
    return tuple(domains)


def parse_blocklists(value: object, problems: Problems) -> tuple[str, ...]:
    """``blocklists:``: DNSBL zones every relay address is checked against."""
    return read_list(value, "blocklists", problems, _to_domain, "DNSBL zones")


def check_domains(domains: tuple[DomainConfig, ...], relays: tuple[RelayConfig, ...]
                  ) -> tuple[DomainConfig, ...]:
    """The configured domains plus every canary From domain not already among them."""
    out = list(domains)
    known = {d.name for d in domains}
    for relay in relays:
        if relay.canary is None:
            continue
        domain = relay.canary.sender.rpartition("@")[2].lower()
        if domain and domain not in known:
            known.add(domain)
            out.append(DomainConfig(name=domain))
    return tuple(out)
