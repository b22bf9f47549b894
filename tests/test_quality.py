"""The code itself: ruff's lint rules hold on the whole repository and mypy --strict on the
package, the tests and the benchmarks. In CI a missing linter fails these tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.tools import python_module

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_passes() -> None:
    """ruff reports nothing anywhere in the repository."""
    proc = subprocess.run([*python_module("ruff"), "check", "."], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_strict_passes() -> None:
    """mypy --strict finds no type error in exporter/, tests/, bench/ or testservers/."""
    proc = subprocess.run([*python_module("mypy"), "--strict", "exporter", "tests", "bench",
                           "testservers"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
