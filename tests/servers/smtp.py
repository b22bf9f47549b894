"""A recording aiosmtpd relay on the demo relay's handler: PLAIN, LOGIN, CRAM-MD5 and XOAUTH2."""

from __future__ import annotations

import asyncio
import hmac
import ssl
from dataclasses import dataclass, field
from typing import Any, ClassVar

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, Session

from exporter.demo.relay import RelayHandler
from tests.servers.loop import ServerLoop

USER = "probe@example.test"
PASSWORD = "correct horse battery staple"
TOKEN = "ya29.test-access-token"


@dataclass
class Recorder(RelayHandler):
    """The demo relay's handler base, recording what the relay saw: AUTH attempts, envelopes,
    messages; it also offers CRAM-MD5 and can refuse one recipient."""

    bearer_error: ClassVar[dict[str, str]] = {
        "status": "401", "schemes": "bearer", "scope": "https://mail.example.test/"}

    seen_auth: list[str] = field(default_factory=list)
    rcpts: list[str] = field(default_factory=list)
    messages: list[Envelope] = field(default_factory=list)
    reject_rcpt: str | None = None
    password: str = PASSWORD
    token: str = TOKEN

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.rcpts.append(address)
        if address == self.reject_rcpt:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append(envelope)
        return "250 2.0.0 Ok: queued"

    async def auth_CRAM__MD5(self, server: SMTP, args: list[str]) -> AuthResult:
        self.seen_auth.append("CRAM-MD5")
        challenge = b"<1896.697170952@relay.example.test>"
        answer = await server.challenge_auth(challenge)
        if answer is MISSING:
            return AuthResult(success=False)
        user, _, digest = answer.decode().rpartition(" ")
        want = hmac.new(self.password.encode(), challenge, "md5").hexdigest()
        return AuthResult(success=user == USER and hmac.compare_digest(digest, want), handled=False)

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        self.seen_auth.append("XOAUTH2")
        return await super().auth_XOAUTH2(server, args)

    def bearer_valid(self, user: str, token: str) -> bool:
        return user == USER and token == self.token

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        self.seen_auth.append(mechanism)
        return super().authenticate(server, session, envelope, mechanism, data)

    def password_valid(self, login: bytes, password: bytes) -> bool:
        return login == USER.encode() and password == self.password.encode()


@dataclass
class Relay:
    """Ports of a running test relay and what it recorded."""

    port: int
    recorder: Recorder
    server: asyncio.Server


def start_relay(
    loop: ServerLoop,
    *,
    ctx: ssl.SSLContext | None,
    implicit: bool = False,
    starttls: bool = True,
    auth_require_tls: bool = True,
    exclude: tuple[str, ...] = (),
    recorder: Recorder | None = None,
) -> Relay:
    """An aiosmtpd relay on 127.0.0.1:0; ``implicit`` wraps it in TLS from the first byte."""
    rec = recorder or Recorder()

    def factory() -> SMTP:
        return rec.smtp(
            hostname="relay.example.test",
            ident="test relay",
            tls_context=ctx if (starttls and not implicit) else None,
            require_starttls=False,
            auth_require_tls=auth_require_tls and not implicit,
            auth_exclude_mechanism=exclude,
        )

    async def start() -> asyncio.Server:
        aloop = asyncio.get_running_loop()
        return await aloop.create_server(
            factory, "127.0.0.1", 0, ssl=ctx if implicit else None
        )

    server = loop.run(start())
    return Relay(server.sockets[0].getsockname()[1], rec, server)
