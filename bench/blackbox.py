"""Prometheus' blackbox_exporter as the yardstick: started on 127.0.0.1 with an SMTP module that
does STARTTLS and AUTH PLAIN through query_response, its CPU time read from /proc.

Debian package prometheus-blackbox-exporter (``apt-get install -y --no-install-recommends
prometheus-blackbox-exporter``, with a /usr/sbin/policy-rc.d exiting 101 so no system daemon
starts). Only 127.0.0.1 is used.
"""

from __future__ import annotations

import base64
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BLACKBOX = "prometheus-blackbox-exporter"

MODULE = """modules:
  smtp_starttls_auth:
    prober: tcp
    timeout: 10s
    tcp:
      preferred_ip_protocol: ip4
      tls_config:
        ca_file: {ca}
        server_name: localhost
      query_response:
        - expect: "^220 "
        - send: "EHLO {ehlo}\\r"
        - expect: "^250 STARTTLS"
        - send: "STARTTLS\\r"
        - expect: "^220 "
        - starttls: true
        - send: "EHLO {ehlo}\\r"
        - expect: "^250 AUTH"
        - send: "AUTH PLAIN {auth}\\r"
        - expect: "^235 "
        - send: "QUIT\\r"
        - expect: "^221 "
"""


@dataclass
class Blackbox:
    proc: subprocess.Popen[str]
    url: str  # /probe of the smtp_starttls_auth module against the relay
    conf: Path

    def probe(self) -> bool:
        with urllib.request.urlopen(self.url, timeout=30) as r:
            return b"\nprobe_success 1" in r.read()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def blackbox(
    relay_port: int, ca: Path, tmp: Path, *, password: str, username: str = "bench",
    ehlo: str = "r0000.bench.test",
) -> Iterator[Blackbox | str]:
    """blackbox_exporter probing 127.0.0.1:``relay_port``, once probed successfully; or why
    it cannot run (not installed, did not start, its probe failed)."""
    exe = shutil.which(BLACKBOX)
    if exe is None:
        yield f"{BLACKBOX} is not installed (apt-get install {BLACKBOX})"
        return
    auth = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
    conf = tmp / "blackbox.yml"
    conf.write_text(MODULE.format(ca=ca, auth=auth, ehlo=ehlo), encoding="utf-8")
    port = free_port()
    proc = subprocess.Popen(
        [exe, f"--config.file={conf}", f"--web.listen-address=127.0.0.1:{port}",
         "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
    )
    box = Blackbox(proc, f"http://127.0.0.1:{port}/probe?module=smtp_starttls_auth"
                         f"&target=127.0.0.1:{relay_port}", conf)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                ok = box.probe()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    ok = None
                    break
                time.sleep(0.1)
        if ok is None:
            yield f"{BLACKBOX} did not start"
        elif not ok:
            yield f"{BLACKBOX}'s probe failed; its module is in {conf}"
        else:
            yield box
    finally:
        proc.terminate()
        proc.wait(10)
