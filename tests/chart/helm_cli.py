"""`helm template` and `helm lint` through Helm's own Go code (PyPI helm-python-sdk, Helm v4),
for machines without a helm binary:

    python tests/chart/helm_cli.py template RELEASE CHART [-n NS] [-f values.yaml]... [--set k=v]...
    python tests/chart/helm_cli.py lint CHART [--strict] [-f values.yaml]...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

__all__ = ["lint", "main", "merge", "render", "render_documents"]


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's value merge: maps merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def _values(files: list[str], sets: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for path in files:
        values = merge(values, yaml.safe_load(Path(path).read_text()) or {})
    for item in sets:
        values = merge(values, helm.parse_set_string(item))
    return values


def render(chart: str | Path, values: dict[str, Any] | None = None, *,
           release: str = "demo", namespace: str = "monitoring") -> dict[str, str]:
    """Template path -> rendered text, as `helm template` renders them (schema checked)."""
    with helm.Chart.load(str(chart)) as loaded:
        return loaded.render(values or {}, name=release, namespace=namespace,
                             is_install=True)


def render_documents(chart: str | Path, values: dict[str, Any] | None = None, *,
                     release: str = "demo", namespace: str = "monitoring") -> list[dict[str, Any]]:
    """Every Kubernetes object the chart renders, parsed."""
    docs: list[dict[str, Any]] = []
    for path, text in sorted(render(chart, values, release=release,
                                    namespace=namespace).items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def lint(chart: str | Path, values: dict[str, Any] | None = None, *,
         strict: bool = True) -> list[str]:
    """Helm's lint findings that fail `helm lint`: errors, and warnings too with ``strict``
    (info messages such as "icon is recommended" never fail it)."""
    report = helm.lint(str(chart), values, strict=strict, quiet=False)
    floor = 2 if strict else 3
    found = [f"[{m['severity']}] {m.get('path', '')}: {m['error']}"
             for m in report.get("messages", []) if m["severity"] >= floor]
    return found + [str(e) for e in report.get("errors", []) if e not in found]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="helm_cli.py")
    sub = parser.add_subparsers(dest="command", required=True)
    tpl = sub.add_parser("template")
    tpl.add_argument("release")
    tpl.add_argument("chart")
    tpl.add_argument("-n", "--namespace", default="default")
    tpl.add_argument("-s", "--show-only", action="append", default=[])
    for p in (tpl, lnt := sub.add_parser("lint")):
        p.add_argument("-f", "--values", action="append", default=[])
        p.add_argument("--set", action="append", default=[])
    lnt.add_argument("chart")
    lnt.add_argument("--strict", action="store_true")
    args = parser.parse_args(argv)
    values = _values(args.values, args.set)
    try:
        if args.command == "lint":
            problems = lint(args.chart, values, strict=args.strict)
            for problem in problems:
                print(problem)
            print(f"1 chart(s) linted, {len(problems)} problem(s)")
            return 1 if problems else 0
        manifests = render(args.chart, values, release=args.release,
                           namespace=args.namespace)
    except helm.HelmError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    for path, text in sorted(manifests.items()):
        shown = path.split("/", 1)[1]
        if path.endswith("NOTES.txt") or not text.strip():
            continue
        if args.show_only and shown not in args.show_only:
            continue
        print(f"---\n# Source: {path}\n{text.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
