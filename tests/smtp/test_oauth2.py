"""Tests for exporter.smtp.oauth2 against a real token endpoint on loopback."""

from __future__ import annotations

import asyncio
import base64
import socket
import time
from collections.abc import Iterator

import pytest

from exporter.config.secret import Secret
from exporter.smtp.oauth2 import (
    RefreshingTokenSource,
    StaticTokenSource,
    Token,
    TokenError,
    xoauth2_string,
)
from tests.servers.tokens import Reply, TokenEndpoint, error_reply, serve_tokens, token_reply

CLIENT_SECRET = "cs-very-secret-4711"
REFRESH_TOKEN = "rt-very-secret-0815"
ROTATED_REFRESH_TOKEN = "rt-rotated-secret-2"
SECRETS = (CLIENT_SECRET, REFRESH_TOKEN, ROTATED_REFRESH_TOKEN, "at-1", "at-2")


@pytest.fixture
def endpoint() -> Iterator[TokenEndpoint]:
    with serve_tokens() as state:
        yield state


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def refreshing(url: str, **overrides: object) -> RefreshingTokenSource:
    options: dict[str, object] = {
        "token_url": url,
        "client_id": "canary-client",
        "client_secret": Secret(CLIENT_SECRET, source="env:CLIENT_SECRET"),
        "refresh_token": Secret(REFRESH_TOKEN, source="file:/run/secrets/refresh"),
        "scope": None,
        "grant_type": "refresh_token",
        "timeout": 2.0,
    }
    options.update(overrides)
    return RefreshingTokenSource(**options)  # type: ignore[arg-type]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_refresh_token_grant_sends_form_and_returns_token(endpoint: TokenEndpoint) -> None:
    """The refresh_token grant posts the right form and the token expires expires_in from now."""
    endpoint.default = token_reply("at-1", expires_in="1800")
    source = refreshing(endpoint.url, scope="https://mail.google.com/")

    token = await source.token()

    assert token.value.reveal() == "at-1"
    assert token.expires_at is not None
    assert abs(token.expires_at - (time.time() + 1800)) < 5
    assert source.expires_at == token.expires_at
    assert endpoint.forms == [
        {
            "grant_type": "refresh_token",
            "client_id": "canary-client",
            "client_secret": CLIENT_SECRET,
            "refresh_token": REFRESH_TOKEN,
            "scope": "https://mail.google.com/",
        }
    ]
    assert endpoint.headers[0]["Content-Type"] == "application/x-www-form-urlencoded"
    assert endpoint.headers[0]["Accept"] == "application/json"


async def test_client_credentials_grant_sends_secret_and_scope(endpoint: TokenEndpoint) -> None:
    """The client_credentials grant sends client_secret and scope but no refresh_token."""
    source = refreshing(
        endpoint.url,
        grant_type="client_credentials",
        refresh_token=None,
        scope="https://outlook.office365.com/.default",
    )

    await source.token()

    assert endpoint.forms == [
        {
            "grant_type": "client_credentials",
            "client_id": "canary-client",
            "client_secret": CLIENT_SECRET,
            "scope": "https://outlook.office365.com/.default",
        }
    ]


async def test_missing_expires_in_defaults_to_an_hour(endpoint: TokenEndpoint) -> None:
    """A reply without expires_in gives a token that expires in 3600 s."""
    endpoint.default = token_reply("at-1", expires_in=None)
    clock = FakeClock()

    token = await refreshing(endpoint.url, clock=clock).token()

    assert token.expires_at == clock.now + 3600


async def test_cached_token_is_reused_until_the_refresh_margin(endpoint: TokenEndpoint) -> None:
    """A cached token serves calls until the refresh margin, then one refresh replaces it."""
    endpoint.replies.extend([token_reply("at-1", expires_in=3600), token_reply("at-2")])
    clock = FakeClock()
    source = refreshing(endpoint.url, clock=clock, refresh_margin=300)

    first = [await source.token() for _ in range(3)]
    clock.now += 3299
    before_margin = await source.token()
    clock.now += 2
    inside_margin = await source.token()
    after_refresh = await source.token()

    assert {token.value.reveal() for token in [*first, before_margin]} == {"at-1"}
    assert inside_margin.value.reveal() == "at-2"
    assert after_refresh is inside_margin
    assert len(endpoint.forms) == 2


async def test_concurrent_callers_share_one_request(endpoint: TokenEndpoint) -> None:
    """Ten concurrent token() calls cause exactly one request to the endpoint."""
    endpoint.default = Reply(body=token_reply("at-1").body, delay=0.2)
    source = refreshing(endpoint.url)

    tokens = await asyncio.gather(*(source.token() for _ in range(10)))

    assert {token.value.reveal() for token in tokens} == {"at-1"}
    assert len(endpoint.forms) == 1


async def test_concurrent_callers_share_one_failed_request(endpoint: TokenEndpoint) -> None:
    """Ten concurrent token() calls against a failing endpoint make one request and all fail."""
    endpoint.default = error_reply(400, "invalid_grant", "Bad Request")
    endpoint.default.delay = 0.2
    source = refreshing(endpoint.url)

    results = await asyncio.gather(*(source.token() for _ in range(10)), return_exceptions=True)

    assert all(isinstance(result, TokenError) for result in results)
    assert len(endpoint.forms) == 1
    assert source.refresh_failures == 1


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (
            error_reply(400, "invalid_grant", "Token has been expired or revoked."),
            "answered 400: invalid_grant (Token has been expired or revoked.)",
        ),
        (
            error_reply(401, "invalid_client", f"Bad secret\n{CLIENT_SECRET} for client"),
            "answered 401: invalid_client (Bad secret *** for client)",
        ),
        (Reply(status=401), "answered 401 with an empty body"),
        (
            Reply(status=500, body=b"<html>Internal error</html>", content_type="text/html"),
            "answered 500 with a body that is not a JSON object",
        ),
        (Reply(body=b'{"token_type": "Bearer"}'), "answered 200 without an access_token"),
        (
            Reply(body=b'{"access_token": "at-1", "expires_in": "soon"}'),
            "answered 200 with an expires_in that is not seconds",
        ),
    ],
    ids=["invalid_grant", "secret-echoed", "401-empty", "500-html", "no-token", "bad-expiry"],
)
async def test_bad_answers_raise_token_error_without_secrets(
    endpoint: TokenEndpoint, reply: Reply, expected: str
) -> None:
    """An unusable answer raises a one-line TokenError with status and OAuth error, no secret."""
    endpoint.default = reply
    source = refreshing(endpoint.url)

    with pytest.raises(TokenError) as caught:
        await source.token()

    message = str(caught.value)
    assert message == f"token endpoint {endpoint.url} {expected}"
    assert caught.value.status == reply.status
    assert "\n" not in message
    assert not any(secret in message for secret in SECRETS)
    assert source.last_error == message
    assert source.refresh_failures == 1
    assert source.expires_at is None


async def test_unreachable_endpoint_fails_fast() -> None:
    """A closed port raises TokenError saying the endpoint is unreachable, quickly."""
    url = f"http://127.0.0.1:{closed_port()}/token"
    source = refreshing(url, timeout=10.0)

    started = time.monotonic()
    with pytest.raises(TokenError) as caught:
        await source.token()

    assert time.monotonic() - started < 5
    assert str(caught.value) == f"token endpoint {url} unreachable: connection refused"
    assert caught.value.status is None


async def test_slow_endpoint_times_out(endpoint: TokenEndpoint) -> None:
    """An endpoint that answers after the timeout raises TokenError after about the timeout."""
    endpoint.default = Reply(body=token_reply("at-1").body, delay=10.0)
    source = refreshing(endpoint.url, timeout=0.3)

    started = time.monotonic()
    with pytest.raises(TokenError) as caught:
        await source.token()

    assert time.monotonic() - started < 2
    assert str(caught.value) == f"token endpoint {endpoint.url} did not answer within 0.3 s"


async def test_rotated_refresh_token_is_used_next(endpoint: TokenEndpoint) -> None:
    """A refresh_token in the answer replaces the old one for the next refresh."""
    endpoint.replies.extend(
        [
            token_reply("at-1", refresh_token=ROTATED_REFRESH_TOKEN),
            token_reply("at-2"),
            token_reply("at-3"),
        ]
    )
    clock = FakeClock()
    source = refreshing(endpoint.url, clock=clock)

    await source.token()
    clock.now += 3600
    await source.token()
    clock.now += 3600
    await source.token()

    sent = [form["refresh_token"] for form in endpoint.forms]
    assert sent == [REFRESH_TOKEN, ROTATED_REFRESH_TOKEN, ROTATED_REFRESH_TOKEN]
    assert ROTATED_REFRESH_TOKEN not in repr(source)


async def test_failed_refresh_falls_back_to_unexpired_token(endpoint: TokenEndpoint) -> None:
    """A failed refresh inside the margin returns the cached token and records the failure."""
    endpoint.replies.extend(
        [
            token_reply("at-1", expires_in=3600),
            error_reply(400, "invalid_grant", "Token has been expired or revoked."),
            error_reply(400, "invalid_grant", "Token has been expired or revoked."),
            token_reply("at-2"),
        ]
    )
    clock = FakeClock()
    source = refreshing(endpoint.url, clock=clock)
    first = await source.token()
    clock.now += 3500

    fallback = await source.token()

    assert fallback is first
    assert source.last_error is not None
    assert "400: invalid_grant" in source.last_error
    assert source.refresh_failures == 1
    assert source.expires_at == first.expires_at

    clock.now += 100  # the cached token has now expired
    with pytest.raises(TokenError, match="invalid_grant"):
        await source.token()
    assert source.refresh_failures == 2

    recovered = await source.token()
    assert recovered.value.reveal() == "at-2"
    assert source.last_error is None
    assert source.refresh_failures == 2


async def test_reprs_never_show_secrets(endpoint: TokenEndpoint) -> None:
    """repr and str of sources and tokens show no secret, and xoauth2_string encodes the token."""
    endpoint.default = token_reply("at-1", refresh_token=ROTATED_REFRESH_TOKEN)
    source = refreshing(endpoint.url)
    token = await source.token()
    static = StaticTokenSource(Secret("static-token-secret", source="env:SMTP_TOKEN"))
    static_token = await static.token()

    shown = [repr(source), str(source), repr(token), str(token), f"{token}"]
    shown += [repr(static), repr(static_token), str(static_token)]

    assert repr(source) == (
        f"RefreshingTokenSource(token_url={endpoint.url!r}, client_id='canary-client')"
    )
    assert static_token == Token(Secret("static-token-secret"), None)
    for text in shown:
        assert not any(secret in text for secret in (*SECRETS, "static-token-secret")), text
    decoded = base64.b64decode(xoauth2_string("canary@example.com", token.value.reveal()))
    assert decoded == b"user=canary@example.com\x01auth=Bearer at-1\x01\x01"


def test_invalid_configuration_is_rejected() -> None:
    """An unsupported grant, a missing refresh_token or a bad token_url is a ValueError."""
    with pytest.raises(ValueError, match="grant_type 'password' is not supported"):
        refreshing("https://idp.example/token", grant_type="password")
    with pytest.raises(ValueError, match="needs a refresh_token"):
        refreshing("https://idp.example/token", refresh_token=None)
    with pytest.raises(ValueError, match="not an http:// or https:// URL"):
        refreshing("file:///etc/passwd")
    with pytest.raises(ValueError, match="must not hold user info") as caught:
        refreshing(f"https://canary-client:{CLIENT_SECRET}@idp.example/token")
    assert CLIENT_SECRET not in str(caught.value)
