"""The embedded demo: a loopback relay, IMAP server, DNS server and OAuth2 token endpoint that
the demo command starts, and that tests and benchmarks reuse."""

from __future__ import annotations

from exporter.demo.run import (
    IMAP_PASSWORD_ENV,
    PASSWORD_ENV,
    REFRESH_TOKEN_ENV,
    WRONG_PASSWORD_ENV,
    DemoRelay,
    demo_secrets,
    write_demo_config,
    write_secrets_file,
)

__all__ = [
    "IMAP_PASSWORD_ENV",
    "PASSWORD_ENV",
    "REFRESH_TOKEN_ENV",
    "WRONG_PASSWORD_ENV",
    "DemoRelay",
    "demo_secrets",
    "write_demo_config",
    "write_secrets_file",
]
