"""Run every benchmark, print one table, and write it (Markdown and JSON) and a plot to OUTDIR.

Called by bench/run. Each benchmark runs as its own process (so CPU time and RSS are its
own) and writes its figures as JSON into OUTDIR; this script gathers them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
GOAL_ERROR_MS = 1.0

BENCHMARKS: list[tuple[str, list[str]]] = [
    ("timing_truth", ["timing_truth.py", "--rows", "1,100,1000,100s,1000s"]),
    ("probe_cost", ["probe_cost.py", "--probes", "1000", "--concurrency", "10"]),
    ("scale", ["scale.py", "--relays", "1000,10000", "--interval", "60"]),
    ("canary_detection", ["canary_detection.py", "--messages", "10", "--poll-interval", "5"]),
]


def _machine() -> dict[str, str]:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": str(os.cpu_count()),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value:+.2f}"


def _rows(figs: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(measurement, figure, goal, verdict) rows for the one table."""
    rows: list[tuple[str, str, str, str]] = []
    truth = figs.get("timing_truth")
    if truth:
        for r in truth["rows"]:
            plural = "" if r["relays"] == 1 else "s"
            name = (f"timing error, {r['relays']:,} relay{plural}"
                    + (" + /metrics loop" if r["scrape"] else ""))
            cells = [f"{k} {_ms(r[f'{k}_p50_ms'])} / {_ms(r[f'{k}_p99_ms'])}"
                     for k in ("greeting", "ehlo", "auth")]
            worst = max(abs(r[f"{k}_p99_ms"] or 0.0) for k in ("greeting", "ehlo", "auth"))
            fig = "p50 / p99 ms: " + ", ".join(cells) + f" ({r['probes']} probes"
            fig += f", {r['failed']} failed)"
            if r.get("relay_late_p99_ms") is not None:
                fig += f"; the relay's own accept() late by p99 {r['relay_late_p99_ms']:.2f} ms"
            ok = worst < GOAL_ERROR_MS and not r["failed"]
            rows.append((name, fig, "p99 < 1 ms", "met" if ok else "MISSED"))
    cost = figs.get("probe_cost")
    if cost:
        if "ratio" in cost:
            fig = (f"{cost['exporter_cpu_ms_per_probe']:.2f} ms vs blackbox_exporter "
                   f"{cost['blackbox_cpu_ms_per_probe']:.2f} ms: ratio {cost['ratio']:.2f} "
                   f"({cost.get('probes', '?')} probes each; per round "
                   f"{', '.join(f'{r:.2f}' for r in cost.get('ratio_per_round', []))})")
            verdict = "met" if cost["ratio"] <= 1.0 else "MISSED"
        else:
            fig = (f"{cost['exporter_cpu_ms_per_probe']:.2f} ms; blackbox_exporter: "
                   f"{cost.get('blackbox_error')}")
            verdict = "not compared"
        rows.append(("CPU per STARTTLS+AUTH probe", fig, "ratio <= 1", verdict))
    scale = figs.get("scale")
    if scale:
        for r in scale["rows"]:
            rows.extend(_scale_rows(r))
    canary = figs.get("canary_detection")
    if canary:
        if "skipped" in canary:
            rows.append(("canary detection delay", f"skipped: {canary['skipped']}", "-", "-"))
        for r in canary.get("rows", []):
            fig = (f"p50 {r.get('p50_ms')} / p95 {r.get('p95_ms')} ms "
                   f"({r['seen']} of {canary['messages']} seen, {canary['server']})")
            rows.append((f"canary detection, {r['mode']}", fig, "-", "measured"))
    return rows


# Issue 14's goals per fleet size: (figure, at most, at 1,000 relays, at 10,000 relays).
_SCALE_GOALS = [
    ("slip_p99_ms", "schedule slip p99", {10000: 100.0}, "ms"),
    ("loop_lag_p99_ms", "event-loop lag p99", {10000: 5.0}, "ms"),
    ("ratio", "daemon CPU per probe / blackbox_exporter's", {1000: 1.0, 10000: 1.0}, ""),
    ("rss_mib", "RSS", {1000: 150.0, 10000: 500.0}, "MiB"),
    ("metrics_text_ms", "/metrics text", {1000: 50.0, 10000: 500.0}, "ms"),
    ("metrics_om_ms", "/metrics OpenMetrics", {1000: 50.0, 10000: 500.0}, "ms"),
    ("metrics_text_gzip_ms", "/metrics text, gzip", {1000: 50.0, 10000: 500.0}, "ms"),
    ("metrics_om_gzip_ms", "/metrics OpenMetrics, gzip", {1000: 50.0, 10000: 500.0}, "ms"),
    ("series_per_relay", "series per relay", {1000: 30.0, 10000: 30.0}, ""),
    ("status_page_ms", "status page", {1000: 1000.0, 10000: 1000.0}, "ms"),
]


def _scale_rows(r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """One row per performance goal of a fleet size, then the figures that have none."""
    n = r["relays"]
    where = f"{n:,} relays"
    cover = r["coverage_pct"] >= 100.0
    rows = [(f"{where}: first-interval coverage", f"{r['coverage_pct']} % ({r['covered']:,}"
             f" of {n:,}; {r['first_interval_probes']:,} probes in the first interval, "
             f"{r['probes']:,} in the second, {r['failed']} failed)", "100 %",
             "met" if cover else "MISSED")]
    for key, what, limits, unit in _SCALE_GOALS:
        value, limit = r.get(key), limits.get(n)
        fig = "-" if value is None else f"{value} {unit}".rstrip()
        if key == "ratio":
            fig = (f"{r['cpu_ms_per_probe']} ms (loop thread {r['loop_cpu_ms_per_probe']}) vs "
                   f"{r.get('blackbox_cpu_ms_per_probe')} ms: {value}, steady state (first "
                   f"interval, start-up work included: "
                   f"{r['first_interval_cpu_ms_per_probe']} ms)"
                   if value is not None else f"{r['cpu_ms_per_probe']} ms; blackbox_exporter: "
                   f"{r.get('blackbox_error', '-')}")
        if limit is None:
            rows.append((f"{where}: {what}", fig, "-", "measured"))
            continue
        verdict = "-" if value is None else ("met" if value <= limit else "MISSED")
        rows.append((f"{where}: {what}", fig, f"<= {limit:g} {unit}".rstrip(), verdict))
    return rows


def _markdown(rows: list[tuple[str, str, str, str]], machine: dict[str, str],
              performance: list[str] | None = None) -> str:
    out = [f"Run {machine['date']} on {machine['cpus']} CPUs ({machine['cpu']}), Linux "
           f"{machine['kernel']}, Python {machine['python']}; load average at start "
           f"{machine['load']}, at end {machine.get('load_end', '?')}.", "",
           "| measurement | figures | goal | |", "|---|---|---|---|"]
    out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    if performance:
        out += ["", "Performance (bench/scale.py; columns in its docstring and README):", "",
                *performance]
    return "\n".join(out) + "\n"


def _plot(truth: dict[str, Any], path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]'): no plot"
    fig, ax = plt.subplots(figsize=(8, 5))
    colors = {"greeting": "tab:blue", "ehlo": "tab:orange", "auth": "tab:green"}
    for scrape, style in ((False, "-"), (True, ":")):
        rows = sorted((r for r in truth["rows"] if r["scrape"] == scrape),
                      key=lambda r: r["relays"])
        if not rows:
            continue
        xs = [r["relays"] for r in rows]
        for key, color in colors.items():
            label = f"{key} p99" + (" (+ /metrics loop)" if scrape else "")
            ax.plot(xs, [r[f"{key}_p99_ms"] for r in rows], style, marker="o", color=color,
                    label=label)
            if not scrape:
                ax.plot(xs, [r[f"{key}_p50_ms"] for r in rows], "--", marker=".",
                        color=color, alpha=0.5, label=f"{key} p50")
    ax.axhline(GOAL_ERROR_MS, color="red", linewidth=0.8, label="goal: p99 < 1 ms")
    ax.axhline(-GOAL_ERROR_MS, color="red", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_xlabel("relays probed at once (max_concurrent_probes in flight)")
    ax.set_ylabel("measured - true phase duration (ms)")
    ax.set_title("smtp-canary-exporter: timing error against concurrency")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir")
    parser.add_argument("--only", help="comma-separated benchmark names to run")
    args = parser.parse_args()
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    machine = _machine()
    wanted = set(args.only.split(",")) if args.only else None
    figs: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    for name, argv in BENCHMARKS:
        if wanted is not None and name not in wanted:
            continue
        target = out / f"{name}.json"
        target.unlink(missing_ok=True)
        print(f"== {name}: python bench/{' '.join(argv)}", flush=True)
        started = time.monotonic()
        done = subprocess.run([sys.executable, str(HERE / argv[0]), *argv[1:],
                               "--json", str(target)], check=False)
        seconds[name] = round(time.monotonic() - started, 1)
        if done.returncode != 0 or not target.exists():
            print(f"== {name} failed (exit {done.returncode})", flush=True)
            figs[name] = None
            continue
        figs[name] = json.loads(target.read_text())
    machine["load_end"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    rows = _rows(figs)
    table = _markdown(rows, machine, (figs.get("scale") or {}).get("table"))
    (out / "results.md").write_text(table, encoding="utf-8")
    (out / "results.json").write_text(json.dumps(
        {"machine": machine, "seconds": seconds, "benchmarks": figs,
         "table": [dict(zip(("measurement", "figures", "goal", "verdict"), r, strict=True))
                   for r in rows]}, indent=2) + "\n", encoding="utf-8")
    note = None
    if figs.get("timing_truth"):
        note = _plot(figs["timing_truth"], out / "timing_error.png")
    print()
    print(table)
    print(f"seconds per benchmark: {seconds}; total {sum(seconds.values()):.0f} s")
    print(f"written: {out / 'results.md'}, {out / 'results.json'}"
          + (f", {out / 'timing_error.png'}" if figs.get("timing_truth") and not note else ""))
    if note:
        print(note)
    if any(v is None for v in figs.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
