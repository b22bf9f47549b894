"""The real-Dovecot helper: TLS modes, capabilities, folders, delivery, kick, restart, stop."""

from __future__ import annotations

import imaplib
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from email.utils import make_msgid
from pathlib import Path

import pytest
import trustme

from tests.tools import unavailable
from testservers.dovecot import Dovecot, dovecot_available, start_dovecot

USER = "canary@example.test"
PASSWORD = "canary pass: with colon"
USERS = {USER: PASSWORD, "other@example.test": "other-pass"}


@pytest.fixture(autouse=True)
def _needs_dovecot() -> None:
    if dovecot_available():
        return
    unavailable("needs Dovecot (testservers/install-dovecot.sh installs it) and root")


@pytest.fixture
def instance(tmp_path: Path, ca: trustme.CA) -> Iterator[Dovecot]:
    with start_dovecot(tmp_path / "dovecot", users=USERS, ca=ca) as dv:
        yield dv


def _message(subject: str) -> tuple[str, bytes]:
    msgid = make_msgid(domain="example.test")
    text = (
        f"From: Canary <{USER}>\r\nTo: {USER}\r\nSubject: {subject}\r\n"
        f"Message-ID: {msgid}\r\nDate: Mon, 23 Nov 2026 12:00:00 +0000\r\n\r\nbody\r\n"
    )
    return msgid, text.encode()


def _login(dv: Dovecot, user: str = USER) -> imaplib.IMAP4:
    imap = imaplib.IMAP4(dv.host, dv.imap_port, timeout=5)
    imap.starttls(dv.ssl_context())
    imap.login(user, dv.users[user])
    return imap


def _search_msgid(imap: imaplib.IMAP4, folder: str, msgid: str) -> list[bytes]:
    typ, _ = imap.select(f'"{folder}"', readonly=True)
    assert typ == "OK"
    typ, data = imap.search(None, "HEADER", "Message-ID", f'"{msgid}"')
    assert typ == "OK"
    found: list[bytes] = data[0].split()
    return found


def test_starttls_login_verifies_the_ca(instance: Dovecot) -> None:
    """LOGIN works after STARTTLS with the instance's CA; another CA fails the handshake."""
    imap = _login(instance)
    assert isinstance(imap.sock, ssl.SSLSocket)
    assert imap.state == "AUTH"
    imap.logout()

    other_ca = ssl.create_default_context()
    trustme.CA().configure_trust(other_ca)
    untrusted = imaplib.IMAP4(instance.host, instance.imap_port, timeout=5)
    with pytest.raises(ssl.SSLCertVerificationError):
        untrusted.starttls(other_ca)
    untrusted.file.close()


def test_implicit_tls_on_imaps_port(instance: Dovecot) -> None:
    """The imaps port speaks TLS from the first byte with a cert valid for the host address."""
    with imaplib.IMAP4_SSL(instance.host, instance.imaps_port, ssl_context=instance.ssl_context(),
                           timeout=5) as imap:
        assert "STARTTLS" not in imap.capabilities
        typ, _ = imap.login(USER, PASSWORD)
        assert typ == "OK"


@pytest.mark.parametrize("idle", [True, False], ids=["idle", "no-idle"])
def test_capability_advertises_idle_only_when_enabled(tmp_path: Path, idle: bool) -> None:
    """IDLE is in CAPABILITY before and after login with idle=True, and absent with idle=False."""
    with start_dovecot(tmp_path / "dovecot", users=USERS, idle=idle) as dv:
        imap = _login(dv)
        typ, data = imap.capability()
        assert typ == "OK"
        after_login = data[0].decode().upper().split()
        assert ("IDLE" in after_login) is idle
        assert "UIDPLUS" in after_login  # the rest of the list is still there
        imap.logout()
        with imaplib.IMAP4(dv.host, dv.imap_port, timeout=5) as fresh:
            assert ("IDLE" in fresh.capabilities) is idle


def test_list_shows_junk_and_trash_with_special_use(instance: Dovecot) -> None:
    """A new user's LIST has INBOX, Junk marked \\Junk and Trash marked \\Trash, all subscribed."""
    imap = _login(instance)
    typ, listed = imap.list()
    assert typ == "OK"
    lines = [line.decode() for line in listed if isinstance(line, bytes)]
    assert any(line.endswith(" INBOX") for line in lines)
    assert any("\\Junk" in line and line.endswith(" Junk") for line in lines), lines
    assert any("\\Trash" in line and line.endswith(" Trash") for line in lines), lines
    typ, subscribed = imap.lsub()
    assert typ == "OK"
    assert {line.decode().rsplit(" ", 1)[1] for line in subscribed if isinstance(line, bytes)} >= {
        "Junk", "Trash",
    }
    imap.logout()


def test_deliver_to_inbox_and_junk_is_found_by_search(instance: Dovecot) -> None:
    """deliver() puts a message in INBOX (LMTP) and one in Junk (APPEND), both dated now."""
    inbox_id, inbox_msg = _message("to inbox")
    junk_id, junk_msg = _message("to junk")
    instance.deliver(USER, inbox_msg)
    instance.deliver(USER, junk_msg, folder="Junk")

    imap = _login(instance)
    assert len(_search_msgid(imap, "INBOX", inbox_id)) == 1
    assert _search_msgid(imap, "INBOX", junk_id) == []
    assert len(_search_msgid(imap, "Junk", junk_id)) == 1
    for folder in ("INBOX", "Junk"):
        imap.select(folder, readonly=True)
        typ, data = imap.fetch("1", "(INTERNALDATE)")
        assert typ == "OK"
        assert isinstance(data[0], bytes)
        stamp = imaplib.Internaldate2tuple(data[0])
        assert stamp is not None
        assert abs(time.mktime(stamp) - time.time()) < 60, data
    imap.select("INBOX", readonly=True)
    typ, data = imap.fetch("1", "(BODY.PEEK[HEADER.FIELDS (DELIVERED-TO)])")
    assert isinstance(data[0], tuple)
    assert f"Delivered-To: {USER}".encode() in data[0][1]
    imap.logout()


def test_plaintext_login_allowed_on_loopback_by_default(instance: Dovecot) -> None:
    """By default, like a stock Dovecot on loopback, LOGIN works without STARTTLS."""
    with imaplib.IMAP4(instance.host, instance.imap_port, timeout=5) as imap:
        assert "LOGINDISABLED" not in imap.capabilities
        typ, _ = imap.login(USER, PASSWORD)
        assert typ == "OK"


def test_plaintext_login_refused_before_starttls_when_disabled(tmp_path: Path) -> None:
    """With plaintext_login_on_loopback=False, LOGIN before STARTTLS fails and after it works."""
    with start_dovecot(
        tmp_path / "dovecot", users=USERS, plaintext_login_on_loopback=False
    ) as dv:
        assert dv.host != "127.0.0.1"
        with imaplib.IMAP4(dv.host, dv.imap_port, timeout=5) as imap:
            assert "LOGINDISABLED" in imap.capabilities
            with pytest.raises(imaplib.IMAP4.error, match=r"PRIVACYREQUIRED|disallowed"):
                imap.login(USER, PASSWORD)
        imap = _login(dv)
        assert imap.state == "AUTH"
        imap.logout()


def test_plaintext_login_refusal_rejects_the_self_secured_address(tmp_path: Path) -> None:
    """Asking for the refusal on 127.0.0.1 is an error, since Dovecot trusts 127.0.0.1 -> itself."""
    with pytest.raises(ValueError, match=r"127\.0\.0\.2"):
        start_dovecot(tmp_path, users=USERS, host="127.0.0.1", plaintext_login_on_loopback=False)


def test_kick_drops_a_connected_client(instance: Dovecot) -> None:
    """After kick(), the user's session is gone: its next command raises IMAP4.abort."""
    imap = _login(instance)
    imap.select("INBOX")
    other = _login(instance, "other@example.test")
    instance.kick(USER)
    with pytest.raises(imaplib.IMAP4.abort):
        imap.noop()
    assert other.noop()[0] == "OK"  # other users keep their sessions
    other.logout()


def test_kick_ends_an_idle_session(instance: Dovecot) -> None:
    """A client waiting in IDLE gets BYE and then end-of-file when the server kicks it."""
    imap = _login(instance)
    imap.select("INBOX")
    imap.send(b"i1 IDLE\r\n")
    assert imap.readline().startswith(b"+ ")
    instance.kick(USER)
    rest = b""
    while line := imap.readline():
        rest += line
    assert b"* BYE" in rest
    imap.shutdown()


def test_restart_keeps_mail_and_ports(instance: Dovecot) -> None:
    """After restart(), the same ports answer and earlier mail is still there."""
    msgid, msg = _message("before restart")
    instance.deliver(USER, msg)
    imap = _login(instance)
    ports = (instance.imap_port, instance.imaps_port, instance.lmtp_port)
    old_pids = set(instance.pids())

    instance.restart()

    with pytest.raises(imaplib.IMAP4.abort):
        imap.noop()
    assert (instance.imap_port, instance.imaps_port, instance.lmtp_port) == ports
    assert not old_pids & set(instance.pids())
    imap = _login(instance)
    assert len(_search_msgid(imap, "INBOX", msgid)) == 1
    imap.logout()


def test_stop_leaves_no_dovecot_process(tmp_path: Path) -> None:
    """stop() ends the master and every child, and the ports stop answering."""
    dv = start_dovecot(tmp_path / "dovecot", users=USERS)
    imap = _login(dv)  # a logged-in session adds an imap process to end as well
    imap.select("INBOX")
    pids = dv.pids()
    assert len(pids) >= 5, pids

    dv.stop()

    assert dv.pids() == []
    assert all(not Path(f"/proc/{pid}").exists() or _is_zombie(pid) for pid in pids)
    pgrep = subprocess.run(["pgrep", "-f", str(dv.config_file)], capture_output=True, check=False)
    assert pgrep.returncode == 1, pgrep.stdout
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((dv.host, dv.imap_port), timeout=2).close()
    dv.stop()  # idempotent


def test_second_instance_on_another_loopback_address(instance: Dovecot, tmp_path: Path) -> None:
    """A second instance on 127.0.0.2 runs beside the first, with its own mail."""
    with start_dovecot(tmp_path / "second", users=USERS, host="127.0.0.2") as second:
        assert second.host == "127.0.0.2"
        msgid, msg = _message("second only")
        second.deliver(USER, msg)
        imap = _login(second)
        assert len(_search_msgid(imap, "INBOX", msgid)) == 1
        imap.logout()
        imap = _login(instance)
        assert _search_msgid(imap, "INBOX", msgid) == []
        imap.logout()


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
