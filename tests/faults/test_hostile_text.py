"""Hostile relays on loopback send invalid UTF-8, terminal escapes, a 31 KB AUTH list, a
STARTTLS refusal full of both, and the AUTH password echoed back where the 500-character cap
cuts it. The real daemon (logfmt and JSON logs) and `probe` (text and JSON, UTF-8 locale)
keep every output valid, escaped and free of the password."""

from __future__ import annotations

import http.client
import json
import os
import re
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from tests.conftest import ENV, auth
from tests.helpers import assert_promtool_accepts, samples, wait_for
from tests.relay.hostile import (
    ECHO_PASSWORD,
    REJECTING_GREETING,
    STARTTLS_REFUSAL,
    echo_variants,
    echoing,
    hostile,
    password_windows,
)
from tests.servers.loop import ServerLoop
from tests.servers.scripted import start_scripted
from tests.test_cli import EXE, Daemon, port_from_log

# Raw bytes no output may hold: ESC, BEL, the other C0 controls but tab and line ends, DEL,
# and C1 controls in UTF-8 (U+0080..U+009F, the 8-bit CSI U+009B among them).
RAW = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\xc2[\x80-\x9f]")
# What a cleaned string may never hold: a control character or a lone surrogate.
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
HOSTILE = ("auth-junk", "starttls-refused", "greeting-escapes")


@dataclass(frozen=True)
class Fetched:
    status: int
    body: bytes
    seconds: float


@dataclass(frozen=True)
class DaemonRun:
    fmt: str
    metrics: Fetched
    page: Fetched
    status_json: Fetched
    log: bytes


@dataclass(frozen=True)
class Outputs:
    relays: list[str]
    daemons: list[DaemonRun]
    probes: dict[str, subprocess.CompletedProcess[bytes]]

    def everything(self) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for d in self.daemons:
            out |= {f"{d.fmt} /metrics": d.metrics.body, f"{d.fmt} /": d.page.body,
                    f"{d.fmt} /status.json": d.status_json.body, f"{d.fmt} log": d.log}
        for fmt, proc in self.probes.items():
            out |= {f"probe {fmt} stdout": proc.stdout, f"probe {fmt} stderr": proc.stderr}
        return out


def fetch(url: str) -> Fetched:
    """Status, raw body and seconds to answer; a broken answer is status 0, not an error."""
    start = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, body = err.code, err.read()
    except (OSError, http.client.HTTPException) as err:
        status, body = 0, repr(err).encode()
    return Fetched(status, body, time.monotonic() - start)


def _config(path: Path, ports: dict[str, int], ca_file: str) -> list[str]:
    common = {"host": "127.0.0.1", "interval": "4s", "timeout": "2s"}
    relays: list[dict[str, Any]] = [
        {"name": "auth-junk", "port": ports["auth-junk"], "tls": "starttls",
         "ca_file": ca_file, "auth": auth("cram-md5")},
        {"name": "starttls-refused", "port": ports["starttls-refused"], "tls": "starttls",
         "ca_file": ca_file},
        {"name": "greeting-escapes", "port": ports["greeting-escapes"], "tls": "none"},
    ]
    relays += [{"name": f"echo-{v}", "port": ports["echo"], "tls": "none",
                "allow_plaintext_auth": True,
                "auth": {"mechanism": "plain", "username": v, "password_env": "ECHO_PASSWORD"}}
               for v in echo_variants()]
    path.write_text(yaml.safe_dump({"relays": [{**common, **r} for r in relays]}))
    return [r["name"] for r in relays]


def _run_daemon(cfg: Path, log: Path, fmt: str, names: list[str]) -> DaemonRun:
    d = Daemon(["run", "--config.file", str(cfg), "--web.listen-address", "127.0.0.1:0",
                "--log.level", "debug", "--log.format", fmt], log,
               env={"ECHO_PASSWORD": ECHO_PASSWORD})
    try:
        base = f"http://127.0.0.1:{port_from_log(d)}"

        def all_failed_once() -> bool:
            text = d.text()
            return d.proc.poll() is not None or all(
                re.search(rf'relay"?[=:] ?"?{re.escape(n)}[" ]', text) for n in names)

        wait_for(all_failed_once, what="a failed probe of every relay in the log", timeout=60)
        run = DaemonRun(fmt, fetch(base + "/metrics"), fetch(base + "/"),
                        fetch(base + "/status.json"), b"")
    finally:
        d.stop()
        if d.proc.poll() is None:
            d.proc.kill()
    return DaemonRun(run.fmt, run.metrics, run.page, run.status_json, log.read_bytes())


def _probe(cfg: Path, fmt: str, *, strict: bool) -> subprocess.CompletedProcess[bytes]:
    """`probe` under LANG=C.UTF-8, where Python writes undecodable text as raw bytes, or
    ``strict`` as under any other UTF-8 locale (en_US.UTF-8), where it raises instead."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONIOENCODING", "PYTHONUTF8", "LC_CTYPE")}
    env |= {**ENV, "ECHO_PASSWORD": ECHO_PASSWORD, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    if strict:
        env["PYTHONIOENCODING"] = "utf-8:strict"
    return subprocess.run([*EXE, "probe", "--config.file", str(cfg), "--output", fmt,
                           "--transcript", "--no-dns"],
                          capture_output=True, timeout=120, env=env, check=False)


@pytest.fixture(scope="module")
def outputs(server_loop: ServerLoop, ca: trustme.CA, ca_file: str,
            tmp_path_factory: pytest.TempPathFactory) -> Outputs:
    """One set of hostile relays, seen by the daemon in both log formats and by `probe` in
    both output formats."""
    cert = ca.issue_cert("127.0.0.1", organization_unit_name="\x1b]0;cert-title\x07 \x9b31m")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    ports = {
        "auth-junk": start_scripted(server_loop, hostile(tls=ctx)),
        "starttls-refused": start_scripted(server_loop,
                                           hostile(starttls_refusal=STARTTLS_REFUSAL)),
        "greeting-escapes": start_scripted(server_loop, hostile(greeting=REJECTING_GREETING)),
        "echo": start_scripted(server_loop, echoing()),
    }
    tmp = tmp_path_factory.mktemp("hostile")
    cfg = tmp / "c.yaml"
    names = _config(cfg, ports, ca_file)
    daemons = [_run_daemon(cfg, tmp / f"log-{fmt}", fmt, names) for fmt in ("logfmt", "json")]
    probes = {f"{fmt}{'-strict' if strict else ''}": _probe(cfg, fmt, strict=strict)
              for fmt in ("text", "json") for strict in (False, True)}
    return Outputs(names, daemons, probes)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def strict_json(body: bytes) -> Any:
    """JSON as a strict parser takes it: UTF-8 decoded strictly, and no string holding a lone
    surrogate (Python's json accepts a "\\udcff" escape; strict parsers reject it)."""
    doc = json.loads(body.decode("utf-8"))
    for text in _strings(doc):
        text.encode("utf-8")  # raises on a lone surrogate
        assert not UNSAFE.search(text), repr(text)
    return doc


def test_metrics_stay_valid_and_answer_within_a_second(outputs: Outputs) -> None:
    """Invalid UTF-8 in an EHLO AUTH list and in a STARTTLS refusal: /metrics answers within
    1 s, promtool accepts it, and the hint label is one short sentence of the exporter's."""
    for run in outputs.daemons:
        assert run.metrics.status == 200, run.metrics.body[:300]
        assert run.metrics.seconds < 1.0
        text = run.metrics.body.decode("utf-8")
        assert_promtool_accepts(text)
        failing = {dict(labels)["relay"]: dict(labels)
                   for (name, labels), _ in samples(text).items()
                   if name == "smtp_probe_last_failure_info"}
        assert set(failing) == set(outputs.relays)
        assert failing["auth-junk"]["reason"] == "auth_unsupported"
        assert failing["auth-junk"]["hint"] == "set auth.mechanism to one of: login"
        assert failing["starttls-refused"]["reason"] == "rejected_temporary"
        assert max(len(labels["hint"]) for labels in failing.values()) <= 300
        assert not RAW.search(run.metrics.body)


def test_status_page_and_json_are_strict_utf8(outputs: Outputs) -> None:
    """The status page and /status.json decode strictly as UTF-8, and status.json parses
    with no lone surrogate and no control character in any string."""
    for run in outputs.daemons:
        assert run.page.status == 200, run.page.body[:300]
        run.page.body.decode("utf-8")
        assert not RAW.search(run.page.body)
        assert run.status_json.status == 200
        relays = {r["relay"]: r for r in strict_json(run.status_json.body)}
        refused = relays["starttls-refused"]
        assert refused["reason"] == "rejected_temporary"
        assert refused["reply"].startswith("454 4.7.0 TLS \ufffd")
        assert "\\x1b]0\\;cert-title\\x07" in relays["auth-junk"]["tls"]["subject"]


def test_probe_exits_normally_under_a_utf8_locale(outputs: Outputs) -> None:
    """`probe` in text and JSON under a UTF-8 locale (C.UTF-8, and with strict stdout as in
    en_US.UTF-8) prints every relay and exits 1 (relays failed), not with a traceback; its
    output is valid UTF-8 and its JSON strict."""
    assert len(outputs.probes) == 4
    for fmt, proc in outputs.probes.items():
        assert proc.returncode == 1, proc.stderr.decode("utf-8", "replace")[-2000:]
        assert b"Traceback" not in proc.stderr
        text = proc.stdout.decode("utf-8")
        if fmt.startswith("json"):
            assert {r["relay"] for r in strict_json(proc.stdout)} == set(outputs.relays)
        else:
            assert all(f"\n{name}: FAIL" in text for name in HOSTILE)


def test_escape_sequences_reach_probe_output_and_logs_only_escaped(outputs: Outputs) -> None:
    """A greeting with a window-title escape, a screen clear, an OSC 52 clipboard write and
    the 8-bit CSI: `probe` text output and the logs (logfmt and JSON) show them as \\x1b...,
    never raw."""
    shown = {"probe text": outputs.probes["text"].stdout,
             "probe text (strict stdout)": outputs.probes["text-strict"].stdout,
             **{f"{d.fmt} log": d.log for d in outputs.daemons}}
    for where, body in shown.items():
        assert not RAW.search(body), (where, RAW.search(body))
        for escaped in (rb"x1b]0;pwned-title", rb"x1b[2J", rb"x1b]52;c;cHduZWQ=", rb"x9b31m"):
            assert re.search(rb"\\" + re.escape(escaped), body), (where, escaped)


def test_an_echoed_password_leaves_no_prefix_in_any_output(outputs: Outputs) -> None:
    """A server echoing the AUTH password at every cut position across the 500-character
    cap (raw, base64, split over reply lines): no 4 characters of it in any log, /metrics,
    status page, /status.json or `probe` output."""
    everything = outputs.everything()
    assert len(everything) == 16
    for where, body in everything.items():
        assert password_windows(body.decode("utf-8", "replace")) == [], where
    assert b"***" in everything["probe json stdout"]
