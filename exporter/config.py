"""Typed, frozen configuration loaded from YAML; every problem is reported with its path and fix."""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import yaml

from exporter.providers import Preset, TLSMode, lookup_preset, preset_names
from exporter.results import Reason
from exporter.secrets import Secret, SecretError, secret_from_env, secret_from_file

__all__ = [
    "AuthConfig",
    "AuthMechanism",
    "Config",
    "ConfigError",
    "DNSConfig",
    "OAuth2Config",
    "Problem",
    "RelayConfig",
    "TLSMode",
    "load_config",
    "parse_config",
    "parse_duration",
]

T = TypeVar("T")


class AuthMechanism(StrEnum):
    """The SMTP AUTH mechanism a probe uses."""

    PLAIN = "plain"
    LOGIN = "login"
    CRAM_MD5 = "cram-md5"
    XOAUTH2 = "xoauth2"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a config: where, what and how to fix it."""

    path: str
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ConfigError(ValueError):
    """The config is invalid; ``problems`` holds every error found, one per line in str()."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


@dataclass(frozen=True, slots=True)
class OAuth2Config:
    """Where and how to fetch XOAUTH2 access tokens."""

    token_url: str
    client_id: str
    client_secret: Secret | None
    refresh_token: Secret | None
    scope: str | None
    grant_type: str


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """SMTP AUTH settings; secrets are read at load time."""

    mechanism: AuthMechanism
    username: str | None = None
    password: Secret | None = None
    token: Secret | None = None
    oauth2: OAuth2Config | None = None


_NO_AUTH = AuthConfig(AuthMechanism.NONE)


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """One relay to probe."""

    name: str
    host: str
    port: int
    tls: TLSMode
    tls_verify: bool = True
    ca_file: str | None = None
    tls_server_name: str | None = None
    tls_min_version: str = "1.2"
    ehlo_name: str = "localhost"
    interval: float = 60.0
    timeout: float = 15.0
    auth: AuthConfig = _NO_AUTH
    rcpt_check: str | None = None
    mail_from: str = ""
    expect: Reason | None = None
    allow_plaintext_auth: bool = False
    preset: str | None = None


@dataclass(frozen=True, slots=True)
class DNSConfig:
    """Resolver settings; no nameservers means the system resolver."""

    nameservers: tuple[tuple[str, int], ...] = ()
    timeout: float = 5.0


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated config."""

    relays: tuple[RelayConfig, ...]
    dns: DNSConfig
    max_concurrent_probes: int = 64
    warnings: tuple[Problem, ...] = ()
    source: str = "<string>"


_TOP_KEYS = ("defaults", "dns", "max_concurrent_probes", "relays")
_DNS_KEYS = ("nameservers", "timeout")
_RELAY_KEYS = tuple(field for field in RelayConfig.__dataclass_fields__)
_RELAY_ONLY = ("name", "host", "port", "preset", "rcpt_check", "expect")
_DEFAULTS_KEYS = tuple(key for key in _RELAY_KEYS if key not in _RELAY_ONLY)
_PASSWORD_KEYS = ("password_env", "password_file")
_TOKEN_KEYS = ("token_env", "token_file", "oauth2")
_AUTH_KEYS = ("mechanism", "username", *_PASSWORD_KEYS, *_TOKEN_KEYS)
_OAUTH2_KEYS = (
    "token_url",
    "client_id",
    "client_secret_env",
    "client_secret_file",
    "refresh_token_env",
    "refresh_token_file",
    "scope",
    "grant_type",
)
_GRANTS = ("refresh_token", "client_credentials")
_TLS_VERSIONS = ("1.0", "1.1", "1.2", "1.3")
_EXPECTABLE = tuple(reason.value for reason in Reason if reason != Reason.EXPECTATION_FAILED)
_IMPLICIT_PORTS = frozenset({465, 2465})
_STARTTLS_PORTS = frozenset({587, 2587})
_PORT_FOR_MODE = {TLSMode.STARTTLS: 587, TLSMode.IMPLICIT: 465, TLSMode.NONE: 25}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_DURATION = re.compile(
    r"(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m(?!s))?"
    r"(?:(?P<s>\d+(?:\.\d+)?)s)?(?:(?P<ms>\d+(?:\.\d+)?)ms)?"
)
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_INLINE = "inline secrets are not allowed; use {0}_env or {0}_file"
_AUTH_SPECIAL = {key: _INLINE.format(key) for key in ("password", "token")}
_OAUTH2_SPECIAL = {key: _INLINE.format(key) for key in ("client_secret", "refresh_token")}
_DEFAULTS_SPECIAL = {key: "cannot be set in defaults; set it on each relay" for key in _RELAY_ONLY}


class _Problems:
    """Collects problems in order, once each (a bad default shows up for every relay)."""

    def __init__(self) -> None:
        self._found: dict[Problem, None] = {}

    def error(self, path: str, message: str) -> None:
        self._found.setdefault(Problem(path, message))

    def warn(self, path: str, message: str) -> None:
        self._found.setdefault(Problem(path, message, "warning"))

    def of(self, severity: str) -> tuple[Problem, ...]:
        return tuple(problem for problem in self._found if problem.severity == severity)


# Converters: take a raw YAML value, return a typed one or raise ValueError with the fix.


def _describe(value: object) -> str:
    """A short, safe rendering of a config value for a message."""
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _kind(value: object) -> str:
    """The YAML type of a value, for messages that must not show the value itself."""
    kinds = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    kinds |= {list: "a list", dict: "a mapping", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


def _to_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {_describe(value)}")
    return value


def _to_bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {_describe(value)}")
    return value


def _to_str(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {_describe(value)}")
    return value


def _choice(value: object, choices: Iterable[str], what: str) -> str:
    """Return ``value`` if it is one of ``choices``; the error lists them."""
    options = tuple(choices)
    text = _to_str(value)
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
    shown = f'"{value}"' if isinstance(value, str) else _describe(value)
    raise ValueError(f"{shown} is not a duration; use a number with s, m or h, e.g. 30s or 5m")


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _to_port(value: object) -> int:
    port = _to_int(value)
    if not 1 <= port <= 65535:
        raise ValueError(f"{port} is out of range; use a port from 1 to 65535")
    return port


def _to_interval(value: object) -> float:
    seconds = parse_duration(value)
    if seconds < 1:
        raise ValueError(f"interval {_seconds(seconds)} is too short; use at least 1s")
    return seconds


def _to_timeout(value: object) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"timeout {_seconds(seconds)} must be more than 0s; use e.g. 15s")
    return seconds


def _to_tls_version(value: object) -> str:
    if isinstance(value, float):
        value = str(value)
    return _choice(value, _TLS_VERSIONS, "a TLS version")


def _is_hostname(text: str) -> bool:
    labels = text.removesuffix(".").split(".")
    return len(text) <= 253 and all(_LABEL.fullmatch(label) for label in labels)


def _is_ip(text: str, version: int | None = None) -> bool:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    return version is None or address.version == version


def _to_ehlo_name(value: object) -> str:
    text = _to_str(value)
    inner = text[1:-1] if text.startswith("[") and text.endswith("]") else None
    if inner is not None and (
        _is_ip(inner, 4) or (inner[:5].lower() == "ipv6:" and _is_ip(inner[5:], 6))
    ):
        return text
    if inner is None and _is_hostname(text):
        return text
    raise ValueError(
        f'"{text}" is not a hostname; use a name like probe.example.com '
        "or an address literal like [192.0.2.1]"
    )


def _to_address(value: object, *, empty_ok: bool = False) -> str:
    text = _to_str(value)
    if empty_ok and text == "":
        return text
    local, _, domain = text.partition("@")
    if text.count("@") != 1 or not local or not domain or re.search(r"[\s<>]", text):
        null = ' ("" for the null sender)' if empty_ok else ""
        raise ValueError(
            f'"{text}" is not an address; write it as user@example.com without <>{null}'
        )
    return text


def _to_mail_from(value: object) -> str:
    return _to_address(value, empty_ok=True)


def _to_expect(value: object) -> Reason:
    return Reason(_choice(value, _EXPECTABLE, "a failure reason"))


def _to_tls_mode(value: object) -> TLSMode:
    if isinstance(value, bool):
        raise ValueError("YAML reads off, no and false as false; use starttls, implicit or none")
    return TLSMode(_choice(value, tuple(TLSMode), "a TLS mode"))


def _to_nameserver(value: object) -> tuple[str, int]:
    text = _to_str(value).strip()
    host, port = text, "53"
    bracketed = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", text)
    if bracketed:
        host, port = bracketed[1], bracketed[2] or "53"
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    if not _is_ip(host) or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(
            f'"{text}" is not an IP address with an optional port; '
            "write e.g. 127.0.0.1:5300, ::1 or [::1]:53"
        )
    return str(ipaddress.ip_address(host)), int(port)


def _to_token_url(value: object) -> str:
    text = _to_str(value)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f'"{text}" is not an http or https URL; use the token endpoint, '
            "e.g. https://oauth2.googleapis.com/token"
        )
    return text


# Reading keys: a relay's own value wins over the defaults block.


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


@dataclass(frozen=True, slots=True)
class _Reader:
    """Reads keys from mappings in order of precedence, reporting problems at the key's path."""

    layers: tuple[tuple[Mapping[str, object], str], ...]
    problems: _Problems

    @property
    def path(self) -> str:
        return self.layers[0][1]

    def at(self, key: str) -> str:
        return _join(self.path, key)

    def find(self, key: str) -> tuple[object, str] | None:
        for mapping, prefix in self.layers:
            if key in mapping:
                return mapping[key], _join(prefix, key)
        return None

    def explicit(self, key: str) -> bool:
        """Whether ``key`` is set (not null) in the first, most specific mapping."""
        return self.layers[0][0].get(key) is not None

    def is_set(self, key: str) -> bool:
        found = self.find(key)
        return found is not None and found[0] is not None

    def get(self, key: str, convert: Callable[[object], T], default: T) -> T:
        """Convert the key's value; ``default`` when it is absent, null or invalid."""
        found = self.find(key)
        if found is None or found[0] is None:
            return default
        value, path = found
        try:
            return convert(value)
        except ValueError as exc:
            self.problems.error(path, str(exc))
            return default


def _mapping(value: object, path: str, problems: _Problems, what: str) -> dict[str, object]:
    """The value as a mapping with string keys, or an empty one after reporting the problem."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.error(path, f"expected a mapping of {what}, got {_kind(value)}")
        return {}
    return {str(key): item for key, item in value.items()}


def _check_keys(
    mapping: Mapping[str, object],
    path: str,
    valid: tuple[str, ...],
    problems: _Problems,
    special: Mapping[str, str] | None = None,
) -> None:
    """Report every unknown key, suggesting the closest valid one."""
    for key in mapping:
        if key in valid:
            continue
        where = _join(path, key)
        if special and key in special:
            problems.error(where, special[key])
            continue
        close = difflib.get_close_matches(key, valid, n=1)
        hint = f"did you mean {close[0]}?" if close else f"valid keys are {', '.join(valid)}"
        problems.error(where, f"unknown key; {hint}")


# Secrets and authentication.


def _secret(
    reader: _Reader, stem: str, environ: Mapping[str, str] | None
) -> tuple[bool, Secret | None]:
    """Read ``<stem>_env`` or ``<stem>_file``; return whether one was given, and the secret.

    An inline ``<stem>`` key counts as given: it has its own error already.
    """
    env_key, file_key = f"{stem}_env", f"{stem}_file"
    env_name = reader.get(env_key, _to_env_name, None)
    file_name = reader.get(file_key, _to_str, None)
    given = any(reader.is_set(key) for key in (env_key, file_key, stem))
    if env_name is not None and file_name is not None:
        reader.problems.error(reader.path, f"set only one of {env_key} and {file_key}")
        return given, None
    if env_name is None and file_name is None:
        return given, None
    key = env_key if env_name is not None else file_key
    try:
        if env_name is not None:
            secret = secret_from_env(env_name, environ=environ)
        else:
            secret = secret_from_file(str(file_name))
    except SecretError as exc:
        reader.problems.error(reader.at(key), str(exc))
        return given, None
    _warn_whitespace(secret, reader.at(key), reader.problems)
    return given, secret


def _to_env_name(value: object) -> str:
    """An environment variable name; the value is never echoed, as it may be a pasted secret."""
    if not isinstance(value, str) or not _ENV_NAME.fullmatch(value):
        raise ValueError(
            "not an environment variable name; give the variable's name "
            "(letters, digits and _), not the secret"
        )
    return value


def _warn_whitespace(secret: Secret, path: str, problems: _Problems) -> None:
    value = secret.reveal()
    ends = [end for end, text in (("starts", value[:1]), ("ends", value[-1:])) if text.isspace()]
    if ends:
        where = secret.source.replace(":", " ", 1)
        problems.warn(
            path,
            f"the secret from {where} {' and '.join(ends)} with whitespace; "
            "pasted secrets often do \N{EM DASH} remove it",
        )


def _default_mechanism(reader: _Reader) -> AuthMechanism:
    """xoauth2 when a token source is given, plain for a username or password, else none."""
    if any(reader.is_set(key) for key in _TOKEN_KEYS):
        return AuthMechanism.XOAUTH2
    if any(reader.is_set(key) for key in ("username", *_PASSWORD_KEYS)):
        return AuthMechanism.PLAIN
    return AuthMechanism.NONE


def _to_mechanism(value: object) -> AuthMechanism:
    return AuthMechanism(_choice(value, tuple(AuthMechanism), "supported"))


def _reject_keys(reader: _Reader, keys: Iterable[str], mechanism: AuthMechanism) -> None:
    for key in keys:
        if reader.is_set(key):
            reader.problems.error(reader.at(key), f"not used with mechanism {mechanism}; remove it")


def _parse_auth(
    value: object, path: str, environ: Mapping[str, str] | None, problems: _Problems
) -> AuthConfig:
    block = _mapping(value, path, problems, "auth settings")
    _check_keys(block, path, _AUTH_KEYS, problems, _AUTH_SPECIAL)
    reader = _Reader(((block, path),), problems)
    mechanism = reader.get("mechanism", _to_mechanism, None) or _default_mechanism(reader)
    if mechanism == AuthMechanism.NONE:
        _check_no_credentials(reader)
        return _NO_AUTH
    username = reader.get("username", _to_str, None)
    if not reader.is_set("username"):
        problems.error(
            reader.at("username"), f"missing; {mechanism} authentication needs a username"
        )
    if mechanism == AuthMechanism.XOAUTH2:
        return _xoauth2_auth(reader, username, environ)
    _reject_keys(reader, _TOKEN_KEYS, mechanism)
    given, password = _secret(reader, "password", environ)
    if not given:
        problems.error(
            path, f"{mechanism} authentication needs a password; set password_env or password_file"
        )
    return AuthConfig(mechanism, username, password=password)


def _check_no_credentials(reader: _Reader) -> None:
    given = [key for key in ("username", *_PASSWORD_KEYS, *_TOKEN_KEYS) if reader.is_set(key)]
    if given:
        verb = "is" if len(given) == 1 else "are"
        reader.problems.error(
            reader.at("mechanism"),
            f"none takes no credentials, but {', '.join(given)} {verb} set; "
            "remove them or choose a mechanism",
        )


def _xoauth2_auth(
    reader: _Reader, username: str | None, environ: Mapping[str, str] | None
) -> AuthConfig:
    error = reader.problems.error
    _reject_keys(reader, _PASSWORD_KEYS, AuthMechanism.XOAUTH2)
    given, token = _secret(reader, "token", environ)
    found = reader.find("oauth2")
    oauth2 = None
    if found is not None and found[0] is not None:
        oauth2 = _parse_oauth2(found[0], found[1], reader.problems, environ)
    if not given and oauth2 is None:
        error(reader.path, "xoauth2 needs a token; set token_env, token_file or oauth2")
    elif given and oauth2 is not None:
        error(reader.path, "set only one of token_env, token_file and oauth2")
    return AuthConfig(AuthMechanism.XOAUTH2, username, token=token, oauth2=oauth2)


def _parse_oauth2(
    value: object, path: str, problems: _Problems, environ: Mapping[str, str] | None
) -> OAuth2Config:
    block = _mapping(value, path, problems, "OAuth2 settings")
    _check_keys(block, path, _OAUTH2_KEYS, problems, _OAUTH2_SPECIAL)
    reader = _Reader(((block, path),), problems)
    token_url = reader.get("token_url", _to_token_url, "")
    _check_token_url(reader, token_url)
    client_id = reader.get("client_id", _to_str, "")
    if not reader.is_set("client_id"):
        problems.error(reader.at("client_id"), "missing; set the OAuth2 client id")
    has_secret, client_secret = _secret(reader, "client_secret", environ)
    has_refresh, refresh_token = _secret(reader, "refresh_token", environ)
    default_grant = "refresh_token" if has_refresh else "client_credentials"
    grant = reader.get("grant_type", _to_grant, default_grant)
    if grant == "refresh_token" and not has_refresh:
        problems.error(path, "grant refresh_token needs refresh_token_env or refresh_token_file")
    if grant == "client_credentials" and not has_secret:
        problems.error(
            path, "grant client_credentials needs client_secret_env or client_secret_file"
        )
    if grant == "client_credentials":
        for key in ("refresh_token_env", "refresh_token_file"):
            if reader.is_set(key):
                problems.error(reader.at(key), "not used with grant client_credentials; remove it")
    scope = reader.get("scope", _to_str, None)
    return OAuth2Config(token_url, client_id, client_secret, refresh_token, scope, grant)


def _to_grant(value: object) -> str:
    return _choice(value, _GRANTS, "a grant type")


def _check_token_url(reader: _Reader, url: str) -> None:
    if not reader.is_set("token_url"):
        reader.problems.error(reader.at("token_url"), "missing; set the provider's token endpoint")
    parts = urlsplit(url)
    host = parts.hostname or ""
    loopback = host == "localhost" or (_is_ip(host) and ipaddress.ip_address(host).is_loopback)
    if parts.scheme == "http" and not loopback:
        reader.problems.warn(
            reader.at("token_url"),
            "plain http to a remote host exposes the client secret and tokens; use https",
        )


# Relays.


@dataclass(frozen=True, slots=True)
class _Shared:
    """The relay settings that may also come from the defaults block."""

    tls: TLSMode | None
    tls_verify: bool
    ca_file: str | None
    tls_server_name: str | None
    tls_min_version: str
    ehlo_name: str
    interval: float | None
    timeout: float | None
    auth: AuthConfig
    mail_from: str
    allow_plaintext_auth: bool


def _read_shared(reader: _Reader, ehlo_name: str, environ: Mapping[str, str] | None) -> _Shared:
    auth = _NO_AUTH
    found = reader.find("auth")
    if found is not None:
        auth = _parse_auth(found[0], found[1], environ, reader.problems)
    return _Shared(
        tls=reader.get("tls", _to_tls_mode, None),
        tls_verify=reader.get("tls_verify", _to_bool, True),
        ca_file=reader.get("ca_file", _to_ca_file, None),
        tls_server_name=reader.get("tls_server_name", _to_host, None),
        tls_min_version=reader.get("tls_min_version", _to_tls_version, "1.2"),
        ehlo_name=reader.get("ehlo_name", _to_ehlo_name, ehlo_name),
        interval=reader.get("interval", _to_interval, None),
        timeout=reader.get("timeout", _to_timeout, None),
        auth=auth,
        mail_from=reader.get("mail_from", _to_mail_from, ""),
        allow_plaintext_auth=reader.get("allow_plaintext_auth", _to_bool, False),
    )


def _to_ca_file(value: object) -> str:
    path = _to_str(value)
    if not os.path.exists(path):
        raise ValueError(f"file {path} does not exist; point ca_file at a PEM file of CAs")
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise ValueError(f"file {path} is not a readable file; fix its mode or the path")
    return path


def _read_name(reader: _Reader, seen: dict[str, str]) -> str:
    name = reader.get("name", _to_str, None)
    if name is None:
        if not reader.is_set("name"):
            reader.problems.error(reader.at("name"), "missing; give the relay a unique name")
        return ""
    if not _NAME.fullmatch(name):
        reader.problems.error(
            reader.at("name"),
            f'"{name}" is not a valid name; use letters, digits, "_", "." and "-", '
            "starting with a letter or digit",
        )
    elif name in seen:
        reader.problems.error(
            reader.at("name"),
            f'duplicate name "{name}" (also {seen[name]}); relay names must be unique',
        )
    else:
        seen[name] = reader.path
    return name


def _read_preset(reader: _Reader) -> tuple[str | None, Preset | None]:
    name = reader.get("preset", _to_str, None)
    if name is None:
        return None, None
    preset = lookup_preset(name)
    if preset is None:
        reader.problems.error(reader.at("preset"), _unknown_preset(name))
    return name, preset


def _unknown_preset(name: str) -> str:
    if name.startswith("ses-"):
        return f'unknown preset "{name}"; Amazon SES presets look like ses-us-east-1'
    names = preset_names()
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"did you mean {close[0]}?" if close else f"valid presets are {', '.join(names)}"
    return f'unknown preset "{name}"; {hint}'


def _endpoint(
    reader: _Reader, tls: TLSMode | None, preset: Preset | None
) -> tuple[str, int, TLSMode]:
    """Host, port and TLS mode: relay keys, then defaults, then the preset, then the port."""
    host = reader.get("host", _to_host, None) or (preset.host if preset else None)
    if host is None and not reader.is_set("host") and not reader.is_set("preset"):
        reader.problems.error(reader.at("host"), "missing; set host or a preset")
    port = reader.get("port", _to_port, None)
    if port is None:
        port = preset.port_for(tls or preset.tls) if preset else None
        port = port or _PORT_FOR_MODE[tls or TLSMode.STARTTLS]
    if tls is None:
        known = preset.tls_for(port) if preset else None
        tls = known or (TLSMode.IMPLICIT if port in _IMPLICIT_PORTS else TLSMode.STARTTLS)
    return host or "", port, tls


def _to_host(value: object) -> str:
    text = _to_str(value)
    if not (_is_hostname(text) or _is_ip(text)):
        raise ValueError(f'"{text}" is not a hostname or IP address; use e.g. smtp.example.com')
    return text


def _parse_relay(
    value: object,
    path: str,
    defaults: Mapping[str, object],
    seen: dict[str, str],
    context: tuple[str, Mapping[str, str] | None],
    problems: _Problems,
) -> RelayConfig | None:
    ehlo_name, environ = context
    if not isinstance(value, Mapping):
        problems.error(path, f"expected a mapping of relay settings, got {_kind(value)}")
        return None
    raw = _mapping(value, path, problems, "relay settings")
    _check_keys(raw, path, _RELAY_KEYS, problems)
    reader = _Reader(((raw, path), (defaults, "defaults")), problems)
    name = _read_name(reader, seen)
    preset_name, preset = _read_preset(reader)
    shared = _read_shared(reader, ehlo_name, environ)
    host, port, tls = _endpoint(reader, shared.tls, preset)
    relay = RelayConfig(
        name=name,
        host=host,
        port=port,
        tls=tls,
        tls_verify=shared.tls_verify,
        ca_file=shared.ca_file,
        tls_server_name=shared.tls_server_name,
        tls_min_version=shared.tls_min_version,
        ehlo_name=shared.ehlo_name,
        interval=60.0 if shared.interval is None else shared.interval,
        timeout=15.0 if shared.timeout is None else shared.timeout,
        auth=shared.auth,
        rcpt_check=reader.get("rcpt_check", _to_address, None),
        mail_from=shared.mail_from,
        expect=reader.get("expect", _to_expect, None),
        allow_plaintext_auth=shared.allow_plaintext_auth,
        preset=preset_name,
    )
    _check_ports(relay, reader)
    if relay.tls == TLSMode.NONE:
        _check_plaintext(relay, reader)
    else:
        _check_verification(relay, reader)
    _check_timing(shared, reader)
    return relay


def _check_ports(relay: RelayConfig, reader: _Reader) -> None:
    """Port and TLS mode combinations: impossible ones are errors, odd ones warnings."""
    port, tls, at = relay.port, relay.tls, reader.at
    if port in _IMPLICIT_PORTS and tls == TLSMode.STARTTLS:
        reader.problems.error(at("tls"), f"{port} speaks implicit TLS; set tls: implicit")
    if port in _STARTTLS_PORTS and tls == TLSMode.IMPLICIT:
        reader.problems.error(at("tls"), f"{port} speaks STARTTLS; set tls: starttls")
    if tls == TLSMode.NONE and port in _IMPLICIT_PORTS | _STARTTLS_PORTS:
        usual = TLSMode.IMPLICIT if port in _IMPLICIT_PORTS else TLSMode.STARTTLS
        spoken = "implicit TLS" if usual == TLSMode.IMPLICIT else "STARTTLS"
        reader.problems.warn(
            at("tls"),
            f"tls: none on port {port}, which normally speaks {spoken}; "
            f"set tls: {usual} unless this server has no TLS",
        )
    if port == 25 and relay.auth.mechanism != AuthMechanism.NONE:
        reader.problems.warn(
            at("port"), "port 25 with authentication: most clouds block outbound 25; use 587"
        )


def _check_plaintext(relay: RelayConfig, reader: _Reader) -> None:
    """With tls: none, TLS keys are ignored and credentials need an explicit opt-in."""
    for key in ("tls_verify", "ca_file", "tls_server_name", "tls_min_version"):
        if reader.explicit(key):
            reader.problems.warn(reader.at(key), "ignored with tls: none; remove it")
    has_auth = relay.auth.mechanism != AuthMechanism.NONE
    if has_auth and not relay.allow_plaintext_auth and relay.expect is None:
        reader.problems.error(
            reader.at("auth"),
            "credentials would cross the network unencrypted; "
            "use tls: starttls or implicit, or set allow_plaintext_auth: true",
        )


def _check_verification(relay: RelayConfig, reader: _Reader) -> None:
    """Verification off is always said out loud; with a ca_file it contradicts itself."""
    if relay.tls_verify:
        return
    reader.problems.warn(
        reader.at("tls_verify"),
        "certificate verification is off for this relay; "
        "anyone on the path can read the credentials",
    )
    if relay.ca_file is not None:
        reader.problems.error(
            reader.at("ca_file"),
            "ca_file is set but tls_verify is false; remove ca_file or set tls_verify: true",
        )


def _check_timing(shared: _Shared, reader: _Reader) -> None:
    """The timeout must end before the next run starts (skipped when either is invalid)."""
    interval = 60.0 if shared.interval is None else shared.interval
    timeout = 15.0 if shared.timeout is None else shared.timeout
    invalid = (shared.interval is None and reader.is_set("interval")) or (
        shared.timeout is None and reader.is_set("timeout")
    )
    if not invalid and timeout >= interval:
        reader.problems.error(
            reader.at("timeout"),
            f"timeout {_seconds(timeout)} must be shorter than interval {_seconds(interval)}; "
            "raise interval or lower timeout",
        )


# The whole file.


def _default_ehlo_name() -> str:
    """This host's name if it is a valid EHLO name, else localhost."""
    try:
        name = socket.gethostname()
    except OSError:
        return "localhost"
    return name if name and _is_hostname(name) else "localhost"


def _parse_dns(value: object, problems: _Problems) -> DNSConfig:
    block = _mapping(value, "dns", problems, "DNS settings")
    _check_keys(block, "dns", _DNS_KEYS, problems)
    reader = _Reader(((block, "dns"),), problems)
    servers = block.get("nameservers")
    if servers is None:
        servers = []
    if not isinstance(servers, list):
        problems.error("dns.nameservers", f"expected a list, got {_describe(servers)}")
        servers = []
    parsed: list[tuple[str, int]] = []
    for index, item in enumerate(servers):
        try:
            parsed.append(_to_nameserver(item))
        except ValueError as exc:
            problems.error(f"dns.nameservers[{index}]", str(exc))
    return DNSConfig(tuple(parsed), reader.get("timeout", _to_timeout, 5.0))


def _parse_relays(
    value: object,
    defaults: Mapping[str, object],
    context: tuple[str, Mapping[str, str] | None],
    problems: _Problems,
) -> tuple[RelayConfig, ...]:
    if value is None or value == []:
        problems.error(
            "relays", f"{'missing' if value is None else 'empty'}; add at least one relay"
        )
        return ()
    if not isinstance(value, list):
        problems.error("relays", f"expected a list of relays, got {_describe(value)}")
        return ()
    seen: dict[str, str] = {}
    relays = [
        _parse_relay(item, f"relays[{index}]", defaults, seen, context, problems)
        for index, item in enumerate(value)
    ]
    return tuple(relay for relay in relays if relay is not None)


def _parse_defaults(
    value: object, context: tuple[str, Mapping[str, str] | None], problems: _Problems
) -> dict[str, object]:
    defaults = _mapping(value, "defaults", problems, "relay settings")
    _check_keys(defaults, "defaults", _DEFAULTS_KEYS, problems, _DEFAULTS_SPECIAL)
    usable = {key: item for key, item in defaults.items() if key in _DEFAULTS_KEYS}
    _read_shared(_Reader(((usable, "defaults"),), problems), *context)
    return usable


def _max_concurrent(root: Mapping[str, object], problems: _Problems) -> int:
    value = _Reader(((root, ""),), problems).get("max_concurrent_probes", _to_int, 64)
    if value < 1:
        problems.error("max_concurrent_probes", f"{value} is too small; use 1 or more")
    return max(value, 1)


def _load_yaml(text: str, source: str) -> object:
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}" if mark else "somewhere"
        what = exc.problem or exc.context or "syntax error"
        raise ConfigError(
            [Problem(source, f"invalid YAML at {where}: {what}; fix the syntax on that line")]
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(source, f"invalid YAML: {type(exc).__name__}")]) from None


def parse_config(
    text: str, *, source: str = "<string>", environ: Mapping[str, str] | None = None
) -> Config:
    """Parse and validate a YAML config; raise ConfigError listing every error found."""
    data = _load_yaml(text, source)
    if not isinstance(data, Mapping):
        shown = "an empty file" if data is None else _describe(data)
        raise ConfigError([Problem(source, f"expected a mapping with a relays: list, got {shown}")])
    problems = _Problems()
    root = {str(key): value for key, value in data.items()}
    _check_keys(root, "", _TOP_KEYS, problems)
    context = (_default_ehlo_name(), environ)
    defaults = _parse_defaults(root.get("defaults"), context, problems)
    config = Config(
        relays=_parse_relays(root.get("relays"), defaults, context, problems),
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
    """Read and validate the config file at ``path``."""
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
    return parse_config(text, source=source, environ=environ)
