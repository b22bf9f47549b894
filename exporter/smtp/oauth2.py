"""OAuth2 access tokens for XOAUTH2: a static token, or one refreshed from a token endpoint."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import ssl
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from exporter.config import Secret
from exporter.peertext import Redactor, clean
from exporter.smtp.tlsinfo import client_context
from exporter.smtp.tokenhttp import (
    MAX_DETAIL,
    BrokenAnswer,
    Endpoint,
    describe_failure,
    post_form,
    seconds,
)

__all__ = [
    "GRANT_TYPES",
    "RefreshingTokenSource",
    "StaticTokenSource",
    "Token",
    "TokenError",
    "TokenSource",
    "xoauth2_string",
]

log = logging.getLogger(__name__)

GRANT_TYPES = ("refresh_token", "client_credentials")
DEFAULT_EXPIRES_IN = 3600.0
_MAX_BODY = 1 << 20


@dataclass(frozen=True, slots=True)
class Token:
    """An access token and when it expires (``time.time()`` seconds; None when unknown)."""

    value: Secret
    expires_at: float | None


class TokenError(Exception):
    """A token could not be obtained; the one-line message never contains a secret."""

    def __init__(
        self, message: str, *, status: int | None = None, error: str | None = None,
        reply: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status  # HTTP status of the token endpoint's answer, if it answered
        self.error = error  # OAuth error code from the answer (``invalid_grant``), if any
        # The endpoint's error as a probe's reply shows it, cleaned: "400 invalid_grant (...)"
        self.reply = reply


class TokenSource(Protocol):
    """Anything that hands out access tokens."""

    async def token(self, *, timeout: float | None = None) -> Token:
        """A token, or TokenError within ``timeout`` seconds (the source's own by default)."""
        ...


class StaticTokenSource:
    """Always returns the same token (from token_env or token_file); its expiry is unknown."""

    def __init__(self, token: Secret) -> None:
        self._token = Token(token, None)

    async def token(self, *, timeout: float | None = None) -> Token:
        """Return the configured token."""
        return self._token

    def __repr__(self) -> str:
        return f"StaticTokenSource(source={self._token.value.source!r})"


class RefreshingTokenSource:
    """Fetches access tokens from an OAuth2 token endpoint and caches them until near expiry."""

    def __init__(
        self,
        *,
        token_url: str,
        client_id: str,
        client_secret: Secret | None,
        refresh_token: Secret | None,
        scope: str | None,
        grant_type: str,
        timeout: float = 10.0,
        refresh_margin: float = 300.0,
        clock: Callable[[], float] = time.time,
        ca_file: str | None = None,
    ) -> None:
        endpoint = _display_url(token_url)
        parts = urllib.parse.urlsplit(token_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"token_url {endpoint!r} is not an http:// or https:// URL")
        if "@" in parts.netloc:
            raise ValueError(
                f"token_url {endpoint!r} must not hold user info; set client_id and client_secret"
            )
        if grant_type not in GRANT_TYPES:
            raise ValueError(
                f"grant_type {grant_type!r} is not supported; use refresh_token or "
                "client_credentials"
            )
        if grant_type == "refresh_token" and refresh_token is None:
            raise ValueError("grant_type refresh_token needs a refresh_token")
        if timeout <= 0 or refresh_margin < 0:
            raise ValueError("timeout must be positive and refresh_margin not negative")
        try:
            self._target: Endpoint | ValueError = Endpoint.from_url(token_url)
        except ValueError as exc:  # the port or a character: every request says so
            self._target = exc
        self._endpoint = endpoint
        self._client_id = client_id
        self._client_secret = client_secret
        self._refresh_token = refresh_token
        self._scope = scope
        self._grant_type = grant_type
        self._timeout = timeout
        self._refresh_margin = refresh_margin
        self._clock = clock
        self._context = _tls_context(ca_file) if parts.scheme == "https" else None
        self._lock = asyncio.Lock()
        self._cached: Token | None = None
        self._refresh_at = -math.inf
        self._attempts = 0  # completed refresh attempts, successful or not
        self._failure: TokenError | None = None
        self._refresh_failures = 0

    def __repr__(self) -> str:
        return f"RefreshingTokenSource(token_url={self._endpoint!r}, client_id={self._client_id!r})"

    @property
    def expires_at(self) -> float | None:
        """When the cached token expires, or None before the first successful refresh."""
        return None if self._cached is None else self._cached.expires_at

    @property
    def last_error(self) -> str | None:
        """The last refresh failure as one line; None after a successful refresh."""
        return None if self._failure is None else str(self._failure)

    @property
    def refresh_failures(self) -> int:
        """How many refreshes have failed since start."""
        return self._refresh_failures

    async def token(self, *, timeout: float | None = None) -> Token:
        """Return the cached token, refreshing it first when it is within the refresh margin.

        Callers that arrive while a refresh is in flight share its outcome. When a refresh
        fails but the cached token has not expired yet, the cached token is returned. No
        caller waits longer than ``timeout`` seconds (at most the source's own timeout): the
        request is abandoned and its connection closed then.
        """
        cached = self._cached
        if cached is not None and self._clock() < self._refresh_at:
            return cached
        limit = self._timeout if timeout is None else max(0.0, min(self._timeout, timeout))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        attempt = self._attempts
        try:
            async with asyncio.timeout_at(deadline):
                await self._lock.acquire()
        except TimeoutError:  # another caller's request is still in flight
            raise TokenError(f"token endpoint {self._endpoint} {_late(limit)}") from None
        try:
            if self._attempts == attempt:
                await self._refresh(deadline, limit)
            return self._outcome()
        finally:
            self._lock.release()

    def redactor(self) -> Redactor:
        """Hides the client secret, the refresh token and the cached access token."""
        secrets = (self._client_secret, self._refresh_token, _value(self._cached))
        return Redactor(s.reveal() for s in secrets if s is not None)

    async def _refresh(self, deadline: float, limit: float) -> None:
        try:
            reply, started = await self._fetch(deadline, limit)
        except TokenError as exc:
            self._failure = exc
            self._refresh_failures += 1
            log.debug("token refresh failed: %s", self._failure)
        else:
            expires_at = started + reply.expires_in
            value = Secret(reply.access_token, source=f"oauth2:{self._endpoint}")
            self._cached = Token(value, expires_at)
            # A token that lives shorter than the margin is refreshed at half its life.
            self._refresh_at = expires_at - min(self._refresh_margin, reply.expires_in / 2)
            self._failure = None
            if reply.refresh_token is not None and self._refresh_token is not None:
                self._refresh_token = Secret(reply.refresh_token, source=self._refresh_token.source)
            log.debug("token from %s expires in %.0f s", self._endpoint, reply.expires_in)
        self._attempts += 1

    def _outcome(self) -> Token:
        cached, failure = self._cached, self._failure
        if cached is not None and (failure is None or _unexpired(cached, self._clock())):
            return cached
        assert failure is not None  # a completed attempt left either a token or a failure
        raise TokenError(str(failure), status=failure.status, error=failure.error,
                         reply=failure.reply)

    async def _fetch(self, deadline: float, limit: float) -> tuple[_Reply, float]:
        """One request, over by ``deadline`` (loop time) whatever the endpoint does."""
        redactor = self.redactor()
        if isinstance(self._target, ValueError):
            why = clean(str(self._target), redactor=redactor, limit=MAX_DETAIL)
            raise TokenError(f"token url {self._endpoint} cannot be used ({why}); fix token_url")
        data = urllib.parse.urlencode(self._form()).encode("ascii")
        started = self._clock()
        log.debug("requesting a token from %s (%s)", self._endpoint, self._grant_type)
        try:
            async with asyncio.timeout_at(deadline):
                status, body = await post_form(
                    self._target, data, context=self._context, max_body=_MAX_BODY
                )
        except (OSError, BrokenAnswer, UnicodeError) as exc:  # TimeoutError is an OSError
            detail = describe_failure(exc, limit, redactor)
            raise TokenError(f"token endpoint {self._endpoint} {detail}") from None
        return _parse_reply(self._endpoint, status, body, redactor), started

    def _form(self) -> dict[str, str]:
        form = {"grant_type": self._grant_type, "client_id": self._client_id}
        if self._client_secret is not None:
            form["client_secret"] = self._client_secret.reveal()
        if self._grant_type == "refresh_token" and self._refresh_token is not None:
            form["refresh_token"] = self._refresh_token.reveal()
        if self._scope:
            form["scope"] = self._scope
        return form


def xoauth2_string(username: str, token: str) -> str:
    """Return the base64 SASL XOAUTH2 initial response for ``username`` and access ``token``."""
    raw = f"user={username}\x01auth=Bearer {token}\x01\x01"
    return base64.b64encode(raw.encode("utf-8")).decode("ascii")


@dataclass(frozen=True, slots=True)
class _Reply:
    access_token: str = field(repr=False)
    expires_in: float
    refresh_token: str | None = field(repr=False)


def _parse_reply(endpoint: str, status: int, body: bytes, redactor: Redactor) -> _Reply:
    """Parse a token endpoint's answer, raising TokenError for anything but a usable token.
    Text from the answer is cleaned: one line, controls visible, secrets hidden, capped."""
    answered = f"token endpoint {endpoint} answered {status}"
    if 300 <= status < 400:
        raise TokenError(
            f"{answered} (a redirect, not followed); set token_url to the final address",
            status=status,
        )
    if not body.strip():
        raise TokenError(f"{answered} with an empty body", status=status)
    try:
        doc = json.loads(body)
    except ValueError:  # also covers undecodable bytes
        doc = None
    if not isinstance(doc, dict):
        raise TokenError(f"{answered} with a body that is not a JSON object", status=status)
    issued = [doc.get(key) for key in ("access_token", "refresh_token")]
    redactor = redactor.with_secrets(value for value in issued if isinstance(value, str))

    def text(value: object) -> str:
        return clean(str(value), redactor=redactor, limit=MAX_DETAIL)

    error = doc.get("error")
    if not 200 <= status < 300 or error is not None:
        code = None if error is None else text(error)
        description = doc.get("error_description")
        parts = [] if code is None else [code]
        if description is not None:
            parts.append(f"({text(description)})")
        detail = ": " + " ".join(parts) if parts else ""
        raise TokenError(answered + detail, status=status, error=code,
                         reply=" ".join([str(status), *parts]) if parts else None)
    access_token = doc.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise TokenError(f"{answered} without an access_token", status=status)
    token_type = doc.get("token_type")
    if isinstance(token_type, str) and token_type.lower() != "bearer":
        raise TokenError(
            f"{answered} with token_type {text(token_type)!r}; XOAUTH2 needs a Bearer token",
            status=status,
        )
    expires_in = _expires_in(doc.get("expires_in"))
    if expires_in is None:
        raise TokenError(f"{answered} with an expires_in that is not seconds", status=status)
    refresh_token = doc.get("refresh_token")
    if not isinstance(refresh_token, str) or not refresh_token:
        refresh_token = None
    return _Reply(access_token, expires_in, refresh_token)


def _expires_in(value: object) -> float | None:
    """``expires_in`` as seconds (3600 when absent), or None when it is not a valid number."""
    if value is None:
        return DEFAULT_EXPIRES_IN
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _display_url(url: str) -> str:
    """The URL without user info, query or fragment, which may hold credentials."""
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}"


def _unexpired(token: Token, now: float) -> bool:
    return token.expires_at is None or now < token.expires_at


def _late(limit: float) -> str:
    return f"did not answer within {seconds(limit)} s"


def _value(token: Token | None) -> Secret | None:
    return None if token is None else token.value


def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    """The system's CAs, or only ``ca_file``'s when given; certificate and host verified."""
    try:
        return client_context(verify=True, ca_file=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(
            f"ca_file {ca_file} cannot be loaded ({type(exc).__name__}); point it at a PEM file"
        ) from None
