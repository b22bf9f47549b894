"""Naming a failed TLS handshake: a bad certificate, the wrong TLS mode for the port, a server
that speaks only TLS older than tls_min_version, or a plain failure."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

from exporter.model import Reason
from exporter.smtp.errors import ProbeError
from exporter.smtp.tlsinfo import offered_tls_version, port_sends_plain_greeting, version_below

if TYPE_CHECKING:
    from exporter.smtp.session import SMTPSession

__all__ = ["tls_failure", "too_old_tls"]


async def tls_failure(session: SMTPSession, exc: BaseException, *, implicit: bool) -> ProbeError:
    """Name a failed handshake: bad certificate, wrong TLS mode, too old, or plain failure."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return session.fail(
            Reason.TLS_CERT_INVALID, f"certificate verify failed: {exc.verify_message}"
        )
    text = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    session.note("*", f"TLS handshake failed: {text}")
    if implicit and session.addr is not None:
        greeting = await port_sends_plain_greeting(
            session.addr, timeout=min(3.0, max(0.5, session.remaining()))
        )
        if greeting is not None:
            port = session.relay.port
            return session.fail(
                Reason.TLS_MODE_MISMATCH,
                f"port {port} sent a plain-text greeting ({session.clean(greeting, limit=60)}) "
                "instead of TLS",
                hint=f"port {port} speaks plain SMTP with STARTTLS: set tls: starttls",
            )
    too_old = await too_old_tls(session, implicit=implicit)
    if too_old is not None:
        return too_old
    return session.fail(Reason.TLS_HANDSHAKE_FAILED, f"TLS handshake failed: {text}")

async def too_old_tls(session: SMTPSession, *, implicit: bool) -> ProbeError | None:
    """After a failed handshake: does the server complete one below tls_min_version?"""
    minimum = session.relay.tls_min_version
    if session.addr is None or minimum == "1.0":
        return None
    session.note("*", "testing whether the server speaks an older TLS version")
    offered = await offered_tls_version(
        session.addr,
        starttls=not implicit,
        ehlo_name=session.relay.ehlo_name,
        timeout=min(3.0, max(0.5, session.remaining())),
    )
    if offered is None or not version_below(offered, minimum):
        session.note("*", "no older TLS version either")
        return None
    session.note("*", f"a {offered} handshake succeeded")
    return session.fail(
        Reason.TLS_VERSION_TOO_OLD,
        f"the server offers {offered} at most; tls_min_version is {minimum}",
    )
