"""A timed SMTP client session: every phase measured, every failure a ProbeError with a reason."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import ssl
import time
from dataclasses import replace
from functools import lru_cache
from typing import Any

from aiosmtplib.errors import (
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)
from aiosmtplib.esmtp import parse_esmtp_extensions
from aiosmtplib.protocol import normalize_message_line_endings
from aiosmtplib.response import SMTPResponse

from exporter.config import RelayConfig, TLSMode
from exporter.model import Phase, Reason, TLSInfo, TranscriptLine
from exporter.peertext import MAX_TEXT, NO_SECRETS, Redactor, clean, clean_lines
from exporter.smtp.errors import ProbeError, sasl_names, status_reason
from exporter.smtp.kerneltime import StampedSocket
from exporter.smtp.protocol import TimedProtocol
from exporter.smtp.resolve import ResolveError, resolve_host
from exporter.smtp.tlsdiagnosis import tls_failure, too_old_tls
from exporter.smtp.tlsinfo import client_context, port_speaks_tls, tls_info

__all__ = ["ProbeError", "SMTPSession"]

MAX_TRANSCRIPT_LINES = 400
_DOT = re.compile(rb"(?m)^\.")
# Share of the probe's budget the greeting may use before the port is tested for implicit TLS.
GREETING_SHARE = 0.8


# A relay's credentials make the same redactor at every probe: built once, not per probe.
_redactor_for = lru_cache(maxsize=256)(Redactor)


class SMTPSession:
    """One connection to a relay, driven step by step, recording phases and a transcript."""

    def __init__(
        self, relay: RelayConfig, *, nameservers: tuple[tuple[str, int], ...] = (),
        dns_timeout: float | None = None,
    ) -> None:
        self.relay = relay
        self.nameservers = nameservers
        self.dns_timeout = dns_timeout  # bounds the host lookup (dns.timeout); None: no bound
        self.t0 = time.perf_counter()
        self.deadline = self.t0 + relay.timeout
        self.phases: dict[Phase, float] = {}
        self.transcript: list[TranscriptLine] = []
        self.tls: TLSInfo | None = None
        self.extensions: dict[str, str] = {}
        self.auth_mechanisms: list[str] = []
        self.last_reply: str | None = None
        self.phase: Phase = Phase.RESOLVE
        self._proto: TimedProtocol | None = None
        self.addr: tuple[str, int] | None = None
        self._connected_at = 0.0
        self._omitted = 0
        self.handed_over = False
        self._redactor = NO_SECRETS

    # -- bookkeeping -------------------------------------------------------------------------

    @property
    def encrypted(self) -> bool:
        return self.tls is not None

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.perf_counter())

    def conceal(self, *values: str) -> None:
        """Never show these (a password, its base64 forms, a token), even when the server
        echoes them back in a reply, encoded, or cut short by a length cap."""
        self._redactor = (self._redactor.with_secrets(values) if self._redactor
                          else _redactor_for(values))

    def clean(self, text: str | bytes, *, limit: int = MAX_TEXT) -> str:
        """Server text as it may be stored, shown or logged: this session's secrets redacted."""
        return clean(text, redactor=self._redactor, limit=limit)

    def note(self, direction: str, text: str) -> None:
        """Append a transcript line; very long conversations keep their head and tail."""
        self._append(direction, self.clean(text))

    def _append(self, direction: str, text: str) -> None:
        line = TranscriptLine(round(time.perf_counter() - self.t0, 6), direction, text)
        if len(self.transcript) >= MAX_TRANSCRIPT_LINES:
            self._omitted += 1
            self.transcript[-1] = TranscriptLine(
                line.offset, "*", f"... {self._omitted} more lines not kept ..."
            )
            return
        self.transcript.append(line)

    def _record_reply(self, resp: SMTPResponse) -> None:
        """``last_reply`` and a transcript line per reply line, cleaned once, secrets hidden."""
        lines = clean_lines(resp.message.splitlines() or [""], redactor=self._redactor,
                            limit=MAX_TEXT - 4)
        self.last_reply = self.clean(f"{resp.code} {' '.join(lines)}")
        for i, text in enumerate(lines):
            sep = " " if i == len(lines) - 1 else "-"
            self._append("S", f"{resp.code}{sep}{text}")

    def _proto_or_fail(self) -> TimedProtocol:
        if self._proto is None or not self._proto.is_connected:
            raise ProbeError(self.phase, Reason.PROTOCOL_ERROR, "connection closed by the server")
        return self._proto

    def fail(self, reason: Reason, detail: str, *, hint: str | None = None) -> ProbeError:
        """The failure of the current phase; ``detail`` and ``hint`` may quote the server."""
        return ProbeError(self.phase, reason, self.clean(detail), reply=self.last_reply,
                          hint=None if hint is None else self.clean(hint))

    # -- commands ----------------------------------------------------------------------------

    async def command(self, *args: bytes, shown: str | None = None) -> tuple[SMTPResponse, float]:
        """Send one command; return the reply and when it arrived (perf_counter).

        If the command reached the kernel later than it was written (another thread held the
        interpreter, the loop was busy), that wait is taken off the arrival time, so a phase
        timed from before the command counts only the server's part."""
        proto = self._proto_or_fail()
        verb = args[0].decode("ascii", "replace")
        self.note("C", shown if shown is not None else b" ".join(args).decode("utf-8", "replace"))
        written = time.perf_counter()
        try:
            resp = await proto.execute_command(*args, timeout=self.remaining())
        except SMTPTimeoutError:
            raise self.fail(Reason.TIMEOUT,
                            f"no reply to {verb} within the probe timeout") from None
        except SMTPServerDisconnected:
            raise self.fail(Reason.PROTOCOL_ERROR,
                            f"the server closed the connection after {verb}") from None
        except SMTPResponseException as exc:
            raise self.fail(Reason.PROTOCOL_ERROR, f"bad reply to {verb}: {exc.message}") from None
        self._record_reply(resp)
        clock = proto.clock
        held = clock.tx_at - written if clock is not None else 0.0
        return resp, proto.reply_at - max(0.0, min(held, proto.reply_at - written))

    def expect(self, resp: SMTPResponse, *codes: int, what: str) -> None:
        """Raise the reason that fits ``resp`` unless its code is one of ``codes``."""
        if resp.code not in codes:
            raise self.fail(status_reason(resp.code), f"{what} answered {self.last_reply}")

    # -- connection --------------------------------------------------------------------------

    async def open(self) -> None:
        """Resolve, connect, TLS (implicit or STARTTLS), greeting and EHLO."""
        relay = self.relay
        addrs = await self._resolve()
        sock = await self._connect(addrs)
        loop = asyncio.get_running_loop()
        proto = TimedProtocol(loop=loop)
        proto.clock = sock
        if relay.tls is TLSMode.IMPLICIT:
            await self._implicit_tls(loop, proto, sock)
        else:
            await loop.create_connection(lambda: proto, sock=sock)
            proto.connected_at = self._connected_at  # the greeting is timed from the handshake
        self._proto = proto
        await self._greeting(proto)
        await self.ehlo(Phase.EHLO)
        if relay.tls is TLSMode.STARTTLS:
            await self._starttls(proto)

    async def _resolve(self) -> list[str]:
        self.phase = Phase.RESOLVE
        start = time.perf_counter()
        try:
            budget = min(self.remaining(), self.dns_timeout or self.remaining())
            addrs = await resolve_host(self.relay.host, nameservers=self.nameservers,
                                       timeout=budget)
        except ResolveError as exc:
            raise self.fail(Reason.DNS_ERROR, str(exc)) from None
        self.phases[Phase.RESOLVE] = time.perf_counter() - start
        self.note("*", f"resolved {self.relay.host} to {', '.join(addrs)}")
        return addrs

    async def _connect(self, addrs: list[str]) -> StampedSocket:
        self.phase = Phase.CONNECT
        loop = asyncio.get_running_loop()
        port = self.relay.port
        errors: list[str] = []
        for addr in addrs:
            family = socket.AF_INET6 if ":" in addr else socket.AF_INET
            sock = StampedSocket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.enable()
            start = time.perf_counter()
            try:
                async with asyncio.timeout(self.remaining()):
                    await loop.sock_connect(sock, (addr, port))
            except TimeoutError:
                sock.close()
                raise self.fail(
                    Reason.CONNECT_TIMEOUT,
                    f"no answer from {addr} port {port} within {self.relay.timeout:g}s",
                ) from None
            except OSError as exc:
                sock.close()
                text = os.strerror(exc.errno) if exc.errno else str(exc)
                errors.append(f"{addr} port {port}: {text}")
                continue
            noticed = time.perf_counter()
            # The kernel's handshake time, from the SYN going out, when it has one: the loop
            # (or a thread holding the interpreter) may notice late.
            rtt = sock.handshake_rtt()
            syn = max(start, sock.syn_at)
            connect = min(rtt, noticed - syn) if rtt is not None else noticed - start
            self.phases[Phase.CONNECT] = connect
            self._connected_at = (syn if rtt is not None else start) + connect
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.addr = (addr, port)
            self.note("*", f"connected to {addr} port {port}")
            return sock
        raise self.fail(Reason.CONNECT_REFUSED, "; ".join(errors))

    def _tls_context(self) -> ssl.SSLContext:
        r = self.relay
        return client_context(verify=r.tls_verify, ca_file=r.ca_file, min_version=r.tls_min_version)

    @property
    def _server_name(self) -> str:
        return self.relay.tls_server_name or self.relay.host.strip("[]")

    async def _implicit_tls(
        self, loop: asyncio.AbstractEventLoop, proto: TimedProtocol, sock: socket.socket
    ) -> None:
        self.phase = Phase.TLS
        ctx = self._tls_context()
        start = time.perf_counter()
        try:
            async with asyncio.timeout(self.remaining()):
                transport, _ = await loop.create_connection(
                    lambda: proto,
                    sock=sock,
                    ssl=ctx,
                    server_hostname=self._server_name,
                    ssl_handshake_timeout=max(0.001, self.remaining()),
                )
        except TimeoutError:
            sock.close()
            raise self.fail(Reason.TLS_HANDSHAKE_FAILED, "TLS handshake timed out") from None
        except (ssl.SSLError, OSError) as exc:
            sock.close()
            raise await tls_failure(self, exc, implicit=True) from None
        self.phases[Phase.TLS] = proto.connected_at - start
        self._tls_established(transport.get_extra_info("ssl_object"))

    def _tls_established(self, ssl_object: Any) -> None:
        t = tls_info(ssl_object, verified=self.relay.tls_verify)
        if t is not None:  # the certificate's names are the server's text too
            self.tls = t = replace(t, issuer=t.issuer and self.clean(t.issuer),
                                   subject=t.subject and self.clean(t.subject))
            self.note("*", f"TLS {t.version} {t.cipher}, verified={t.verified}")

    async def _greeting(self, proto: TimedProtocol) -> None:
        self.phase = Phase.GREETING
        implicit = self.relay.tls is TLSMode.IMPLICIT
        budget = self.remaining() * (1.0 if implicit else GREETING_SHARE)
        problem: str
        try:
            resp = await proto.read_response(timeout=budget)
        except SMTPTimeoutError:
            problem = f"no greeting within {budget:.3g}s"
        except SMTPServerDisconnected:
            problem = "the server closed the connection before greeting"
        except SMTPResponseException as exc:
            raise self.fail(Reason.PROTOCOL_ERROR, f"bad greeting: {exc.message}") from None
        else:
            self._record_reply(resp)
            self.phases[Phase.GREETING] = proto.reply_at - proto.connected_at
            if resp.code != 220:
                raise self.fail(status_reason(resp.code), f"greeting {self.last_reply}")
            return
        self.note("*", problem)
        if not implicit and self.addr is not None:
            self.note("*", "testing whether the port speaks implicit TLS")
            speaks_tls = await port_speaks_tls(self.addr, timeout=max(0.5, self.remaining()))
            self.note("*", "a TLS handshake succeeded" if speaks_tls else "no TLS either")
            if speaks_tls:
                port = self.relay.port
                raise self.fail(
                    Reason.TLS_MODE_MISMATCH,
                    f"{problem}; port {port} answers a TLS handshake instead",
                    hint=f"port {port} speaks implicit TLS: set tls: implicit",
                )
        reason = Reason.GREETING_TIMEOUT if "no greeting" in problem else Reason.PROTOCOL_ERROR
        raise self.fail(reason, problem)

    async def ehlo(self, phase: Phase) -> float:
        """EHLO; records extensions and AUTH mechanisms. Returns when its reply arrived."""
        self.phase = phase
        start = time.perf_counter()
        resp, at = await self.command(b"EHLO", self.relay.ehlo_name.encode("ascii"))
        if phase is Phase.EHLO:
            self.phases[Phase.EHLO] = at - start
        self.expect(resp, 250, what="EHLO")
        self.extensions, offered = parse_esmtp_extensions(resp.message)
        self.auth_mechanisms = sasl_names(offered)
        return at

    async def _starttls(self, proto: TimedProtocol) -> None:
        self.phase = Phase.TLS
        if "starttls" not in self.extensions:
            port = self.relay.port
            raise self.fail(
                Reason.STARTTLS_UNSUPPORTED,
                f"EHLO on port {port} does not offer STARTTLS",
                hint=(
                    "the server offers no STARTTLS here: use its TLS port (587 or 465), "
                    "or tls: none with allow_plaintext_auth only on a trusted network"
                ),
            )
        ctx = self._tls_context()
        start = time.perf_counter()
        self.note("C", "STARTTLS")
        try:
            resp = await proto.start_tls(ctx, server_hostname=self._server_name,
                                         timeout=self.remaining())
        except SMTPResponseException as exc:
            self._record_reply(SMTPResponse(exc.code, exc.message))
            reason = Reason.REJECTED_TEMPORARY if 400 <= exc.code < 500 else (
                Reason.STARTTLS_UNSUPPORTED if 500 <= exc.code < 600 else Reason.PROTOCOL_ERROR
            )
            raise self.fail(reason, f"STARTTLS answered {self.last_reply}") from None
        except SMTPTimeoutError:
            raise self.fail(Reason.TLS_HANDSHAKE_FAILED, "STARTTLS handshake timed out") from None
        except SMTPServerDisconnected:
            self.note("*", "connection closed during the STARTTLS handshake")
            raise await too_old_tls(self, implicit=False) or self.fail(
                Reason.TLS_HANDSHAKE_FAILED, "connection closed during the STARTTLS handshake"
            ) from None
        except (ssl.SSLError, OSError) as exc:
            raise await tls_failure(self, exc, implicit=False) from None
        self._record_reply(resp)
        transport = proto.transport
        self._tls_established(transport.get_extra_info("ssl_object") if transport else None)
        at = await self.ehlo(Phase.TLS)
        self.phase = Phase.TLS
        self.phases[Phase.TLS] = at - start

    # -- envelope ----------------------------------------------------------------------------

    async def timed(self, phase: Phase, *args: bytes, ok: tuple[int, ...], what: str) -> None:
        """One command that is a phase of its own (MAIL, RCPT, QUIT)."""
        self.phase = phase
        start = time.perf_counter()
        resp, at = await self.command(*args)
        self.phases[phase] = at - start  # a refusal took this long too
        self.expect(resp, *ok, what=what)

    async def data(self, message: bytes) -> None:
        """DATA, the message and the final reply: phase ``data``. Once the message is on the
        wire, ``handed_over`` is set: a failure after it leaves the delivery uncertain."""
        self.phase = Phase.DATA
        start = time.perf_counter()
        resp, _ = await self.command(b"DATA")
        self.expect(resp, 354, what="DATA")
        proto = self._proto_or_fail()
        payload = _DOT.sub(b"..", normalize_message_line_endings(message)) + b".\r\n"
        self.note("C", f"<message, {len(payload)} bytes>")
        self.handed_over = True
        try:
            proto.write(payload)
            resp = await proto.read_response(timeout=self.remaining())
        except SMTPTimeoutError:
            raise self.fail(Reason.TIMEOUT, "no reply to the message within the timeout") from None
        except SMTPServerDisconnected:
            raise self.fail(Reason.PROTOCOL_ERROR,
                            "the server closed the connection after the message") from None
        except SMTPResponseException as exc:
            raise self.fail(Reason.PROTOCOL_ERROR,
                            f"bad reply to the message: {exc.message}") from None
        self._record_reply(resp)
        self.phases[Phase.DATA] = proto.reply_at - start
        self.expect(resp, 250, what="the message")

    async def quit(self) -> None:
        """QUIT; a server that fumbles it has still done its job, so that is only noted."""
        try:
            await self.timed(Phase.QUIT, b"QUIT", ok=(221, 250), what="QUIT")
        except ProbeError as exc:
            self.note("*", f"QUIT not completed: {exc.detail}")

    def close(self) -> None:
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()
        self._proto = None
