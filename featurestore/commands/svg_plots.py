"""Small inline SVG charts for the HTML report: stacked bars and histograms.

Inline SVG keeps the report one self-contained file that opens from `file://` with no script library and no network,
and stays sharp at any zoom; the charts are a few dozen rectangles, far below where SVG gets slow.
"""
from __future__ import annotations

from html import escape
from typing import Sequence

import numpy as np

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f")
WIDTH, HEIGHT = 760, 230
MARGIN_LEFT, MARGIN_BOTTOM, MARGIN_TOP = 56, 34, 24


def _axis_max(value: float) -> float:
    """A round upper end for the y axis (1, 2 or 5 times a power of ten) at or above `value`."""
    if value <= 0:
        return 1.0
    power = 10 ** np.floor(np.log10(value))
    return float(next(step * power for step in (1, 2, 5, 10) if step * power >= value))


def _number(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.2g}"


def _frame(title: str, y_label: str, y_max: float, body: list[str], legend: Sequence[str]) -> str:
    plot_h = HEIGHT - MARGIN_BOTTOM - MARGIN_TOP
    ticks = []
    for fraction in (0.0, 0.5, 1.0):
        y = MARGIN_TOP + plot_h * (1 - fraction)
        ticks.append(f'<line x1="{MARGIN_LEFT}" x2="{WIDTH - 8}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
                     f'<text x="{MARGIN_LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">'
                     f'{_number(y_max * fraction)}</text>')
    # The title on the left of the top line, the legend after it; widths from ~6 px per character at 11 px.
    keys, x = [f'<text x="{MARGIN_LEFT}" y="15" font-weight="bold">{escape(title)}</text>'], MARGIN_LEFT
    x += 6.2 * len(title) + 24
    for i, name in enumerate(legend):
        keys.append(f'<rect x="{x:.0f}" y="6" width="10" height="10" fill="{PALETTE[i % len(PALETTE)]}"/>'
                    f'<text x="{x + 14:.0f}" y="15">{escape(name)}</text>')
        x += 14 + 6.2 * len(name) + 16
    return (f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" font-size="11" '
            f'font-family="sans-serif"><title>{escape(title)}</title>{"".join(ticks)}{"".join(body)}'
            f'{"".join(keys)}<text x="12" y="{MARGIN_TOP + plot_h / 2:.0f}" transform="rotate(-90 12 '
            f'{MARGIN_TOP + plot_h / 2:.0f})" text-anchor="middle">{escape(y_label)}</text></svg>')


def stacked_bars(title: str, categories: Sequence[str], series: dict[str, Sequence[float]], y_label: str,
                 x_label: str = "") -> str:
    """One bar per category, each split into the `series` (name → value per category), stacked bottom-up."""
    values = np.array([list(v) for v in series.values()], dtype=np.float64).reshape(len(series), len(categories))
    y_max = _axis_max(values.sum(axis=0).max() if values.size else 0.0)
    plot_w, plot_h = WIDTH - MARGIN_LEFT - 8, HEIGHT - MARGIN_BOTTOM - MARGIN_TOP
    slot = plot_w / max(len(categories), 1)
    body = []
    label_every = max(1, int(np.ceil(len(categories) / 16)))  # at most 16 axis labels stay legible
    for i, category in enumerate(categories):
        x, bottom = MARGIN_LEFT + i * slot + slot * 0.1, MARGIN_TOP + plot_h
        for s, name in enumerate(series):
            h = plot_h * values[s, i] / y_max
            bottom -= h
            body.append(f'<rect x="{x:.1f}" y="{bottom:.1f}" width="{slot * 0.8:.1f}" height="{h:.1f}" '
                        f'fill="{PALETTE[s % len(PALETTE)]}"><title>{escape(category)} {escape(name)}: '
                        f'{values[s, i]:.3g}</title></rect>')
        if i % label_every == 0:
            body.append(f'<text x="{x + slot * 0.4:.1f}" y="{HEIGHT - MARGIN_BOTTOM + 14}" text-anchor="middle">'
                        f'{escape(category)}</text>')
    if x_label:
        body.append(f'<text x="{MARGIN_LEFT + plot_w / 2:.0f}" y="{HEIGHT - 4}" text-anchor="middle">'
                    f'{escape(x_label)}</text>')
    return _frame(title, y_label, y_max, body, list(series) if len(series) > 1 else [])


def histogram_counts(series: dict[str, np.ndarray], bins: int = 30) -> dict:
    """Counts of each series' values in `bins` bins shared by all series over the range of all values:
    {"edges": [bins + 1 floats], "counts": {name: [bins ints]}}."""
    values = [np.asarray(v, dtype=np.float64) for v in series.values()]
    everything = np.concatenate(values) if values else np.zeros(0)
    low, high = (float(everything.min()), float(everything.max())) if everything.size else (0.0, 1.0)
    edges = np.linspace(low, high if high > low else low + 1.0, bins + 1)
    return {"edges": [float(e) for e in edges],
            "counts": {name: np.histogram(v, edges)[0].tolist() for name, v in zip(series, values)}}
