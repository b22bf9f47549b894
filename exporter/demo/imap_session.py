"""One demo IMAP connection: reads commands, answers them, keeps the client's view of its folder."""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
import ssl
from contextlib import suppress
from dataclasses import replace
from typing import TYPE_CHECKING

from exporter.demo import imap_parse as parse
from exporter.demo.imap_messages import (
    Candidate,
    FetchItem,
    fetch_response,
    parse_fetch_items,
    parse_search,
)
from exporter.demo.mailstore import FOLDERS, MailStore

if TYPE_CHECKING:
    from exporter.demo.imap import DemoIMAPServer

__all__ = ["Session"]

MAX_LITERAL = 10 * 1024 * 1024
_LITERAL = re.compile(rb"\{(\d+)(\+?)\}\r?\n\Z")
_STATES = {  # command -> the states it is allowed in
    **dict.fromkeys(("CAPABILITY", "NOOP", "LOGOUT"), ("NONAUTH", "AUTH", "SELECTED")),
    **dict.fromkeys(("STARTTLS", "LOGIN", "AUTHENTICATE"), ("NONAUTH",)),
    **dict.fromkeys(("SELECT", "EXAMINE", "LIST", "IDLE"), ("AUTH", "SELECTED")),
    **dict.fromkeys(("CLOSE", "EXPUNGE", "SEARCH", "FETCH", "STORE", "COPY", "MOVE"),
                    ("SELECTED",)),
}
_UID_COMMANDS = {"EXPUNGE", "SEARCH", "FETCH", "STORE", "COPY", "MOVE"}


class _Refusal(Exception):
    """Ends a command with a tagged NO and this text."""


class Session:
    """One connection: reads commands, answers them, keeps the client's view of its folder."""

    def __init__(self, server: DemoIMAPServer, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, *, tls: bool) -> None:
        self.server, self.store, self.reader, self.writer = server, server.store, reader, writer
        self.tls, self.state, self.user, self.readonly = tls, "NONAUTH", "", False
        self.folder: str | None = None
        self.uids: list[int] = []  # UID of each message sequence number - 1, as the client knows
        self.recent: set[int] = set()  # the messages this session reports as \Recent
        self.changed = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._out: list[bytes] = []

    def reply(self, line: str | bytes) -> None:
        self._out.append((line.encode() if isinstance(line, str) else line) + b"\r\n")

    async def flush(self) -> None:
        data, self._out = b"".join(self._out), []
        self.writer.write(data)
        await self.writer.drain()

    async def readline(self) -> bytes:
        async with asyncio.timeout(self.server.idle_timeout):
            return await self.reader.readuntil(b"\n")

    async def read_command(self) -> list[tuple[bytes, bytes | None]]:
        """A command's lines (without CRLF and ``{n}``), each with the literal after it."""
        chunks: list[tuple[bytes, bytes | None]] = []
        total = 0
        while (match := _LITERAL.search(line := await self.readline())) is not None:
            total += int(match[1])
            if total > MAX_LITERAL:  # a LITERAL+ may be on its way already: hang up
                self.reply("* BYE [TOOBIG] Literals are limited to 10 MB")
                raise ConnectionAbortedError("literal too big")
            if not match[2]:
                self.reply("+ Ready for literal data")
                await self.flush()
            async with asyncio.timeout(self.server.idle_timeout):
                chunks.append((line[: match.start()], await self.reader.readexactly(int(match[1]))))
        return [*chunks, (line.rstrip(b"\r\n"), None)]

    async def run(self) -> None:
        self.store.watch(self._on_change)
        try:
            self.reply(f"* OK [CAPABILITY {self.capabilities()}] {self.server.hostname} "
                       "IMAP4rev1 demo mailbox ready")
            await self.flush()
            while self.state != "LOGOUT":
                await self.execute(await self.read_command())
                await self.flush()
        except TimeoutError:
            self.reply("* BYE Autologout; idle for too long")
        except asyncio.LimitOverrunError:
            self.reply("* BYE [TOOBIG] Command lines are limited to 64 kB")
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            self.store.unwatch(self._on_change)
            if self._out and not self.writer.is_closing():
                self.writer.write(b"".join(self._out))
            self.writer.close()

    def _on_change(self, user: str, folder: str) -> None:
        if user == self.user and folder == self.folder:
            with suppress(RuntimeError):  # the loop is closed, and this session with it
                self._loop.call_soon_threadsafe(self.changed.set)

    async def execute(self, chunks: list[tuple[bytes, bytes | None]]) -> None:
        try:
            cmd = parse.parse_command(chunks)
            if cmd.name not in _STATES or (cmd.uid and cmd.name not in _UID_COMMANDS):
                raise parse.ParseError(f"unknown command {'UID ' * cmd.uid}{cmd.name}")
            if self.state not in _STATES[cmd.name]:
                raise parse.ParseError(f"{cmd.name} is not allowed in the {self.state} state")
            text: str | None = await getattr(self, f"cmd_{cmd.name.lower()}")(cmd)
            if text is not None:  # RFC 3501 7.4.1: no EXPUNGE during FETCH, STORE, SEARCH
                self.sync(expunge=cmd.uid or cmd.name not in ("FETCH", "STORE", "SEARCH"))
                self.reply(f"{cmd.tag} OK {text}")
        except parse.ParseError as exc:
            self.reply(f"{parse.command_tag(chunks)} BAD {exc}")
        except _Refusal as exc:
            self.reply(f"{parse.command_tag(chunks)} NO {exc}")

    def sync(self, *, expunge: bool) -> None:
        """Tell the client of messages that arrived and (if allowed now) of those gone."""
        if self.folder is None:
            return
        view = self.store.view(self.user, self.folder, claim_recent=not self.readonly)
        if not self.readonly:
            self.recent |= view.recent
        current = [m.uid for m in view.messages]
        if expunge:
            live = set(current)
            for uid in [u for u in self.uids if u not in live]:
                self.reply(f"* {self.uids.index(uid) + 1} EXPUNGE")
                self.uids.remove(uid)
        known = set(self.uids)
        if new := [u for u in current if u not in known]:
            self.uids += new
            self.reply(f"* {len(self.uids)} EXISTS")
            self.reply(f"* {len(self.recent.intersection(self.uids))} RECENT")

    # -- any state and not authenticated -------------------------------------------------------

    def _needs_tls(self) -> bool:
        return self.server.ssl_context is not None and not self.tls

    def capabilities(self) -> str:
        caps = "IMAP4rev1 LITERAL+ IDLE UIDPLUS MOVE SPECIAL-USE"
        if self._needs_tls():
            return f"{caps} STARTTLS LOGINDISABLED"
        return f"{caps} AUTH=PLAIN" + (" AUTH=XOAUTH2" if self.server.bearer_tokens else "")

    async def cmd_capability(self, cmd: parse.Command) -> str:
        self.reply(f"* CAPABILITY {self.capabilities()}")
        return "CAPABILITY completed"

    async def cmd_noop(self, cmd: parse.Command) -> str:
        return "NOOP completed"

    async def cmd_logout(self, cmd: parse.Command) -> str:
        self.reply("* BYE Logging out")
        self.state = "LOGOUT"
        return "LOGOUT completed"

    async def cmd_starttls(self, cmd: parse.Command) -> None:
        context = self.server.ssl_context
        if context is None or self.tls:
            raise parse.ParseError("STARTTLS is not available on this connection")
        if getattr(self.reader, "_buffer", b""):  # plaintext pipelined after STARTTLS
            raise ConnectionAbortedError("data after STARTTLS")
        self.reply(f"{cmd.tag} OK Begin TLS negotiation now")
        await self.flush()
        await self.writer.start_tls(context)
        self.tls = True

    def _login(self, user: str, password: str) -> str:
        if self._needs_tls():
            raise _Refusal("[PRIVACYREQUIRED] no login before STARTTLS")
        known = self.server.users.get(user)
        if known is None or not secrets.compare_digest(known.encode(), password.encode()):
            raise _Refusal("[AUTHENTICATIONFAILED] Authentication failed")
        self.state, self.user = "AUTH", user
        return f"[CAPABILITY {self.capabilities()}] Logged in"

    async def cmd_login(self, cmd: parse.Command) -> str:
        user, password = parse.strings(cmd.args, 2, "LOGIN needs a user name and a password")
        return self._login(user, password)

    async def cmd_authenticate(self, cmd: parse.Command) -> str:
        (mechanism,) = parse.strings(cmd.args, 1, "AUTHENTICATE needs a mechanism")
        mechanism = mechanism.upper()
        if mechanism not in ("PLAIN", "XOAUTH2") or (
            mechanism == "XOAUTH2" and not self.server.bearer_tokens
        ):
            raise _Refusal(f"unsupported mechanism {mechanism}")
        if self._needs_tls():
            raise _Refusal("[PRIVACYREQUIRED] no login before STARTTLS")
        self.reply("+ ")
        await self.flush()
        answer = (await self.readline()).strip()
        if answer == b"*":
            raise parse.ParseError("AUTHENTICATE cancelled")
        if mechanism == "XOAUTH2":
            return await self._xoauth2(answer)
        authz, user, password = parse.parse_plain(answer)
        if authz not in ("", user):
            raise _Refusal("[AUTHORIZATIONFAILED] no logins as another user in the demo")
        return self._login(user, password)

    async def _xoauth2(self, answer: bytes) -> str:
        """``user=U^Aauth=Bearer T^A^A``; a bad token gets the JSON challenge, then NO."""
        try:
            fields = dict(
                part.split("=", 1)
                for part in base64.b64decode(answer, validate=True).decode().split("\x01")
                if "=" in part
            )
        except (ValueError, UnicodeDecodeError):
            raise _Refusal("[AUTHENTICATIONFAILED] bad XOAUTH2 response") from None
        user = fields.get("user", "")
        scheme, _, token = fields.get("auth", "").partition(" ")
        if scheme == "Bearer" and self.server.bearer_tokens.get(token) == user:
            self.state, self.user = "AUTH", user
            return f"[CAPABILITY {self.capabilities()}] Logged in"
        error = base64.b64encode(b'{"status":"401","schemes":"bearer"}').decode()
        self.reply(f"+ {error}")
        await self.flush()
        await self.readline()
        raise _Refusal("[AUTHENTICATIONFAILED] invalid bearer token")

    # -- authenticated -------------------------------------------------------------------------

    async def cmd_list(self, cmd: parse.Command) -> str:
        reference, pattern = parse.strings(cmd.args, 2, "LIST needs a reference and a pattern")
        if not pattern:
            self.reply('* LIST (\\Noselect) "/" ""')
        for name, special in FOLDERS.items():
            if pattern and parse.mailbox_matches(reference, pattern, name):
                attributes = " ".join(filter(None, ("\\HasNoChildren", special)))
                self.reply(f'* LIST ({attributes}) "/" {parse.quote(name)}')
        return "LIST completed"

    async def cmd_select(self, cmd: parse.Command) -> str:
        """SELECT, or EXAMINE for read-only access; a failed SELECT leaves none selected."""
        self.folder, self.uids, self.recent, self.state = None, [], set(), "AUTH"
        (wanted,) = parse.strings(cmd.args, 1, f"{cmd.name} needs a mailbox name")
        name, readonly = MailStore.folder_name(wanted), cmd.name == "EXAMINE"
        if name is None:
            raise _Refusal(f"[NONEXISTENT] no folder {parse.quote(wanted)}")
        view = self.store.view(self.user, name, claim_recent=not readonly)
        self.folder, self.readonly, self.state = name, readonly, "SELECTED"
        self.uids, self.recent = [m.uid for m in view.messages], set() if readonly else view.recent
        self.reply(f"* FLAGS ({' '.join(parse.SYSTEM_FLAGS)})")
        self.reply(f"* {len(self.uids)} EXISTS")
        self.reply(f"* {len(view.recent)} RECENT")
        if unseen := [i for i, m in enumerate(view.messages, 1) if "\\Seen" not in m.flags]:
            self.reply(f"* OK [UNSEEN {unseen[0]}] First unseen message")
        permanent = "" if readonly else " ".join((*parse.SYSTEM_FLAGS, "\\*"))
        self.reply(f"* OK [PERMANENTFLAGS ({permanent})] Flags that can be changed")
        self.reply(f"* OK [UIDVALIDITY {view.uidvalidity}] UIDs valid")
        self.reply(f"* OK [UIDNEXT {view.uidnext}] Predicted next UID")
        return f"[READ-ONLY] {cmd.name} completed" if readonly else "[READ-WRITE] SELECT completed"

    cmd_examine = cmd_select

    async def cmd_idle(self, cmd: parse.Command) -> str:
        """RFC 2177: report changes of the selected folder as they happen, until DONE."""
        if cmd.args:
            raise parse.ParseError("IDLE takes no arguments")
        self.reply("+ idling")
        line = asyncio.ensure_future(self.readline())
        changed: asyncio.Task[bool] | None = None
        try:
            while not line.done():
                self.changed.clear()
                self.sync(expunge=True)
                await self.flush()
                changed = asyncio.ensure_future(self.changed.wait())
                await asyncio.wait({line, changed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (line, changed):
                if task is not None:
                    task.cancel()
        if line.result().strip().upper() != b"DONE":
            raise parse.ParseError("expected DONE to end IDLE")
        return "IDLE terminated"

    # -- selected ------------------------------------------------------------------------------

    def _messages(self, token: parse.Token, uid: bool) -> list[Candidate]:
        """The messages of a sequence set as the client numbers them, skipping those gone."""
        if not isinstance(token, str) or self.folder is None:
            raise parse.ParseError("expected a sequence set")
        current = {m.uid: m for m in self.store.view(self.user, self.folder).messages}
        last = max(self.uids, default=0) if uid else len(self.uids)
        wanted = parse.parse_sequence_set(token, last)
        return [Candidate(seq, u, frozenset(current[u].flags | self._recent(u)),
                          current[u].internaldate, current[u].raw)
                for seq, u in enumerate(self.uids, 1) if (u if uid else seq) in wanted
                and u in current]

    def _recent(self, uid: int) -> set[str]:
        return {"\\Recent"} if uid in self.recent else set()

    def _selected(self, *, write: bool) -> str:
        if self.folder is None:
            raise parse.ParseError("no folder is selected")
        if write and self.readonly:
            raise _Refusal("[READ-ONLY] the folder was opened with EXAMINE")
        return self.folder

    async def cmd_search(self, cmd: parse.Command) -> str:
        args = cmd.args
        if len(args) >= 2 and str(args[0]).upper() == "CHARSET":
            if str(args[1]).upper() not in ("US-ASCII", "UTF-8"):
                raise _Refusal("[BADCHARSET (US-ASCII UTF-8)] unsupported charset")
            args = args[2:]
        match = parse_search(args, last_seq=len(self.uids),
                                   last_uid=max(self.uids, default=0))
        found = [c.uid if cmd.uid else c.seq for c in self._messages("1:*", False) if match(c)]
        self.reply(" ".join(["* SEARCH", *map(str, found)]))
        return "SEARCH completed"

    async def cmd_fetch(self, cmd: parse.Command) -> str:
        if len(cmd.args) != 2:
            raise parse.ParseError("FETCH needs a sequence set and data items")
        items = parse_fetch_items(cmd.args[1])
        if cmd.uid and all(i.name != "UID" for i in items):
            items.insert(0, FetchItem("UID"))
        found = self._messages(cmd.args[0], cmd.uid)
        if not self.readonly and self.folder and any(i.sets_seen for i in items):
            unseen = {c.uid for c in found if "\\Seen" not in c.flags}
            self.store.store_flags(self.user, self.folder, unseen, {"\\Seen"}, mode="+")
            found = [replace(c, flags=c.flags | {"\\Seen"}) for c in found]
            if unseen and all(i.name != "FLAGS" for i in items):
                items.append(FetchItem("FLAGS"))  # RFC 3501 6.4.5: say \Seen was set
        for message in found:
            self.reply(fetch_response(message, items))
        return "FETCH completed"

    async def cmd_store(self, cmd: parse.Command) -> str:
        mode, silent, flags = parse.parse_store(cmd.args[1:])
        folder, found = self._selected(write=True), self._messages(cmd.args[0], cmd.uid)
        new = self.store.store_flags(self.user, folder, {c.uid for c in found}, flags, mode=mode)
        items = [FetchItem("UID")] * cmd.uid + [FetchItem("FLAGS")]
        for c in [] if silent else found:
            flags_now = frozenset(new.get(c.uid, set()) | self._recent(c.uid))
            self.reply(fetch_response(replace(c, flags=flags_now), items))
        return "STORE completed"

    async def cmd_expunge(self, cmd: parse.Command) -> str:
        """EXPUNGE, or UID EXPUNGE (RFC 4315) of only the given UIDs; sync() reports them."""
        folder, only = self._selected(write=True), None
        if cmd.uid:
            (uids,) = parse.strings(cmd.args, 1, "UID EXPUNGE needs a UID set")
            only = {c.uid for c in self._messages(uids, True)}
        self.store.expunge(self.user, folder, only)
        return "EXPUNGE completed"

    async def cmd_close(self, cmd: parse.Command) -> str:
        if not self.readonly and self.folder is not None:
            self.store.expunge(self.user, self.folder)  # silently, as RFC 3501 6.4.2 says
        self.folder, self.uids, self.recent, self.state = None, [], set(), "AUTH"
        return "CLOSE completed"

    async def cmd_copy(self, cmd: parse.Command) -> str:
        """COPY, or MOVE (RFC 6851) which reports COPYUID first and then the EXPUNGEs."""
        usage = f"{cmd.name} needs a sequence set and a mailbox"
        messages, dest = parse.strings(cmd.args, 2, usage)
        target, move = MailStore.folder_name(dest), cmd.name == "MOVE"
        if target is None:
            raise _Refusal(f"[TRYCREATE] no folder {parse.quote(dest)}")
        folder = self._selected(write=move)
        uids = [c.uid for c in self._messages(messages, cmd.uid)]
        if not uids:
            return f"{cmd.name} completed, no messages matched"
        validity, pairs = self.store.copy(self.user, folder, uids, target, move=move)
        code = (f"[COPYUID {validity} {parse.format_uid_set([a for a, _ in pairs])} "
                f"{parse.format_uid_set([b for _, b in pairs])}]")
        if move:
            self.reply(f"* OK {code} Moved")
            return "MOVE completed"
        return f"{code} COPY completed"

    cmd_move = cmd_copy
