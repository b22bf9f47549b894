"""The frozen config values, and the problems found while building them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from exporter.config.secret import Secret
from exporter.config.shard import ONE_SHARD, Shard
from exporter.model import Phase, Reason, TLSMode

__all__ = [
    "NO_AUTH",
    "NO_EXTRA_METRICS",
    "AuthConfig",
    "AuthMechanism",
    "CanaryConfig",
    "CanaryTarget",
    "Config",
    "ConfigError",
    "DNSConfig",
    "DomainConfig",
    "MailboxConfig",
    "MetricsConfig",
    "ModuleConfig",
    "OAuth2Config",
    "Problem",
    "RelayConfig",
]


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


NO_AUTH = AuthConfig(AuthMechanism.NONE)


@dataclass(frozen=True, slots=True)
class CanaryTarget:
    """One canary recipient, and the configured mailbox that reads it back."""

    address: str
    mailbox: str


@dataclass(frozen=True, slots=True)
class CanaryConfig:
    """The canary round trip through a relay: who sends, who receives, how often."""

    sender: str
    to: tuple[CanaryTarget, ...]
    interval: float = 300.0
    timeout: float = 600.0
    max_per_day: int | None = None


@dataclass(frozen=True, slots=True)
class MailboxConfig:
    """An IMAP mailbox that canaries are read back from."""

    name: str
    host: str
    port: int
    tls: TLSMode
    tls_verify: bool = True
    ca_file: str | None = None
    tls_min_version: str = "1.2"
    auth: AuthConfig = NO_AUTH
    folders: tuple[tuple[str, str], ...] = (("inbox", "INBOX"),)
    trusted_authserv_ids: tuple[str, ...] = ()
    idle: bool = True
    poll_interval: float = 30.0
    timeout: float = 30.0
    move_to: str | None = None
    allow_plaintext_auth: bool = False


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """Opt-in detail that costs series: per-phase histograms and their bucket bounds
    (None: the exporter's default bounds)."""

    phase_histograms: tuple[Phase, ...] = ()
    buckets: tuple[float, ...] | None = None


NO_EXTRA_METRICS = MetricsConfig()


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
    auth: AuthConfig = NO_AUTH
    rcpt_check: str | None = None
    mail_from: str = ""
    expect: Reason | None = None
    allow_plaintext_auth: bool = False
    preset: str | None = None
    canary: CanaryConfig | None = None
    egress_addresses: tuple[str, ...] = ()  # where its mail leaves from: PTR and DNSBL checks
    metrics: MetricsConfig = NO_EXTRA_METRICS  # the top-level metrics:, overridden per key


@dataclass(frozen=True, slots=True)
class ModuleConfig:
    """A relay template for ``/probe``: every relay setting but the name, endpoint and canary,
    which the request's target supplies (or, for the canary, /probe never sends)."""

    name: str
    tls: TLSMode | None = None  # None: the preset's mode for the target's port, else by port
    tls_verify: bool = True
    ca_file: str | None = None
    tls_server_name: str | None = None
    tls_min_version: str = "1.2"
    ehlo_name: str = "localhost"
    timeout: float = 15.0
    auth: AuthConfig = NO_AUTH
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
    interval: float = 600.0


@dataclass(frozen=True, slots=True)
class DomainConfig:
    """A sending domain whose DNS is checked."""

    name: str
    dkim_selectors: tuple[str, ...] = ()
    expect_spf_includes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated config."""

    relays: tuple[RelayConfig, ...]
    dns: DNSConfig
    max_concurrent_probes: int = 64
    warnings: tuple[Problem, ...] = ()
    source: str = "<string>"
    mailboxes: tuple[MailboxConfig, ...] = ()
    instance: str = "default"
    state_dir: str | None = None
    domains: tuple[DomainConfig, ...] = ()
    blocklists: tuple[str, ...] = ()
    location: str = ""
    notes: tuple[Problem, ...] = ()  # what only the machine it runs on can check (offline)
    shard: Shard = ONE_SHARD  # which shard of the relays this process runs (--shard)
    modules: tuple[ModuleConfig, ...] = ()  # relay templates for /probe
    metrics: MetricsConfig = NO_EXTRA_METRICS  # the top-level metrics: block

    @property
    def canary_instance(self) -> str:
        """The name canary tokens and the state file carry: the instance, the location when
        one is set, and the shard when there are several (``prod.eu-west.shard1``), so
        exporters that share an instance name but probe from different locations, or as
        different shards, never consume each other's canaries."""
        return ".".join(p for p in (self.instance, self.location, self.shard.tag) if p)
