"""Relays that really deliver: aiosmtpd accepts with AUTH and hands each message to Dovecot
(stamping Authentication-Results as a receiving MX would; LMTP into INBOX, APPEND into Junk)
or to the in-process IMAP server's store."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiosmtpd.smtp import SMTP, Envelope, Session

from exporter.demo.mailstore import MailStore
from tests.servers.smtp import Recorder
from testservers.dovecot import Dovecot

GOOD_AR = ("mx.test.example; spf=pass smtp.mailfrom=example.test; "
           "dkim=pass header.d=example.test header.s=s1; dmarc=pass header.from=example.test")


@dataclass
class DeliveringRecorder(Recorder):
    """Recorder that delivers into Dovecot; ``hold`` keeps messages back (to make them lost)."""

    dovecot: Dovecot | None = None
    users: dict[str, str] = field(default_factory=dict)  # address -> dovecot user
    junk: set[str] = field(default_factory=set)  # addresses filed into Junk
    stamps: list[str] = field(default_factory=lambda: [GOOD_AR])  # A-R values, top first
    extra_headers: list[tuple[str, str]] = field(default_factory=list)
    hold: bool = False
    held: list[tuple[str, bytes, str | None]] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append(envelope)
        content = envelope.original_content or b""
        added = [f"Authentication-Results: {v}" for v in self.stamps]
        added += [f"{k}: {v}" for k, v in self.extra_headers]
        raw = "".join(h + "\r\n" for h in added).encode() + content
        for address in envelope.rcpt_tos:
            item = (self.users[address], raw, "Junk" if address in self.junk else None)
            if self.hold:
                self.held.append(item)
            else:
                await asyncio.to_thread(self._deliver, *item)
        return "250 2.0.0 Ok: queued"

    def _deliver(self, user: str, raw: bytes, folder: str | None) -> None:
        assert self.dovecot is not None
        try:
            self.dovecot.deliver(user, raw, folder=folder)
        except Exception as exc:
            raise RuntimeError(f"delivery failed: {exc}\n{self.dovecot.log_tail(40)}") from exc

    def release(self) -> None:
        """Deliver what was held back (from the calling thread)."""
        held, self.held = self.held, []
        for item in held:
            self._deliver(*item)


@dataclass
class StoreRecorder(Recorder):
    """Recorder that files each message into ``user``'s INBOX of an in-process IMAP store
    (exporter.demo.mailstore); ``hold`` keeps messages back until ``release``."""

    store: MailStore | None = None
    user: str = ""
    hold: bool = False
    held: list[bytes] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append(envelope)
        raw = envelope.original_content or b""
        if self.hold:
            self.held.append(raw)
        else:
            self._deliver(raw)
        return "250 2.0.0 Ok: queued"

    def release(self) -> None:
        held, self.held = self.held, []
        for raw in held:
            self._deliver(raw)

    def _deliver(self, raw: bytes) -> None:
        assert self.store is not None
        self.store.deliver(self.user, raw)
