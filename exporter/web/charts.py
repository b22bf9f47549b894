"""Small inline SVG charts for the status page: recent phase timings and canary latencies."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from exporter.model import Phase
from exporter.relay import PastProbe

__all__ = ["PHASE_COLORS", "latency_chart", "phase_chart", "phase_legend"]

PHASE_COLORS = {
    Phase.RESOLVE: "#8c8c8c", Phase.CONNECT: "#4e79a7", Phase.TLS: "#f28e2b",
    Phase.GREETING: "#76b7b2", Phase.EHLO: "#59a14f", Phase.AUTH: "#edc948",
    Phase.MAIL: "#b07aa1", Phase.RCPT: "#ff9da7", Phase.DATA: "#9c755f", Phase.QUIT: "#bab0ac",
}
WIDTH, HEIGHT = 240, 44


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def phase_chart(results: Sequence[PastProbe]) -> str:
    """One stacked bar per recent probe, each phase in its colour; failed probes in red."""
    if not results:
        return ""
    top = max((sum(r.phases.values()) for r in results), default=0.0) or 1e-9
    step = WIDTH / max(len(results), 1)
    bars: list[str] = []
    for i, result in enumerate(results):
        x = i * step
        y = float(HEIGHT)
        for phase in Phase:
            seconds = result.phases.get(phase)
            if not seconds:
                continue
            h = seconds / top * (HEIGHT - 2)
            y -= h
            bars.append(f'<rect x="{x:.1f}" y="{y:.2f}" width="{max(step - 1, 1):.1f}" '
                        f'height="{h:.2f}" fill="{PHASE_COLORS[phase]}">'
                        f"<title>{phase.value} {_ms(seconds)}</title></rect>")
        if not result.success:
            bars.append(f'<rect x="{x:.1f}" y="{HEIGHT - 3}" width="{max(step - 1, 1):.1f}" '
                        f'height="3" fill="#cf222e"><title>'
                        f"{escape(result.reason.value if result.reason else 'failed')}"
                        "</title></rect>")
    return (f'<svg width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="recent phase '
            f'timings, tallest {_ms(top)}">' + "".join(bars) +
            f'<text x="{WIDTH - 2}" y="10" text-anchor="end" font-size="9">{_ms(top)}</text>'
            "</svg>")


def latency_chart(latencies: Sequence[float]) -> str:
    """A line of recent canary delivery times."""
    if not latencies:
        return ""
    top = max(latencies) or 1e-9
    step = WIDTH / max(len(latencies) - 1, 1)
    points = " ".join(f"{i * step:.1f},{HEIGHT - 2 - v / top * (HEIGHT - 12):.1f}"
                      for i, v in enumerate(latencies))
    return (f'<svg width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="recent canary '
            f'latencies, highest {_ms(top)}"><polyline points="{points}" fill="none" '
            f'stroke="#4e79a7" stroke-width="1.5"/><text x="{WIDTH - 2}" y="10" '
            f'text-anchor="end" font-size="9">{_ms(top)}</text></svg>')


def phase_legend() -> str:
    return " ".join(f'<span style="color:{color}">&#9632;</span>&nbsp;{phase.value}'
                    for phase, color in PHASE_COLORS.items())
