"""The embedded demo: a loopback relay (aiosmtpd, STARTTLS and implicit TLS, AUTH) to probe."""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import ipaddress
import json
import secrets
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from exporter.demo.dns import BLOCKLIST, DemoDNS
from exporter.demo.imap import DemoIMAPServer
from exporter.demo.mailstore import MailStore
from exporter.demo.tokens import CLIENT_ID, DemoTokenEndpoint

__all__ = ["DemoRelay", "make_certificate", "write_demo_config"]

PASSWORD_ENV = "SMTP_CANARY_DEMO_PASSWORD"  # noqa: S105 - a variable name
WRONG_PASSWORD_ENV = "SMTP_CANARY_DEMO_WRONG_PASSWORD"  # noqa: S105
IMAP_PASSWORD_ENV = "SMTP_CANARY_DEMO_IMAP_PASSWORD"  # noqa: S105
REFRESH_TOKEN_ENV = "SMTP_CANARY_DEMO_REFRESH_TOKEN"  # noqa: S105
USERNAME = "demo"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_certificate(directory: Path, *, days: int = 30) -> tuple[Path, Path, Path]:
    """A throwaway CA and a localhost certificate it signed: (ca.pem, cert.pem, key.pem)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("smtp-canary-exporter demo CA"))
        .issuer_name(_name("smtp-canary-exporter demo CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("::1")),
            ]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    paths = (directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    paths[2].chmod(0o600)
    return paths


# What the demo's receiving MX stamps. It verifies nothing: it plays a receiver that saw
# SPF, DKIM and DMARC pass for mail to the inbox address, and fail for mail it files as junk,
# so the exporter's parser, verdicts and alert conditions have real headers to work on.
DEMO_MX = "demo-mx.localhost"
DEMO_DOMAIN = "demo.localhost"
INBOX_ADDRESS = f"canary@{DEMO_DOMAIN}"
JUNK_ADDRESS = f"junk@{DEMO_DOMAIN}"
_PASS = (f"{DEMO_MX}; spf=pass smtp.mailfrom={DEMO_DOMAIN}; dkim=pass header.d={DEMO_DOMAIN}"
         f" header.s=demo; dmarc=pass header.from={DEMO_DOMAIN}")
_FAIL = (f"{DEMO_MX}; spf=softfail smtp.mailfrom={DEMO_DOMAIN}; dkim=fail (body hash did not"
         f" verify) header.d={DEMO_DOMAIN} header.s=demo; dmarc=fail header.from={DEMO_DOMAIN}")


@dataclass
class _Handler:
    """Accepts every message; mail for the demo domain goes into the demo mailbox."""

    store: MailStore | None = None
    tokens: DemoTokenEndpoint | None = None
    received: list[Envelope] = field(default_factory=list)

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        """XOAUTH2 (initial response only): a bearer token the demo token endpoint issued."""
        try:
            raw = base64.b64decode(args[1], validate=True).decode() if len(args) > 1 else ""
        except (binascii.Error, UnicodeDecodeError):
            raw = ""
        parts = dict(p.split("=", 1) for p in raw.split("\x01") if "=" in p)
        scheme, _, token = parts.get("auth", "").partition(" ")
        if (parts.get("user") == USERNAME and scheme == "Bearer" and self.tokens is not None
                and self.tokens.valid(token)):
            return AuthResult(success=True, handled=False)
        error = {"status": "401", "schemes": "bearer"}
        if await server.challenge_auth(json.dumps(error).encode()) is MISSING:
            return AuthResult(success=False, handled=True)
        return AuthResult(success=False, handled=False)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received = [*self.received[-99:], envelope]
        content = envelope.original_content or b""
        if self.store is not None:
            for rcpt in envelope.rcpt_tos:
                junk = rcpt.lower() == JUNK_ADDRESS
                stamp = f"Authentication-Results: {_FAIL if junk else _PASS}\r\n".encode()
                self.store.deliver("canary", stamp + content, folder="Junk" if junk else "INBOX")
        return f"250 2.0.0 Ok: queued as {secrets.token_hex(5).upper()}"


class DemoRelay:
    """Two listeners on 127.0.0.1: STARTTLS (like 587) and implicit TLS (like 465)."""

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
        self.handler = _Handler(store=self.mail, tokens=self.tokens)
        self.dns = DemoDNS()
        self.starttls_port = 0
        self.implicit_port = 0
        self._servers: list[asyncio.Server] = []

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login == USERNAME.encode()
            and secrets.compare_digest(data.password, self.password.encode())
        )
        return AuthResult(success=ok, handled=False)

    def _smtp(self, *, starttls: bool) -> SMTP:
        return SMTP(
            self.handler,
            hostname="demo-relay.localhost",
            ident="smtp-canary-exporter demo relay",
            tls_context=self._ctx if starttls else None,
            require_starttls=starttls,
            authenticator=self._authenticate,
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
