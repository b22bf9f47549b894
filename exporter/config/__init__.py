"""Typed, frozen configuration loaded from YAML; every problem is reported with its path and fix."""

from __future__ import annotations

from exporter.config.dnschecks import check_domains
from exporter.config.loader import LOCATION_ENV, check_location, load_config, parse_config
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
    OAuth2Config,
    Problem,
    RelayConfig,
)
from exporter.config.values import parse_duration
from exporter.providers import TLSMode

__all__ = [
    "LOCATION_ENV",
    "AuthConfig",
    "AuthMechanism",
    "CanaryConfig",
    "CanaryTarget",
    "Config",
    "ConfigError",
    "DNSConfig",
    "DomainConfig",
    "MailboxConfig",
    "OAuth2Config",
    "Problem",
    "RelayConfig",
    "TLSMode",
    "check_domains",
    "check_location",
    "load_config",
    "parse_config",
    "parse_duration",
]
