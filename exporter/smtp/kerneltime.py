"""Kernel timestamps, so a busy event loop does not stretch the measured phases.

A reply's arrival is stamped by the kernel when the packet is queued on the socket
(SO_TIMESTAMPNS), and read back with ``recvmsg``. asyncio's transports read through the
socket object's ``recv``/``recv_into``, so a socket subclass that does those with
``recvmsg`` gives every read its arrival time without touching the transports. Time the
loop spends on other probes before it gets to this socket is then not counted. Where the
kernel gives no timestamp, the time of the read is used, as before.

Sends record when the bytes reached the kernel: between a command being written and it
going out, the interpreter can hand over to another thread (SSL_write releases the GIL, and a
/metrics scrape may then hold it for milliseconds), and that wait is not the server's.

Likewise the TCP handshake: the kernel's own measurement of it (TCP_INFO's first round-trip
sample) says when the connection was established, however late the loop notices.
"""

from __future__ import annotations

import socket
import struct
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from socket import _Address

    from _typeshed import ReadableBuffer, WriteableBuffer

__all__ = ["StampedSocket"]

# Linux values (asm-generic); the socket module does not export them.
SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("@qq")
_ANC_SPACE = socket.CMSG_SPACE(_TIMESPEC.size)
# A kernel stamp further in the past than this is not believed (a clock step): use "now".
_MAX_AGE = 60.0
# struct tcp_info (linux/tcp.h): tcpi_rtt and tcpi_total_retrans, both u32.
_TCPI_RTT = 68
_TCPI_TOTAL_RETRANS = 100
_TCPI_SIZE = 104


class StampedSocket(socket.socket):
    """A socket whose reads record ``rx_at``, when the last packet read arrived, and whose
    sends record ``tx_at``, when the last bytes were handed to the kernel, and ``connect``
    records ``syn_at``, when the connection attempt started (all on the
    ``time.perf_counter`` scale)."""

    rx_at = 0.0
    tx_at = 0.0
    syn_at = 0.0
    stamps = sys.platform.startswith("linux")

    def enable(self) -> None:
        """Ask the kernel for receive timestamps; a kernel that refuses leaves read times."""
        if self.stamps:
            try:
                self.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            except OSError:
                self.stamps = False

    def handshake_rtt(self) -> float | None:
        """Right after connect: how long the TCP handshake took (SYN to SYN-ACK), as the
        kernel measured it, in seconds; None if unknown or the SYN had to be resent."""
        if not self.stamps:
            return None
        try:
            info = self.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCPI_SIZE)
        except OSError:
            return None
        if len(info) < _TCPI_SIZE:
            return None
        rtt_us = int.from_bytes(info[_TCPI_RTT:_TCPI_RTT + 4], sys.byteorder)
        retrans = int.from_bytes(info[_TCPI_TOTAL_RETRANS:_TCPI_TOTAL_RETRANS + 4], sys.byteorder)
        if rtt_us == 0 or retrans:
            return None
        return rtt_us / 1e6

    def connect(self, address: _Address) -> None:
        self.syn_at = time.perf_counter()
        super().connect(address)

    def send(self, data: ReadableBuffer, flags: int = 0) -> int:
        self.tx_at = time.perf_counter()
        return super().send(data, flags)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if not self.stamps:
            data = super().recv(bufsize, flags)
            self.rx_at = time.perf_counter()
            return data
        data, ancdata, _, _ = self.recvmsg(bufsize, _ANC_SPACE, flags)
        self._stamp(ancdata)
        return data

    def recv_into(self, buffer: WriteableBuffer, nbytes: int = 0, flags: int = 0) -> int:
        if not self.stamps:
            n = super().recv_into(buffer, nbytes, flags)
            self.rx_at = time.perf_counter()
            return n
        view = memoryview(buffer)
        if nbytes:
            view = view[:nbytes]
        n, ancdata, _, _ = self.recvmsg_into([view], _ANC_SPACE, flags)
        self._stamp(ancdata)
        return n

    def _stamp(self, ancdata: list[tuple[int, int, bytes]]) -> None:
        now = time.perf_counter()
        self.rx_at = now
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
                sec, nsec = _TIMESPEC.unpack_from(data)
                age = time.time() - (sec + nsec / 1e9)
                if 0.0 <= age < _MAX_AGE:
                    self.rx_at = now - age
                return
