"""The mail test bed (tests/testbed/) and the exporter as a real subprocess, for the e2e suite.

The bed is Debian's Postfix, Dovecot, Knot, OpenDKIM, OpenDMARC and policyd-spf on loopback,
started by ``tests/testbed/start``; its ``env`` gives every address, port and credential. The
exporter runs as ``smtp-canary-exporter run`` with a YAML file and environment variables only,
and is observed the way a user observes it: ``/metrics`` and ``probe --output json``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

TESTBED = Path(__file__).resolve().parents[1] / "testbed"
PROGRAMS = ("postfix", "dovecot", "knotd", "kdig", "opendkim", "opendmarc", "policyd-spf")
_SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin"])


def missing_programs() -> list[str]:
    """The bed's programs that are not installed (empty when the bed can run)."""
    return [name for name in PROGRAMS if shutil.which(name, path=_SBIN_PATH) is None]


@dataclass
class Bed:
    """A running bed: its environment (``tests/testbed/env``) and how long it took to start."""

    env: dict[str, str]
    start_seconds: float

    def __getitem__(self, key: str) -> str:
        return self.env[key]

    @property
    def ca_file(self) -> str:
        return self.env["TB_CA_FILE"]

    def port(self, key: str) -> int:
        return int(self.env[key])

    def log(self, name: str, lines: int = 40) -> str:
        path = Path(self.env["TB_LOGS"]) / name
        with contextlib.suppress(OSError):
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return f"({path} unreadable)"

    def logs(self) -> str:
        """The tail of every daemon's log, for a failure message."""
        return "\n".join(
            f"--- {name} ---\n{self.log(name)}"
            for name in ("postfix.log", "dovecot.log", "knot.log", "opendkim-verify.stderr",
                         "opendmarc.stderr")
        )

    def stop_daemon(self, *names: str) -> None:
        _script("stop", *names)

    def start_daemon(self, *names: str) -> None:
        _script("start", *names)


def _script(name: str, *args: str, timeout: float = 60) -> str:
    done = subprocess.run(
        [str(TESTBED / name), *args], capture_output=True, text=True, timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"tests/testbed/{name} {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def start_bed() -> Bed:
    t0 = time.monotonic()
    out = _script("start")
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return Bed(env=env, start_seconds=time.monotonic() - t0)


def stop_bed() -> None:
    _script("stop")


def mint_token(bed: Bed, user: str, *, lifetime: int = 3600) -> str:
    """An HS256 JWT that Dovecot's oauth2 passdb validates locally (introspection_mode=local).

    Back-dated a minute: Dovecot refuses a token issued "in the future" by its coarser clock."""

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    now = int(time.time()) - 60
    claims = {"sub": user, "iat": now, "nbf": now, "exp": now + lifetime}
    signing_input = b64(b'{"alg":"HS256","typ":"JWT"}') + b"." + b64(json.dumps(claims).encode())
    key = base64.b64decode(bed["TB_OAUTH2_HS256_KEY"])
    signature = hmac.new(key, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + b64(signature)).decode()


def exporter_command() -> list[str]:
    """The installed console script, next to this interpreter (the venv's bin/)."""
    script = Path(sys.executable).with_name("smtp-canary-exporter")
    if not script.exists():
        found = shutil.which("smtp-canary-exporter")
        if found is None:
            raise RuntimeError("smtp-canary-exporter is not installed: pip install -e .")
        return [found]
    return [str(script)]


def write_config(path: Path, doc: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(dict(doc), sort_keys=False))
    return path


def probe_json(config: Path, env: Mapping[str, str], *relays: str,
               dns: bool = True) -> list[dict[str, Any]]:
    """``smtp-canary-exporter probe --output json``: one object per relay."""
    args = [*exporter_command(), "probe", "--config.file", str(config), "--output", "json"]
    for relay in relays:
        args += ["--relay", relay]
    if not dns:
        args.append("--no-dns")
    done = subprocess.run(
        args, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, **env},
    )
    assert done.returncode in (0, 1), f"probe exited {done.returncode}:\n{done.stderr}"
    doc: list[dict[str, Any]] = json.loads(done.stdout)
    return doc


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass
class Metrics:
    """One scrape of /metrics."""

    samples: Samples

    def get(self, name: str, **labels: str) -> float | None:
        """The value of the one sample ``name`` whose labels include ``labels``."""
        found = self.all(name, **labels)
        if not found:
            return None
        assert len(found) == 1, f"{name}{labels} matches {len(found)} samples: {found}"
        return next(iter(found.values()))

    def all(self, name: str, **labels: str) -> dict[frozenset[tuple[str, str]], float]:
        want = set(labels.items())
        return {
            key_labels: value
            for (key_name, key_labels), value in self.samples.items()
            if key_name == name and want <= key_labels
        }


@dataclass
class Exporter:
    """``smtp-canary-exporter run`` in a subprocess, on an ephemeral port."""

    config: Path
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""
    last: Metrics | None = field(default=None, repr=False)

    def start(self, timeout: float = 20) -> None:
        log = self.log_path.open("ab")
        with log:
            self.proc = subprocess.Popen(
                [*exporter_command(), "run", "--config.file", str(self.config),
                 "--web.listen-address", "127.0.0.1:0", "--log.level", "debug"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                env={**os.environ, **self.env},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(r'msg="exporter started" .*listen=127\.0\.0\.1:(\d+)',
                              self.log_path.read_text(errors="replace"))
            if match:
                self.url = f"http://127.0.0.1:{match[1]}"
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"the exporter did not start:\n{self.log_tail()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def scrape(self) -> Metrics:
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as response:
            text = response.read().decode()
        samples: Samples = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
        self.last = Metrics(samples)
        return self.last

    def page(self) -> str:
        """The status page (HTML)."""
        with urllib.request.urlopen(self.url + "/", timeout=10) as response:
            return str(response.read().decode())

    def wait_for(self, what: str, check: Callable[[Metrics], object],
                 timeout: float = 60) -> Metrics:
        """Scrape until ``check`` holds on a scrape, and return that scrape; fail with ``what``
        (and the exporter's log) on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None and self.proc.poll() is None, (
                f"the exporter exited:\n{self.log_tail()}"
            )
            metrics = self.scrape()
            if check(metrics):
                return metrics
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout:g} s waiting for {what}\n"
                    f"--- exporter log ---\n{self.log_tail()}"
                )
            time.sleep(0.25)


@contextlib.contextmanager
def running_exporter(tmp: Path, doc: Mapping[str, Any],
                     env: Mapping[str, str]) -> Iterator[Exporter]:
    """``smtp-canary-exporter run`` with config ``doc`` and environment ``env``, stopped after."""
    tmp.mkdir(parents=True, exist_ok=True)
    exporter = Exporter(write_config(tmp / "config.yaml", doc), dict(env), tmp / "exporter.log")
    exporter.start()
    try:
        yield exporter
    finally:
        exporter.stop()
