"""Converters from raw YAML values to typed ones; each raises ValueError that says the fix."""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from exporter.model import Reason, TLSMode

__all__ = [
    "MissingFile",
    "choice",
    "describe",
    "duration_text",
    "is_hostname",
    "is_ip",
    "kind",
    "parse_duration",
    "resolve_file",
    "seconds_text",
    "to_address",
    "to_bool",
    "to_ca_file",
    "to_ehlo_name",
    "to_expect",
    "to_host",
    "to_int",
    "to_interval",
    "to_ip",
    "to_long_duration",
    "to_mail_from",
    "to_nameserver",
    "to_port",
    "to_str",
    "to_timeout",
    "to_tls_mode",
    "to_tls_version",
    "to_token_url",
]

_TLS_VERSIONS = ("1.0", "1.1", "1.2", "1.3")
_EXPECTABLE = tuple(reason.value for reason in Reason if reason != Reason.EXPECTATION_FAILED)
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_DURATION = re.compile(
    r"(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m(?!s))?"
    r"(?:(?P<s>\d+(?:\.\d+)?)s)?(?:(?P<ms>\d+(?:\.\d+)?)ms)?"
)
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def describe(value: object) -> str:
    """A short, safe rendering of a config value for a message."""
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def kind(value: object) -> str:
    """The YAML type of a value, for messages that must not show the value itself."""
    kinds = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    kinds |= {list: "a list", dict: "a mapping", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


def to_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {describe(value)}")
    return value


def to_bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {describe(value)}")
    return value


def to_str(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {describe(value)}")
    return value


def choice(value: object, choices: Iterable[str], what: str) -> str:
    """Return ``value`` if it is one of ``choices``; the error lists them."""
    options = tuple(choices)
    text = to_str(value)
    if text not in options:
        listed = ", ".join(options[:-1]) + f" or {options[-1]}"
        raise ValueError(f'"{text}" is not {what}; use {listed}')
    return text


def parse_duration(value: object) -> float:
    """Seconds from ``30s``, ``5m``, ``1h30m``, ``250ms`` or a bare number of seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if math.isfinite(value):
            return float(value)
    elif isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            return float(text)
        match = _DURATION.fullmatch(text)
        if text and match:
            parts = match.groupdict()
            return sum(float(n) * _UNIT_SECONDS[unit] for unit, n in parts.items() if n)
    shown = f'"{value}"' if isinstance(value, str) else describe(value)
    raise ValueError(f"{shown} is not a duration; use a number with s, m or h, e.g. 30s or 5m")


def seconds_text(value: float) -> str:
    """A duration for a message: ``30s``, ``0.5s``."""
    return f"{value:g}s"


def duration_text(value: float) -> str:
    """A duration as a config writes it: ``45s``, ``5m``, ``7m12s``, ``1h30m``, ``0.5s``."""
    whole_minutes = int(value // 60)
    hours, minutes = divmod(whole_minutes, 60)
    seconds = value - whole_minutes * 60
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    if seconds or not whole_minutes:
        parts.append(f"{seconds:g}s")
    return "".join(parts)


def to_port(value: object) -> int:
    port = to_int(value)
    if not 1 <= port <= 65535:
        raise ValueError(f"{port} is out of range; use a port from 1 to 65535")
    return port


def to_interval(value: object) -> float:
    seconds = parse_duration(value)
    if seconds < 1:
        raise ValueError(f"interval {seconds_text(seconds)} is too short; use at least 1s")
    return seconds


def to_long_duration(value: object, *, what: str, minimum: float) -> float:
    """A duration of at least ``minimum`` seconds; ``what`` names it in the message."""
    seconds = parse_duration(value)
    if seconds < minimum:
        raise ValueError(
            f"{what} {seconds_text(seconds)} is too short; use at least {seconds_text(minimum)}"
        )
    return seconds


def to_timeout(value: object, example: str = "15s") -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(
            f"timeout {seconds_text(seconds)} must be more than 0s; use e.g. {example}"
        )
    return seconds


def to_tls_version(value: object) -> str:
    if isinstance(value, float):
        value = str(value)
    return choice(value, _TLS_VERSIONS, "a TLS version")


def to_tls_mode(value: object) -> TLSMode:
    if isinstance(value, bool):
        raise ValueError("YAML reads off, no and false as false; use starttls, implicit or none")
    return TLSMode(choice(value, tuple(TLSMode), "a TLS mode"))


def to_expect(value: object) -> Reason:
    return Reason(choice(value, _EXPECTABLE, "a failure reason"))


def is_hostname(text: str) -> bool:
    labels = text.removesuffix(".").split(".")
    return len(text) <= 253 and all(_LABEL.fullmatch(label) for label in labels)


def is_ip(text: str, version: int | None = None) -> bool:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    return version is None or address.version == version


def to_ip(value: object) -> str:
    text = to_str(value).strip("[]")
    if not is_ip(text):
        raise ValueError(f'"{text}" is not an IP address; use e.g. 203.0.113.25 or 2001:db8::25')
    return str(ipaddress.ip_address(text))


def to_host(value: object) -> str:
    text = to_str(value)
    if not (is_hostname(text) or is_ip(text)):
        raise ValueError(f'"{text}" is not a hostname or IP address; use e.g. smtp.example.com')
    return text


def to_ehlo_name(value: object) -> str:
    text = to_str(value)
    inner = text[1:-1] if text.startswith("[") and text.endswith("]") else None
    if inner is not None and (
        is_ip(inner, 4) or (inner[:5].lower() == "ipv6:" and is_ip(inner[5:], 6))
    ):
        return text
    if inner is None and is_hostname(text):
        return text
    raise ValueError(
        f'"{text}" is not a hostname; use a name like probe.example.com '
        "or an address literal like [192.0.2.1]"
    )


def to_address(value: object, *, empty_ok: bool = False) -> str:
    text = to_str(value)
    if empty_ok and text == "":
        return text
    local, _, domain = text.partition("@")
    if text.count("@") != 1 or not local or not domain or re.search(r"[\s<>]", text):
        null = ' ("" for the null sender)' if empty_ok else ""
        raise ValueError(
            f'"{text}" is not an address; write it as user@example.com without <>{null}'
        )
    return text


def to_mail_from(value: object) -> str:
    return to_address(value, empty_ok=True)


def to_nameserver(value: object) -> tuple[str, int]:
    text = to_str(value).strip()
    host, port = text, "53"
    bracketed = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", text)
    if bracketed:
        host, port = bracketed[1], bracketed[2] or "53"
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    if not is_ip(host) or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(
            f'"{text}" is not an IP address with an optional port; '
            "write e.g. 127.0.0.1:5300, ::1 or [::1]:53"
        )
    return str(ipaddress.ip_address(host)), int(port)


def to_token_url(value: object) -> str:
    text = to_str(value)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f'"{text}" is not an http or https URL; use the token endpoint, '
            "e.g. https://oauth2.googleapis.com/token"
        )
    return text


def resolve_file(path: str, base_dir: str | None) -> str:
    """``path`` joined to ``base_dir`` if relative; None means the working directory."""
    return path if base_dir is None else os.path.join(base_dir, path)


class MissingFile(ValueError):
    """A named file is missing or unreadable here; ``note`` says so for an offline check."""

    def __init__(self, message: str, path: str, note: str) -> None:
        super().__init__(message)
        self.path = path
        self.note = note


def to_ca_file(value: object, base_dir: str | None) -> str:
    """An existing, readable file; a relative path starts from ``base_dir``."""
    path = resolve_file(to_str(value), base_dir)
    if not os.path.exists(path):
        raise MissingFile(f"file {path} does not exist; point ca_file at a PEM file of CAs",
                          path, f"{path} does not exist here; it must exist where the "
                          "exporter runs")
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise MissingFile(f"file {path} is not a readable file; fix its mode or the path",
                          path, f"{path} is not a readable file here; it must be one where "
                          "the exporter runs")
    return path
