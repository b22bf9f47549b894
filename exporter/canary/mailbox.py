"""The mailbox watcher: imapclient in a thread of its own, IDLE where offered, polling otherwise,
finding this instance's canaries by a server-side search and touching nothing else.

What the server may make it hold is limited (see imapcap); every text from the server is made
safe by peertext.clean, with the mailbox's password or token redacted, before it is kept,
logged or shown. Reconnects back off, and the backoff starts over only after the mailbox
stayed up for ``healthy_after`` seconds: a server that fails right after each login is not
retried every second."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any

from imapclient.exceptions import IMAPClientAbortError, IMAPClientError

from exporter.canary.imapcap import (
    CappedIMAPClient,
    LimitExceeded,
    Limits,
    exception_text,
    login_secrets,
    xoauth2_secrets,
)
from exporter.canary.message import CANARY_HEADER, search_prefix, token_from_header
from exporter.canary.result import Arrival
from exporter.config import AuthMechanism, MailboxConfig, TLSMode
from exporter.peertext import Redactor, clean
from exporter.smtp import TokenError, TokenSource, client_context

__all__ = ["SPAM_NAMES", "MailboxStatus", "MailboxWatcher"]

log = logging.getLogger(__name__)

# Folder names that hold spam at the common providers, when SPECIAL-USE does not say.
SPAM_NAMES = ("spam", "junk", "junk e-mail", "junk email", "[gmail]/spam", "bulk mail",
              "inbox.spam", "inbox.junk")
MIN_BACKOFF = 1.0
MAX_BACKOFF = 60.0
# The reconnect backoff starts over only after the mailbox stayed up this long.
HEALTHY_AFTER = 300.0
# Canaries fetched per FETCH command: what one response may hold stays small.
FETCH_BATCH = 50
# The longest server text kept in an error.
MAX_ERROR = 300
# An IDLE is renewed this often even when nothing happens (servers end it after 30 minutes).
IDLE_RENEW = 600.0


class MailboxError(Exception):
    """The mailbox could not be used; one line, no secrets."""


@dataclass(frozen=True, slots=True)
class MailboxStatus:
    """What the watcher knows of its mailbox, reported after each change."""

    mailbox: str
    up: bool
    idle_supported: bool | None
    error: str | None
    folders: tuple[tuple[str, str], ...]
    checked_at: float
    token_expiry: float | None = None


def _headers(raw: bytes) -> tuple[tuple[str, str], ...]:
    msg = BytesHeaderParser(policy=compat32).parsebytes(raw)
    out: list[tuple[str, str]] = []
    for name, value in msg.items():
        text = str(value)
        out.append((name, " ".join(text.split())))
    return tuple(out)


class MailboxWatcher:
    """Watches one mailbox for this instance's canaries and reports each arrival once."""

    def __init__(
        self,
        config: MailboxConfig,
        *,
        instance: str,
        loop: asyncio.AbstractEventLoop,
        on_arrival: Callable[[Arrival], None],
        on_status: Callable[[MailboxStatus], None],
        token_source: TokenSource | None = None,
        limits: Limits = Limits(),  # noqa: B008 - frozen
        backoff: tuple[float, float] = (MIN_BACKOFF, MAX_BACKOFF),
        healthy_after: float = HEALTHY_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.limits = limits
        self.backoff = backoff
        self.healthy_after = healthy_after
        self._clock = clock
        self._secrets = Redactor(login_secrets(config.auth))
        self._redactor = self._secrets
        self.prefix = search_prefix(instance)
        self._loop = loop
        self._on_arrival = on_arrival
        self._on_status = on_status
        self._tokens = token_source
        self._stop = threading.Event()
        self._sweep_now = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"imap:{config.name}",
                                        daemon=True)
        self._client: CappedIMAPClient | None = None
        self.idle_supported: bool | None = None
        self._inbox_exists: int | None = None
        self.folders: tuple[tuple[str, str], ...] = ()

    # -- control (any thread) ------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Look now: used right after a canary was sent, so polling catches it sooner."""
        self._sweep_now.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._sweep_now.set()
        self._thread.join(timeout)

    # -- the thread ----------------------------------------------------------------------------

    def _report(self, *, up: bool, error: str | None = None) -> None:
        expiry = getattr(self._tokens, "expires_at", None)
        folders = tuple((label, self._clean(name, 200)) for label, name in self.folders)
        status = MailboxStatus(self.config.name, up, self.idle_supported, error, folders,
                               time.time(), expiry if isinstance(expiry, float) else None)
        self._loop.call_soon_threadsafe(self._on_status, status)

    def _run(self) -> None:
        first, most = self.backoff
        backoff = first
        while not self._stop.is_set():
            up_since: float | None = None
            try:
                client = self._connect()
                self._discover(client)
                up_since = self._clock()
                self._report(up=True)
                self._watch(client)
            except (IMAPClientError, OSError, ssl.SSLError, MailboxError, TokenError) as exc:
                if self._stop.is_set():
                    break
                text = self._error_text(exc)
                self._close()  # now, not after the wait: a dropped connection is closed
                backoff = self._next_wait(backoff, up_since)
                log.warning("mailbox unavailable",
                            extra={"mailbox": self.config.name, "error": text,
                                   "retry_in": backoff})
                self._report(up=False, error=text)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, most)
            except Exception as exc:  # a bug: keep watching, but say so
                text = self._error_text(exc)
                self._close()
                backoff = self._next_wait(backoff, up_since)
                log.error("mailbox watcher error", extra={
                    "mailbox": self.config.name, "error": text, "where": _where(exc),
                    "retry_in": backoff})
                self._report(up=False, error="exporter error, see the log")
                self._stop.wait(backoff)
                backoff = min(backoff * 2, most)
            finally:
                self._close()

    def _next_wait(self, backoff: float, up_since: float | None) -> float:
        """The wait before the next attempt: the backoff so far, or the first wait again if
        the mailbox had been up for ``healthy_after`` seconds (a login alone is not health)."""
        if up_since is not None and self._clock() - up_since >= self.healthy_after:
            return self.backoff[0]
        return backoff

    def _clean(self, text: str | bytes, limit: int = MAX_ERROR) -> str:
        """Server text made safe: visible controls, the password and token redacted, capped."""
        return clean(text, redactor=self._redactor, limit=limit)

    def _error_text(self, exc: BaseException) -> str:
        """One line for an error: the limit passed, if one was, else the exception's text
        (server text cleaned)."""
        client = self._client
        reason = client.limit_passed if client is not None else None
        if reason is None and isinstance(exc, LimitExceeded):
            reason = str(exc)
        if reason is not None:
            return f"{LimitExceeded.__name__}: {reason}"
        return f"{type(exc).__name__}: {self._server_text(exc) or type(exc).__name__}"

    def _close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        if client.limit_passed is not None:  # the socket is shut already: nothing to say
            with contextlib.suppress(Exception):
                client.shutdown()
            return
        try:
            client.logout()
        except Exception:  # the connection may be gone already
            with contextlib.suppress(Exception):
                client.shutdown()

    def _connect(self) -> CappedIMAPClient:
        c = self.config
        ctx = client_context(verify=c.tls_verify, ca_file=c.ca_file,
                             min_version=c.tls_min_version)
        implicit = c.tls is TLSMode.IMPLICIT
        self._redactor = self._secrets
        client = CappedIMAPClient(c.host, port=c.port, ssl=implicit,
                                  ssl_context=ctx if implicit else None, timeout=c.timeout,
                                  limits=self.limits)
        self._client = client  # closed by _run whatever happens next
        client.normalise_times = False
        if c.tls is TLSMode.STARTTLS:
            if b"STARTTLS" not in client.capabilities():
                client.shutdown()
                raise MailboxError(f"{c.host}:{c.port} does not offer STARTTLS")
            client.starttls(ctx)
        elif c.tls is TLSMode.NONE and not c.allow_plaintext_auth:
            client.shutdown()
            raise MailboxError("refusing to log in without TLS; set tls or allow_plaintext_auth")
        self._login(client)
        self.idle_supported = client.has_capability("IDLE")
        return client

    def _login(self, client: CappedIMAPClient) -> None:
        auth = self.config.auth
        user = auth.username or ""
        if auth.mechanism is AuthMechanism.XOAUTH2:
            if self._tokens is None:
                raise MailboxError("xoauth2 without a token source")
            future = asyncio.run_coroutine_threadsafe(self._tokens.token(), self._loop)
            token = future.result(timeout=self.config.timeout + 15).value.reveal()
            self._redactor = self._secrets.with_secrets(xoauth2_secrets(user, token))
            client.oauth2_login(user, token)
            return
        password = auth.password.reveal() if auth.password else ""
        try:
            if auth.mechanism is AuthMechanism.PLAIN:
                client.plain_login(user, password)
            else:
                client.login(user, password)
        except IMAPClientAbortError:
            raise  # the connection broke (or a limit was passed): not a refusal
        except IMAPClientError as exc:
            raise MailboxError(f"login refused: {self._server_text(exc)}") from None

    def _discover(self, client: CappedIMAPClient) -> None:
        """Configured folders, plus the spam folder from SPECIAL-USE or its usual names."""
        configured = list(self.config.folders)
        names = {name for _, name in configured}
        labels = {label for label, _ in configured}
        listed = client.list_folders()
        junk: str | None = None
        for flags, _, name in listed:
            if b"\\Junk" in flags:
                junk = name
                break
        if junk is None:
            for _, _, name in listed:
                if name.lower() in SPAM_NAMES:
                    junk = name
                    break
        if junk is not None and junk not in names:
            # a metric label: the server's folder name made safe first
            label = "spam" if "spam" not in labels else f"spam-{self._clean(junk.lower(), 64)}"
            configured.append((label, junk))
        if "inbox" not in labels and "INBOX" not in names:
            configured.insert(0, ("inbox", "INBOX"))
        # The inbox first, whatever order the config lists folders in: IDLE watches it, and
        # a folder listed before it (archive: Archive) must not take its place.
        configured.sort(key=lambda f: 0 if f[0] == "inbox" else 1 if f[1].upper() == "INBOX"
                        else 2)
        self.folders = tuple(configured)

    def _watch(self, client: CappedIMAPClient) -> None:
        while not self._stop.is_set():
            self._sweep_now.clear()
            self._sweep(client)
            self._report(up=True)
            if self.config.idle and self.idle_supported:
                self._idle(client)
            else:
                self._sweep_now.wait(self.config.poll_interval)

    def _idle(self, client: CappedIMAPClient) -> None:
        """IDLE on the inbox until something arrives, a sweep is due, or we are stopped."""
        inbox = self.folders[0][1]
        info = client.select_folder(inbox)
        if info.get(b"EXISTS") != self._inbox_exists:
            return  # something arrived between the sweep and now: sweep again first
        client.idle()
        deadline = time.monotonic() + min(self.config.poll_interval, IDLE_RENEW)
        try:
            while not self._stop.is_set() and not self._sweep_now.is_set():
                left = deadline - time.monotonic()
                if left <= 0 or client.buffered():
                    break
                responses = client.idle_check(timeout=min(0.25, left))
                if any(len(r) > 1 and r[1] in (b"EXISTS", b"RECENT") for r in responses):
                    break
        finally:
            client.idle_done()

    def _sweep(self, client: CappedIMAPClient) -> None:
        for label, name in self.folders:
            if self._stop.is_set():
                return
            try:
                info = client.select_folder(name)
            except IMAPClientAbortError:
                raise  # the connection is gone (or a limit was passed): reconnect
            except IMAPClientError as exc:
                log.info("folder not selectable", extra={"mailbox": self.config.name,
                                                         "folder": self._clean(name, 200),
                                                         "error": self._server_text(exc)})
                continue
            uids = client.search(["HEADER", CANARY_HEADER, self.prefix])
            if name == self.folders[0][1]:
                self._inbox_exists = int(info.get(b"EXISTS", 0)) - len(uids)
            if not uids:
                continue
            seen_at = time.time()
            for at in range(0, len(uids), FETCH_BATCH):
                batch = uids[at:at + FETCH_BATCH]
                fetched = client.fetch(batch, ["INTERNALDATE", "BODY.PEEK[HEADER]"])
                for uid in batch:
                    item = fetched.get(uid)
                    if item is None:
                        continue
                    self._arrived(label, name, item, seen_at)
            self._clean_up(client, uids)

    def _arrived(self, label: str, name: str, item: dict[bytes, Any], seen_at: float) -> None:
        headers = _headers(item.get(b"BODY[HEADER]", b""))
        token = None
        for key, value in headers:
            if key.lower() == CANARY_HEADER.lower():
                token = token_from_header(value)
        if token is None or not token.startswith(self.prefix):
            return
        internal = item.get(b"INTERNALDATE")
        arrival = Arrival(
            token=token,
            mailbox=self.config.name,
            folder=label,
            folder_name=name,
            seen_at=seen_at,
            internal_date=internal.timestamp() if internal is not None else None,
            headers=headers,
        )
        self._loop.call_soon_threadsafe(self._on_arrival, arrival)

    def _clean_up(self, client: CappedIMAPClient, uids: list[int]) -> None:
        """Delete (or move) exactly the canaries found, nothing else."""
        move_to = self.config.move_to
        if move_to:
            client.move(uids, move_to)
            return
        client.delete_messages(uids)
        if client.has_capability("UIDPLUS"):
            client.uid_expunge(uids)
        else:
            client.expunge()


    def _server_text(self, exc: BaseException) -> str:
        return self._clean(exception_text(exc))


def _where(exc: BaseException) -> str:
    """Where an unexpected error was raised: file and line, no message."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return "?"
    return f"{tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}"
