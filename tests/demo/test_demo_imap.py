"""The demo mailbox: the product's IMAP client (imapclient) against DemoIMAPServer on loopback."""

from __future__ import annotations

import datetime as dt
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import imapclient
import pytest
import trustme
from hypothesis import given
from hypothesis import strategies as st
from imapclient.exceptions import LoginError
from imapclient.imapclient import JUNK, TRASH  # not re-exported by the package in 4.x

from exporter.demo.imap import DemoIMAPServer
from exporter.demo.imap_messages import parse_fetch_items, parse_search
from exporter.demo.imap_parse import ParseError, parse_command
from exporter.demo.mailstore import MailStore
from tests.servers.loop import ServerLoop

USER, PASSWORD = "canary@demo.test", "correct horse battery staple"
OTHER, OTHER_PASSWORD = "someone@demo.test", "another secret"


def message(subject: str, *, canary: str | None = None) -> bytes:
    """A small RFC 5322 message, optionally with a canary header."""
    lines = ["From: probe@relay.test", f"To: {USER}", f"Subject: {subject}",
             f"Message-ID: <{subject.replace(' ', '.')}@relay.test>"]
    if canary is not None:
        lines.append(f"X-Smtp-Canary: {canary}; relay=demo; sent=Mon, 1 Jan 2024 00:00:00 +0000")
    return ("\r\n".join(lines) + "\r\n\r\nHello from the canary.\r\n").encode()


@dataclass
class Mailbox:
    """A running server, its store, and a client context that trusts its certificate."""

    server: DemoIMAPServer
    store: MailStore
    client_ctx: ssl.SSLContext

    def connect(self, user: str = USER, password: str = PASSWORD) -> imapclient.IMAPClient:
        client = imapclient.IMAPClient("127.0.0.1", port=self.server.imaps_port, ssl=True,
                                       ssl_context=self.client_ctx, timeout=5)
        client.normalise_times = False
        client.login(user, password)
        return client

    def plain(self) -> imapclient.IMAPClient:
        return imapclient.IMAPClient("127.0.0.1", port=self.server.imap_port, ssl=False,
                                     timeout=5)


@pytest.fixture(scope="module")
def contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    return server_ctx, client_ctx


@pytest.fixture
def mailbox(server_loop: ServerLoop,
            contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> Iterator[Mailbox]:
    store = MailStore()
    server = DemoIMAPServer(store, users={USER: PASSWORD, OTHER: OTHER_PASSWORD},
                            ssl_context=contexts[0])
    server_loop.run(server.start())
    yield Mailbox(server, store, contexts[1])
    server_loop.run(server.stop())


class RawSession:
    """Bytes on the wire, for what imapclient hides: continuations, response order, BAD."""

    def __init__(self, mailbox: Mailbox) -> None:
        sock = socket.create_connection(("127.0.0.1", mailbox.server.imaps_port), timeout=5)
        self.sock = mailbox.client_ctx.wrap_socket(sock, server_hostname="127.0.0.1")
        self.file = self.sock.makefile("rb")
        self.greeting = self.file.readline()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def until(self, tag: bytes) -> list[bytes]:
        lines: list[bytes] = []
        while not lines or not lines[-1].startswith(tag + b" "):
            line = self.file.readline()
            assert line, f"connection closed after {lines!r}"
            lines.append(line.rstrip(b"\r\n"))
        return lines

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def test_login_over_implicit_tls(mailbox: Mailbox) -> None:
    """LOGIN over implicit TLS succeeds and the capabilities offer IDLE, MOVE and AUTH=PLAIN."""
    with mailbox.connect() as client:
        caps = client.capabilities()
        assert {b"IMAP4REV1", b"IDLE", b"UIDPLUS", b"MOVE", b"SPECIAL-USE", b"AUTH=PLAIN",
                b"LITERAL+"} <= set(caps)
        assert b"STARTTLS" not in caps
        assert b"LOGINDISABLED" not in caps


def test_login_after_starttls(mailbox: Mailbox) -> None:
    """The plain port offers STARTTLS and LOGINDISABLED; after STARTTLS, LOGIN works."""
    client = mailbox.plain()
    before = client.capabilities()
    assert b"STARTTLS" in before
    assert b"LOGINDISABLED" in before
    assert b"AUTH=PLAIN" not in before
    client.starttls(mailbox.client_ctx)
    after = client.capabilities()
    assert b"STARTTLS" not in after
    assert b"AUTH=PLAIN" in after
    assert client.login(USER, PASSWORD).endswith(b"Logged in")
    assert client.select_folder("INBOX")[b"EXISTS"] == 0
    client.logout()


def test_login_refused_before_starttls(mailbox: Mailbox) -> None:
    """LOGIN and AUTHENTICATE PLAIN on the plain port without STARTTLS get NO, not a session."""
    client = mailbox.plain()
    with pytest.raises(LoginError, match="PRIVACYREQUIRED"):
        client.login(USER, PASSWORD)
    with pytest.raises(LoginError, match="PRIVACYREQUIRED"):
        client.plain_login(USER, PASSWORD)
    client.logout()


def test_wrong_password_gets_no(mailbox: Mailbox) -> None:
    """A wrong password or an unknown user gets NO [AUTHENTICATIONFAILED] over LOGIN and PLAIN."""
    with pytest.raises(LoginError, match="AUTHENTICATIONFAILED"):
        mailbox.connect(password="not the password")
    with pytest.raises(LoginError, match="AUTHENTICATIONFAILED"):
        mailbox.connect(user="nobody@demo.test")
    client = imapclient.IMAPClient("127.0.0.1", port=mailbox.server.imaps_port,
                                   ssl_context=mailbox.client_ctx, timeout=5)
    with pytest.raises(LoginError, match="AUTHENTICATIONFAILED"):
        client.plain_login(USER, "not the password")
    assert client.plain_login(USER, PASSWORD).endswith(b"Logged in")
    client.logout()


def test_login_accepts_literals(mailbox: Mailbox) -> None:
    """LOGIN takes a synchronizing literal (after "+") and a LITERAL+ one in the same command."""
    raw = RawSession(mailbox)
    assert raw.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 ")
    raw.send(b"a1 LOGIN {%d}\r\n" % len(USER))
    assert raw.file.readline().startswith(b"+ ")
    raw.send(USER.encode() + b" {%d+}\r\n%s\r\n" % (len(PASSWORD), PASSWORD.encode()))
    assert raw.until(b"a1")[-1].startswith(b"a1 OK [CAPABILITY ")
    raw.close()


def test_bad_commands_get_bad(mailbox: Mailbox) -> None:
    """Unknown commands, commands in the wrong state and syntax errors get BAD; NO stays NO."""
    raw = RawSession(mailbox)
    raw.send(b"a1 FROBNICATE\r\n")
    assert raw.until(b"a1") == [b"a1 BAD unknown command FROBNICATE"]
    raw.send(b"a2 FETCH 1 (FLAGS)\r\n")
    assert raw.until(b"a2")[-1].startswith(b"a2 BAD FETCH is not allowed")
    raw.send(b'a3 LOGIN "unterminated\r\n')
    assert raw.until(b"a3")[-1].startswith(b"a3 BAD")
    raw.send(b"a4 LOGIN %s \"%s\"\r\n" % (USER.encode(), PASSWORD.encode()))
    raw.send(b"a5 SELECT Nowhere\r\n")
    assert raw.until(b"a5")[-1].startswith(b"a5 NO [NONEXISTENT]")
    raw.send(b"a6 UID SELECT INBOX\r\n")
    assert raw.until(b"a6")[-1] == b"a6 BAD unknown command UID SELECT"
    raw.send(b"a7 NOOP " + b"x" * 70_000 + b"\r\n")
    assert raw.until(b"*")[-1].startswith(b"* BYE [TOOBIG]")
    raw.close()
    raw = RawSession(mailbox)
    raw.send(b"b1 LOGIN {20000000}\r\n")
    assert raw.until(b"*")[-1].startswith(b"* BYE [TOOBIG]")
    assert raw.file.readline() == b""
    raw.close()


def test_starttls_refuses_pipelined_plaintext(mailbox: Mailbox) -> None:
    """Commands sent in plaintext behind STARTTLS are not run after the handshake: it hangs up."""
    sock = socket.create_connection(("127.0.0.1", mailbox.server.imap_port), timeout=5)
    file = sock.makefile("rb")
    assert b"STARTTLS" in file.readline()
    sock.sendall(b"a1 STARTTLS\r\na2 LOGIN %s \"%s\"\r\n" % (USER.encode(), PASSWORD.encode()))
    assert file.readline() == b""
    sock.close()


def test_idle_connection_is_logged_out(server_loop: ServerLoop,
                                       contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    """A connection silent for longer than idle_timeout gets * BYE and is closed."""
    server = DemoIMAPServer(MailStore(), users={}, ssl_context=contexts[0], idle_timeout=0.2)
    server_loop.run(server.start())
    try:
        raw = RawSession(Mailbox(server, MailStore(), contexts[1]))
        assert raw.file.readline().startswith(b"* BYE Autologout")
        assert raw.file.readline() == b""
        raw.close()
    finally:
        server_loop.run(server.stop())


def test_list_shows_junk_and_trash_special_use(mailbox: Mailbox) -> None:
    """LIST "" "*" gives INBOX, Junk (\\Junk) and Trash (\\Trash); find_special_folder agrees."""
    with mailbox.connect() as client:
        folders = {name: flags for flags, _, name in client.list_folders()}
        assert folders == {"INBOX": (b"\\HasNoChildren",),
                           "Junk": (b"\\HasNoChildren", b"\\Junk"),
                           "Trash": (b"\\HasNoChildren", b"\\Trash")}
        assert client.find_special_folder(JUNK) == "Junk"
        assert client.find_special_folder(TRASH) == "Trash"
        assert [name for _, _, name in client.list_folders(pattern="J%")] == ["Junk"]


def test_header_search_finds_only_the_canary(mailbox: Mailbox) -> None:
    """HEADER X-Smtp-Canary abc finds the one canary among 1000 unrelated messages."""
    for i in range(1000):
        token = f"other-{i}" if i % 2 else None
        mailbox.store.deliver(USER, message(f"unrelated {i} abc", canary=token))
    uid = mailbox.store.deliver(USER, message("the canary", canary="smtpcanary_abc_0123"))
    mailbox.store.deliver(USER, message("after"), folder="Junk")
    with mailbox.connect() as client:
        selected = client.select_folder("INBOX")
        assert selected[b"EXISTS"] == 1001
        assert selected[b"UIDNEXT"] == 1002
        assert client.search(["HEADER", "X-Smtp-Canary", "abc"]) == [uid]
        assert client.search(["HEADER", "x-smtp-canary", "SMTPCANARY_ABC_"]) == [uid]
        assert client.search(["HEADER", "X-Smtp-Canary", "abc", "NOT", "DELETED"]) == [uid]
        assert client.search(["SINCE", dt.date.today() - dt.timedelta(days=1),
                              "UID", f"{uid}:*"]) == [uid]
        assert client.search(["SINCE", dt.date.today() + dt.timedelta(days=2)]) == []
        assert len(client.search(["UNDELETED"])) == 1001
        client.use_uid = False
        assert client.search(["HEADER", "X-Smtp-Canary", "abc"]) == [1001]


def test_fetch_internaldate_and_header(mailbox: Mailbox) -> None:
    """INTERNALDATE is the delivery time; BODY.PEEK[HEADER] returns the header bytes unseen."""
    raw = message("fetch me", canary="smtpcanary_abc_42")
    uid = mailbox.store.deliver(USER, raw)
    with mailbox.connect() as client:
        client.select_folder("INBOX")
        item = client.fetch([uid], ["INTERNALDATE", "BODY.PEEK[HEADER]", "RFC822.SIZE"])[uid]
        assert item[b"BODY[HEADER]"] == raw.split(b"\r\n\r\n")[0] + b"\r\n\r\n"
        assert item[b"RFC822.SIZE"] == len(raw)
        age = dt.datetime.now(dt.UTC) - item[b"INTERNALDATE"]
        assert dt.timedelta(0) <= age < dt.timedelta(seconds=30)
        assert client.get_flags([uid])[uid] == (b"\\Recent",)
        fields = client.fetch([uid], ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])[uid]
        assert fields[b"BODY[HEADER.FIELDS (SUBJECT)]"] == b"Subject: fetch me\r\n\r\n"
        whole = client.fetch([uid], ["BODY[]"])[uid]
        assert whole[b"BODY[]"] == raw
        assert b"\\Seen" in whole[b"FLAGS"]


def test_idle_hears_a_delivery_within_half_a_second(mailbox: Mailbox) -> None:
    """A client in IDLE gets "* 2 EXISTS" within 0.5 s of deliver() in another thread."""
    mailbox.store.deliver(USER, message("first"))
    delivered: list[float] = []

    def deliver() -> None:
        delivered.append(time.monotonic())
        mailbox.store.deliver(USER, message("second"))

    with mailbox.connect() as client:
        client.select_folder("INBOX")
        client.idle()
        timer = threading.Timer(0.2, deliver)
        timer.start()
        responses: list[tuple[object, ...]] = []
        deadline = time.monotonic() + 5
        while (2, b"EXISTS") not in responses and time.monotonic() < deadline:
            responses += client.idle_check(timeout=1.0)
        heard = time.monotonic()
        timer.join()
        assert (2, b"EXISTS") in responses
        assert heard - delivered[0] < 0.5
        text, _ = client.idle_done()
        assert text == b"IDLE terminated"
        assert client.search(["ALL"]) == [1, 2]


def test_delete_and_expunge(mailbox: Mailbox) -> None:
    """uid_expunge removes only the given deleted UID, expunge and CLOSE remove the rest."""
    first = mailbox.store.deliver(USER, message("one"))
    second = mailbox.store.deliver(USER, message("two"))
    with mailbox.connect() as client:
        client.select_folder("INBOX")
        assert client.delete_messages([first, second]) == {
            first: (b"\\Deleted", b"\\Recent"), second: (b"\\Deleted", b"\\Recent")}
        client.uid_expunge([first])
        assert [m.uid for m in mailbox.store.messages(USER, "INBOX")] == [second]
        _, responses = client.expunge()
        assert responses == [(1, b"EXPUNGE")]
        assert mailbox.store.messages(USER, "INBOX") == []
        assert client.search(["ALL"]) == []
        third = mailbox.store.deliver(USER, message("three"))
        assert client.noop()[1] == [(1, b"EXISTS"), (1, b"RECENT")]
        client.delete_messages([third])
        client.close_folder()
        assert mailbox.store.messages(USER, "INBOX") == []


def test_move_to_trash(mailbox: Mailbox) -> None:
    """move() puts the message in Trash with a new UID and takes it out of INBOX."""
    raw = message("to be moved")
    keep = mailbox.store.deliver(USER, message("stays"))
    uid = mailbox.store.deliver(USER, raw)
    with mailbox.connect() as client:
        client.select_folder("INBOX")
        client.move([uid], "Trash")
        assert client.search(["ALL"]) == [keep]
        assert [m.raw for m in mailbox.store.messages(USER, "Trash")] == [raw]
        assert [m.uid for m in mailbox.store.messages(USER, "INBOX")] == [keep]
        client.select_folder("Trash", readonly=True)
        assert client.search(["ALL"]) == [1]


def test_uid_move_reports_copyuid_before_expunge(mailbox: Mailbox) -> None:
    """UID MOVE answers * OK [COPYUID ...], then * n EXPUNGE, then the tagged OK (RFC 6851)."""
    for i in range(3):
        mailbox.store.deliver(USER, message(f"m{i}"))
    raw = RawSession(mailbox)
    raw.send(b"a1 LOGIN %s \"%s\"\r\na2 SELECT INBOX\r\n" % (USER.encode(), PASSWORD.encode()))
    raw.until(b"a2")
    raw.send(b"a3 UID MOVE 2:3 Junk\r\n")
    lines = raw.until(b"a3")
    assert re.fullmatch(rb"\* OK \[COPYUID \d+ 2:3 1:2\] .*", lines[0])
    assert lines[1:] == [b"* 2 EXPUNGE", b"* 2 EXPUNGE", b"a3 OK MOVE completed"]
    raw.close()


def test_users_see_only_their_own_mail(mailbox: Mailbox) -> None:
    """A second user sees nothing of the first user's mail, and the reverse."""
    mailbox.store.deliver(USER, message("private", canary="smtpcanary_abc_1"))
    mailbox.store.deliver(OTHER, message("theirs"))
    with mailbox.connect(OTHER, OTHER_PASSWORD) as client:
        assert client.select_folder("INBOX")[b"EXISTS"] == 1
        assert client.search(["HEADER", "X-Smtp-Canary", "abc"]) == []
        assert client.select_folder("Junk")[b"EXISTS"] == 0
    with mailbox.connect() as client:
        assert client.select_folder("INBOX")[b"EXISTS"] == 1
        assert client.search(["HEADER", "X-Smtp-Canary", "abc"]) == [1]


WORDS = ["A1", "UID", "SEARCH", "FETCH", "HEADER", "NOT", "OR", "SINCE", "1-Feb-2024", "31-Foo-1",
         "1:*", "*", "0", "3,5:7", "(", ")", '"x y"', '"\\"', "[", "]", "BODY.PEEK[HEADER]",
         "BODY[HEADER.FIELDS (SUBJECT)]", "BODY[1]", "FLAGS", "+FLAGS.SILENT", "\\Seen", "{3}"]


@given(st.lists(st.sampled_from(WORDS), max_size=12), st.binary(max_size=40))
def test_parser_raises_only_parse_error(words: list[str], noise: bytes) -> None:
    """Any command line, IMAP-like or not, parses or raises ParseError, never anything else."""
    for line in (" ".join(words).encode(), noise):
        try:
            command = parse_command([(line, None)])
            parse_search(command.args, last_seq=3, last_uid=9)
            parse_fetch_items(command.args[-1] if command.args else [])
        except ParseError:
            pass
