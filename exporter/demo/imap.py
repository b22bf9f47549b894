"""The demo's IMAP server: implicit TLS and STARTTLS listeners on loopback, a Session per client."""

from __future__ import annotations

import asyncio
import ssl
from contextlib import suppress

from exporter.demo.imap_session import Session
from exporter.demo.mailstore import MailStore

__all__ = ["IDLE_TIMEOUT", "DemoIMAPServer"]

MAX_LINE = 64 * 1024
IDLE_TIMEOUT = 30 * 60.0  # RFC 3501 5.4: an autologout timer of at least 30 minutes


class DemoIMAPServer:
    """Two loopback listeners: implicit TLS (like 993) and plain with STARTTLS (like 143)."""

    def __init__(self, store: MailStore, *, users: dict[str, str],
                 ssl_context: ssl.SSLContext | None, hostname: str = "demo-imap.localhost",
                 idle_timeout: float = IDLE_TIMEOUT,
                 bearer_tokens: dict[str, str] | None = None) -> None:
        self.store, self.users, self.ssl_context = store, dict(users), ssl_context
        self.bearer_tokens = dict(bearer_tokens or {})  # access token -> user
        self.hostname, self.idle_timeout = hostname, idle_timeout
        self.imaps_port, self.imap_port = 0, 0
        self._servers: list[asyncio.Server] = []
        self._sessions: set[asyncio.Task[None]] = set()

    async def start(self, host: str = "127.0.0.1") -> None:
        """Listen on two free ports; without an SSL context only on the plain one."""
        plain = await asyncio.start_server(lambda r, w: self._serve(r, w, tls=False), host, 0,
                                           limit=MAX_LINE)
        self._servers = [plain]
        self.imap_port = plain.sockets[0].getsockname()[1]
        if self.ssl_context is not None:
            imaps = await asyncio.start_server(lambda r, w: self._serve(r, w, tls=True), host,
                                               0, ssl=self.ssl_context, limit=MAX_LINE)
            self._servers.append(imaps)
            self.imaps_port = imaps.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                     tls: bool) -> None:
        if (task := asyncio.current_task()) is not None:
            self._sessions.add(task)
            task.add_done_callback(self._sessions.discard)
        with suppress(asyncio.CancelledError):  # stop(); 3.11's streams choke on cancelled tasks
            await Session(self, reader, writer, tls=tls).run()

    async def stop(self) -> None:
        """Stop listening and end every session."""
        for server in self._servers:
            server.close()
        for task in list(self._sessions):
            task.cancel()
        await asyncio.gather(*self._sessions, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
