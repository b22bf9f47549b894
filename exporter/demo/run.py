"""The demo as a whole: DemoRelay starts its relay, mailbox, DNS and token endpoint; its config."""

from __future__ import annotations

import asyncio
import os
import secrets
import ssl
from pathlib import Path

from aiosmtpd.smtp import SMTP

from exporter.demo.certs import make_certificate
from exporter.demo.dns import BLOCKLIST, DEMO_DOMAIN, DemoDNS
from exporter.demo.imap import DemoIMAPServer
from exporter.demo.mailstore import MailStore
from exporter.demo.relay import DEMO_MX, INBOX_ADDRESS, JUNK_ADDRESS, USERNAME, DemoMXHandler
from exporter.demo.tokens import CLIENT_ID, DemoTokenEndpoint

__all__ = [
    "IMAP_PASSWORD_ENV", "PASSWORD_ENV", "REFRESH_TOKEN_ENV", "USERNAME", "WRONG_PASSWORD_ENV",
    "DemoRelay", "demo_secrets", "write_demo_config", "write_secrets_file",
]

PASSWORD_ENV = "SMTP_CANARY_DEMO_PASSWORD"  # noqa: S105 - a variable name
WRONG_PASSWORD_ENV = "SMTP_CANARY_DEMO_WRONG_PASSWORD"  # noqa: S105
IMAP_PASSWORD_ENV = "SMTP_CANARY_DEMO_IMAP_PASSWORD"  # noqa: S105
REFRESH_TOKEN_ENV = "SMTP_CANARY_DEMO_REFRESH_TOKEN"  # noqa: S105


class DemoRelay:
    """The demo on 127.0.0.1: a relay with two listeners, STARTTLS (like 587) and implicit TLS
    (like 465), the IMAP mailbox it delivers to, a DNS server and an OAuth2 token endpoint."""

    def __init__(self, directory: Path, *, password: str | None = None) -> None:
        self.directory = directory
        self.password = password or secrets.token_urlsafe(18)
        self.imap_password = secrets.token_urlsafe(18)
        self.ca_file, cert, key = make_certificate(directory)
        self._ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ctx.load_cert_chain(cert, key)
        self.mail = MailStore()
        self.imap = DemoIMAPServer(self.mail, users={"canary": self.imap_password},
                                   ssl_context=self._ctx, hostname="demo-imap.localhost")
        self.tokens = DemoTokenEndpoint()
        self.handler = DemoMXHandler(self.password, store=self.mail, tokens=self.tokens)
        self.dns = DemoDNS()
        self.starttls_port = 0
        self.implicit_port = 0
        self._servers: list[asyncio.Server] = []

    def _smtp(self, *, starttls: bool) -> SMTP:
        return self.handler.smtp(
            hostname="demo-relay.localhost",
            ident="smtp-canary-exporter demo relay",
            tls_context=self._ctx if starttls else None,
            require_starttls=starttls,
            auth_require_tls=starttls,
        )

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        plain = await loop.create_server(lambda: self._smtp(starttls=True), "127.0.0.1", 0)
        implicit = await loop.create_server(
            lambda: self._smtp(starttls=False), "127.0.0.1", 0, ssl=self._ctx
        )
        self._servers = [plain, implicit]
        self.starttls_port = plain.sockets[0].getsockname()[1]
        self.implicit_port = implicit.sockets[0].getsockname()[1]
        await self.imap.start()
        await self.dns.start()
        await self.tokens.start()

    async def stop(self) -> None:
        await self.tokens.stop()
        await self.dns.stop()
        await self.imap.stop()
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()


def demo_secrets(relay: DemoRelay) -> dict[str, str]:
    """The environment variables the demo's config reads its secrets from, with their values."""
    return {
        PASSWORD_ENV: relay.password,
        WRONG_PASSWORD_ENV: "not-" + secrets.token_urlsafe(8),
        IMAP_PASSWORD_ENV: relay.imap_password,
        REFRESH_TOKEN_ENV: relay.tokens.refresh_token,
    }


def write_secrets_file(path: Path, values: dict[str, str]) -> None:
    """``NAME=value`` lines for ``--env-file``, in a new file only this user can read (0600)."""
    text = "".join(f"{name}={value}\n" for name, value in values.items())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("# Written by `smtp-canary-exporter demo`, removed when it stops.\n" + text)


def write_demo_config(relay: DemoRelay, path: Path, *, interval: float = 10.0) -> None:
    """The demo's config: two working relays with canaries (one lands in Junk), an XOAUTH2
    relay, a negative check, one misconfigured relay, DNS checks of a good and a weak domain,
    and reverse DNS and blocklist checks of the relays' egress addresses."""
    timeout = min(5.0, interval / 2)
    canary_interval = max(10.0, interval)
    dns_interval = max(10.0, interval)  # dns.interval's minimum
    path.write_text(
        f"""# Written by `smtp-canary-exporter demo`: probes the demo relay on loopback.
instance: demo
state_dir: {path.parent / "state"}
mailboxes:
  - name: demo-mailbox
    host: localhost
    port: {relay.imap.imaps_port}
    tls: implicit
    ca_file: {relay.ca_file}
    auth: {{username: canary, password_env: {IMAP_PASSWORD_ENV}}}
    trusted_authserv_ids: [{DEMO_MX}]
    poll_interval: 5s
dns:                             # the demo's own authoritative DNS server
  nameservers: ["127.0.0.1:{relay.dns.port}"]
  timeout: 2s
  interval: {dns_interval:g}s
blocklists: [{BLOCKLIST}]        # served by the demo DNS server; it lists 127.0.0.2
domains:
  - {{name: {DEMO_DOMAIN}, dkim_selectors: [demo]}}
  - {{name: weak.localhost, dkim_selectors: [old]}}   # broken on purpose: +all, no DMARC
defaults:
  interval: {interval:g}s
  timeout: {timeout:g}s
  ca_file: {relay.ca_file}
  ehlo_name: demo-probe.localhost
relays:
  - name: demo-starttls          # like port 587
    host: localhost
    port: {relay.starttls_port}
    tls: starttls
    auth: {{mechanism: plain, username: {USERNAME}, password_env: {PASSWORD_ENV}}}
    rcpt_check: canary@demo.localhost
    mail_from: probe@demo.localhost
    egress_addresses: [127.0.0.10] # reverse DNS out.demo.localhost, forward confirmed
    metrics: {{phase_histograms: [connect, tls, auth]}}  # opt-in: per-phase latency histograms
    canary:
      from: canary@{DEMO_DOMAIN}
      to: [{{address: {INBOX_ADDRESS}, mailbox: demo-mailbox}}]
      interval: {canary_interval:g}s
      timeout: 60s
  - name: demo-implicit          # like port 465; its canaries are filed as junk
    host: localhost
    port: {relay.implicit_port}
    tls: implicit
    auth: {{mechanism: login, username: {USERNAME}, password_env: {PASSWORD_ENV}}}
    egress_addresses: [127.0.0.2]  # blocklisted, and its reverse DNS does not resolve back
    canary:
      from: canary@{DEMO_DOMAIN}
      to: [{{address: {JUNK_ADDRESS}, mailbox: demo-mailbox}}]
      interval: {canary_interval:g}s
      timeout: 60s
  - name: demo-oauth2            # XOAUTH2, tokens refreshed from the demo token endpoint
    host: localhost
    port: {relay.starttls_port}
    tls: starttls
    auth:
      mechanism: xoauth2
      username: {USERNAME}
      oauth2:
        token_url: {relay.tokens.url}
        client_id: {CLIENT_ID}
        refresh_token_env: {REFRESH_TOKEN_ENV}
  - name: demo-wrong-password    # a negative check: a bad password must be refused
    host: localhost
    port: {relay.starttls_port}
    tls: starttls
    expect: auth_failed
    auth: {{mechanism: plain, username: {USERNAME}, password_env: {WRONG_PASSWORD_ENV}}}
  - name: demo-wrong-tls-mode    # misconfigured on purpose: STARTTLS against the implicit port
    host: localhost
    port: {relay.implicit_port}
    tls: starttls
""",
        encoding="utf-8",
    )
