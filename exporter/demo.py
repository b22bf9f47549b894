"""The embedded demo: a loopback relay (aiosmtpd, STARTTLS and implicit TLS, AUTH) to probe."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import secrets
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["DemoRelay", "make_certificate", "write_demo_config"]

PASSWORD_ENV = "SMTP_CANARY_DEMO_PASSWORD"  # noqa: S105 - a variable name
WRONG_PASSWORD_ENV = "SMTP_CANARY_DEMO_WRONG_PASSWORD"  # noqa: S105
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


@dataclass
class _Handler:
    """Accepts every message and keeps the last few, as a relay's queue would."""

    received: list[Envelope] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received = [*self.received[-99:], envelope]
        return f"250 2.0.0 Ok: queued as {secrets.token_hex(5).upper()}"


class DemoRelay:
    """Two listeners on 127.0.0.1: STARTTLS (like 587) and implicit TLS (like 465)."""

    def __init__(self, directory: Path, *, password: str | None = None) -> None:
        self.directory = directory
        self.password = password or secrets.token_urlsafe(18)
        self.ca_file, cert, key = make_certificate(directory)
        self._ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ctx.load_cert_chain(cert, key)
        self.handler = _Handler()
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

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()


def write_demo_config(relay: DemoRelay, path: Path, *, interval: float = 10.0) -> None:
    """The demo's config: two working relays, a negative check, and one misconfigured relay."""
    timeout = min(5.0, interval / 2)
    path.write_text(
        f"""# Written by `smtp-canary-exporter demo`: probes the demo relay on loopback.
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
  - name: demo-implicit          # like port 465
    host: localhost
    port: {relay.implicit_port}
    tls: implicit
    auth: {{mechanism: login, username: {USERNAME}, password_env: {PASSWORD_ENV}}}
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
