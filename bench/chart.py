"""``bench/results/summary.png``: the ratios of ``core.json`` and ``http.json`` as bar charts.

``python bench/chart.py [RESULTS_DIR]`` redraws it from the JSON files (``run.py`` calls
``render`` after every run). Needs matplotlib (installed in ``bench/.venv``).

Left: the core cases, cachekit's time per operation over the peer's (lower is better, log
scale). Right: the HTTP cases, requests/s over the plain endpoint's or the peer's (higher is
better). Green: the row has a target and meets it; red: misses it; grey: for information.
A black tick marks the target on its bar.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

COLOURS = {"PASS": "#2e7d32", "FAIL": "#c62828", "info": "#9e9e9e"}


def _target_value(target: str) -> float | None:
    m = re.search(r"([\d.]+)x", target)
    return float(m.group(1)) if m else None


def _bars(rows: list[dict[str, Any]], label: Any) -> list[tuple[str, float, str, float | None]]:
    return [
        (label(r), float(r["ratio"]), r["status"], _target_value(r["target"]))
        for r in rows
        if r.get("ratio") is not None
    ]


def _core_label(row: dict[str, Any]) -> str:
    return f"{row['case']}\n{row['subject_label']} vs {row['peer_label']}"


def _http_label(row: dict[str, Any]) -> str:
    return f"{row['case']}\n{row['subject_label']} vs {row['peer_label']}"


def _panel(ax: Any, bars: list[tuple[str, float, str, float | None]], *, log: bool) -> None:
    ys = range(len(bars))
    ax.barh(
        list(ys),
        [b[1] for b in bars],
        color=[COLOURS.get(b[2], COLOURS["info"]) for b in bars],
        height=0.7,
    )
    for y, (_, ratio, _, target) in zip(ys, bars, strict=True):
        ax.text(max(ratio, target or 0), y, f"  {ratio:.2f}x", va="center", fontsize=7)
        if target is not None:
            ax.plot([target, target], [y - 0.45, y + 0.45], color="black", linewidth=2)
    ax.axvline(1.0, color="#555555", linewidth=0.8, linestyle="--")
    ax.set_yticks(list(ys))
    ax.set_yticklabels([b[0] for b in bars], fontsize=7)
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
    ax.grid(axis="x", alpha=0.3)


def render(core: dict[str, Any] | None, http: dict[str, Any] | None, out: Path) -> Path | None:
    """Draw the available panels into ``out``; ``None`` when there is nothing to draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    if core is not None:
        panels.append(("core", _bars(core["rows"], _core_label), core["meta"]))
    if http is not None:
        panels.append(("http", _bars(http["rows"], _http_label), http["meta"]))
    panels = [p for p in panels if p[1]]
    if not panels:
        return None
    height = max(4.0, 0.42 * max(len(p[1]) for p in panels) + 1.6)
    fig, axes = plt.subplots(1, len(panels), figsize=(8.5 * len(panels), height), squeeze=False)
    for ax, (kind, bars, meta) in zip(axes[0], panels, strict=True):
        when = meta.get("when", "?")
        if kind == "core":
            _panel(ax, bars, log=True)
            ax.set_title(f"core: cachekit time / peer time (lower is better)\n{when}", fontsize=9)
            ax.set_xlabel("ratio (log scale)", fontsize=8)
        else:
            _panel(ax, bars, log=False)
            ax.set_xlim(0, max(b[1] for b in bars) * 1.18)
            ax.set_title(f"HTTP: req/s / peer req/s (higher is better)\n{when}", fontsize=9)
            ax.set_xlabel("ratio", fontsize=8)
    fig.suptitle(
        "cachekit benchmarks (green: meets its target, red: misses it, grey: information; "
        "black tick: target)",
        fontsize=10,
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def render_dir(results: Path) -> Path | None:
    return render(
        _load(results / "core.json"), _load(results / "http.json"), results / "summary.png"
    )


if __name__ == "__main__":
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "results"
    written = render_dir(folder)
    print(f"wrote {written}" if written else "nothing to draw (no core.json or http.json)")
