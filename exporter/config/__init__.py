"""Typed, frozen configuration loaded from YAML (and the web config file); every problem is
reported with its path and fix. Imports nothing from the features above it."""

from __future__ import annotations

from exporter.config.dnschecks import check_domains
from exporter.config.envfile import EnvFile, EnvFileError, environ_with, read_env_file
from exporter.config.loader import (
    LOCATION_ENV,
    check_location,
    load_config,
    parse_config,
    writable_by_others,
)
from exporter.config.model import (
    AuthConfig,
    AuthMechanism,
    CanaryConfig,
    CanaryTarget,
    Config,
    ConfigError,
    DNSConfig,
    DomainConfig,
    MailboxConfig,
    MetricsConfig,
    ModuleConfig,
    OAuth2Config,
    Problem,
    RelayConfig,
)
from exporter.config.modules import find_module, parse_target, relay_for_target
from exporter.config.presets import lookup_preset, preset_names
from exporter.config.secret import REDACTED, Secret
from exporter.config.shard import (
    ONE_SHARD,
    SHARD_ENV,
    TOTAL_SHARDS_ENV,
    Shard,
    ShardError,
    resolve_shard,
)
from exporter.config.sharded import config_for_shard
from exporter.config.values import parse_duration
from exporter.config.webconfig import RateLimit, WebConfig, load_web_config, watched_files
from exporter.model import TLSMode

__all__ = [
    "LOCATION_ENV",
    "ONE_SHARD",
    "REDACTED",
    "SHARD_ENV",
    "TOTAL_SHARDS_ENV",
    "AuthConfig",
    "AuthMechanism",
    "CanaryConfig",
    "CanaryTarget",
    "Config",
    "ConfigError",
    "DNSConfig",
    "DomainConfig",
    "EnvFile",
    "EnvFileError",
    "MailboxConfig",
    "MetricsConfig",
    "ModuleConfig",
    "OAuth2Config",
    "Problem",
    "RateLimit",
    "RelayConfig",
    "Secret",
    "Shard",
    "ShardError",
    "TLSMode",
    "WebConfig",
    "check_domains",
    "check_location",
    "config_for_shard",
    "environ_with",
    "find_module",
    "load_config",
    "load_web_config",
    "lookup_preset",
    "parse_config",
    "parse_duration",
    "parse_target",
    "preset_names",
    "read_env_file",
    "relay_for_target",
    "resolve_shard",
    "watched_files",
    "writable_by_others",
]
