"""The package reads by feature: each feature imports only what its layer may, other features
only through their package roots, and no module grows past 400 lines. bench/ and the servers
it shares with the tests (testservers/) stand without tests/, and the wheel without either."""

from __future__ import annotations

import ast
import fnmatch
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "exporter"
MAX_LINES = 400

# Who may import whom inside exporter/ ("__init__" is `from exporter import __version__`).
# Shared vocabulary at the bottom, protocol layers above it, features above those, and the
# readers of every feature (metrics, web) and the wiring (app, cli) at the top.
SHARED = {"__init__", "model", "peertext", "tasks", "histogram", "exposition", "config"}
ALLOWED: dict[str, set[str]] = {
    "model": set(),
    "peertext": set(),
    "tasks": set(),
    "histogram": set(),
    "exposition": set(),
    "logs": set(),
    "heap": set(),
    "config": {"model"},
    "headers": {"peertext"},
    "diagnosis": {"model", "peertext", "config"},
    "smtp": {"__init__", "model", "peertext", "config", "diagnosis"},
    "relay": SHARED | {"smtp"},
    "canary": SHARED | {"smtp", "headers"},
    "dns": SHARED | {"smtp"},
    "demo": set(),
    "metrics": SHARED | {"relay", "canary", "dns"},
    "web": SHARED | {"relay", "canary", "dns"},
    "app": SHARED | {"relay", "canary", "dns", "web", "metrics", "heap"},
    "sharding": SHARED,
    "cli": SHARED | {"app", "logs", "relay", "dns", "smtp", "web", "demo", "sharding"},
    "__main__": {"cli"},
}
FEATURES = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}


def _modules() -> Iterator[Path]:
    yield from sorted(PACKAGE.rglob("*.py"))


def _unit(path: Path) -> str:
    """The feature folder or top-level module a file belongs to."""
    rel = path.relative_to(PACKAGE).parts
    return rel[0] if len(rel) > 1 else path.stem


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "exporter":
                for alias in node.names:
                    yield node.lineno, f"exporter.{alias.name}"
            elif node.module.startswith("exporter."):
                yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("exporter."):
                    yield node.lineno, alias.name


def _target(module: str) -> tuple[str, list[str]]:
    """(unit, the rest of the dotted path) of an ``exporter.*`` module."""
    parts = module.split(".")[1:]
    if parts[0] == "__version__":
        return "__init__", []
    return parts[0], parts[1:]


def test_every_unit_has_an_import_rule() -> None:
    """A new feature folder or top-level module is placed in the layering table."""
    units = {_unit(path) for path in _modules()} - {"__init__"}
    assert units <= set(ALLOWED), f"add to ALLOWED: {sorted(units - set(ALLOWED))}"


@pytest.mark.parametrize("path", list(_modules()), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_layers(path: Path) -> None:
    """A module imports only the layers its unit may, and another feature only through that
    feature's package root (``from exporter.dns import DNSStore``), never its internals."""
    unit = _unit(path)
    problems = []
    for line, module in _imports(path):
        target, rest = _target(module)
        if target == unit:
            continue
        if target not in ALLOWED.get(unit, set()):
            problems.append(f"line {line}: {unit} may not import {module}")
        elif target in FEATURES and rest:
            problems.append(f"line {line}: import from exporter.{target}, not {module}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", list(_modules()), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_stay_small(path: Path) -> None:
    """No module of the package is longer than 400 lines."""
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{lines} lines: split it by what it holds"


def test_benchmarks_import_nothing_from_tests() -> None:
    """bench/ stands on its own: it imports the package and shared servers, never tests/."""
    offenders = []
    for path in sorted((ROOT / "bench").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [node.module or ""] if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names] if isinstance(node, ast.Import) else []
            )
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "tests"]
    assert not offenders, offenders


def _top_level_imports(folder: str) -> Iterator[tuple[str, str]]:
    """(file, imported module) for every absolute import in the Python files under ``folder``."""
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                yield str(path.relative_to(ROOT)), node.module
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    yield str(path.relative_to(ROOT)), alias.name


def test_shared_servers_import_nothing_from_tests() -> None:
    """testservers/, which bench/ imports, imports nothing from tests/ either."""
    offenders = [f"{path}: {name}" for path, name in _top_level_imports("testservers")
                 if name.split(".")[0] == "tests"]
    assert not offenders, offenders


def test_package_imports_no_test_code() -> None:
    """exporter/ (the wheel) needs neither tests/ nor testservers/."""
    offenders = [f"{path}: {name}" for path, name in _top_level_imports("exporter")
                 if name.split(".")[0] in ("tests", "testservers")]
    assert not offenders, offenders


def test_wheel_leaves_out_tests_and_testservers() -> None:
    """pyproject's package search takes exporter, and neither tests, testservers nor bench."""
    with (ROOT / "pyproject.toml").open("rb") as f:
        include = tomllib.load(f)["tool"]["setuptools"]["packages"]["find"]["include"]

    def shipped(name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in include)

    assert shipped("exporter") and shipped("exporter.demo")
    assert not any(shipped(name) for name in ("tests", "tests.servers", "testservers", "bench"))


BENCH_SCRIPTS = sorted(p.name for p in (ROOT / "bench").glob("*.py")
                       if 'if __name__ == "__main__":' in p.read_text(encoding="utf-8"))


@pytest.mark.parametrize("script", BENCH_SCRIPTS)
def test_bench_script_imports(script: str, tmp_path: Path) -> None:
    """Each benchmark imports what it needs and prints its usage, from any directory."""
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / script), "--help"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout
