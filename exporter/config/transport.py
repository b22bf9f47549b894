"""Checks shared by relays and mailboxes: names, port and TLS mode pairs, verification."""

from __future__ import annotations

import json
import re
from collections.abc import Collection

from exporter.config.reader import Reader
from exporter.config.values import to_str
from exporter.model import TLSMode

__all__ = ["check_ignored_tls_keys", "check_ports", "check_verification", "read_name"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def read_name(reader: Reader, seen: dict[str, str], what: str) -> str:
    """The unique ``name`` of a relay or mailbox (``what``); ``seen`` maps names to paths."""
    name = reader.get("name", to_str, None)
    if name is None:
        if not reader.is_set("name"):
            reader.problems.error(reader.at("name"), f"missing; give the {what} a unique name")
        return ""
    if not _NAME.fullmatch(name):
        reader.problems.error(
            reader.at("name"),
            f"{json.dumps(name, ensure_ascii=False)} is not a valid name; use letters, digits, "
            '"_", "." and "-", starting with a letter or digit',
        )
    elif name in seen:
        reader.problems.error(
            reader.at("name"),
            f'duplicate name "{name}" (also {seen[name]}); {what} names must be unique',
        )
    else:
        seen[name] = reader.path
    return name


def check_ports(
    reader: Reader,
    port: int,
    tls: TLSMode,
    implicit_ports: Collection[int],
    starttls_ports: Collection[int],
) -> None:
    """Impossible port and TLS mode pairs are errors; tls: none on a TLS port is a warning."""
    at = reader.at
    if port in implicit_ports and tls == TLSMode.STARTTLS:
        reader.problems.error(at("tls"), f"{port} speaks implicit TLS; set tls: implicit")
    if port in starttls_ports and tls == TLSMode.IMPLICIT:
        reader.problems.error(at("tls"), f"{port} speaks STARTTLS; set tls: starttls")
    if tls == TLSMode.NONE and (port in implicit_ports or port in starttls_ports):
        usual = TLSMode.IMPLICIT if port in implicit_ports else TLSMode.STARTTLS
        spoken = "implicit TLS" if usual == TLSMode.IMPLICIT else "STARTTLS"
        reader.problems.warn(
            at("tls"),
            f"tls: none on port {port}, which normally speaks {spoken}; "
            f"set tls: {usual} unless this server has no TLS",
        )


def check_ignored_tls_keys(reader: Reader, keys: Collection[str]) -> None:
    """With tls: none, TLS keys set right here do nothing: say so."""
    for key in keys:
        if reader.explicit(key):
            reader.problems.warn(reader.at(key), "ignored with tls: none; remove it")


def check_verification(reader: Reader, tls_verify: bool, ca_file: str | None, what: str) -> None:
    """Verification off is always said out loud; with a ca_file it contradicts itself."""
    if tls_verify:
        return
    reader.problems.warn(
        reader.at("tls_verify"),
        f"certificate verification is off for this {what}; "
        "anyone on the path can read the credentials",
    )
    if ca_file is not None:
        reader.problems.error(
            reader.at("ca_file"),
            "ca_file is set but tls_verify is false; remove ca_file or set tls_verify: true",
        )
