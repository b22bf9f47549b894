"""Applies the web config to each connection and request: TLS with optional client
certificates, basic auth against bcrypt hashes (results cached), a rate limit, headers.

The file and the files it names are watched: a change is picked up at the next connection
(renewed certificates, new users); an invalid change is logged and the previous one kept."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import logging
import os
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Mapping

import bcrypt
from cryptography import x509

from exporter.config import ConfigError, RateLimit, WebConfig, load_web_config, watched_files

__all__ = ["WebGuard", "cross_site"]

log = logging.getLogger(__name__)

_CACHE_SIZE = 256


_DEFAULT_COST = 10
_COST = re.compile(rb"\$2[aby]?\$(\d\d)\$")


@functools.cache
def _decoy_hash(cost: int) -> bytes:
    """Checked when the user is unknown, so a wrong name costs as long as a wrong password."""
    return bcrypt.hashpw(os.urandom(16).hex().encode(), bcrypt.gensalt(cost))


def _decoy_cost(users: Mapping[str, bytes]) -> int:
    """The bcrypt cost of the configured hashes (the most common one, the highest on a tie),
    so an unknown user takes as long to refuse as a wrong password for a real one."""
    costs = [int(m.group(1)) for m in map(_COST.match, users.values()) if m]
    costs = [c for c in costs if 4 <= c <= 31]  # what bcrypt accepts; others never match
    if not costs:
        return _DEFAULT_COST
    return max(set(costs), key=lambda c: (costs.count(c), c))


def _decoy_for(config: WebConfig) -> bytes:
    return _decoy_hash(_decoy_cost(config.users)) if config.users else b""


def _port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def cross_site(host: str | None, origin: str | None, fetch_site: str | None) -> bool:
    """Whether a browser sent this request from another site: ``Sec-Fetch-Site`` other than
    ``same-origin`` or ``none``, or an ``Origin`` whose host and port differ from ``Host``.
    Clients that are not browsers (curl, scripts) send neither header and pass."""
    if fetch_site is not None and fetch_site.strip().lower() not in ("same-origin", "none"):
        return True
    if origin is None:
        return False
    try:
        source = urllib.parse.urlsplit(origin.strip())
        target = urllib.parse.urlsplit("//" + (host or "").strip())
        source_port = source.port or _port(source.scheme)
        # A Host without a port means the default port of the scheme the browser used.
        target_port = target.port or _port(source.scheme)
    except ValueError:
        return True
    if source.scheme not in ("http", "https") or not source.hostname or not target.hostname:
        return True  # "Origin: null" (sandboxed frames, file: pages) included
    return (source.hostname, source_port) != (target.hostname, target_port)


class _TokenBucket:
    """``burst`` requests at once, refilled at one per ``interval`` seconds."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self.tokens = float(limit.burst)
        self.stamp = time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            now = time.monotonic()
            refill = (now - self.stamp) / self.limit.interval
            self.tokens = min(float(self.limit.burst), self.tokens + refill)
            self.stamp = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return True
            return False


def _signature(paths: tuple[str, ...]) -> tuple[tuple[str, int, int], ...]:
    out = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append((path, -1, -1))
        else:
            out.append((path, st.st_mtime_ns, st.st_size))
    return tuple(out)


class WebGuard:
    """The current web config of a running server. ``WebGuard(None)`` allows everything over
    plain HTTP; a path that does not load raises ConfigError at construction."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._config = load_web_config(path) if path else WebConfig()
        _decoy_for(self._config)  # made now, so no request pays for it
        self._signature = self._current_signature()
        self._refused: tuple[tuple[str, int, int], ...] | None = None
        self._bucket = _TokenBucket(self._config.rate_limit) if self._config.rate_limit else None
        self._cache: OrderedDict[bytes, bool] = OrderedDict()

    @property
    def tls(self) -> bool:
        """Whether the server speaks HTTPS; fixed at start, like the exporter-toolkit's."""
        return self._config.tls is not None if self.path else False

    def _current_signature(self) -> tuple[tuple[str, int, int], ...]:
        if not self.path:
            return ()
        return _signature(watched_files(self.path, self._config))

    def config(self) -> WebConfig:
        """The config in force, reloaded first if a watched file changed."""
        if not self.path:
            return self._config
        with self._lock:
            now = self._current_signature()
            if now != self._signature and now != self._refused:
                self._reload(now)
            return self._config

    def _reload(self, signature: tuple[tuple[str, int, int], ...]) -> None:
        assert self.path is not None
        try:
            config = load_web_config(self.path)
        except ConfigError as exc:
            self._refused = signature
            for problem in exc.problems:
                log.error("web config reload refused, the previous one stays in force",
                          extra={"problem": str(problem)})
            return
        if (config.tls is None) != (self._config.tls is None):
            self._refused = signature
            log.error("web config reload refused, the previous one stays in force",
                      extra={"problem": f"{self.path}: switching between HTTP and HTTPS needs "
                                        "a restart"})
            return
        _decoy_for(config)
        self._config = config
        self._signature = self._current_signature()
        self._refused = None
        self._cache.clear()
        self._bucket = _TokenBucket(config.rate_limit) if config.rate_limit else None
        log.info("web config reloaded", extra={"file": self.path})

    # -- connections -------------------------------------------------------------------------

    def wrap(self, sock: socket.socket) -> ssl.SSLSocket | None:
        """The TLS side of an accepted socket after a handshake and the SAN check; None when
        the client failed either (the socket is then closed)."""
        tls = self.config().tls
        if tls is None:
            raise RuntimeError("wrap() on a plain-HTTP server")
        sock.settimeout(10.0)
        try:
            wrapped = tls.context.wrap_socket(sock, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            log.debug("TLS handshake with a client failed", extra={"error": str(exc)})
            sock.close()
            return None
        if tls.client_allowed_sans and not _san_allowed(wrapped, tls.client_allowed_sans):
            log.info("client certificate has no allowed SAN",
                     extra={"client": str(wrapped.getpeername()[0])})
            wrapped.close()
            return None
        return wrapped

    # -- requests ----------------------------------------------------------------------------

    def admit(self, authorization: str | None) -> int:
        """200 to serve the request, 429 over the rate limit, 401 without valid credentials."""
        config = self.config()
        bucket = self._bucket
        if bucket is not None and not bucket.take():
            return 429
        if not config.users:
            return 200
        return 200 if self._authorized(config, authorization) else 401

    def headers(self) -> tuple[tuple[str, str], ...]:
        return self.config().headers

    def _authorized(self, config: WebConfig, authorization: str | None) -> bool:
        if not authorization:
            return False
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        if not sep:
            return False
        hashed = config.users.get(user)
        key = hashlib.sha256(
            b"\0".join((user.encode(), hashed or b"", password.encode()))
        ).digest()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached and hashed is not None
        try:
            ok = bcrypt.checkpw(password.encode(), hashed or _decoy_for(config))
        except ValueError:
            ok = False
        ok = ok and hashed is not None
        with self._lock:
            self._cache[key] = ok
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return ok


def _san_allowed(sock: ssl.SSLSocket, allowed: frozenset[str]) -> bool:
    der = sock.getpeercert(binary_form=True)
    if not der:
        return False
    try:
        ext = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
    except (ValueError, x509.ExtensionNotFound):
        return False
    names: list[str] = []
    names += ext.value.get_values_for_type(x509.DNSName)
    names += ext.value.get_values_for_type(x509.RFC822Name)
    names += [str(ip) for ip in ext.value.get_values_for_type(x509.IPAddress)]
    names += ext.value.get_values_for_type(x509.UniformResourceIdentifier)
    return any(hmac.compare_digest(n.encode(), a.encode()) for n in names for a in allowed)
