"""TLS contexts shared by all probes, certificate facts, and the "does this port speak TLS" test."""

from __future__ import annotations

import asyncio
import ssl
import warnings
from functools import lru_cache

from cryptography import x509

from exporter.results import TLSInfo

__all__ = ["client_context", "port_sends_plain_greeting", "port_speaks_tls", "tls_info"]

_VERSIONS = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}


@lru_cache(maxsize=64)
def client_context(
    *, verify: bool, ca_file: str | None, min_version: str = "1.2"
) -> ssl.SSLContext:
    """One SSLContext per distinct TLS setting, reused by every probe that shares it."""
    if verify:
        ctx = ssl.create_default_context(cafile=ca_file)
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    version = _VERSIONS.get(min_version, ssl.TLSVersion.TLSv1_2)
    if version < ssl.TLSVersion.TLSv1_2:
        # OpenSSL's default security level refuses TLS < 1.2; lowering the floor means it.
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = version
    else:
        ctx.minimum_version = version
    return ctx


def tls_info(ssl_object: ssl.SSLObject | ssl.SSLSocket | None, *, verified: bool) -> TLSInfo | None:
    """Version, cipher and certificate facts of an established TLS connection."""
    if ssl_object is None:
        return None
    cipher = ssl_object.cipher()
    info = TLSInfo(
        version=ssl_object.version() or "unknown",
        cipher=cipher[0] if cipher else "unknown",
        verified=verified,
    )
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return info
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return info
    return TLSInfo(
        version=info.version,
        cipher=info.cipher,
        verified=verified,
        not_after=cert.not_valid_after_utc.timestamp(),
        not_before=cert.not_valid_before_utc.timestamp(),
        issuer=cert.issuer.rfc4514_string(),
        subject=cert.subject.rfc4514_string(),
    )


async def port_speaks_tls(addr: tuple[str, int], *, timeout: float) -> bool:
    """True when a fresh connection to ``addr`` completes a TLS handshake (verification off)."""
    ctx = client_context(verify=False, ca_file=None, min_version="1.0")
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(addr[0], addr[1], ssl=ctx)
    except (OSError, TimeoutError, ssl.SSLError):
        return False
    writer.close()
    try:
        async with asyncio.timeout(1.0):
            await writer.wait_closed()
    except (OSError, TimeoutError, ssl.SSLError):
        pass
    return True


async def port_sends_plain_greeting(addr: tuple[str, int], *, timeout: float) -> str | None:
    """The first line a fresh plain connection to ``addr`` receives, if it looks like SMTP."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(addr[0], addr[1])
            try:
                line = await reader.readline()
            finally:
                writer.close()
    except (OSError, TimeoutError, ValueError):
        return None
    text = line[:200].decode("utf-8", "replace").strip()
    if len(text) >= 3 and text[:3].isdigit() and text[3:4] in ("", " ", "-"):
        return text
    return None
