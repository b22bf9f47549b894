"""The whole config: top-level keys, dns, max_concurrent_probes, instance and state_dir."""

from __future__ import annotations

import os
import re
import shlex
import socket
import stat
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from exporter.config.dnschecks import parse_blocklists, parse_domains
from exporter.config.mailboxes import parse_mailboxes, warn_unused_mailboxes
from exporter.config.metrics import parse_metrics
from exporter.config.model import Config, ConfigError, DNSConfig, Problem
from exporter.config.modules import default_ehlo_name, parse_modules
from exporter.config.reader import Context, Problems, Reader, as_mapping, check_keys
from exporter.config.relays import parse_defaults, parse_relays
from exporter.config.values import (
    describe,
    resolve_file,
    to_int,
    to_long_duration,
    to_nameserver,
    to_str,
    to_timeout,
)
from exporter.config.yaml_text import read_yaml

__all__ = [
    "LOCATION_ENV",
    "check_location",
    "load_config",
    "parse_config",
    "writable_by_others",
]

_TOP_KEYS = (
    "blocklists",
    "defaults",
    "dns",
    "domains",
    "instance",
    "mailboxes",
    "max_concurrent_probes",
    "metrics",
    "modules",
    "relays",
    "state_dir",
)
_DNS_KEYS = ("interval", "nameservers", "timeout")
_INSTANCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_INSTANCE_ENV = "SMTP_CANARY_INSTANCE"
LOCATION_ENV = "SMTP_CANARY_LOCATION"
_INSTANCE_RULE = 'up to 63 letters, digits, "_", "." and "-", starting with a letter or digit'
_STATE_ENV = "STATE_DIRECTORY"
_STATE_HOME = (".local", "state", "smtp-canary-exporter")


def parse_config(
    text: str,
    *,
    source: str = "<string>",
    environ: Mapping[str, str] | None = None,
    base_dir: str | None = None,
    offline: bool = False,
) -> Config:
    """Parse and validate a YAML config; raise ConfigError listing every error found.

    Relative file paths start from ``base_dir``, or the working directory when it is None.
    ``offline`` (``check-config --offline``, never the daemon): a secret or file that cannot
    be read here is a note in ``Config.notes``, and a secret stands in a placeholder.
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
    context = Context(default_ehlo_name(), environ, base_dir, offline)
    defaults = parse_defaults(root.get("defaults"), context, problems)
    names: dict[str, str] = {}
    mailboxes = parse_mailboxes(root.get("mailboxes"), context, problems, names)
    metrics = parse_metrics(root.get("metrics"), "metrics", problems)
    relays = parse_relays(root.get("relays"), defaults, context, problems, tuple(names),
                          metrics=metrics)
    warn_unused_mailboxes(names, relays, problems)
    config = Config(
        relays=relays,
        dns=_parse_dns(root.get("dns"), problems),
        max_concurrent_probes=_max_concurrent(root, problems),
        source=source,
        mailboxes=mailboxes,
        instance=_instance(root, context, problems),
        state_dir=_safe_state_dir(_state_dir(root, context, problems), problems),
        domains=parse_domains(root.get("domains"), problems),
        blocklists=parse_blocklists(root.get("blocklists"), problems),
        modules=parse_modules(root.get("modules"), context, problems),
        metrics=metrics,
    )
    if problems.of("error"):
        raise ConfigError(problems.of("error"))
    return replace(config, warnings=problems.of("warning"), notes=problems.of("note"))


def load_config(
    path: str | os.PathLike[str],
    *,
    environ: Mapping[str, str] | None = None,
    offline: bool = False,
) -> Config:
    """Read and validate the config file at ``path``; relative paths in it start from its dir.

    ``offline`` as for parse_config."""
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
    return parse_config(text, source=source, environ=environ, base_dir=os.path.dirname(source),
                        offline=offline)


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
    interval = reader.get(
        "interval", lambda v: to_long_duration(v, what="interval", minimum=10.0), 600.0
    )
    return DNSConfig(tuple(parsed), reader.get("timeout", to_timeout, 5.0), interval)


def _max_concurrent(root: Mapping[str, object], problems: Problems) -> int:
    value = Reader(((root, ""),), problems).get("max_concurrent_probes", to_int, 64)
    if value < 1:
        problems.error("max_concurrent_probes", f"{value} is too small; use 1 or more")
    return max(value, 1)


def _instance(root: Mapping[str, object], context: Context, problems: Problems) -> str:
    """instance:, else $SMTP_CANARY_INSTANCE, else this host's name (or its first label)."""
    reader = Reader(((root, ""),), problems)
    if reader.is_set("instance"):
        return reader.get("instance", _to_instance, "default")
    env = os.environ if context.environ is None else context.environ
    if env.get(_INSTANCE_ENV):
        try:
            return _to_instance(env[_INSTANCE_ENV])
        except ValueError as exc:
            problems.error("instance", f"environment variable {_INSTANCE_ENV}: {exc}")
            return "default"
    try:
        hostname = socket.gethostname()
    except OSError:
        hostname = ""
    for candidate in (hostname, hostname.partition(".")[0]):
        if _INSTANCE.fullmatch(candidate):
            return candidate
    problems.error(
        "instance",
        f'this host\'s name "{hostname}" cannot name the instance; set instance: '
        f"or {_INSTANCE_ENV} to {_INSTANCE_RULE}",
    )
    return "default"


def _to_instance(value: object) -> str:
    text = to_str(value)
    if not _INSTANCE.fullmatch(text):
        raise ValueError(f'"{text}" is not a valid instance name; use {_INSTANCE_RULE}')
    return text


def check_location(value: str) -> str:
    """A location name (``--exporter.location``), checked by the rule instance names follow."""
    if not _INSTANCE.fullmatch(value):
        raise ValueError(f'"{value}" is not a valid location name; use {_INSTANCE_RULE}')
    return value


def _state_dir(root: Mapping[str, object], context: Context, problems: Problems) -> str:
    """state_dir: (from the config's directory), else $STATE_DIRECTORY, else under ~/.local."""
    env = os.environ if context.environ is None else context.environ
    home = env.get("HOME") or os.path.expanduser("~")
    configured = Reader(((root, ""),), problems).get("state_dir", _to_directory, None)
    if configured is not None:
        if configured == "~" or configured.startswith("~/"):
            return home + configured[1:]
        return resolve_file(configured, context.base_dir)
    from_systemd = env.get(_STATE_ENV, "").split(":")[0]
    return from_systemd or os.path.join(home, *_STATE_HOME)


def writable_by_others(st: os.stat_result) -> bool:
    """Whether anyone but this user may write the file or directory: others, or a group other
    than this user's own (Kubernetes' fsGroup leaves a volume writable by the pod's own group,
    which is allowed)."""
    if st.st_mode & stat.S_IWOTH:
        return True
    return bool(st.st_mode & stat.S_IWGRP) and st.st_gid != os.getegid()


def _safe_state_dir(path: str, problems: Problems) -> str:
    """A state directory others may write to is refused (they could plant canary state),
    unless it is sticky and this user's; writable by this user's own group (Kubernetes'
    fsGroup) is allowed. One that does not exist yet is made mode 700."""
    try:
        st = os.stat(path)
    except OSError:
        return path
    if not stat.S_ISDIR(st.st_mode) or not writable_by_others(st):
        return path
    if st.st_mode & stat.S_ISVTX and st.st_uid == os.geteuid():
        return path
    who = "others" if st.st_mode & stat.S_IWOTH else "its group"
    problems.error("state_dir", f"{path} is writable by {who} (mode "
                   f"{stat.S_IMODE(st.st_mode):04o}), who could plant canary state in it; run "
                   f"chmod 700 {shlex.quote(path)} or choose a directory only this user writes")
    return path


def _to_directory(value: object) -> str:
    text = to_str(value)
    if not text:
        raise ValueError("empty; give a directory, or leave state_dir out for the default")
    return text
