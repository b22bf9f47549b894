"""The tools some tests need (promtool, prometheus, hadolint, ruff, mypy, the chart's
libraries): found on PATH or beside this Python, skipped when missing, except in CI, where a
missing tool fails the test instead of letting a gate pass unseen."""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import sys
from pathlib import Path
from typing import Any, NoReturn

import pytest

__all__ = ["executable", "module", "python_module", "unavailable"]


def unavailable(message: str) -> NoReturn:
    """Skip the test for a missing tool; in CI (``CI`` set), fail it."""
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI must have it)")
    pytest.skip(message)


def executable(name: str, install: str) -> str:
    """The path of command ``name``: on PATH, or beside this Python (a virtualenv that was
    not activated)."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        unavailable(f"{name} is not installed: {install}")
    return found


def python_module(name: str, install: str = "pip install -e '.[test]'") -> list[str]:
    """The command that runs module ``name`` with this Python (``python -m name``)."""
    if importlib.util.find_spec(name) is None:
        unavailable(f"{name} is not installed: {install}")
    return [sys.executable, "-m", name]


def module(name: str, install: str = "pip install -e '.[test]'") -> Any:
    """Import module ``name``, or skip (fail in CI) when it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        unavailable(f"{name} is not installed: {install}")
