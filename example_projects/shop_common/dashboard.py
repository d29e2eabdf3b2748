"""The ``/cachekit/`` page: ``cache.stats()`` now, and a chart of the last few minutes.

A daemon thread samples the counters every ``interval`` seconds into a ring buffer; the page
draws the hit ratio of each layer per interval as an inline SVG (no JavaScript, no CDN) and
reloads itself every few seconds. ``/cachekit/stats.json`` serves the same data.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from html import escape
from itertools import pairwise
from typing import Any

COUNTERS = ("loader_calls", "loader_errors", "stale_serves", "lock_waits", "invalidations")
_COLOURS = {"memory": "#2b7bb9", "redis": "#d3492c"}


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    layers: dict[str, tuple[int, int]]  # layer -> (hits, misses), cumulative
    counters: dict[str, int]


@dataclass
class History:
    """A ring buffer of samples of one cache's ``stats()``."""

    stats: Callable[[], dict[str, Any]]
    interval: float = 2.0
    size: int = 150  # 5 minutes at 2 s
    samples: deque[Sample] = field(init=False)
    _thread: threading.Thread | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self.samples = deque(maxlen=self.size)

    def start(self) -> History:
        """Start sampling in a daemon thread (idempotent; the thread dies with the process)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="cachekit-stats")
                self._thread.daemon = True
                self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            self.sample()
            time.sleep(self.interval)

    def sample(self) -> dict[str, Any]:
        stats = self.stats()
        layers = {
            name: (int(layer.get("hits", 0)), int(layer.get("misses", 0)))
            for name, layer in stats.get("layers", {}).items()
        }
        counters = {name: int(stats.get(name, 0)) for name in COUNTERS}
        with self._lock:
            self.samples.append(Sample(time.time(), layers, counters))
        return stats

    def series(self) -> dict[str, list[float | None]]:
        """Per layer, the hit ratio of each interval (None: no lookups in it)."""
        with self._lock:
            samples = list(self.samples)
        out: dict[str, list[float | None]] = {}
        for before, after in pairwise(samples):
            for name, (hits, misses) in after.layers.items():
                old_hits, old_misses = before.layers.get(name, (0, 0))
                lookups = (hits - old_hits) + (misses - old_misses)
                ratio = (hits - old_hits) / lookups if lookups > 0 else None
                out.setdefault(name, []).append(ratio)
        return out

    def as_json(self) -> dict[str, Any]:
        return {"stats": self.sample(), "interval": self.interval, "series": self.series()}


def ratio(hits: int, misses: int) -> str:
    total = hits + misses
    return f"{100 * hits / total:.1f} %" if total else "n/a"


def svg_chart(series: dict[str, list[float | None]], size: int, width: int = 600) -> str:
    """Hit ratio per interval, one polyline per layer, 0-100 % on the y axis."""
    height, pad = 160, 24
    step = (width - 2 * pad) / max(size - 1, 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="hit ratio per layer over time">',
        f'<rect x="{pad}" y="{pad}" width="{width - 2 * pad}" height="{height - 2 * pad}" '
        'fill="#fafafa" stroke="#ccc"/>',
    ]
    for pct in (0, 50, 100):
        y = height - pad - (height - 2 * pad) * pct / 100
        parts.append(f'<text x="2" y="{y + 4:.0f}" font-size="10">{pct}%</text>')
    for name, values in series.items():
        colour = _COLOURS.get(name, "#555")
        offset = size - 1 - len(values)  # newest sample on the right edge
        segment: list[str] = []
        segments = [segment]
        for i, value in enumerate(values):
            if value is None:
                segment = []
                segments.append(segment)
                continue
            x = pad + (offset + i) * step
            y = height - pad - (height - 2 * pad) * value
            segment.append(f"{x:.1f},{y:.1f}")
        for points in segments:
            if len(points) == 1:
                x, y = points[0].split(",")
                parts.append(f'<circle cx="{x}" cy="{y}" r="2" fill="{colour}"/>')
            elif points:
                parts.append(
                    f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                    f'points="{" ".join(points)}"/>'
                )
    x = pad
    for name in series:
        parts.append(
            f'<text x="{x}" y="14" font-size="12" fill="{_COLOURS.get(name, "#555")}">'
            f"■ {escape(name)}</text>"
        )
        x += 90
    parts.append("</svg>")
    return "".join(parts)


def dashboard_html(history: History) -> str:
    """The body of the ``/cachekit/`` page (each app wraps it in its own layout)."""
    stats = history.sample()
    rows = "".join(
        f"<tr><td>{escape(name)}</td><td>{layer.get('hits', 0)}</td>"
        f"<td>{layer.get('misses', 0)}</td>"
        f"<td><b>{ratio(layer.get('hits', 0), layer.get('misses', 0))}</b></td>"
        f"<td>{layer.get('entries', layer.get('errors', ''))}</td></tr>"
        for name, layer in stats.get("layers", {}).items()
    )
    counters = "".join(
        f"<tr><td>{escape(name.replace('_', ' '))}</td><td>{stats.get(name, 0)}</td></tr>"
        for name in (*COUNTERS, "lock_timeouts", "corrupt", "errors")
    )
    chart = svg_chart(history.series(), history.size)
    return (
        f"<h1>cachekit: namespace <code>{escape(str(stats.get('namespace')))}</code></h1>"
        "<p>This page reloads every 5 s. Counters are per process and cumulative; the chart "
        f"shows the hit ratio of each layer per {history.interval:g} s interval "
        f'(<a href="stats.json">JSON</a>).</p>'
        f"<p>Circuit breaker: <b>{escape(str(stats.get('circuit')))}</b></p>"
        "<h2>Layers</h2><table><tr><th>layer</th><th>hits</th><th>misses</th>"
        f"<th>hit ratio</th><th>entries / errors</th></tr>{rows}</table>"
        f"<h2>Hit ratio over time</h2>{chart}"
        f"<h2>Engine counters</h2><table>{counters}</table>"
    )
