"""The ``--web.config.file`` of the Prometheus exporter-toolkit: TLS, client certificates,
basic-auth users with bcrypt hashes, response headers and a rate limit, validated at load."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from exporter.config.model import ConfigError, Problem
from exporter.config.reader import Problems, as_mapping, check_keys, join
from exporter.config.values import describe, kind, parse_duration
from exporter.config.webtls import TLSServerConfig, parse_tls
from exporter.config.yaml_text import read_yaml

__all__ = ["RateLimit", "TLSServerConfig", "WebConfig", "load_web_config", "watched_files"]

_TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users", "rate_limit")
_HTTP_KEYS = ("http2", "headers")
_RATE_KEYS = ("interval", "burst")
# The headers the toolkit lets a file set, with the values it accepts (None: any text).
_HEADERS: dict[str, tuple[str, ...] | None] = {
    "Content-Security-Policy": None,
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-Content-Type-Options": ("nosniff",),
    "X-XSS-Protection": None,
    "Strict-Transport-Security": None,
}
_BCRYPT = re.compile(r"\$2[aby]?\$\d\d\$[./A-Za-z0-9]{53}")
_HTPASSWD = "generate one with: htpasswd -nBC 10 \"\" | tr -d ':\\n'"


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket: ``burst`` requests at once, one more every ``interval`` seconds."""

    interval: float
    burst: int


@dataclass(frozen=True, slots=True)
class WebConfig:
    """Everything the web config file says; an absent file is the empty WebConfig()."""

    tls: TLSServerConfig | None = None
    users: Mapping[str, bytes] = field(default_factory=dict)  # user -> bcrypt hash
    headers: tuple[tuple[str, str], ...] = ()
    rate_limit: RateLimit | None = None
    notes: tuple[Problem, ...] = ()  # files only the machine it runs on can check (offline)


def load_web_config(path: str, *, offline: bool = False) -> WebConfig:
    """Read and validate the file; ConfigError names every bad field, each with its fix.

    ``offline`` (``check-config --offline``, never a server): certificate, key and client CA
    files missing here are ``notes``, and TLS is left unset."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError([Problem(source, f"cannot read the web config file: {reason}")]) from None
    data, _ = read_yaml(text, source)
    problems = Problems()
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError([Problem(source, f"expected a mapping of web settings, got "
                                           f"{kind(data)}")])
    top = as_mapping(data, "", problems, "web settings")
    check_keys(top, "", _TOP_KEYS, problems)
    base = os.path.dirname(os.path.abspath(source))
    config = WebConfig(
        tls=parse_tls(top.get("tls_server_config"), base, problems, offline=offline),
        users=_users(top.get("basic_auth_users"), problems),
        headers=_http(top.get("http_server_config"), problems),
        rate_limit=_rate_limit(top.get("rate_limit"), problems),
    )
    errors = problems.of("error")
    if errors:
        raise ConfigError(Problem(f"{source}: {p.path}", p.message) for p in errors)
    notes = tuple(Problem(f"{source}: {p.path}", p.message, "note") for p in problems.of("note"))
    return replace(config, notes=notes)


def watched_files(path: str, config: WebConfig) -> tuple[str, ...]:
    """The web config file and every file it names: a change to any of them reloads it."""
    return (path, *(config.tls.files if config.tls else ()))


def _users(value: object, problems: Problems) -> dict[str, bytes]:
    path = "basic_auth_users"
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.error(path, f"expected a mapping of user names to bcrypt hashes, got "
                       f"{kind(value)}")
        return {}
    users: dict[str, bytes] = {}
    for name, hashed in value.items():
        where = join(path, str(name))
        if not isinstance(name, str) or not name or ":" in name:
            problems.error(where, "a user name is text without \":\"; rename the user")
            continue
        if not isinstance(hashed, str) or not _BCRYPT.fullmatch(hashed):
            problems.error(where, f"not a bcrypt hash (it never shows here); {_HTPASSWD}")
            continue
        users[name] = hashed.encode("ascii")
    return users


def _http(value: object, problems: Problems) -> tuple[tuple[str, str], ...]:
    path = "http_server_config"
    section = as_mapping(value, path, problems, "HTTP settings")
    check_keys(section, path, _HTTP_KEYS, problems)
    http2 = section.get("http2")
    if http2 is not None and not isinstance(http2, bool):
        problems.error(join(path, "http2"), f"expected true or false, got {describe(http2)}")
    headers_path = join(path, "headers")
    headers = as_mapping(section.get("headers"), headers_path, problems, "header names to values")
    out: list[tuple[str, str]] = []
    for name, text in headers.items():
        where = join(headers_path, name)
        if name not in _HEADERS:
            problems.error(where, f"this header cannot be set; use one of {', '.join(_HEADERS)}")
            continue
        if text is None or text == "":
            continue
        if not isinstance(text, str):
            problems.error(where, f"expected a string, got {describe(text)}")
            continue
        allowed = _HEADERS[name]
        if allowed is not None and text.lower() not in allowed:
            problems.error(where, f"{describe(text)} is not accepted; use {' or '.join(allowed)}")
            continue
        if "\r" in text or "\n" in text:
            problems.error(where, "a header value is one line; remove the line break")
            continue
        out.append((name, text))
    return tuple(out)


def _rate_limit(value: object, problems: Problems) -> RateLimit | None:
    path = "rate_limit"
    section = as_mapping(value, path, problems, "rate limit settings")
    check_keys(section, path, _RATE_KEYS, problems)
    if not section:
        return None
    interval: float | None = 0.0
    raw = section.get("interval")
    if raw is not None:
        try:
            interval = parse_duration(raw)
        except ValueError as exc:
            problems.error(join(path, "interval"), str(exc))
            interval = None
        if interval is not None and interval < 0:
            problems.error(join(path, "interval"), "must not be negative; 0 turns the limit off")
            interval = None
    burst = section.get("burst", 0)
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 0:
        problems.error(join(path, "burst"), f"expected a whole number, got {describe(burst)}")
        return None
    if not interval:  # off (0), or reported above (None)
        return None
    if burst < 1:
        problems.error(join(path, "burst"), "with an interval, at least 1 request must pass; "
                       "set burst: 1 or more")
        return None
    return RateLimit(interval=interval, burst=burst)
