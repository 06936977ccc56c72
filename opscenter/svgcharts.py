"""Charts for the dashboard as inline SVG, drawn on the server: no script, no stylesheet of their own (colours are
presentation attributes, which the dashboard's Content-Security-Policy allows), so a page works offline."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from markupsafe import Markup, escape

ALERT = "#d62728"   # kept for alerts: no series is drawn in it
PALETTE = ("#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f", "#bcbd22")
WIDTH, HEIGHT, PAD = 720, 260, 48


def _svg(label: str, body: list[str]) -> Markup:
    return Markup(f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape(label)}" '
                  f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}">'
                  f'<title>{escape(label)}</title>{"".join(body)}</svg>')


def _text(x: float, y: float, text: str, anchor: str = "start") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" font-size="11" fill="#444" text-anchor="{anchor}">{escape(text)}</text>'


def _legend(names: Sequence[str]) -> list[str]:
    out = []
    for i, name in enumerate(names):
        x = PAD + i * 140
        out.append(f'<rect x="{x}" y="6" width="10" height="10" fill="{PALETTE[i % len(PALETTE)]}"/>')
        out.append(_text(x + 14, 15, name))
    return out


def _frame(y_min: float, y_max: float) -> list[str]:
    bottom, right = HEIGHT - PAD, WIDTH - 12
    return [f'<line x1="{PAD}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#999"/>',
            f'<line x1="{PAD}" y1="24" x2="{PAD}" y2="{bottom}" stroke="#999"/>',
            _text(PAD - 4, bottom, f"{y_min:.3g}", "end"), _text(PAD - 4, 30, f"{y_max:.3g}", "end")]


def _time(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def score_chart(label: str, series: dict[str, list[tuple[int, float | None, bool]]], threshold: float) -> Markup:
    """Scores over time, one line per series, the alert threshold dashed; windows that alerted are red dots.
    `series` maps a name to (window start ms, score or None for an empty window, alert)."""
    points = [(t, s) for rows in series.values() for t, s, _ in rows if s is not None]
    if not points:
        return _svg(label, [_text(WIDTH / 2, HEIGHT / 2, "no results yet", "middle")])
    t0, t1 = min(t for t, _ in points), max(t for t, _ in points)
    y_max = max(max(s for _, s in points), threshold) * 1.1 or 1.0

    def xy(t: int, s: float) -> tuple[float, float]:
        x = PAD + (WIDTH - PAD - 12) * ((t - t0) / (t1 - t0) if t1 > t0 else 0.5)
        return x, HEIGHT - PAD - (HEIGHT - PAD - 24) * s / y_max

    body = _frame(0.0, y_max) + _legend(list(series))
    _, ty = xy(t0, threshold)
    body.append(f'<line x1="{PAD}" y1="{ty:.1f}" x2="{WIDTH - 12}" y2="{ty:.1f}" stroke="{ALERT}" '
                f'stroke-dasharray="6 4"/>')
    body.append(_text(WIDTH - 14, ty - 4, f"alert above {threshold:g}", "end"))
    for i, (name, rows) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        line = " ".join("{:.1f},{:.1f}".format(*xy(t, s)) for t, s, _ in rows if s is not None)
        body.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for t, s, alert in rows:
            if s is not None:
                x, y = xy(t, s)
                body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{4 if alert else 2.5}" '
                            f'fill="{ALERT if alert else colour}"><title>{escape(name)} {_time(t)}: '
                            f'{s:.4f}</title></circle>')
    body += [_text(PAD, HEIGHT - PAD + 16, _time(t0)), _text(WIDTH - 12, HEIGHT - PAD + 16, _time(t1), "end")]
    return _svg(label, body)


def bins_chart(label: str, bin_labels: Sequence[str], groups: dict[str, Sequence[float]]) -> Markup:
    """Proportions per bin, side by side per group (the baseline, then each series' latest window)."""
    y_max = max((v for values in groups.values() for v in values), default=0.0) * 1.1 or 1.0
    slot = (WIDTH - PAD - 12) / max(1, len(bin_labels))
    bar = slot * 0.8 / max(1, len(groups))
    body = _frame(0.0, y_max) + _legend(list(groups))
    for g, values in enumerate(groups.values()):
        for b, v in enumerate(values):
            h = (HEIGHT - PAD - 24) * v / y_max
            x = PAD + b * slot + slot * 0.1 + g * bar
            body.append(f'<rect x="{x:.1f}" y="{HEIGHT - PAD - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                        f'fill="{PALETTE[g % len(PALETTE)]}"><title>{v:.4f}</title></rect>')
    for b, text in enumerate(bin_labels):
        body.append(_text(PAD + (b + 0.5) * slot, HEIGHT - PAD + 16, text, "middle"))
    return _svg(label, body)
