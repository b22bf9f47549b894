"""One HTTP/1.1 form POST on asyncio streams, for OAuth2 token endpoints: no worker thread,
no redirects followed, a capped answer. The caller bounds it with ``asyncio.timeout``; when
that fires, the socket is closed at once, so a server that drips its answer holds nothing."""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import urllib.parse
from dataclasses import dataclass

from exporter import __version__
from exporter.peertext import Redactor, clean

__all__ = ["BrokenAnswer", "Endpoint", "describe_failure", "post_form", "seconds"]

# The status line and headers of one answer, together; a line longer than this is refused too.
MAX_HEAD = 64 * 1024
MAX_HEADERS = 100
# Interim answers (100 Continue) skipped before the real one.
MAX_INTERIM = 5
# The longest piece of a peer's or the TLS library's text kept in a message.
MAX_DETAIL = 200
_STATUS = re.compile(r"HTTP/1\.[0-9] ([0-9]{3})(?: .*)?")
_CHUNK_SIZE = re.compile(r"[0-9A-Fa-f]{1,16}")
_LENGTH = re.compile(r"[0-9]{1,18}")
# Everything printable in ASCII but the space: a URL's own characters stay as they are.
_URL_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))


class BrokenAnswer(Exception):
    """The endpoint closed early or sent something that is not HTTP/1.x; the message is a
    predicate for the endpoint ("closed the connection without answering")."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a form is posted: ``http`` or ``https``, host, port and request target."""

    https: bool
    host: str
    port: int
    host_header: str
    target: str

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        """The parts of an http:// or https:// URL; ValueError for anything else."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("not an http:// or https:// URL")
        https = parts.scheme == "https"
        port = parts.port or (443 if https else 80)  # .port raises ValueError when invalid
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        target = urllib.parse.quote(target, safe=_URL_SAFE)  # only what is not ASCII
        netloc = parts.netloc.rpartition("@")[2]
        if not netloc.isascii():
            netloc = netloc.encode("idna").decode("ascii")  # UnicodeError is a ValueError
        if any(c.isspace() or not c.isprintable() for c in target + netloc):
            raise ValueError("the URL holds spaces or control characters")
        return cls(https, parts.hostname, port, netloc, target)


async def post_form(
    endpoint: Endpoint, form: bytes, *, context: ssl.SSLContext | None, max_body: int
) -> tuple[int, bytes]:
    """POST ``form`` (application/x-www-form-urlencoded) and return the status and at most
    ``max_body`` bytes of the body. Redirects are answers like any other. Raises OSError
    (refused, unresolvable, reset, TLS) or BrokenAnswer."""
    reader, writer = await asyncio.open_connection(
        endpoint.host,
        endpoint.port,
        ssl=context if endpoint.https else None,
        server_hostname=endpoint.host if endpoint.https else None,
        limit=MAX_HEAD,
    )
    try:
        writer.write(_request(endpoint, form))
        await writer.drain()
        return await _read_answer(reader, max_body)
    except asyncio.IncompleteReadError:
        raise BrokenAnswer("closed the connection before the answer was complete") from None
    except (asyncio.LimitOverrunError, ValueError):  # a line longer than MAX_HEAD
        raise BrokenAnswer(f"sent a broken HTTP response (a line over {MAX_HEAD} bytes)") from None
    finally:
        # Connection: close was asked for; abort never waits for the peer (a TLS close does).
        writer.transport.abort()


def _request(endpoint: Endpoint, form: bytes) -> bytes:
    head = (
        f"POST {endpoint.target} HTTP/1.1\r\n"
        f"Host: {endpoint.host_header}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        "Accept: application/json\r\n"
        "Accept-Encoding: identity\r\n"
        f"User-Agent: smtp-canary-exporter/{__version__}\r\n"
        f"Content-Length: {len(form)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + form


async def _read_answer(reader: asyncio.StreamReader, max_body: int) -> tuple[int, bytes]:
    for _ in range(MAX_INTERIM + 1):
        status = await _status_line(reader)
        headers = await _headers(reader)
        if not 100 <= status < 200:
            break
    else:
        raise BrokenAnswer(f"sent more than {MAX_INTERIM} interim (1xx) answers")
    if status in (204, 304):
        return status, b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return status, await _chunked(reader, max_body)
    length = headers.get("content-length")
    if length is not None:
        if not _LENGTH.fullmatch(length):
            raise BrokenAnswer("sent a broken HTTP response (a bad Content-Length)")
        return status, await reader.readexactly(min(int(length), max_body))
    return status, await _until_eof(reader, max_body)


async def _status_line(reader: asyncio.StreamReader) -> int:
    line = await reader.readline()
    if not line:
        raise BrokenAnswer("closed the connection without answering")
    match = _STATUS.fullmatch(line.decode("latin-1").rstrip("\r\n"))
    if match is None:
        raise BrokenAnswer("sent a broken HTTP response (not an HTTP/1.x status line)")
    return int(match.group(1))


async def _headers(reader: asyncio.StreamReader) -> dict[str, str]:
    """Header names in lower case; a repeated header keeps its last value (two differing
    Content-Lengths are refused)."""
    headers: dict[str, str] = {}
    size = 0
    for _ in range(MAX_HEADERS + 1):
        line = await reader.readuntil(b"\n")
        size += len(line)
        if size > MAX_HEAD:
            raise BrokenAnswer(f"sent a broken HTTP response (headers over {MAX_HEAD} bytes)")
        text = line.decode("latin-1").rstrip("\r\n")
        if not text:
            return headers
        if text[0] in " \t":  # an obsolete folded continuation: nothing this client reads
            continue
        name, colon, value = text.partition(":")
        if not colon:
            raise BrokenAnswer("sent a broken HTTP response (a header line without a colon)")
        name, value = name.strip().lower(), value.strip()
        if name == "content-length" and headers.get(name, value) != value:
            raise BrokenAnswer("sent a broken HTTP response (two different Content-Lengths)")
        headers[name] = value
    raise BrokenAnswer(f"sent a broken HTTP response (more than {MAX_HEADERS} headers)")


async def _chunked(reader: asyncio.StreamReader, max_body: int) -> bytes:
    """A chunked body, up to ``max_body`` bytes; what follows the cap is never read."""
    body = bytearray()
    while len(body) < max_body:
        line = (await reader.readuntil(b"\n")).decode("latin-1")
        size_text = line.split(";", 1)[0].strip()
        if not _CHUNK_SIZE.fullmatch(size_text):
            raise BrokenAnswer("sent a broken HTTP response (a bad chunk size)")
        size = int(size_text, 16)
        if size == 0:
            break
        body += await reader.readexactly(min(size, max_body - len(body)))
        if len(body) < max_body and await reader.readuntil(b"\n") not in (b"\r\n", b"\n"):
            raise BrokenAnswer("sent a broken HTTP response (a chunk longer than its size)")
    return bytes(body)


async def _until_eof(reader: asyncio.StreamReader, max_body: int) -> bytes:
    body = bytearray()
    while len(body) < max_body:
        piece = await reader.read(max_body - len(body))
        if not piece:
            break
        body += piece
    return bytes(body)


def seconds(value: float) -> str:
    """A deadline as a user reads it: ``0.3``, ``2.5``, ``10``."""
    return f"{round(value, 1):g}"


def describe_failure(exc: BaseException, timeout: float, redactor: Redactor) -> str:
    """What went wrong before the endpoint answered, as a predicate for its URL."""
    if isinstance(exc, BrokenAnswer):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return f"did not answer within {seconds(timeout)} s"
    if isinstance(exc, ConnectionRefusedError):
        return "unreachable: connection refused"
    if isinstance(exc, socket.gaierror):
        return "unreachable: host name does not resolve"
    if isinstance(exc, UnicodeError):
        return "unreachable: the host name is not a valid domain name"
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = _text(exc.verify_message or exc.reason or "unknown", redactor)
        return f"has a TLS certificate that is not trusted ({why}); set ca_file for a private CA"
    if isinstance(exc, ssl.SSLError):
        why = _text(exc.reason or type(exc).__name__, redactor)
        return f"failed the TLS handshake ({why})"
    if isinstance(exc, OSError) and exc.strerror:
        return f"unreachable: {_text(exc.strerror, redactor).lower()}"
    if isinstance(exc, OSError) and str(exc).startswith("Multiple exceptions"):
        return "unreachable: no address of the host accepted a connection"  # asyncio's summary
    return f"unreachable: {type(exc).__name__}"


def _text(value: object, redactor: Redactor) -> str:
    return clean(str(value), redactor=redactor, limit=MAX_DETAIL)
