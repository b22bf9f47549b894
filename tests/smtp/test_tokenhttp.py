"""The token source's own HTTP client against raw, hostile endpoints on loopback: TLS, framing,
caps, deadlines that close the socket, and secrets echoed back in every encoding."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
import urllib.parse

import pytest

from exporter.config.secret import Secret
from exporter.relay.probe import probe_relay
from exporter.smtp.oauth2 import RefreshingTokenSource, TokenError
from tests.conftest import auth, make_relay
from tests.servers.loop import ServerLoop
from tests.servers.smtp import start_relay
from tests.smtp.hostiletokens import Echo, http_answer, json_answer, serve_raw

CLIENT_SECRET = "client secret/K3v9+SECRET="  # a space, a slash, a plus: every encoding differs
REFRESH_TOKEN = "1//refresh-P0w2+SECRET"
TOKEN_DOC = {"access_token": "at-from-raw-endpoint", "token_type": "Bearer", "expires_in": 3600}


def source(url: str, **overrides: object) -> RefreshingTokenSource:
    options: dict[str, object] = {
        "token_url": url, "client_id": "canary-client",
        "client_secret": Secret(CLIENT_SECRET), "refresh_token": Secret(REFRESH_TOKEN),
        "scope": None, "grant_type": "refresh_token", "timeout": 5.0,
    }
    options.update(overrides)
    return RefreshingTokenSource(**options)  # type: ignore[arg-type]


def every_form(secret: str) -> list[str]:
    return [secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)]


async def test_https_endpoint_is_verified_against_ca_file_or_system_cas(
    server_loop: ServerLoop, server_ctx: ssl.SSLContext, ca_file: str
) -> None:
    """An HTTPS token endpoint with a private CA's certificate works with ca_file, and without
    it is refused as not trusted, naming ca_file as the fix."""
    with serve_raw(server_loop, lambda _: json_answer(200, TOKEN_DOC), ctx=server_ctx) as ep:
        token = await source(ep.url, ca_file=ca_file).token()
        assert token.value.reveal() == "at-from-raw-endpoint"
        with pytest.raises(TokenError) as caught:
            await source(ep.url).token()
    assert str(caught.value).startswith(f"token endpoint {ep.url} has a TLS certificate that "
                                        "is not trusted (")
    assert str(caught.value).endswith("; set ca_file for a private CA")
    assert len(ep.bodies) == 1  # the untrusted endpoint never saw the form


@pytest.mark.parametrize(
    "answer",
    [
        http_answer(100, b"", headers="") + http_answer(
            200, b"", headers="Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
        ) + b"".join(f"{len(p):x};ext=1\r\n".encode() + p + b"\r\n" for p in (
            json.dumps(TOKEN_DOC).encode()[:10], json.dumps(TOKEN_DOC).encode()[10:])
        ) + b"0\r\nX-Trailer: 1\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n"
        + json.dumps(TOKEN_DOC).encode(),
    ],
    ids=["interim-then-chunked", "until-close"],
)
async def test_chunked_and_unframed_answers_are_read(
    server_loop: ServerLoop, answer: bytes
) -> None:
    """A 100 Continue followed by a chunked answer, or an answer ended by closing the
    connection, gives the token."""
    with serve_raw(server_loop, lambda _: answer) as ep:
        token = await source(ep.url).token()
    assert token.value.reveal() == "at-from-raw-endpoint"


async def test_oversized_answer_is_cut_at_one_mebibyte(server_loop: ServerLoop) -> None:
    """A 5 MB token answer is not read past 1 MiB: it fails quickly as not a JSON object."""
    body = json.dumps({**TOKEN_DOC, "padding": "x" * 5_000_000}).encode()
    with serve_raw(server_loop, lambda _: http_answer(200, body)) as ep:
        started = time.monotonic()
        with pytest.raises(TokenError) as caught:
            await source(ep.url).token()
    assert time.monotonic() - started < 5
    assert str(caught.value) == (
        f"token endpoint {ep.url} answered 200 with a body that is not a JSON object")


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (b"", "closed the connection without answering"),
        (b"SSH-2.0-OpenSSH_9.6\r\n", "sent a broken HTTP response (not an HTTP/1.x status line)"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{}",
         "closed the connection before the answer was complete"),
        (b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 100_000 + b"\r\n\r\n",
         "sent a broken HTTP response (a line over 65536 bytes)"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
         "sent a broken HTTP response (two different Content-Lengths)"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x10\r\n",
         "sent a broken HTTP response (a bad chunk size)"),
    ],
    ids=["silent-close", "not-http", "short-body", "long-header", "two-lengths", "bad-chunk"],
)
async def test_broken_answers_say_what_was_wrong(
    server_loop: ServerLoop, answer: bytes, expected: str
) -> None:
    """Answers that are not HTTP, or end early, fail with one line saying how."""
    with serve_raw(server_loop, lambda _: answer) as ep, pytest.raises(TokenError) as caught:
        await source(ep.url).token()
    assert str(caught.value) == f"token endpoint {ep.url} {expected}"
    assert caught.value.status is None


async def test_redirect_is_not_followed(server_loop: ServerLoop) -> None:
    """A 307 to another address is reported as a redirect to fix in token_url, not followed."""
    answer = http_answer(307, b"", headers="Location: http://127.0.0.1:1/elsewhere\r\n"
                         "Content-Length: 0\r\n")
    with serve_raw(server_loop, lambda _: answer) as ep, pytest.raises(TokenError) as caught:
        await source(ep.url).token()
    assert str(caught.value) == (f"token endpoint {ep.url} answered 307 (a redirect, not "
                                 "followed); set token_url to the final address")
    assert len(ep.bodies) == 1


async def test_dripping_endpoint_is_dropped_at_the_deadline_without_a_thread(
    server_loop: ServerLoop,
) -> None:
    """An endpoint sending one byte a second is abandoned at the caller's deadline: the call
    fails then, the endpoint sees its connection closed, and no thread was started for it."""
    answer = json_answer(200, TOKEN_DOC)
    threads = set(threading.enumerate())
    with serve_raw(server_loop, lambda _: answer, drip=1.0, max_drip=30) as ep:
        tokens = source(ep.url, timeout=20.0)
        started = time.monotonic()
        results = await asyncio.gather(*(tokens.token(timeout=1.5) for _ in range(3)),
                                       tokens.token(timeout=0.5), return_exceptions=True)
        elapsed = time.monotonic() - started
        await asyncio.sleep(0.3)
        open_after = ep.open_now
        assert set(threading.enumerate()) - threads == set()
    messages = [str(r) for r in results]
    assert messages == [f"token endpoint {ep.url} did not answer within 1.5 s"] * 3 + [
        f"token endpoint {ep.url} did not answer within 0.5 s"]
    assert elapsed < 2.5
    assert len(ep.bodies) == 1 and open_after == 0
    assert tokens.refresh_failures == 1
    assert tokens.last_error == messages[0]


async def test_unusable_port_fails_the_request_not_the_start() -> None:
    """A token_url with port 99999 builds a source; each request then fails naming token_url."""
    tokens = source("http://127.0.0.1:99999/token")
    with pytest.raises(TokenError, match=r"cannot be used \(.*\); fix token_url"):
        await tokens.token()


async def test_secrets_echoed_in_any_encoding_are_redacted(server_loop: ServerLoop) -> None:
    """An endpoint that echoes the form (raw, URL-encoded, quote_plus, across line breaks) and
    the access token it issued shows none of them in its errors."""
    issued = "at-issued-Uu12-SECRET"
    echo = Echo(also=issued)
    first = [json_answer(200, {**TOKEN_DOC, "access_token": issued, "expires_in": 1})]

    def answer(body: bytes) -> bytes:
        return first.pop() if first else echo(body)

    messages = []
    with serve_raw(server_loop, answer) as ep:
        tokens = source(ep.url, refresh_margin=0)
        await tokens.token()
        await asyncio.sleep(1.1)  # expired: every call now refreshes, and fails
        for _ in range(3):
            with pytest.raises(TokenError) as caught:
                await tokens.token()
            messages.append(str(caught.value))
            assert caught.value.error == "invalid_client ***"
    prefix = f"token endpoint {ep.url} answered 401: invalid_client *** ("
    for message in messages:
        assert message.startswith(prefix) and message.endswith(")"), message
        assert "\n" not in message and "\r" not in message and "…" not in message, message
        for secret in (CLIENT_SECRET, REFRESH_TOKEN, issued):
            for form in every_form(secret):
                assert form not in message, (form, message)
    assert messages[0] == prefix + "you sent grant_type=refresh_token&client_id=canary-client" \
        "&client_secret=***&refresh_token=***)"
    assert messages[1] == messages[2] == prefix + "*** *** *** *** ***)"


async def test_stalled_token_endpoint_fails_the_probe_as_auth_failed(
    server_loop: ServerLoop,
) -> None:
    """A relay whose token endpoint drips fails in phase auth as auth_failed, saying the token
    endpoint did not answer in time, before the probe's own timeout; no AUTH is sent."""
    relay = start_relay(server_loop, ctx=None, starttls=False, auth_require_tls=False)
    config = make_relay(port=relay.port, tls="none", allow_plaintext_auth=True, timeout="3s",
                        auth=auth("xoauth2", token_env="RELAY_TOKEN"))
    with serve_raw(server_loop, lambda _: json_answer(200, TOKEN_DOC), drip=1.0) as ep:
        started = time.monotonic()
        result = await probe_relay(config, token_source=source(ep.url, timeout=10.0))
        elapsed = time.monotonic() - started
    assert result.reason is not None and result.reason.value == "auth_failed"
    assert result.failed_phase is not None and result.failed_phase.value == "auth"
    assert result.detail is not None
    assert result.detail.startswith(f"OAuth2 token refresh failed: token endpoint {ep.url} "
                                    "did not answer within 1")
    assert result.hint is not None and "check token_url" in result.hint
    assert elapsed < 2.5
    assert relay.recorder.seen_auth == []
