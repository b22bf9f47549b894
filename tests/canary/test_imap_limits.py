"""The capped IMAP reading layer on its own: a server line past the line limit, untagged
responses past their limit, and server text in imaplib's errors (bytes, and their repr)
cleaned with the password redacted."""

from __future__ import annotations

import contextlib
import imaplib
import socket
import threading
from collections.abc import Iterator

import pytest

from exporter.canary.imapcap import (
    CappedIMAPClient,
    LimitExceeded,
    Limits,
    exception_text,
    login_secrets,
)
from exporter.config import AuthConfig, AuthMechanism, Secret
from exporter.peertext import Redactor, clean

GREETING = b"* OK [CAPABILITY IMAP4rev1] ready\r\n"


@contextlib.contextmanager
def scripted(reply: bytes) -> Iterator[int]:
    """A loopback server that sends ``reply`` to its first client, then holds the line."""
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            with contextlib.suppress(OSError):
                conn.sendall(reply)
            done.wait(10)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        done.set()
        thread.join(5)
        listener.close()


def test_line_past_the_limit_drops_the_connection() -> None:
    """A response line longer than the line limit (2 MiB against 1 MiB) ends the connection
    with a LimitExceeded naming the line limit."""
    with scripted(GREETING[:5] + b"x" * (2 << 20) + b"\r\n") as port, \
            pytest.raises(LimitExceeded, match="limit on response line length"):
        CappedIMAPClient("127.0.0.1", port=port, ssl=False, ssl_context=None, timeout=5)


def test_responses_past_the_limit_drop_the_connection() -> None:
    """Untagged responses past the limit (50 for one command, against 40) end the
    connection with a LimitExceeded naming that limit, even while imaplib is still setting
    up the connection."""
    flood = b"".join(b"* %d EXISTS\r\n" % i for i in range(50))
    with scripted(GREETING + flood) as port, pytest.raises(LimitExceeded) as caught:
        CappedIMAPClient("127.0.0.1", port=port, ssl=False, ssl_context=None, timeout=5,
                         limits=Limits(responses=40))
    assert "untagged responses" in str(caught.value) and "(over 40)" in str(caught.value)


@pytest.mark.parametrize("password", ['pw-Zq9-"\\-SECRET', "pw-Zq9-'é\\-SECRET"])
def test_server_text_in_imaplib_errors_is_redacted(password: str) -> None:
    """imaplib's errors hold the server's line as bytes, or as their repr (which doubles a
    backslash): either way the echoed password, raw or as LOGIN quoted it, is redacted."""
    auth = AuthConfig(AuthMechanism.LOGIN, "u", Secret(password))
    redactor = Redactor(login_secrets(auth))
    quoted = password.replace("\\", "\\\\").replace('"', '\\"')
    line = f'a1 NO LOGIN u "{quoted}" and {password} refused'.encode()
    errors = [imaplib.IMAP4.error(line), imaplib.IMAP4.error(str(imaplib.IMAP4.error(line))),
              imaplib.IMAP4.abort(f"socket error: unterminated line: {line!r}")]
    for exc in errors:
        text = clean(exception_text(exc), redactor=redactor)
        assert "Zq9" not in text, text
        assert "***" in text
