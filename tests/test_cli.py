"""The command line as a user runs it: real subprocesses, real servers on loopback."""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ENV, auth, write_config
from tests.helpers import assert_promtool_accepts, http, value, wait_for
from tests.servers.loop import ServerLoop
from tests.servers.scripted import refused_port
from tests.servers.smtp import PASSWORD, Recorder, start_relay

EXE = [sys.executable, "-m", "exporter"]


def run_cli(*args: str, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EXE, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **ENV, **(env or {})}, check=False)


class Daemon:
    """``smtp-canary-exporter run`` (or demo) as a child process, its log in a file."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        self._fh = log.open("w")
        self.proc = subprocess.Popen([*EXE, *args], stdout=self._fh, stderr=subprocess.STDOUT,
                                     env={**os.environ, **ENV, **(env or {})}, text=True)

    def text(self) -> str:
        return self.log.read_text()

    def stop(self) -> float:
        start = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=15)
        self._fh.close()
        return time.monotonic() - start


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for d in started:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


def port_from_log(d: Daemon) -> int:
    """The HTTP port from the start-up line, in logfmt or JSON."""
    found: list[int] = []

    def listening() -> bool:
        m = re.search(r'"?listen"?[=:] ?"?[^ "]*:(\d+)', d.text())
        if m:
            found.append(int(m.group(1)))
        return bool(m) or d.proc.poll() is not None

    wait_for(listening, timeout=20)
    assert found, d.text()
    return found[0]


def test_check_config_ok_and_errors(tmp_path: Path) -> None:
    """check-config says OK with the relay count, or prints every problem and exits 1."""
    good = write_config(tmp_path / "good.yaml", {"name": "a", "port": 2525, "tls": "starttls"})
    ok = run_cli("check-config", "--config.file", str(good))
    assert ok.returncode == 0
    assert ok.stdout == f"{good}: OK, 1 relay\n"
    bad = tmp_path / "bad.yaml"
    bad.write_text("relays:\n  - name: a\n    host: h\n    port: 465\n    tls: starttls\n"
                   "  - name: a\n    host: h\n    intervall: 5m\n")
    out = run_cli("check-config", f"--config.file={bad}")
    assert out.returncode == 1
    assert "error: relays[0].tls: 465 speaks implicit TLS; set tls: implicit" in out.stderr
    assert "error: relays[1].intervall: unknown key; did you mean interval?" in out.stderr
    assert 'duplicate name "a"' in out.stderr


def test_check_config_counts_the_modules_for_probe(tmp_path: Path) -> None:
    """With a modules: block, check-config's OK line says how many /probe modules loaded."""
    good = write_config(tmp_path / "good.yaml", {"name": "a", "port": 2525, "tls": "starttls"})
    text = good.read_text() + ("modules:\n  submission: {timeout: 5s}\n"
                               "  plain: {tls: none}\n")
    good.write_text(text)
    ok = run_cli("check-config", "--config.file", str(good))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == f"{good}: OK, 1 relay, 2 modules for /probe\n"


def test_probe_text_and_json(
    tmp_path: Path, server_loop: ServerLoop, server_ctx: ssl.SSLContext, ca_file: str
) -> None:
    """probe prints a table or JSON per relay, with phases, TLS and reason; exit 1 on failure."""
    good = start_relay(server_loop, ctx=server_ctx)
    bad = start_relay(server_loop, ctx=server_ctx, recorder=Recorder(password="other"))
    cfg = write_config(
        tmp_path / "c.yaml",
        {"name": "good", "port": good.port, "tls": "starttls", "ca_file": ca_file,
         "auth": auth("plain")},
        {"name": "bad", "port": bad.port, "tls": "starttls", "ca_file": ca_file,
         "auth": auth("login")},
    )
    only_good = run_cli("probe", "--config.file", str(cfg), "--relay", "good")
    assert only_good.returncode == 0, only_good.stderr
    header, row = only_good.stdout.splitlines()[:2]
    assert header.split()[:4] == ["RELAY", "RESULT", "REASON", "resolve_ms"]
    assert row.split()[:3] == ["good", "ok", "-"]
    assert "TLSv1.3" in row

    both = run_cli("probe", "--config.file", str(cfg), "--output", "json")
    assert both.returncode == 1
    results = {r["relay"]: r for r in json.loads(both.stdout)}
    assert results["good"]["success"] is True and results["good"]["reason"] is None
    assert set(results["good"]["phases"]) == {"resolve", "connect", "greeting", "ehlo", "tls",
                                              "auth", "quit"}
    assert results["good"]["tls"]["verified"] is True
    assert results["good"]["tls"]["not_after"].endswith("Z")
    assert results["bad"]["reason"] == "auth_failed"
    assert results["bad"]["reply"] == "535 5.7.8 Authentication credentials invalid"
    assert results["bad"]["hint"].startswith("credentials refused")
    assert PASSWORD not in both.stdout + both.stderr

    unknown = run_cli("probe", "--config.file", str(cfg), "--relay", "nope")
    assert unknown.returncode == 2
    assert "--relay nope: no such relay; configured: bad, good" in unknown.stderr


def test_run_reloads_on_sighup_and_stops_on_sigterm(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    """SIGHUP reloads (a bad file is refused, the old config runs on); SIGTERM stops quickly."""
    port = refused_port()
    cfg = write_config(tmp_path / "c.yaml", {"name": "a", "port": port, "tls": "none",
                                             "interval": "1h"})
    d = Daemon(["run", "--config.file", str(cfg), "--web.listen-address", "127.0.0.1:0"],
               tmp_path / "log")
    daemons.append(d)
    base = f"http://127.0.0.1:{port_from_log(d)}"
    write_config(cfg, {"name": "b", "port": port, "tls": "none", "interval": "1h"})
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: value(http(base + "/metrics")[1], "smtp_probe_success", relay="b") == 0)
    cfg.write_text("relays: []\n")
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: value(http(base + "/metrics")[1],
                           "smtp_exporter_config_last_reload_successful") == 0)
    assert value(http(base + "/metrics")[1], "smtp_probe_success", relay="b") == 0
    assert 'msg="config reload refused"' in d.text()
    assert d.stop() < 5
    assert d.proc.returncode == 0
    assert 'msg="exporter stopped"' in d.text()


def test_run_refuses_invalid_config_at_start(tmp_path: Path) -> None:
    """An invalid file at start-up exits 1 naming the problem, before listening."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("relays:\n  - name: a\n    host: h\n    auth: {password: hunter2}\n")
    out = run_cli("run", "--config.file", str(cfg), "--web.listen-address", "127.0.0.1:0")
    assert out.returncode == 1
    assert ("relays[0].auth.password: inline secrets are not allowed; use password_env or "
            "password_file") in out.stderr
    assert "hunter2" not in out.stderr


def test_run_refuses_an_invalid_location(tmp_path: Path) -> None:
    """A location that cannot go into canary tokens exits 2 naming the flag and the rule,
    whether it comes from --exporter.location or SMTP_CANARY_LOCATION."""
    cfg = write_config(tmp_path / "c.yaml")
    out = run_cli("run", "--config.file", str(cfg), "--exporter.location", "eu west")
    assert out.returncode == 2
    assert out.stderr.startswith('error: --exporter.location: "eu west" is not a valid location')
    out = run_cli("run", "--config.file", str(cfg), env={"SMTP_CANARY_LOCATION": "/eu"})
    assert out.returncode == 2
    assert '"/eu" is not a valid location name; use up to 63 letters' in out.stderr


def test_demo_shows_real_numbers_and_stops_cleanly(tmp_path: Path,
                                                   daemons: list[Daemon]) -> None:
    """The demo probes its own loopback relay: real phase timings on /metrics and the page."""
    d = Daemon(["demo", "--web.listen-address", "127.0.0.1:0", "--demo.interval", "2s"],
               tmp_path / "log")
    daemons.append(d)
    wait_for(lambda: "metrics:" in d.text() or d.proc.poll() is not None, timeout=20)
    m = re.search(r"metrics:\s+(http://\S+)/metrics", d.text())
    assert m, d.text()
    base = m.group(1)
    wait_for(lambda: all(
        (value(http(base + "/metrics")[1], "smtp_probes_total", relay=r) or 0) >= 1
        for r in ("demo-starttls", "demo-implicit", "demo-oauth2", "demo-wrong-password",
                  "demo-wrong-tls-mode")
    ), timeout=20)
    text = http(base + "/metrics")[1]
    assert value(text, "smtp_probe_success", relay="demo-starttls") == 1
    assert value(text, "smtp_probe_success", relay="demo-implicit") == 1
    assert value(text, "smtp_probe_success", relay="demo-oauth2") == 1  # a refreshed token
    expiry = value(text, "smtp_oauth2_token_expiry_timestamp_seconds", relay="demo-oauth2")
    assert expiry is not None and 0 < expiry - time.time() <= 900
    assert value(text, "smtp_probe_success", relay="demo-wrong-password") == 1
    assert value(text, "smtp_probe_success", relay="demo-wrong-tls-mode") == 0
    assert (value(text, "smtp_probe_failures_total", relay="demo-wrong-tls-mode",
                  reason="tls_mode_mismatch") or 0) >= 1
    tls = value(text, "smtp_probe_phase_duration_seconds", relay="demo-starttls", phase="tls")
    assert tls is not None and tls > 0
    page = http(base + "/")[1]
    assert "demo-starttls" in page and "tls_mode_mismatch" in page
    box = {"mailbox": "demo-mailbox"}
    wait_for(lambda: all(
        (value(http(base + "/metrics")[1], "smtp_canary_received_total", relay=r, folder=f,
               **box) or 0) >= 1
        for r, f in (("demo-starttls", "inbox"), ("demo-implicit", "spam"))
    ), timeout=30)
    text = http(base + "/metrics")[1]
    assert value(text, "smtp_mailbox_up", **box) == 1
    assert value(text, "smtp_canary_auth_result", relay="demo-starttls", method="dmarc",
                 result="pass", **box) == 1
    assert value(text, "smtp_canary_auth_result", relay="demo-implicit", method="dkim",
                 result="fail", **box) == 1
    latency = value(text, "smtp_canary_last_delivery_duration_seconds", relay="demo-starttls",
                    **box)
    assert latency is not None and 0 < latency < 5
    assert "dmarc=pass" in http(base + "/")[1]
    assert_promtool_accepts(text)  # every family the demo fills, canaries included
    assert d.stop() < 5
    assert d.proc.returncode == 0


def test_secrets_never_leave_the_process(
    tmp_path: Path, server_loop: ServerLoop, server_ctx: ssl.SSLContext, ca_file: str,
    daemons: list[Daemon],
) -> None:
    """Distinctive secrets go through failing logins and refused connections at debug level,
    and appear in no log line, metric, status page, status JSON or probe output."""
    secrets = {"SECRET_PW": "Zq9-pass-SECRET-7781", "SECRET_TOKEN": "tok-SECRET-4242-xyz"}
    bad = start_relay(server_loop, ctx=server_ctx, recorder=Recorder(password="other"))
    cfg = write_config(
        tmp_path / "c.yaml",
        {"name": "plain", "port": bad.port, "tls": "starttls", "ca_file": ca_file,
         "interval": "1s", "timeout": "900ms", "auth": auth("plain", password_env="SECRET_PW")},
        {"name": "login", "port": bad.port, "tls": "starttls", "ca_file": ca_file,
         "interval": "1s", "timeout": "900ms", "auth": auth("login", password_env="SECRET_PW")},
        {"name": "oauth", "port": bad.port, "tls": "starttls", "ca_file": ca_file,
         "interval": "1s", "timeout": "900ms",
         "auth": auth("xoauth2", token_env="SECRET_TOKEN")},
        {"name": "refused", "port": refused_port(), "tls": "starttls", "interval": "1s",
         "timeout": "900ms", "auth": auth("plain", password_env="SECRET_PW")},
    )
    d = Daemon(["run", "--config.file", str(cfg), "--web.listen-address", "127.0.0.1:0",
                "--log.level", "debug"], tmp_path / "log", env=secrets)
    daemons.append(d)
    base = f"http://127.0.0.1:{port_from_log(d)}"
    wait_for(lambda: all(
        (value(http(base + "/metrics")[1], "smtp_probe_failures_total", relay=r,
               reason=reason) or 0) >= 2
        for r, reason in (("plain", "auth_failed"), ("login", "auth_failed"),
                          ("oauth", "auth_failed"), ("refused", "connect_refused"))
    ), timeout=20)
    outputs = [http(base + p)[1] for p in ("/metrics", "/", "/status.json")]
    for fmt in ("text", "json"):
        out = run_cli("probe", "--config.file", str(cfg), "--output", fmt, "--transcript",
                      env=secrets)
        outputs += [out.stdout, out.stderr]
    d.stop()
    outputs.append(d.text())
    assert 'msg="probe failed"' in d.text()
    for secret in secrets.values():
        for text in outputs:
            assert secret not in text


def test_probe_prints_a_dns_section(tmp_path: Path, server_loop: ServerLoop) -> None:
    """probe checks the sending domains and relay hosts too: a DNS table in text, and a
    dns object in each relay's JSON; --no-dns leaves them out."""
    from tests.servers.dns import DNSServer
    from tests.servers.zones import SERVFAIL, TIMEOUT, zones

    records = zones()
    records["relay-local.test"] = [("A", "127.0.0.1")]
    server = DNSServer(server_loop, records, set(SERVFAIL), timeout=set(TIMEOUT))
    cfg = write_config(
        tmp_path / "c.yaml",
        {"name": "local", "host": "relay-local.test", "port": refused_port(), "tls": "none"},
        dns={"nameservers": [f"127.0.0.1:{server.port}"], "timeout": "1s"},
        domains=[{"name": "good.test", "dkim_selectors": ["s2048"]}, {"name": "pnone.test"}],
    )
    text = run_cli("probe", "--config.file", str(cfg))
    assert text.returncode == 1  # the relay refuses; DNS findings do not change the status
    dns_part = text.stdout.split("\nDNS\n", 1)[1]
    rows = [line.split(None, 3) for line in dns_part.splitlines()]
    assert ["good.test", "spf", "ok", "one SPF record, 3 of 10 DNS lookups, ends in ~all"] in rows
    assert "DMARC p=none only monitors" in dns_part
    assert "127.0.0.1: not a public address" in dns_part
    doc = json.loads(run_cli("probe", "--config.file", str(cfg), "--output", "json").stdout)
    dns = doc[0]["dns"]
    assert dns["host"][0]["check"] == "address"
    spf = next(c for c in dns["domains"]["good.test"] if c["check"] == "spf")
    assert spf["status"] == "ok"
    bare = run_cli("probe", "--config.file", str(cfg), "--no-dns")
    assert "\nDNS\n" not in bare.stdout


ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_SECRETS = ("GMAIL_APP_PASSWORD", "O365_CLIENT_SECRET", "SENDGRID_API_KEY",
                   "GMAIL_CLIENT_SECRET", "GMAIL_REFRESH_TOKEN")


def _check_example(*flags: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in EXAMPLE_SECRETS}
    return subprocess.run([*EXE, "check-config", *flags, "--config.file", "config.example.yaml"],
                          capture_output=True, text=True, timeout=60, env=env, cwd=ROOT,
                          check=False)


def test_check_config_offline_accepts_the_example_without_its_secrets() -> None:
    """check-config --offline (as CI runs it) passes the example config on a machine without
    its secrets and files, printing a note for each."""
    out = _check_example("--offline")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "config.example.yaml: OK, 5 relays\n"
    notes = out.stderr.splitlines()
    assert ("note: relays[0].auth.password_env: SENDGRID_API_KEY is not set here; it must be "
            "set where the exporter runs") in notes
    assert ("note: relays[3].auth.password_file: /run/secrets/postfix-password does not exist "
            "here; it must exist where the exporter runs") in notes
    assert ("note: relays[3].ca_file: /etc/ssl/private-ca.pem does not exist here; it must "
            "exist where the exporter runs") in notes
    assert not [line for line in notes if line.startswith("error:")]


def test_check_config_without_offline_still_needs_the_secrets() -> None:
    """Without --offline, check-config still exits 1 naming every missing variable."""
    out = _check_example()
    assert out.returncode == 1
    for name in EXAMPLE_SECRETS:
        assert f"environment variable {name} is not set; export it before starting" in out.stderr
    assert "note:" not in out.stderr
    assert out.stderr.splitlines()[-1] == "config.example.yaml: invalid"


def test_check_config_offline_notes_the_web_configs_missing_files(tmp_path: Path) -> None:
    """With --offline, the web config's certificate, key and client CA files missing here are
    notes and the example web config passes; without it they are still errors."""
    web = ("--web.config.file", "web-config.example.yml")
    out = _check_example("--offline", *web)
    assert out.returncode == 0, out.stderr
    for key, name in (("cert_file", "server.crt"), ("key_file", "server.key"),
                      ("client_ca_file", "client-ca.pem")):
        assert (f"note: web-config.example.yml: tls_server_config.{key}: "
                f"/etc/smtp-canary-exporter/{name} does not exist here; it must exist where "
                "the exporter runs") in out.stderr.splitlines()
    cfg = write_config(tmp_path / "c.yaml", {"name": "a", "port": 2525, "tls": "starttls"})
    strict = run_cli("check-config", "--config.file", str(cfg),
                     "--web.config.file", str(ROOT / "web-config.example.yml"))
    assert strict.returncode == 1
    assert (f"error: {ROOT}/web-config.example.yml: tls_server_config.cert_file: "
            "/etc/smtp-canary-exporter/server.crt: no such file") in strict.stderr.splitlines()
