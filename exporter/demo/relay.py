"""The demo relay's SMTP side: an aiosmtpd handler base that authenticates, and the demo's MX."""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, ClassVar

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session

from exporter.demo.dns import DEMO_DOMAIN
from exporter.demo.mailstore import MailStore
from exporter.demo.tokens import DemoTokenEndpoint

__all__ = [
    "DEMO_MX", "INBOX_ADDRESS", "JUNK_ADDRESS", "USERNAME", "DemoMXHandler", "RelayHandler",
]

USERNAME = "demo"

# What the demo's receiving MX stamps. It verifies nothing: it plays a receiver that saw
# SPF, DKIM and DMARC pass for mail to the inbox address, and SPF softfail with DKIM and
# DMARC fail for mail it files as junk, so the exporter's parser, verdicts and alert
# conditions have real headers to work on.
DEMO_MX = "demo-mx.localhost"
# The demo's delivery path has two hops: the relay accepting the canary, and the mailbox
# storing it. The inbox plays a mailbox reached over TLS (LMTPS), Junk one reached over plain
# LMTP, so the demo shows an encrypted path and one that is not.
DEMO_MAILBOX_HOST = "demo-mailbox"
INBOX_ADDRESS = f"canary@{DEMO_DOMAIN}"
JUNK_ADDRESS = f"junk@{DEMO_DOMAIN}"
_PASS = (f"{DEMO_MX}; spf=pass smtp.mailfrom={DEMO_DOMAIN}; dkim=pass header.d={DEMO_DOMAIN}"
         f" header.s=demo; dmarc=pass header.from={DEMO_DOMAIN}")
_FAIL = (f"{DEMO_MX}; spf=softfail smtp.mailfrom={DEMO_DOMAIN}; dkim=fail (body hash did not"
         f" verify) header.d={DEMO_DOMAIN} header.s=demo; dmarc=fail header.from={DEMO_DOMAIN}")


class RelayHandler:
    """An aiosmtpd handler that authenticates: XOAUTH2 (initial response only) through
    ``bearer_valid``, PLAIN and LOGIN through ``password_valid``. Subclasses say which
    credentials are good and what becomes of the mail; ``smtp`` makes a server for each
    connection."""

    # The JSON a provider sends as the 334 challenge after a refused XOAUTH2 token.
    bearer_error: ClassVar[dict[str, str]] = {"status": "401", "schemes": "bearer"}

    def bearer_valid(self, user: str, token: str) -> bool:
        """Whether ``token`` is a good bearer token for ``user``; none is, unless overridden."""
        return False

    def password_valid(self, login: bytes, password: bytes) -> bool:
        """Whether the PLAIN or LOGIN credentials are good; none are, unless overridden."""
        return False

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        """``user=U^Aauth=Bearer T^A^A``; a refused token gets ``bearer_error`` as a challenge,
        and after the client's (empty) answer, 535."""
        try:
            raw = base64.b64decode(args[1], validate=True).decode() if len(args) > 1 else ""
        except (binascii.Error, UnicodeDecodeError):
            raw = ""
        parts = dict(p.split("=", 1) for p in raw.split("\x01") if "=" in p)
        scheme, _, token = parts.get("auth", "").partition(" ")
        if scheme == "Bearer" and self.bearer_valid(parts.get("user", ""), token):
            return AuthResult(success=True, handled=False)
        if await server.challenge_auth(json.dumps(self.bearer_error).encode()) is MISSING:
            return AuthResult(success=False, handled=True)  # aiosmtpd has answered already
        return AuthResult(success=False, handled=False)

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                     mechanism: str, data: Any) -> AuthResult:
        """aiosmtpd's authenticator: checks PLAIN and LOGIN with ``password_valid``."""
        ok = isinstance(data, LoginPassword) and self.password_valid(data.login, data.password)
        return AuthResult(success=ok, handled=False)

    def smtp(self, *, hostname: str, ident: str, tls_context: ssl.SSLContext | None,
             require_starttls: bool, auth_require_tls: bool,
             auth_exclude_mechanism: Sequence[str] = ()) -> SMTP:
        """An aiosmtpd server session (one per connection) with this handler."""
        return SMTP(
            self,
            hostname=hostname,
            ident=ident,
            tls_context=tls_context,
            require_starttls=require_starttls,
            authenticator=self.authenticate,
            auth_require_tls=auth_require_tls,
            auth_exclude_mechanism=list(auth_exclude_mechanism),
        )


@dataclass
class DemoMXHandler(RelayHandler):
    """Accepts every message from the demo user (its password, or a bearer token the demo
    token endpoint issued); mail for the demo domain goes into the demo mailbox, stamped with
    Authentication-Results, mail to the junk address into Junk."""

    password: str
    store: MailStore | None = None
    tokens: DemoTokenEndpoint | None = None
    received: list[Envelope] = field(default_factory=list)  # the last 100

    def bearer_valid(self, user: str, token: str) -> bool:
        return user == USERNAME and self.tokens is not None and self.tokens.valid(token)

    def password_valid(self, login: bytes, password: bytes) -> bool:
        return login == USERNAME.encode() and secrets.compare_digest(
            password, self.password.encode())

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received = [*self.received[-99:], envelope]
        queue_id = secrets.token_hex(5).upper()
        content = _relay_received(server, session, queue_id) + (envelope.original_content or b"")
        if self.store is not None:
            for rcpt in envelope.rcpt_tos:
                junk = rcpt.lower() == JUNK_ADDRESS
                stamp = f"Authentication-Results: {_FAIL if junk else _PASS}\r\n".encode()
                delivered = (f"Received: from {server.hostname} by {DEMO_MAILBOX_HOST} with "
                             f"{'LMTP' if junk else 'LMTPS'} id {queue_id}; {_now()}\r\n")
                self.store.deliver("canary", delivered.encode() + stamp + content,
                                   folder="Junk" if junk else "INBOX")
        return f"250 2.0.0 Ok: queued as {queue_id}"


def _now() -> str:
    return format_datetime(datetime.now(UTC).replace(microsecond=0))


def _relay_received(server: SMTP, session: Session, queue_id: str) -> bytes:
    """The relay's Received header, as Postfix writes it with its TLS details."""
    tls = server.transport.get_extra_info("ssl_object") if server.transport else None
    protocol = "ESMTP" + ("S" if tls is not None else "") + ("A" if session.authenticated else "")
    peer = session.peer[0] if isinstance(session.peer, tuple) else "unknown"
    using = "" if tls is None else f" (using {tls.version()} with cipher {tls.cipher()[0]})"
    return (f"Received: from {session.host_name or 'unknown'} (localhost [{peer}]){using}\r\n"
            f"\tby {server.hostname} with {protocol} id {queue_id}; {_now()}\r\n").encode()
