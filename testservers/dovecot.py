"""A real Dovecot 2.3 (IMAP, IMAPS, LMTP) on loopback, self-contained under one directory.

Everything Dovecot reads or writes lives under ``root``: config, users file, TLS files, maildirs,
``base_dir``, ``state_dir`` and the log. Nothing touches /etc/dovecot or /var/run/dovecot.
Dovecot runs as root and drops to the package's ``dovecot``/``dovenull`` users; mail is owned by
``dovecot``. Because those users must reach ``root``, every ancestor of ``root`` gets the
search bit for others (``o+x``, never read) -- pytest creates its temp dirs with mode 0700.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import email.parser
import email.utils
import imaplib
import os
import pwd
import re
import shutil
import signal
import smtplib
import ssl
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import trustme

from testservers.dovecot_config import LOGIN_USER, MAIL_USER, config_text
from testservers.processes import alive, free_ports, greets, group_pids, make_traversable

__all__ = ["Dovecot", "DovecotError", "dovecot_available", "start_dovecot"]

_SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin"])

# Instances still running when the interpreter exits (a test forgot stop()) are stopped then.
_RUNNING: dict[int, Dovecot] = {}


@atexit.register
def _stop_all() -> None:
    for dv in list(_RUNNING.values()):
        dv.stop()


class DovecotError(RuntimeError):
    """Dovecot did not start, stop or deliver; the message carries the tail of its log."""


def dovecot_available() -> bool:
    """True if the dovecot and doveadm binaries are installed and we are root to run them."""
    return os.geteuid() == 0 and _which("dovecot") is not None and _which("doveadm") is not None


@dataclass
class Dovecot:
    """A running Dovecot instance; ports are on ``host`` (a loopback address)."""

    root: Path
    host: str
    imap_port: int
    imaps_port: int
    lmtp_port: int
    ca_file: str
    users: dict[str, str]
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)
    _timeout: float = field(default=10.0, repr=False, compare=False)

    @property
    def config_file(self) -> Path:
        """The dovecot.conf this instance runs with."""
        return self.root / "dovecot.conf"

    @property
    def log_file(self) -> Path:
        """Dovecot's log (log_path)."""
        return self.root / "dovecot.log"

    @property
    def pid(self) -> int | None:
        """The master process's PID while it runs."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def maildir(self, user: str) -> Path:
        """The user's Maildir (INBOX; other folders are ``.Name`` subdirectories)."""
        return self.root / "mail" / user / "Maildir"

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this instance's CA and checks the host name."""
        return ssl.create_default_context(cafile=self.ca_file)

    def pids(self) -> list[int]:
        """PIDs of this instance's live processes (master and children, zombies excluded)."""
        if self._proc is None:
            return []
        return group_pids(self._proc.pid)

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of Dovecot's log and of the master's stderr."""
        out = []
        for path in (self.log_file, self.root / "dovecot.stderr"):
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").splitlines()[-lines:]
                if text:
                    out.append(f"--- {path} ---\n" + "\n".join(text))
        return "\n".join(out) or "(no log output)"

    def deliver(
        self, user: str, message: bytes, *, folder: str | None = None, sender: str | None = None
    ) -> None:
        """Deliver a message: LMTP into INBOX, or IMAP APPEND (as ``user``) into ``folder``.

        LMTP gives INTERNALDATE = arrival time plus Return-Path/Delivered-To/Received headers,
        as a real MTA delivery does; APPEND sets INTERNALDATE to now. ``sender`` (envelope
        from) defaults to the message's From address.
        """
        if folder is None or folder.upper() == "INBOX":
            self._deliver_lmtp(user, message, sender)
        else:
            self._append(user, message, folder)

    def kick(self, user: str) -> None:
        """Drop all of the user's IMAP connections (doveadm kick) and wait until they are gone."""
        if self._proc is None:
            raise DovecotError("kick() on a stopped Dovecot")
        pgid = self._proc.pid
        before = self._session_pids(user)
        done = self._doveadm("kick", user)
        if done.returncode not in (0, 68):  # 68 (EX_NOUSER): nobody was connected
            raise DovecotError(f"doveadm kick {user} failed: {done.stderr.strip()}")
        deadline = time.monotonic() + self._timeout
        while any(alive(p, pgid) for p in before):
            if time.monotonic() > deadline:
                raise DovecotError(f"{user}'s IMAP processes {before} outlived the kick")
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM the instance's process group, wait for every PID, SIGKILL what lingers.

        Signalling the master alone takes >1 s (it waits for its log process) and leaves
        logged-in imap processes running ~10 s more; signalling its whole process group (created
        for it at start, like systemd's control-group stop) ends everything in ~0.1 s and drops
        clients at once. Idempotent.
        """
        proc, self._proc = self._proc, None
        _RUNNING.pop(id(self), None)
        if proc is None:
            return
        pgid = proc.pid
        pids = group_pids(pgid)
        if proc.poll() is None:
            os.killpg(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout=self._timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        # Anything the master spawned while going down is in the group too.
        for p in group_pids(pgid):
            if p not in pids:
                pids.append(p)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGTERM)
        deadline = time.monotonic() + self._timeout
        while left := [p for p in pids if alive(p, pgid)]:
            if time.monotonic() > deadline:
                for p in left:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(p, signal.SIGKILL)
                deadline = time.monotonic() + self._timeout
            time.sleep(0.01)

    def restart(self) -> None:
        """Stop, then start again with the same config, ports and mail."""
        self.stop()
        self._launch()

    def __enter__(self) -> Dovecot:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals ---------------------------------------------------------------------------

    def _launch(self) -> None:
        stderr = (self.root / "dovecot.stderr").open("ab")
        with stderr:
            self._proc = subprocess.Popen(
                [_require("dovecot"), "-F", "-c", str(self.config_file)],
                stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                start_new_session=True,  # own process group: its PIDs are ours to find
            )
        _RUNNING[id(self)] = self
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self._timeout
        pending = {self.imap_port: b"* OK", self.lmtp_port: b"220 "}
        while pending:
            if self._proc.poll() is not None:
                raise DovecotError(
                    f"dovecot exited with status {self._proc.returncode} during start-up\n"
                    + self.log_tail()
                )
            if time.monotonic() > deadline:
                raise DovecotError(
                    f"dovecot did not answer on {self.host} ports {sorted(pending)} "
                    f"within {self._timeout:g} s\n" + self.log_tail()
                )
            for port, greeting in list(pending.items()):
                if greets(self.host, port, greeting):
                    del pending[port]
            if pending:
                time.sleep(0.02)

    def _deliver_lmtp(self, user: str, message: bytes, sender: str | None) -> None:
        if sender is None:
            headers = email.parser.BytesHeaderParser().parsebytes(message)
            sender = email.utils.parseaddr(str(headers.get("From", "")))[1]
        with smtplib.LMTP(self.host, self.lmtp_port, timeout=self._timeout) as lmtp:
            refused = lmtp.sendmail(sender, [user], message)
        if refused:
            raise DovecotError(f"LMTP refused {user}: {refused}")

    def _append(self, user: str, message: bytes, folder: str) -> None:
        with imaplib.IMAP4(self.host, self.imap_port, timeout=self._timeout) as imap:
            imap.starttls(self.ssl_context())
            credentials = f"\0{user}\0{self.users[user]}".encode()
            imap.authenticate("PLAIN", lambda _challenge: credentials)  # any password chars
            typ, data = imap.append(
                _quote(folder), "", imaplib.Time2Internaldate(time.time()), message
            )
            if typ != "OK":
                raise DovecotError(f"APPEND to {folder!r} as {user} failed: {data!r}")
            imap.logout()

    def _doveadm(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [_require("doveadm"), "-c", str(self.config_file), *args],
            capture_output=True, text=True, timeout=self._timeout, check=False,
        )

    def _session_pids(self, user: str) -> list[int]:
        """PIDs of the user's imap processes, from ``doveadm who -1``."""
        done = self._doveadm("who", "-1", user)
        pids = []
        for line in done.stdout.splitlines()[1:]:  # header: username proto pid ip
            parts = line.split()
            if len(parts) >= 3 and parts[0] == user and parts[2].isdigit():
                pids.append(int(parts[2]))
        return pids


def start_dovecot(
    root: Path,
    *,
    users: Mapping[str, str],
    host: str | None = None,
    idle: bool = True,
    plaintext_login_on_loopback: bool = True,
    imap_port: int = 0,
    imaps_port: int = 0,
    lmtp_port: int = 0,
    ca: trustme.CA | None = None,
    timeout: float = 10.0,
) -> Dovecot:
    """Write a self-contained config under ``root``, start Dovecot and wait until it answers.

    ``host`` defaults to 127.0.0.1, or 127.0.0.2 when ``plaintext_login_on_loopback`` is
    False: Dovecot 2.3 treats a connection whose source IP equals its local IP as secure and
    allows plaintext LOGIN on it whatever the settings, so the refusal can only be tested
    on an address the client does not send from. Ports of 0 are picked free. ``ca`` (a
    trustme CA, e.g. the session's) signs the server cert; a new one is made otherwise.
    """
    if host is None:
        host = "127.0.0.1" if plaintext_login_on_loopback else "127.0.0.2"
    if not plaintext_login_on_loopback and host == "127.0.0.1":
        raise ValueError(
            "plaintext_login_on_loopback=False needs a host other than 127.0.0.1 (e.g. 127.0.0.2):"
            " Dovecot treats 127.0.0.1 -> 127.0.0.1 as secure and allows LOGIN without TLS"
        )
    for name, password in users.items():
        if not name or any(c in name for c in ":%/ ") or not (name + password).isprintable():
            raise ValueError(
                f"user {name!r}: names can't hold ':%/' or spaces, and Dovecot refuses"
                " passwords with control characters"
            )
    _require("dovecot")
    if os.geteuid() != 0:
        raise DovecotError("start_dovecot needs root: Dovecot drops to its dovecot/dovenull users")
    mail_pw = pwd.getpwnam(MAIL_USER)
    pwd.getpwnam(LOGIN_USER)

    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    make_traversable(root)
    ca = ca or trustme.CA()
    tls = root / "tls"
    tls.mkdir(exist_ok=True)
    ca_file = tls / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    leaf = ca.issue_cert(host, "127.0.0.1", "localhost", "imap.example.test")
    leaf.private_key_pem.write_to_path(str(tls / "server.key"))
    (tls / "server.key").chmod(0o600)
    (tls / "server.pem").write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))

    mail = root / "mail"
    mail.mkdir(exist_ok=True)
    os.chown(mail, mail_pw.pw_uid, mail_pw.pw_gid)
    mail.chmod(0o700)
    users_file = root / "users"
    users_file.write_text(
        "".join(
            f"{name}:{{PLAIN.b64}}{_b64(password)}:{mail_pw.pw_uid}:{mail_pw.pw_gid}::"
            f"{mail / name}::\n"
            for name, password in users.items()
        )
    )
    os.chown(users_file, 0, mail_pw.pw_gid)
    users_file.chmod(0o640)

    fixed = {"imap": imap_port, "imaps": imaps_port, "lmtp": lmtp_port}
    for attempt in range(3):
        ports = free_ports(host, fixed)
        dv = Dovecot(
            root=root, host=host, imap_port=ports["imap"], imaps_port=ports["imaps"],
            lmtp_port=ports["lmtp"], ca_file=str(ca_file), users=dict(users), _timeout=timeout,
        )
        dv.config_file.write_text(
            config_text(
                root, host, ports, idle=idle, plaintext_login=plaintext_login_on_loopback,
                mail_uid=mail_pw.pw_uid, mail_gid=mail_pw.pw_gid,
            )
        )
        try:
            dv._launch()
        except DovecotError as err:
            # A port picked free may be taken by someone else before Dovecot binds it: retry.
            taken = re.search(r"listen\([^,]+, (\d+)\) failed: Address already in use", str(err))
            picked = {p for name, p in ports.items() if not fixed[name]}
            if attempt < 2 and taken and int(taken[1]) in picked:
                for name in ("dovecot.log", "dovecot.stderr"):
                    (root / name).unlink(missing_ok=True)
                continue
            raise
        return dv
    raise AssertionError("unreachable")


def _which(name: str) -> str | None:
    return shutil.which(name, path=_SBIN_PATH)


def _require(name: str) -> str:
    path = _which(name)
    if path is None:
        raise DovecotError(f"{name} not found; install it with testservers/install-dovecot.sh")
    return path


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _quote(mailbox: str) -> str:
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


