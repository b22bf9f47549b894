"""The mailbox watcher: imapclient in a thread of its own, IDLE where offered, polling otherwise,
finding this instance's canaries by a server-side search and touching nothing else."""

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

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from exporter.canary.message import CANARY_HEADER, search_prefix, token_from_header
from exporter.canary.result import Arrival
from exporter.config import AuthMechanism, MailboxConfig, TLSMode
from exporter.smtp import TokenError, TokenSource, client_context

__all__ = ["SPAM_NAMES", "MailboxStatus", "MailboxWatcher"]

log = logging.getLogger(__name__)

# Folder names that hold spam at the common providers, when SPECIAL-USE does not say.
SPAM_NAMES = ("spam", "junk", "junk e-mail", "junk email", "[gmail]/spam", "bulk mail",
              "inbox.spam", "inbox.junk")
MAX_BACKOFF = 60.0
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
    ) -> None:
        self.config = config
        self.prefix = search_prefix(instance)
        self._loop = loop
        self._on_arrival = on_arrival
        self._on_status = on_status
        self._tokens = token_source
        self._stop = threading.Event()
        self._sweep_now = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"imap:{config.name}",
                                        daemon=True)
        self._client: IMAPClient | None = None
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
        status = MailboxStatus(self.config.name, up, self.idle_supported, error, self.folders,
                               time.time(), expiry if isinstance(expiry, float) else None)
        self._loop.call_soon_threadsafe(self._on_status, status)

    def _run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            try:
                self._client = self._connect()
                backoff = 1.0
                self._discover(self._client)
                self._report(up=True)
                self._watch(self._client)
            except (IMAPClientError, OSError, ssl.SSLError, MailboxError, TokenError) as exc:
                if self._stop.is_set():
                    break
                text = _one_line(exc)
                log.warning("mailbox unavailable",
                            extra={"mailbox": self.config.name, "error": text,
                                   "retry_in": backoff})
                self._report(up=False, error=text)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
            except Exception:  # a bug: keep watching, but say so
                log.exception("mailbox watcher error", extra={"mailbox": self.config.name})
                self._report(up=False, error="exporter error, see the log")
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
            finally:
                self._close()

    def _close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.logout()
        except Exception:  # the connection may be gone already
            with contextlib.suppress(Exception):
                client.shutdown()

    def _connect(self) -> IMAPClient:
        c = self.config
        ctx = client_context(verify=c.tls_verify, ca_file=c.ca_file,
                             min_version=c.tls_min_version)
        implicit = c.tls is TLSMode.IMPLICIT
        client = IMAPClient(c.host, port=c.port, ssl=implicit,
                            ssl_context=ctx if implicit else None, timeout=c.timeout)
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

    def _login(self, client: IMAPClient) -> None:
        auth = self.config.auth
        user = auth.username or ""
        if auth.mechanism is AuthMechanism.XOAUTH2:
            if self._tokens is None:
                raise MailboxError("xoauth2 without a token source")
            future = asyncio.run_coroutine_threadsafe(self._tokens.token(), self._loop)
            token = future.result(timeout=self.config.timeout + 15).value.reveal()
            client.oauth2_login(user, token)
            return
        password = auth.password.reveal() if auth.password else ""
        try:
            if auth.mechanism is AuthMechanism.PLAIN:
                client.plain_login(user, password)
            else:
                client.login(user, password)
        except IMAPClientError as exc:
            raise MailboxError(f"login refused: {_server_text(exc)}") from None

    def _discover(self, client: IMAPClient) -> None:
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
            label = "spam" if "spam" not in labels else f"spam-{junk.lower()}"
            configured.append((label, junk))
        if "inbox" not in labels and "INBOX" not in names:
            configured.insert(0, ("inbox", "INBOX"))
        # The inbox first, whatever order the config lists folders in: IDLE watches it, and
        # a folder listed before it (archive: Archive) must not take its place.
        configured.sort(key=lambda f: 0 if f[0] == "inbox" else 1 if f[1].upper() == "INBOX"
                        else 2)
        self.folders = tuple(configured)

    def _watch(self, client: IMAPClient) -> None:
        while not self._stop.is_set():
            self._sweep_now.clear()
            self._sweep(client)
            self._report(up=True)
            if self.config.idle and self.idle_supported:
                self._idle(client)
            else:
                self._sweep_now.wait(self.config.poll_interval)

    def _idle(self, client: IMAPClient) -> None:
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
                if left <= 0 or _buffered(client):
                    break
                responses = client.idle_check(timeout=min(0.25, left))
                if any(len(r) > 1 and r[1] in (b"EXISTS", b"RECENT") for r in responses):
                    break
        finally:
            client.idle_done()

    def _sweep(self, client: IMAPClient) -> None:
        for label, name in self.folders:
            if self._stop.is_set():
                return
            try:
                info = client.select_folder(name)
            except IMAPClientError as exc:
                log.info("folder not selectable", extra={"mailbox": self.config.name,
                                                         "folder": name,
                                                         "error": _server_text(exc)})
                continue
            uids = client.search(["HEADER", CANARY_HEADER, self.prefix])
            if name == self.folders[0][1]:
                self._inbox_exists = int(info.get(b"EXISTS", 0)) - len(uids)
            if not uids:
                continue
            seen_at = time.time()
            fetched = client.fetch(uids, ["INTERNALDATE", "BODY.PEEK[HEADER]"])
            for uid in uids:
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

    def _clean_up(self, client: IMAPClient, uids: list[int]) -> None:
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


def _buffered(client: IMAPClient) -> bool:
    """Whether a response already waits in the client's buffers, where idle_check's poll of
    the socket cannot see it (an EXISTS sent together with the "+ idling" continuation)."""
    sock = client.socket()
    pending = getattr(sock, "pending", None)
    if callable(pending) and pending() > 0:
        return True
    peek = getattr(getattr(client._imap, "file", None), "peek", None)
    if not callable(peek):
        return False
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        return bool(peek(1))
    except (OSError, ValueError):
        return False
    finally:
        sock.settimeout(timeout)


def _server_text(exc: BaseException) -> str:
    text = str(exc)
    if text.startswith("b'") or text.startswith('b"'):
        text = text[2:-1]
    return " ".join(text.split())[:300]


def _one_line(exc: BaseException) -> str:
    text = _server_text(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"
