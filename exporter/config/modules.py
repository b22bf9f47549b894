"""The modules block: relay templates that ``/probe`` completes with the request's target;
a preset name is a module too. Also the target itself (HOST:PORT), checked like a relay's."""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping

from exporter.config.model import AuthMechanism, Config, ModuleConfig, RelayConfig
from exporter.config.presets import lookup_preset
from exporter.config.reader import Context, Problems, Reader, as_mapping, check_keys, join
from exporter.config.relays import default_tls, read_preset, read_shared
from exporter.config.transport import check_ignored_tls_keys, check_verification
from exporter.config.values import describe, is_hostname, to_address, to_expect, to_host, to_port
from exporter.model import TLSMode

__all__ = [
    "default_ehlo_name",
    "find_module",
    "parse_modules",
    "parse_target",
    "relay_for_target",
]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# Relay keys a module may not hold: the request gives the endpoint, and /probe sends no mail.
_NOT_IN_MODULES = {
    "name": "a module is named by its key under modules:; remove name",
    "host": "the host comes from /probe's target=HOST:PORT; remove it from the module",
    "port": "the port comes from /probe's target=HOST:PORT; remove it from the module",
    "canary": "/probe sends no canaries; move canary to a relay under relays:",
}
# Relay keys a module accepts but /probe has no use for.
_IGNORED = {
    "interval": "ignored by /probe: Prometheus's scrape_interval sets how often it runs; "
                "remove it",
    "egress_addresses": "ignored by /probe, which checks no DNS records; remove it",
}
_MODULE_KEYS = tuple(key for key in RelayConfig.__dataclass_fields__
                     if key not in _NOT_IN_MODULES)
_BRACKETED = re.compile(r"\[(?P<host>[^\]]*)\]:(?P<port>[^:]*)")
_EXAMPLE = "smtp.example.com:587"


def default_ehlo_name() -> str:
    """This host's name if it is a valid EHLO name, else localhost."""
    try:
        name = socket.gethostname()
    except OSError:
        return "localhost"
    return name if name and is_hostname(name) else "localhost"


def parse_modules(value: object, context: Context, problems: Problems) -> tuple[ModuleConfig, ...]:
    """Every module that could be built, in file order; problems at ``modules.NAME.key``."""
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        problems.error("modules", f"expected a mapping of module names to relay settings, got "
                                  f"{describe(value)}")
        return ()
    modules = []
    for key, item in value.items():
        name = str(key)
        path = join("modules", name or '""')
        if not _NAME.fullmatch(name):
            problems.error(path, f'"{name}" is not a valid module name; use letters, digits, '
                                 '"_", "." and "-", starting with a letter or digit')
            continue
        modules.append(_parse_module(name, item, path, context, problems))
    return tuple(modules)


def _parse_module(name: str, value: object, path: str, context: Context,
                  problems: Problems) -> ModuleConfig:
    raw = as_mapping(value, path, problems, "relay settings")
    check_keys(raw, path, _MODULE_KEYS, problems, _NOT_IN_MODULES)
    for key, why in _IGNORED.items():
        if key in raw:
            problems.warn(join(path, key), why)
    reader = Reader(((raw, path),), problems)
    preset_name, _ = read_preset(reader)
    shared = read_shared(reader, context)
    module = ModuleConfig(
        name=name,
        tls=shared.tls,
        tls_verify=shared.tls_verify,
        ca_file=shared.ca_file,
        tls_server_name=shared.tls_server_name,
        tls_min_version=shared.tls_min_version,
        ehlo_name=shared.ehlo_name,
        timeout=15.0 if shared.timeout is None else shared.timeout,
        auth=shared.auth,
        rcpt_check=reader.get("rcpt_check", to_address, None),
        mail_from=shared.mail_from,
        expect=reader.get("expect", to_expect, None),
        allow_plaintext_auth=shared.allow_plaintext_auth,
        preset=preset_name,
    )
    if module.tls == TLSMode.NONE:
        check_ignored_tls_keys(reader, ("tls_verify", "ca_file", "tls_server_name",
                                        "tls_min_version"))
        if (module.auth.mechanism != AuthMechanism.NONE and not module.allow_plaintext_auth
                and module.expect is None):
            problems.error(reader.at("auth"), "credentials would cross the network unencrypted; "
                           "use tls: starttls or implicit, or set allow_plaintext_auth: true")
    else:
        check_verification(reader, module.tls_verify, module.ca_file, "module")
    return module


def find_module(config: Config, name: str) -> ModuleConfig | None:
    """The module called ``name``: a configured one, else a preset's (no credentials), else
    None. A configured module may reuse a preset's name; it then wins."""
    for module in config.modules:
        if module.name == name:
            return module
    if lookup_preset(name) is None:
        return None
    return ModuleConfig(name=name, preset=name, ehlo_name=default_ehlo_name())


def parse_target(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPV6]:PORT`` as (host, port); raises ValueError with one line that
    says what is wrong and how to write it."""
    if not text:
        raise ValueError(f"target is empty; give HOST:PORT, e.g. {_EXAMPLE}")
    if "@" in text:
        raise ValueError("target carries credentials; /probe takes them only from the "
                         "module's auth")
    if "://" in text or "/" in text:
        raise ValueError(f"target is not HOST:PORT; give no scheme or path, e.g. {_EXAMPLE}")
    bracketed = _BRACKETED.fullmatch(text)
    if bracketed:
        host, port_text = bracketed["host"], bracketed["port"]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"target has no port; give HOST:PORT, e.g. {text}:587")
        if ":" in host:
            raise ValueError("target: put an IPv6 address in brackets, e.g. [2001:db8::25]:587")
    if not port_text.isascii() or not port_text.isdigit():
        raise ValueError(f"target port {port_text!r} is not a number; use 1 to 65535")
    try:
        port = to_port(int(port_text))
        host = to_host(host)
    except ValueError as exc:
        raise ValueError(f"target: {exc}") from None
    return host, port


def relay_for_target(module: ModuleConfig, host: str, port: int, *,
                     timeout: float) -> RelayConfig:
    """The relay ``module`` makes of a target: its TLS mode, when the module sets none, is
    the preset's for that port, else implicit on 465 and 2465 and STARTTLS on others."""
    preset = lookup_preset(module.preset) if module.preset else None
    return RelayConfig(
        name=module.name,
        host=host,
        port=port,
        tls=module.tls or default_tls(port, preset),
        tls_verify=module.tls_verify,
        ca_file=module.ca_file,
        tls_server_name=module.tls_server_name,
        tls_min_version=module.tls_min_version,
        ehlo_name=module.ehlo_name,
        interval=max(60.0, timeout * 2),
        timeout=timeout,
        auth=module.auth,
        rcpt_check=module.rcpt_check,
        mail_from=module.mail_from,
        expect=module.expect,
        allow_plaintext_auth=module.allow_plaintext_auth,
        preset=module.preset,
    )
