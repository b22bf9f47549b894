"""What the benchmarks share: the truth relay process, relay configs, percentiles, CPU clocks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from exporter.config import Config, parse_config  # noqa: E402
from exporter.demo.certs import make_certificate  # noqa: E402

PASSWORD = "bench-password"
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class TruthRelay:
    port: int
    ca: Path
    cert: Path
    key: Path
    log: Path
    proc: subprocess.Popen[str]
    _offset: int = 0

    def new_lines(self) -> list[dict[str, object]]:
        """Truth lines written since the last call."""
        with self.log.open(encoding="utf-8") as f:
            f.seek(self._offset)
            text = f.read()
        complete, _, _ = text.rpartition("\n")
        if not complete:
            return []
        self._offset += len(complete.encode("utf-8")) + 1
        return [json.loads(line) for line in complete.splitlines() if line]

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.proc.pid)


@contextmanager
def truth_relay(
    tmp: Path, *, greeting_ms: float = 20, ehlo_ms: float = 50, auth_ms: float = 200,
    priority: str = "none",
) -> Iterator[TruthRelay]:
    """bench/truth_relay.py in its own process, with a throwaway CA and certificate."""
    tmp.mkdir(parents=True, exist_ok=True)
    ca, cert, key = make_certificate(tmp)
    log = tmp / "truth.jsonl"
    log.touch()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "truth_relay.py"), "--cert", str(cert),
         "--key", str(key), "--log", str(log), "--greeting-ms", str(greeting_ms),
         "--ehlo-ms", str(ehlo_ms), "--auth-ms", str(auth_ms),
         "--priority", priority],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield TruthRelay(port, ca, cert, key, log, proc)
    finally:
        proc.terminate()
        proc.wait(10)


def relay_config(
    relay: TruthRelay, count: int, *, interval: str = "60s", timeout: str = "30s",
    max_concurrent: int | None = None,
) -> str:
    """YAML for ``count`` STARTTLS+AUTH PLAIN relays on the truth relay, each with its own
    EHLO name (rNNNN.bench.test) so the relay's log pairs with the probe."""
    lines = []
    if max_concurrent is not None:
        lines.append(f"max_concurrent_probes: {max_concurrent}")
    lines.append("relays:")
    for i in range(count):
        lines.append(
            f"  - {{name: r{i:04d}, host: 127.0.0.1, port: {relay.port}, tls: starttls,"
            f" ca_file: {relay.ca}, ehlo_name: r{i:04d}.bench.test,"
            f" interval: {interval}, timeout: {timeout},"
            f" auth: {{username: bench, password_env: BENCH_PASSWORD}}}}"
        )
    return "\n".join(lines) + "\n"


def load(text: str) -> Config:
    return parse_config(text, environ={"BENCH_PASSWORD": PASSWORD})


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mib(pid: int | None = None) -> float:
    for line in Path(f"/proc/{pid or 'self'}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def write_json(path: str | None, data: object) -> None:
    if path:
        Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def now_utc() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
