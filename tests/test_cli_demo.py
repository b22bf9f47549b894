"""The first hour at the command line: the demo's ready probe command, --env-file, a busy port."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.demo import PASSWORD_ENV
from tests.conftest import write_config
from tests.helpers import wait_for
from tests.servers.scripted import refused_port
from tests.test_cli import Daemon, run_cli

BUSY = "error: cannot listen on 127.0.0.1:{port}: Address already in use; choose another with " \
       "--web.listen-address"


@pytest.fixture
def demos() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for d in started:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


def _clean_env() -> dict[str, str]:
    """The environment without any demo secret, so only the env file can supply them."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SMTP_CANARY_DEMO_")}


def _rows(table: str) -> dict[str, list[str]]:
    """The relay table of ``probe``: relay -> its columns (split on two or more spaces)."""
    rows = {}
    for line in table.split("\n\n", 1)[0].splitlines()[1:]:
        cells = re.split(r"\s{2,}", line.strip())
        rows[cells[0]] = cells[1:]
    return rows


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_the_demo_prints_a_probe_command_that_works(
    tmp_path: Path, demos: list[Daemon], stop: signal.Signals
) -> None:
    """The demo prints a probe command naming its config and a 0600 secrets file; run as
    printed from another process it probes the demo relays (four good, one misconfigured);
    the secrets never show, and the file is gone once the demo stops."""
    d = Daemon(["demo", "--web.listen-address", "127.0.0.1:0", "--demo.interval", "2s"],
               tmp_path / "log")
    demos.append(d)
    wait_for(lambda: "probe with:" in d.text() or d.proc.poll() is not None, timeout=20)
    m = re.search(r"^probe with: (.+)$", d.text(), re.M)
    assert m, d.text()
    argv = shlex.split(m.group(1))
    env_path = Path(argv[argv.index("--env-file") + 1])
    assert stat.S_IMODE(env_path.stat().st_mode) == 0o600
    secrets = dict(line.split("=", 1) for line in env_path.read_text().splitlines()
                   if not line.startswith("#"))
    assert PASSWORD_ENV in secrets

    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False,
                         env=_clean_env())
    assert out.returncode == 1, out.stderr  # demo-wrong-tls-mode fails on purpose
    rows = _rows(out.stdout)
    assert {name: cells[:2] for name, cells in rows.items()} == {
        "demo-starttls": ["ok", "-"],
        "demo-implicit": ["ok", "-"],
        "demo-oauth2": ["ok", "-"],
        "demo-wrong-password": ["ok (saw auth_failed)", "-"],
        "demo-wrong-tls-mode": ["FAIL", "tls_mode_mismatch"],
    }
    assert "\nDNS\n" in out.stdout
    d.proc.send_signal(stop)
    d.proc.wait(timeout=15)
    assert d.proc.returncode == 0
    assert not env_path.exists() and not env_path.parent.exists()
    for value in secrets.values():
        assert value not in d.text() + out.stdout + out.stderr


def test_env_file_problems_are_one_line(tmp_path: Path) -> None:
    """check-config and probe read --env-file; a malformed line, a file others can read or a
    missing file is one error line naming the file (and line), never the value."""
    cfg = write_config(tmp_path / "c.yaml", {"name": "a", "port": refused_port(),
                                             "tls": "starttls", "auth": {"username": "u",
                                                      "password_env": "ENVFILE_PW"}})
    env = tmp_path / "s.env"
    env.write_text("# the relay\nENVFILE_PW=Zq9-secret\n")
    env.chmod(0o600)
    ok = run_cli("check-config", "--config.file", str(cfg), "--env-file", str(env))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == f"{cfg}: OK, 1 relay\n"
    probe = run_cli("probe", "--config.file", str(cfg), "--env-file", str(env), "--no-dns")
    assert probe.returncode == 1  # configured; the relay refuses the connection
    assert "connect_refused" in probe.stdout

    env.write_text("ENVFILE_PW Zq9-secret\n")
    for command, code in (("check-config", 1), ("probe", 2)):
        bad = run_cli(command, "--config.file", str(cfg), "--env-file", str(env))
        assert bad.returncode == code
        assert bad.stderr == (f"error: --env-file {env}:1: not a NAME=value line; write each "
                              "variable as NAME=value (a name of letters, digits and _, no "
                              "spaces around =)\n")
    env.write_text("ENVFILE_PW=Zq9-secret\n")
    env.chmod(0o604)
    bad = run_cli("probe", "--config.file", str(cfg), "--env-file", str(env))
    assert (bad.returncode, bad.stderr) == (2, f"error: --env-file {env}: readable or writable "
                                               f"by others (mode 604), and it holds secrets; "
                                               f"run chmod 600 {env}\n")
    missing = run_cli("probe", "--config.file", str(cfg), "--env-file", str(tmp_path / "no"))
    assert (missing.returncode, missing.stderr) == (
        2, f"error: --env-file {tmp_path / 'no'}: no such file\n")


def test_the_environment_wins_over_the_env_file(tmp_path: Path) -> None:
    """A variable set in the environment is used even when the env file sets it too."""
    cfg = write_config(tmp_path / "c.yaml", {"name": "a", "port": refused_port(),
                                             "tls": "starttls", "auth": {"username": "u",
                                                      "password_env": "ENVFILE_PW"}})
    env = tmp_path / "s.env"
    env.write_text("ENVFILE_PW=from-the-file\n")
    env.chmod(0o600)
    out = run_cli("check-config", "--config.file", str(cfg), "--env-file", str(env),
                  env={"ENVFILE_PW": " from the environment"})
    assert out.returncode == 0
    assert "the secret from env ENVFILE_PW starts with whitespace" in out.stderr


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize("command", ["run", "demo"])
def test_a_busy_port_fails_alone(tmp_path: Path, busy_port: int, command: str) -> None:
    """When the listen port is taken, the daemon and the demo exit 1 with one line naming the
    address and the flag, before any mailbox, probe or config warning."""
    # A mailbox nobody reads from: a config warning, and a watcher that would log its failure.
    cfg = write_config(tmp_path / "c.yaml", {"name": "a", "port": refused_port(),
                                             "tls": "none"},
                       mailboxes=[{"name": "m", "host": "127.0.0.1", "port": refused_port(),
                                   "tls": "none", "allow_plaintext_auth": True,
                                   "auth": {"username": "u", "password_env": "RELAY_PASSWORD"}}])
    args = ["--config.file", str(cfg)] if command == "run" else []
    for _ in range(3):  # the old order lost a race only some of the time
        out = run_cli(command, *args, "--web.listen-address", f"127.0.0.1:{busy_port}")
        assert out.returncode == 1
        assert out.stderr == BUSY.format(port=busy_port) + "\n"
        assert out.stdout == ""
