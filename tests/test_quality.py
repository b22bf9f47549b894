"""The code itself: ruff's lint rules and mypy --strict hold on the package and the tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tool(name: str) -> list[str]:
    if shutil.which(name) is None and not os.environ.get("CI"):
        pytest.skip(f"{name} is not installed (pip install -e '.[test]')")
    return [sys.executable, "-m", name]


def test_ruff_passes() -> None:
    """ruff reports nothing on exporter/, tests/ and bench/."""
    targets = [p for p in ("exporter", "tests", "bench") if (ROOT / p).exists()]
    proc = subprocess.run([*_tool("ruff"), "check", *targets], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_strict_passes() -> None:
    """mypy --strict finds no type error in exporter/."""
    proc = subprocess.run([*_tool("mypy"), "--strict", "exporter"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
