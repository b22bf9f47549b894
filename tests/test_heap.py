"""The daemon freezes each adopted config out of the garbage collector's way, and a reload
does not pile frozen configs up. Run in a child process: freezing is process-wide."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ENV

SCRIPT = r"""
import asyncio, gc, json, sys
from exporter.app import App

async def main(path, reloads):
    app = App(path, listen=("127.0.0.1", 0), environ={}, freeze_heap=True)
    await app.start()
    counts = [gc.get_freeze_count()]
    for _ in range(reloads):
        ok, message = await app.reload()
        assert ok, message
        counts.append(gc.get_freeze_count())
    threshold = gc.get_threshold()[0]
    await app.stop()
    print(json.dumps({"counts": counts, "threshold": threshold}))

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def _fleet(path: Path, relays: int) -> Path:
    lines = ["relays:"] + [
        f"  - {{name: r{i}, host: 127.0.0.1, port: 9, tls: none, interval: 1h}}"
        for i in range(relays)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_config_objects_are_frozen_and_reloads_do_not_pile_up(tmp_path: Path) -> None:
    """After start-up the 300 relays' config lives in the frozen generation; ten reloads of
    the same file keep the frozen count where the first left it (each reload's leftovers are
    collected before the new config is frozen; a leak would add thousands of objects a
    reload), and young collections run every 20,000 allocations."""
    config = _fleet(tmp_path / "fleet.yaml", 300)
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(config), "10"], capture_output=True,
                         text=True, timeout=120, env={**ENV, "PATH": "/usr/bin:/bin"},
                         cwd=Path(__file__).resolve().parents[1], check=False)
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    counts = figures["counts"]
    assert counts[0] > 300 * 10, counts  # every relay's config objects, and more
    assert counts[-1] - counts[1] < 1_000, counts
    assert figures["threshold"] == 20_000
