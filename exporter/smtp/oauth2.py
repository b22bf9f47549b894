"""OAuth2 access tokens for XOAUTH2: a static token, or one refreshed from a token endpoint."""

from __future__ import annotations

import asyncio
import base64
import email.message
import http.client
import json
import logging
import math
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Protocol

from exporter import __version__
from exporter.config import REDACTED, Secret

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
_MAX_DETAIL = 200
_MIN_REDACTED = 8


@dataclass(frozen=True, slots=True)
class Token:
    """An access token and when it expires (``time.time()`` seconds; None when unknown)."""

    value: Secret
    expires_at: float | None


class TokenError(Exception):
    """A token could not be obtained; the one-line message never contains a secret."""

    def __init__(
        self, message: str, *, status: int | None = None, error: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status  # HTTP status of the token endpoint's answer, if it answered
        self.error = error  # OAuth error code from the answer (``invalid_grant``), if any


class TokenSource(Protocol):
    """Anything that hands out access tokens."""

    async def token(self) -> Token: ...


class StaticTokenSource:
    """Always returns the same token (from token_env or token_file); its expiry is unknown."""

    def __init__(self, token: Secret) -> None:
        self._token = Token(token, None)

    async def token(self) -> Token:
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
        self._url = token_url
        self._endpoint = endpoint
        self._client_id = client_id
        self._client_secret = client_secret
        self._refresh_token = refresh_token
        self._scope = scope
        self._grant_type = grant_type
        self._timeout = timeout
        self._refresh_margin = refresh_margin
        self._clock = clock
        self._opener = _build_opener(ca_file)
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

    async def token(self) -> Token:
        """Return the cached token, refreshing it first when it is within the refresh margin.

        Callers that arrive while a refresh is in flight share its outcome. When a refresh
        fails but the cached token has not expired yet, the cached token is returned.
        """
        cached = self._cached
        if cached is not None and self._clock() < self._refresh_at:
            return cached
        attempt = self._attempts
        async with self._lock:
            if self._attempts == attempt:
                await self._refresh()
            return self._outcome()

    async def _refresh(self) -> None:
        try:
            reply, started = await self._fetch()
        except TokenError as exc:
            self._failure = TokenError(
                self._redact(str(exc)),
                status=exc.status,
                error=None if exc.error is None else self._redact(exc.error),
            )
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
        raise TokenError(str(failure), status=failure.status, error=failure.error)

    async def _fetch(self) -> tuple[_Reply, float]:
        data = urllib.parse.urlencode(self._form()).encode("ascii")
        started = self._clock()
        log.debug("requesting a token from %s (%s)", self._endpoint, self._grant_type)
        try:
            async with asyncio.timeout(self._timeout):
                status, body = await asyncio.to_thread(self._post, data)
        except (OSError, http.client.HTTPException) as exc:  # TimeoutError is an OSError
            detail = _describe_failure(exc, self._timeout)
            raise TokenError(f"token endpoint {self._endpoint} {detail}") from None
        return _parse_reply(self._endpoint, status, body), started

    def _form(self) -> dict[str, str]:
        form = {"grant_type": self._grant_type, "client_id": self._client_id}
        if self._client_secret is not None:
            form["client_secret"] = self._client_secret.reveal()
        if self._grant_type == "refresh_token" and self._refresh_token is not None:
            form["refresh_token"] = self._refresh_token.reveal()
        if self._scope:
            form["scope"] = self._scope
        return form

    def _post(self, data: bytes) -> tuple[int, bytes]:
        """Send the token request (in a worker thread); HTTP errors are answers too."""
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
            self._url,
            data=data,
            method="POST",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
                "User-Agent": f"smtp-canary-exporter/{__version__}",
            },
        )
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                return int(response.status), response.read(_MAX_BODY)
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, exc.read(_MAX_BODY)
            except (OSError, http.client.HTTPException):
                return exc.code, b""
            finally:
                exc.close()

    def _redact(self, text: str) -> str:
        """Replace secrets that a server echoed; ones too short to be real would mangle text."""
        for secret in (self._client_secret, self._refresh_token, self._cached_value()):
            if secret is not None and len(secret.reveal()) >= _MIN_REDACTED:
                text = text.replace(secret.reveal(), REDACTED)
        return text

    def _cached_value(self) -> Secret | None:
        return None if self._cached is None else self._cached.value


def xoauth2_string(username: str, token: str) -> str:
    """Return the base64 SASL XOAUTH2 initial response for ``username`` and access ``token``."""
    raw = f"user={username}\x01auth=Bearer {token}\x01\x01"
    return base64.b64encode(raw.encode("utf-8")).decode("ascii")


@dataclass(frozen=True, slots=True)
class _Reply:
    access_token: str = field(repr=False)
    expires_in: float
    refresh_token: str | None = field(repr=False)


def _parse_reply(endpoint: str, status: int, body: bytes) -> _Reply:
    """Parse a token endpoint's answer, raising TokenError for anything but a usable token."""
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
    error = doc.get("error")
    if not 200 <= status < 300 or error is not None:
        code = None if error is None else _one_line(error)
        description = doc.get("error_description")
        parts = [] if code is None else [code]
        if description is not None:
            parts.append(f"({_one_line(description)})")
        detail = ": " + " ".join(parts) if parts else ""
        raise TokenError(answered + detail, status=status, error=code)
    access_token = doc.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise TokenError(f"{answered} without an access_token", status=status)
    token_type = doc.get("token_type")
    if isinstance(token_type, str) and token_type.lower() != "bearer":
        raise TokenError(
            f"{answered} with token_type {_one_line(token_type)!r}; XOAUTH2 needs a Bearer token",
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


def _one_line(value: object) -> str:
    """Server-supplied text as one printable line of bounded length."""
    text = " ".join(str(value).split())
    text = "".join(char for char in text if char.isprintable())
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"


def _describe_failure(exc: BaseException, timeout: float) -> str:
    """What went wrong before the token endpoint answered, as a predicate for its URL."""
    if isinstance(exc, urllib.error.URLError):
        if not isinstance(exc.reason, BaseException):
            return f"unreachable: {_one_line(exc.reason)}"
        exc = exc.reason
    if isinstance(exc, TimeoutError):
        return f"did not answer within {timeout:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return "unreachable: connection refused"
    if isinstance(exc, socket.gaierror):
        return "unreachable: host name does not resolve"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"has a TLS certificate that is not trusted ({_one_line(exc.verify_message)}); "
            "set ca_file for a private CA"
        )
    if isinstance(exc, ssl.SSLError):
        return f"failed the TLS handshake ({_one_line(exc.reason or type(exc).__name__)})"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "closed the connection without answering"
    if isinstance(exc, http.client.HTTPException):
        return f"sent a broken HTTP response ({type(exc).__name__})"
    if isinstance(exc, OSError) and exc.strerror:
        return f"unreachable: {_one_line(exc.strerror).lower()}"
    return f"unreachable: {type(exc).__name__}"


def _display_url(url: str) -> str:
    """The URL without user info, query or fragment, which may hold credentials."""
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}"


def _unexpired(token: Token, now: float) -> bool:
    return token.expires_at is None or now < token.expires_at


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Token endpoints answer directly; a redirect would turn the POST into a GET."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: email.message.Message,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


def _build_opener(ca_file: str | None) -> urllib.request.OpenerDirector:
    if ca_file is None:
        return urllib.request.build_opener(_NoRedirect)
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(
            f"ca_file {ca_file} cannot be loaded ({type(exc).__name__}); point it at a PEM file"
        ) from None
    return urllib.request.build_opener(_NoRedirect, urllib.request.HTTPSHandler(context=context))
