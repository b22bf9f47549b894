"""aiosmtplib's SMTP protocol, stamping each reply with the kernel's receive time."""

from __future__ import annotations

import asyncio
import time

from aiosmtplib.protocol import MAX_RESPONSE_LENGTH, SMTPProtocol

from exporter.smtp.kerneltime import StampedSocket

__all__ = ["TimedProtocol"]


class TimedProtocol(SMTPProtocol):
    """aiosmtplib's protocol, stamping when the connection is made and when a reply completes.

    A reply's stamp is the kernel's receive time of its last packet (``StampedSocket``), so
    time the event loop spends on other probes before it reads the socket, or before this
    coroutine resumes, is not counted in the phase.
    """

    connected_at = 0.0
    reply_at = 0.0
    clock: StampedSocket | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.connected_at = time.perf_counter()
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        now = self.clock.rx_at if self.clock is not None else time.perf_counter()
        waiter = self._response_waiter
        if (
            waiter is not None
            and not waiter.done()
            and getattr(self, "_response_pending", True)
            and len(self._buffer) + len(data) <= MAX_RESPONSE_LENGTH
            and not self._may_end_reply(data)
        ):
            # aiosmtplib parses the whole buffer again for every chunk that ends a line, which
            # is quadratic for a long multi-line reply that arrives a line at a time (a
            # 1,000-line EHLO blocked the event loop for 0.4 s); a chunk of "250-" lines only
            # is buffered without parsing.
            self._buffer.extend(data)
            return
        super().data_received(data)
        if waiter is not None and waiter.done():
            self.reply_at = now

    def _may_end_reply(self, data: bytes) -> bool:
        """Whether ``data`` completes a line that is not a continuation ("250-..."): a final
        line, or one that is not SMTP at all, which the parser must see to refuse."""
        buffer = self._buffer
        partial = bytes(buffer[buffer.rfind(b"\n") + 1 :])
        lines = (partial + data).split(b"\n")[:-1]
        return not all(_continued(line) for line in lines)


def _continued(line: bytes) -> bool:
    """A reply line that aiosmtplib reads as "more lines follow": a code, then "-"."""
    if line[3:4] != b"-":
        return False
    try:
        int(line[:3])
    except ValueError:
        return False
    return True
