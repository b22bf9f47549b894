"""SMTP servers that send hostile text: invalid UTF-8 and terminal escapes in the greeting, a
31 KB AUTH list in EHLO, a STARTTLS refusal full of both, and one that echoes the AUTH
password back where a length cap would cut it."""

from __future__ import annotations

import asyncio
import base64
import re
import ssl

from tests.servers.scripted import Handler

# A window title, a screen clear, an OSC 52 clipboard write and the 8-bit CSI (U+009B).
ESCAPES = b"\x1b]0;pwned-title\x07 \x1b[2J \x1b]52;c;cHduZWQ=\x07 \xc2\x9b31m"
INVALID = b"\xff\xfe\xc3("  # not UTF-8: aiosmtplib keeps these as lone surrogates
GREETING = b"220 hostile.example.test " + ESCAPES + b" " + INVALID + b" ESMTP\r\n"
REJECTING_GREETING = (b"554-hostile.example.test " + ESCAPES + b"\r\n"
                      b"554 " + INVALID + b" go away\r\n")
STARTTLS_REFUSAL = b"454 4.7.0 TLS " + INVALID + b" " + ESCAPES + b" not available\r\n"
# What no output may show raw: the escapes (ESC, BEL, the UTF-8 of U+009B) and lone surrogates.
RAW = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")

ECHO_PASSWORD = "pw-K7q9-Zx4L-Vr8m-SECRET"
# Where the echoed password starts in the reply text (after "535 "), around the 500 cap.
RAW_POSITIONS = range(465, 506)
B64_POSITIONS = range(455, 501)
SPLITS = range(1, len(ECHO_PASSWORD))


def auth_lines(*, spoken: bool = True) -> bytes:
    """About 31 KB of AUTH lines (four of them, as long as aiosmtplib takes): real names,
    invalid UTF-8, escapes, names too long for SASL, and a thousand made-up ones."""
    first = b"GSSAPI " + (b"LOGIN " if spoken else b"") + INVALID + b" " + ESCAPES + b" NTLM "
    lines = []
    for n in range(4):
        names = b" ".join(b"X-%05d" % (n * 1000 + i) for i in range(960))
        lines.append(b"250-AUTH " + (first if n == 0 else b"A" * 40 + b" ") + names + b"\r\n")
    return b"".join(lines)


def hostile(*, tls: ssl.SSLContext | None = None, greeting: bytes = GREETING,
            starttls_refusal: bytes | None = None, spoken: bool = True) -> Handler:
    """Greets with ``greeting``; offers STARTTLS (real TLS with ``tls``, or refused with
    ``starttls_refusal``), and after it, or with neither, the hostile AUTH lines."""
    offers_starttls = tls is not None or starttls_refusal is not None

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(greeting)
        await writer.drain()
        secure = False
        while line := await reader.readline():
            verb = line.split(b" ", 1)[0].strip().upper()
            if verb == b"EHLO":
                reply = (b"250-hostile.example.test\r\n250 STARTTLS\r\n"
                         if offers_starttls and not secure else
                         b"250-hostile.example.test\r\n" + auth_lines(spoken=spoken)
                         + b"250 8BITMIME\r\n")
            elif verb == b"STARTTLS" and starttls_refusal is not None:
                reply = starttls_refusal
            elif verb == b"STARTTLS" and tls is not None:
                writer.write(b"220 2.0.0 Ready to start TLS\r\n")
                await writer.drain()
                await writer.start_tls(tls)
                secure = True
                continue
            elif verb == b"QUIT":
                writer.write(b"221 2.0.0 Bye\r\n")
                await writer.drain()
                return
            else:
                reply = b"502 5.5.2 not here\r\n"
            writer.write(reply)
            await writer.drain()

    return handler


def echo_reply(variant: str, password: str) -> bytes:
    """The 535 a password-echoing server sends: ``raw-N`` the password at position N of the
    text, ``b64-N`` its base64 there, ``split-K`` its first K characters ending one reply line
    and the rest starting the next."""
    kind, _, number = variant.partition("-")
    n = int(number)
    secret = password.encode()
    if kind == "split":
        return (b"535-5.7.8 " + b"x" * 40 + secret[:n] + b"\r\n535 " + secret[n:]
                + b" rejected\r\n")
    form = base64.b64encode(secret) if kind == "b64" else secret
    return b"535 " + b"x" * n + form + b" rejected\r\n"


def echo_variants() -> list[str]:
    return ([f"raw-{n}" for n in RAW_POSITIONS] + [f"b64-{n}" for n in B64_POSITIONS]
            + [f"split-{k}" for k in SPLITS])


def echoing() -> Handler:
    """Offers AUTH PLAIN without TLS and answers it with ``echo_reply``, the variant named by
    the username of the PLAIN payload."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 echo.example.test ESMTP\r\n")
        await writer.drain()
        while line := await reader.readline():
            words = line.split()
            verb = words[0].upper() if words else b""
            if verb == b"EHLO":
                reply = b"250-echo.example.test\r\n250 AUTH PLAIN\r\n"
            elif verb == b"AUTH" and len(words) == 3:
                _, user, password = base64.b64decode(words[2]).decode().split("\0")
                reply = echo_reply(user, password)
            elif verb == b"QUIT":
                writer.write(b"221 2.0.0 Bye\r\n")
                await writer.drain()
                return
            else:
                reply = b"502 5.5.2 not here\r\n"
            writer.write(reply)
            await writer.drain()

    return handler


def password_windows(text: str) -> list[str]:
    """Every 4 characters of the echoed password, and the first 4 of its base64, in
    ``text``: what a leak would show."""
    secret = ECHO_PASSWORD
    windows = {secret[i:i + 4] for i in range(len(secret) - 3)}
    windows.add(base64.b64encode(secret.encode()).decode()[:4])
    return sorted(w for w in windows if w in text)
