"""TLS contexts shared by all probes, certificate facts, and the "does this port speak TLS" test."""

from __future__ import annotations

import asyncio
import ssl
import sys
import warnings
from functools import lru_cache

from cryptography import x509

from exporter.model import TLSInfo

__all__ = [
    "client_context",
    "offered_tls_version",
    "port_sends_plain_greeting",
    "port_speaks_tls",
    "tls_info",
    "version_below",
]

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
        # one string per TLS version and cipher in the process, not one per probe
        version=sys.intern(ssl_object.version() or "unknown"),
        cipher=sys.intern(cipher[0] if cipher else "unknown"),
        verified=verified,
    )
    der = ssl_object.getpeercert(binary_form=True)
    facts = _certificate_facts(der) if der else None
    if facts is None:
        return info
    not_after, not_before, issuer, subject = facts
    return TLSInfo(
        version=info.version,
        cipher=info.cipher,
        verified=verified,
        not_after=not_after,
        not_before=not_before,
        issuer=issuer,
        subject=subject,
    )


@lru_cache(maxsize=512)
def _certificate_facts(der: bytes) -> tuple[float, float, str, str] | None:
    """Validity and names of a DER certificate; a relay shows the same one probe after
    probe, so each is parsed once."""
    try:
        cert = x509.load_der_x509_certificate(der)
        return (cert.not_valid_after_utc.timestamp(), cert.not_valid_before_utc.timestamp(),
                cert.issuer.rfc4514_string(), cert.subject.rfc4514_string())
    except ValueError:
        return None


async def port_speaks_tls(addr: tuple[str, int], *, timeout: float) -> bool:
    """True when a fresh connection to ``addr`` completes a TLS handshake (verification off)."""
    offered = await offered_tls_version(addr, starttls=False, ehlo_name="", timeout=timeout)
    return offered is not None


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


def version_below(offered: str, minimum: str) -> bool:
    """True when ``offered`` (as ``ssl`` names it, e.g. ``TLSv1.1``) is older than ``minimum``
    (a config value, e.g. ``1.2``). Unknown names are never "below"."""
    names = {"TLSv1": "1.0", "TLSv1.1": "1.1", "TLSv1.2": "1.2", "TLSv1.3": "1.3"}
    number = names.get(offered)
    if number is None or minimum not in _VERSIONS:
        return False
    return _VERSIONS[number] < _VERSIONS[minimum]


async def offered_tls_version(
    addr: tuple[str, int], *, starttls: bool, ehlo_name: str, timeout: float
) -> str | None:
    """The TLS version a fresh connection to ``addr`` negotiates when any version from 1.0 is
    accepted (verification off), e.g. ``TLSv1.1``; None when no handshake completes.

    With ``starttls`` the connection first reads the greeting, sends EHLO and STARTTLS."""
    ctx = client_context(verify=False, ca_file=None, min_version="1.0")
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            if not starttls:
                _, writer = await asyncio.open_connection(addr[0], addr[1], ssl=ctx)
            else:
                reader, writer = await asyncio.open_connection(addr[0], addr[1])
                if await _reply_code(reader) != 220:
                    return None
                writer.write(b"EHLO " + ehlo_name.encode("ascii", "replace") + b"\r\n")
                if await _reply_code(reader) != 250:
                    return None
                writer.write(b"STARTTLS\r\n")
                if await _reply_code(reader) != 220:
                    return None
                await writer.start_tls(ctx)
            ssl_object = writer.get_extra_info("ssl_object")
            return ssl_object.version() if ssl_object is not None else None
    except (OSError, TimeoutError, ssl.SSLError, ValueError, asyncio.IncompleteReadError):
        return None
    finally:
        if writer is not None:
            writer.close()


async def _reply_code(reader: asyncio.StreamReader) -> int | None:
    """The code of one (possibly multi-line) SMTP reply; None if it is not one."""
    for _ in range(100):
        line = await reader.readline()
        if len(line) < 4 or not line[:3].isdigit():
            return None
        if line[3:4] != b"-":
            return int(line[:3])
    return None
