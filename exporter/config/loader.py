"""The whole config: top-level keys, dns, max_concurrent_probes, from text or from a file."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from exporter.config.model import Config, ConfigError, DNSConfig, Problem
from exporter.config.reader import Context, Problems, Reader, as_mapping, check_keys
from exporter.config.relays import parse_defaults, parse_relays
from exporter.config.values import describe, is_hostname, to_int, to_nameserver, to_timeout
from exporter.config.yaml_text import read_yaml

__all__ = ["load_config", "parse_config"]

_TOP_KEYS = ("defaults", "dns", "max_concurrent_probes", "relays")
_DNS_KEYS = ("nameservers", "timeout")


def parse_config(
    text: str,
    *,
    source: str = "<string>",
    environ: Mapping[str, str] | None = None,
    base_dir: str | None = None,
) -> Config:
    """Parse and validate a YAML config; raise ConfigError listing every error found.

    Relative file paths start from ``base_dir``, or the working directory when it is None.
    """
    data, duplicates = read_yaml(text, source)
    if not isinstance(data, Mapping):
        shown = "an empty file" if data is None else describe(data)
        raise ConfigError([Problem(source, f"expected a mapping with a relays: list, got {shown}")])
    problems = Problems()
    for path in duplicates:
        problems.error(path, "duplicate key; remove one of the two")
    root = {str(key): value for key, value in data.items()}
    check_keys(root, "", _TOP_KEYS, problems)
    context = Context(_default_ehlo_name(), environ, base_dir)
    defaults = parse_defaults(root.get("defaults"), context, problems)
    config = Config(
        relays=parse_relays(root.get("relays"), defaults, context, problems),
        dns=_parse_dns(root.get("dns"), problems),
        max_concurrent_probes=_max_concurrent(root, problems),
        source=source,
    )
    if problems.of("error"):
        raise ConfigError(problems.of("error"))
    return replace(config, warnings=problems.of("warning"))


def load_config(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> Config:
    """Read and validate the config file at ``path``; relative paths in it start from its dir."""
    source = os.fspath(path)
    try:
        text = Path(source).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [Problem(source, "file not found; pass --config.file with an existing file")]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        message = f"cannot read the file ({type(exc).__name__}); check the path and its mode"
        raise ConfigError([Problem(source, message)]) from None
    return parse_config(text, source=source, environ=environ, base_dir=os.path.dirname(source))


def _default_ehlo_name() -> str:
    """This host's name if it is a valid EHLO name, else localhost."""
    try:
        name = socket.gethostname()
    except OSError:
        return "localhost"
    return name if name and is_hostname(name) else "localhost"


def _parse_dns(value: object, problems: Problems) -> DNSConfig:
    block = as_mapping(value, "dns", problems, "DNS settings")
    check_keys(block, "dns", _DNS_KEYS, problems)
    reader = Reader(((block, "dns"),), problems)
    servers = block.get("nameservers")
    if servers is None:
        servers = []
    if not isinstance(servers, list):
        problems.error("dns.nameservers", f"expected a list, got {describe(servers)}")
        servers = []
    parsed: list[tuple[str, int]] = []
    for index, item in enumerate(servers):
        try:
            parsed.append(to_nameserver(item))
        except ValueError as exc:
            problems.error(f"dns.nameservers[{index}]", str(exc))
    return DNSConfig(tuple(parsed), reader.get("timeout", to_timeout, 5.0))


def _max_concurrent(root: Mapping[str, object], problems: Problems) -> int:
    value = Reader(((root, ""),), problems).get("max_concurrent_probes", to_int, 64)
    if value < 1:
        problems.error("max_concurrent_probes", f"{value} is too small; use 1 or more")
    return max(value, 1)
