"""The relays list and the defaults block: precedence, presets, and checks across keys."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial

from exporter.config.auth import parse_auth
from exporter.config.canary import parse_canary
from exporter.config.metrics import parse_metrics
from exporter.config.model import (
    NO_AUTH,
    NO_EXTRA_METRICS,
    AuthConfig,
    AuthMechanism,
    MetricsConfig,
    RelayConfig,
)
from exporter.config.presets import Preset, lookup_preset, preset_names
from exporter.config.reader import Context, Problems, Reader, as_mapping, check_keys, read_list
from exporter.config.transport import (
    check_ignored_tls_keys,
    check_ports,
    check_verification,
    read_name,
)
from exporter.config.values import (
    describe,
    kind,
    seconds_text,
    to_address,
    to_bool,
    to_ca_file,
    to_ehlo_name,
    to_expect,
    to_host,
    to_interval,
    to_ip,
    to_mail_from,
    to_port,
    to_str,
    to_timeout,
    to_tls_mode,
    to_tls_version,
)
from exporter.model import TLSMode

__all__ = ["RelaySettings", "default_tls", "parse_defaults", "parse_relays", "read_preset",
           "read_shared"]

_RELAY_KEYS = tuple(field for field in RelayConfig.__dataclass_fields__)
_RELAY_ONLY = ("name", "host", "port", "preset", "rcpt_check", "expect", "canary",
               "egress_addresses", "metrics")
_DEFAULTS_KEYS = tuple(key for key in _RELAY_KEYS if key not in _RELAY_ONLY)
_DEFAULTS_SPECIAL = {key: "cannot be set in defaults; set it on each relay" for key in _RELAY_ONLY}
_DEFAULTS_SPECIAL["metrics"] = ("cannot be set in defaults; set metrics: at the top level for "
                                "every relay, or on a relay for that one")
_IMPLICIT_PORTS = frozenset({465, 2465})
_STARTTLS_PORTS = frozenset({587, 2587})
_PORT_FOR_MODE = {TLSMode.STARTTLS: 587, TLSMode.IMPLICIT: 465, TLSMode.NONE: 25}


def parse_defaults(value: object, context: Context, problems: Problems) -> dict[str, object]:
    """The defaults block's usable keys, after checking them once at their defaults path."""
    defaults = as_mapping(value, "defaults", problems, "relay settings")
    check_keys(defaults, "defaults", _DEFAULTS_KEYS, problems, _DEFAULTS_SPECIAL)
    usable = {key: item for key, item in defaults.items() if key in _DEFAULTS_KEYS}
    read_shared(Reader(((usable, "defaults"),), problems), context)
    return usable


def parse_relays(
    value: object,
    defaults: Mapping[str, object],
    context: Context,
    problems: Problems,
    mailboxes: Sequence[str] = (),
    *,
    metrics: MetricsConfig = NO_EXTRA_METRICS,
) -> tuple[RelayConfig, ...]:
    """Every relay that could be built; what is wrong with the others is in ``problems``.

    ``mailboxes`` are the configured mailbox names that a canary block may send to.
    """
    if value is None or value == []:
        problems.error(
            "relays", f"{'missing' if value is None else 'empty'}; add at least one relay"
        )
        return ()
    if not isinstance(value, list):
        problems.error("relays", f"expected a list of relays, got {describe(value)}")
        return ()
    seen: dict[str, str] = {}
    relays = [
        _parse_relay(item, f"relays[{index}]", defaults, seen, context, problems, mailboxes,
                     metrics)
        for index, item in enumerate(value)
    ]
    return tuple(relay for relay in relays if relay is not None)


@dataclass(frozen=True, slots=True)
class RelaySettings:
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


def read_shared(reader: Reader, context: Context) -> RelaySettings:
    auth = NO_AUTH
    found = reader.find("auth")
    if found is not None:
        auth = parse_auth(found[0], found[1], context, reader.problems)
    return RelaySettings(
        tls=reader.get("tls", to_tls_mode, None),
        tls_verify=reader.get("tls_verify", to_bool, True),
        ca_file=reader.get_file(
            "ca_file", partial(to_ca_file, base_dir=context.base_dir), None,
            offline=context.offline,
        ),
        tls_server_name=reader.get("tls_server_name", to_host, None),
        tls_min_version=reader.get("tls_min_version", to_tls_version, "1.2"),
        ehlo_name=reader.get("ehlo_name", to_ehlo_name, context.ehlo_name),
        interval=reader.get("interval", to_interval, None),
        timeout=reader.get("timeout", to_timeout, None),
        auth=auth,
        mail_from=reader.get("mail_from", to_mail_from, ""),
        allow_plaintext_auth=reader.get("allow_plaintext_auth", to_bool, False),
    )


def _parse_relay(
    value: object,
    path: str,
    defaults: Mapping[str, object],
    seen: dict[str, str],
    context: Context,
    problems: Problems,
    mailboxes: Sequence[str],
    metrics: MetricsConfig = NO_EXTRA_METRICS,
) -> RelayConfig | None:
    if not isinstance(value, Mapping):
        problems.error(path, f"expected a mapping of relay settings, got {kind(value)}")
        return None
    raw = as_mapping(value, path, problems, "relay settings")
    check_keys(raw, path, _RELAY_KEYS, problems)
    reader = Reader(((raw, path), (defaults, "defaults")), problems)
    name = read_name(reader, seen, "relay")
    preset_name, preset = read_preset(reader)
    shared = read_shared(reader, context)
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
        rcpt_check=reader.get("rcpt_check", to_address, None),
        mail_from=shared.mail_from,
        expect=reader.get("expect", to_expect, None),
        allow_plaintext_auth=shared.allow_plaintext_auth,
        preset=preset_name,
        canary=parse_canary(raw.get("canary"), reader.at("canary"), mailboxes, problems),
        egress_addresses=read_list(raw.get("egress_addresses"), reader.at("egress_addresses"),
                                   problems, to_ip, "IP addresses"),
        metrics=parse_metrics(raw.get("metrics"), reader.at("metrics"), problems, metrics),
    )
    _check_ports(relay, reader)
    if relay.tls == TLSMode.NONE:
        _check_plaintext(relay, reader)
    else:
        check_verification(reader, relay.tls_verify, relay.ca_file, "relay")
    _check_timing(shared, reader)
    if relay.canary is not None and relay.expect is not None:
        problems.error(
            reader.at("canary"),
            "a relay with expect must fail, so it cannot deliver canaries; "
            "move canary to a relay without expect",
        )
    return relay


def read_preset(reader: Reader) -> tuple[str | None, Preset | None]:
    name = reader.get("preset", to_str, None)
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
    reader: Reader, tls: TLSMode | None, preset: Preset | None
) -> tuple[str, int, TLSMode]:
    """Host, port and TLS mode: relay keys, then defaults, then the preset, then the port."""
    host = reader.get("host", to_host, None) or (preset.host if preset else None)
    if host is None and not reader.is_set("host") and not reader.is_set("preset"):
        reader.problems.error(reader.at("host"), "missing; set host or a preset")
    port = reader.get("port", to_port, None)
    if port is None:
        port = preset.port_for(tls or preset.tls) if preset else None
        port = port or _PORT_FOR_MODE[tls or TLSMode.STARTTLS]
    return host or "", port, tls or default_tls(port, preset)


def default_tls(port: int, preset: Preset | None) -> TLSMode:
    """The TLS mode when none is set: the preset's for the port, else implicit on 465 and
    2465 and STARTTLS on every other port."""
    known = preset.tls_for(port) if preset else None
    return known or (TLSMode.IMPLICIT if port in _IMPLICIT_PORTS else TLSMode.STARTTLS)


def _check_ports(relay: RelayConfig, reader: Reader) -> None:
    """Port and TLS mode combinations: impossible ones are errors, odd ones warnings."""
    check_ports(reader, relay.port, relay.tls, _IMPLICIT_PORTS, _STARTTLS_PORTS)
    if relay.port == 25 and relay.auth.mechanism != AuthMechanism.NONE:
        reader.problems.warn(
            reader.at("port"), "port 25 with authentication: most clouds block outbound 25; use 587"
        )


def _check_plaintext(relay: RelayConfig, reader: Reader) -> None:
    """With tls: none, TLS keys are ignored and credentials need an explicit opt-in."""
    check_ignored_tls_keys(reader, ("tls_verify", "ca_file", "tls_server_name", "tls_min_version"))
    has_auth = relay.auth.mechanism != AuthMechanism.NONE
    if has_auth and not relay.allow_plaintext_auth and relay.expect is None:
        reader.problems.error(
            reader.at("auth"),
            "credentials would cross the network unencrypted; "
            "use tls: starttls or implicit, or set allow_plaintext_auth: true",
        )


def _check_timing(shared: RelaySettings, reader: Reader) -> None:
    """The timeout must end before the next run starts (skipped when either is invalid)."""
    interval = 60.0 if shared.interval is None else shared.interval
    timeout = 15.0 if shared.timeout is None else shared.timeout
    invalid = (shared.interval is None and reader.is_set("interval")) or (
        shared.timeout is None and reader.is_set("timeout")
    )
    if not invalid and timeout >= interval:
        reader.problems.error(
            reader.at("timeout"),
            f"timeout {seconds_text(timeout)} must be shorter than interval "
            f"{seconds_text(interval)}; raise interval or lower timeout",
        )
