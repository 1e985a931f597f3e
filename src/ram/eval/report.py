"""Result reports: a markdown summary table and accuracy plots (PNG).

Inputs are plain dicts so that any runner can produce them. A summary row looks like
``{"method": "ram", "ratio": 8.0, "n": 300, "accuracy": 0.21, "accuracy_ci": [0.17, 0.26],
"em": ..., "f1": ..., "rouge_l": ..., "achieved_ratio_mean": 8.02,
"context_tokens_mean": 310.5, "latency_s_mean": 0.41}``; ``ratio`` is ``None`` for
methods without a compression ratio (e.g. "full", "closed-book", "gold-only").
Per-example records look like ``{"method", "ratio", "gold_position", "accuracy"}``.
Every file is written atomically (temp file in the same directory, then ``os.replace``).
Plots use the Agg canvas directly, so pyplot's global backend is never touched.
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator

from ..atomic import atomic_write_bytes

logger = logging.getLogger(__name__)

__all__ = ["write_summary_md", "plot_accuracy_vs_ratio", "plot_accuracy_vs_position", "position_bins"]

Row = Mapping[str, Any]
PathLike = str | os.PathLike[str]

_DASH = "—"
_RATIO_TICKS = (2, 4, 8, 16, 32)
_COLUMNS = (
    "method",
    "ratio",
    "n",
    "accuracy [95% CI]",
    "em",
    "f1",
    "rouge-L",
    "achieved ratio",
    "context tokens",
    "positive recall",
    "latency s",
)


#: The order in which tables list methods: references first, then text baselines, then RAM and
#: its ablations.
METHOD_ORDER = ("closed-book", "gold-only", "full", "random", "bm25", "embedding", "ram-untrained", "ram", "ram-skim-cap",
                "ram-close-only", "ram-all-skim")


def _atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    target = atomic_write_bytes(path, data)
    logger.info("wrote %s (%d bytes)", target, len(data))
    return target


def _is_missing(value: Any) -> bool:
    """True for None and NaN, which render as a dash."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _fmt(value: Any, digits: int) -> str:
    """Format a number with fixed decimals, or a dash when missing."""
    return _DASH if _is_missing(value) else f"{float(value):.{digits}f}"


def _fmt_ratio(ratio: Any) -> str:
    """Compression ratio as a compact number ("8", "2.5"), or a dash when the method has none."""
    return _DASH if _is_missing(ratio) else f"{float(ratio):g}"


def _fmt_accuracy(row: Row) -> str:
    """Accuracy with its confidence interval when present: ``0.210 [0.170, 0.260]``."""
    acc = _fmt(row.get("accuracy"), 3)
    ci = row.get("accuracy_ci")
    if acc == _DASH or ci is None or len(ci) != 2 or any(_is_missing(c) for c in ci):
        return acc
    return f"{acc} [{float(ci[0]):.3f}, {float(ci[1]):.3f}]"


def _sort_key(row: Row) -> tuple[str, bool, float]:
    """Order by method, then ratio ascending; a ratio-less row comes first within its method."""
    ratio = row.get("ratio")
    has_ratio = not _is_missing(ratio)
    return (str(row.get("method", "")), has_ratio, float(ratio) if has_ratio else 0.0)


def _cell(text: str) -> str:
    """Escape characters that would break a markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def write_summary_md(rows: Sequence[Row], path: PathLike, title: str | None = None) -> Path:
    """Write summary rows as a markdown table sorted by method then ratio; return the path."""
    lines: list[str] = []
    if title:
        lines += [f"# {title}", ""]
    lines.append("| " + " | ".join(_COLUMNS) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(_COLUMNS) - 1)) + "|")
    for row in sorted(rows, key=_sort_key):
        n = row.get("n")
        cells = [
            _cell(str(row.get("method", ""))),
            _fmt_ratio(row.get("ratio")),
            _DASH if _is_missing(n) else str(int(n)),
            _fmt_accuracy(row),
            _fmt(row.get("em"), 3),
            _fmt(row.get("f1"), 3),
            _fmt(row.get("rouge_l"), 3),
            _fmt(row.get("achieved_ratio_mean"), 2),
            _fmt(row.get("context_tokens_mean"), 1),
            _fmt(row.get("positive_recall_mean"), 3),
            _fmt(row.get("latency_s_mean"), 3),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return _atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))


def _save_figure(fig: Figure, path: PathLike) -> Path:
    """Render a figure to PNG bytes with the Agg canvas and write them atomically."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    return _atomic_write_bytes(path, buf.getvalue())


def _colors(n: int) -> list[tuple[float, float, float, float]]:
    """``n`` distinct colours: tab10 when it suffices, else tab20 (cycled past 20)."""
    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def plot_accuracy_vs_ratio(rows: Sequence[Row], path: PathLike) -> Path:
    """Plot accuracy against compression ratio (log2 x axis) and save a PNG; return the path.

    Methods with ratios get one line each with CI error bars; ratio-less methods
    (full, closed-book, gold-only, ...) are horizontal dashed reference lines.
    """
    usable = [r for r in rows if not _is_missing(r.get("accuracy"))]
    if not usable:
        raise ValueError("plot_accuracy_vs_ratio needs at least one row with an accuracy")
    curves: dict[str, list[Row]] = defaultdict(list)
    references: list[Row] = []
    for row in sorted(usable, key=_sort_key):
        if _is_missing(row.get("ratio")):
            references.append(row)
        else:
            curves[str(row.get("method", ""))].append(row)

    fig = Figure(figsize=(7.0, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    colors = iter(_colors(len(curves) + len(references)))
    ratios_seen: set[float] = set()
    for method, method_rows in curves.items():
        xs = [float(r["ratio"]) for r in method_rows]
        ys = [float(r["accuracy"]) for r in method_rows]
        lower, upper = [], []
        for r, y in zip(method_rows, ys):
            ci = r.get("accuracy_ci")
            ok = ci is not None and len(ci) == 2 and not any(_is_missing(c) for c in ci)
            lower.append(max(0.0, y - float(ci[0])) if ok else 0.0)
            upper.append(max(0.0, float(ci[1]) - y) if ok else 0.0)
        ratios_seen.update(xs)
        ax.errorbar(xs, ys, yerr=[lower, upper], marker="o", capsize=3, color=next(colors), label=method)
    for row in references:
        ax.axhline(float(row["accuracy"]), linestyle="--", linewidth=1.2, color=next(colors),
                   label=str(row.get("method", "")))

    ax.set_xscale("log", base=2)
    ticks = sorted(set(_RATIO_TICKS) | ratios_seen)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{t:g}" for t in ticks])
    ax.set_xlim(min(ticks) / 1.25, max(ticks) * 1.25)
    ax.set_ylim(bottom=0.0)
    ax.set_xlabel("compression ratio (original / compressed tokens)")
    ax.set_ylabel("accuracy (answer in output)")
    ax.set_title("Accuracy vs. compression ratio")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return _save_figure(fig, path)


def _curve_label(method: str, ratio: Any) -> str:
    """Legend label for a (method, ratio) pair: ``ram ×8`` or just ``full``."""
    return method if _is_missing(ratio) else f"{method} ×{float(ratio):g}"


def position_bins(counts: Mapping[int, int], min_count: int = 30, num_bins: int = 5) -> list[tuple[int, int]]:
    """Inclusive ``(first, last)`` position ranges to plot: one per position when each holds
    ``min_count`` or more records (median) or there are few positions, else ``num_bins``
    equal-width ranges (e.g. 20 random positions x 15 questions -> 0-3, 4-7, ... 16-19), so a
    point is a mean over dozens of questions rather than a handful."""
    positions = sorted(counts)
    if not positions:
        return []
    median = sorted(counts[p] for p in positions)[len(positions) // 2]
    if len(positions) <= 2 * num_bins or median >= min_count:
        return [(p, p) for p in positions]
    lo, hi = positions[0], positions[-1]
    width = math.ceil((hi - lo + 1) / num_bins)
    return [(start, min(hi, start + width - 1)) for start in range(lo, hi + 1, width)]


def plot_accuracy_vs_position(records: Iterable[Row], path: PathLike) -> Path | Literal[False]:
    """Plot accuracy by gold-document position, one line per (method, ratio); save a PNG.

    Sparse positions are grouped into ranges (:func:`position_bins`); each point then carries a
    95% normal-approximation interval. Returns the path written, or ``False`` (writing nothing)
    when no record has a gold_position.
    """
    # (method, has_ratio, ratio) -> position -> [hits]
    groups: dict[tuple[str, bool, float], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    ratio_of: dict[tuple[str, bool, float], Any] = {}
    for rec in records:
        pos = rec.get("gold_position")
        if _is_missing(pos) or _is_missing(rec.get("accuracy")):
            continue
        key = _sort_key(rec)
        ratio_of[key] = rec.get("ratio")
        groups[key][int(pos)].append(float(rec["accuracy"]))
    if not groups:
        logger.info("no record has a gold_position; skipping position plot %s", path)
        return False

    fig = Figure(figsize=(7.0, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    keys = sorted(groups)
    counts: dict[int, int] = defaultdict(int)
    for by_pos in groups.values():
        for pos, hits in by_pos.items():
            counts[pos] = max(counts[pos], len(hits))
    bins = position_bins(counts)
    binned = any(lo != hi for lo, hi in bins)
    centers = {b: (b[0] + b[1]) / 2 for b in bins}
    for key, color in zip(keys, _colors(len(keys))):
        by_pos = groups[key]
        xs, ys, errs = [], [], []
        for b in bins:
            hits = [h for pos in range(b[0], b[1] + 1) for h in by_pos.get(pos, [])]
            if not hits:
                continue
            mean = sum(hits) / len(hits)
            xs.append(centers[b])
            ys.append(mean)
            errs.append(1.96 * math.sqrt(mean * (1 - mean) / len(hits)) if binned else 0.0)
        linestyle = "--" if _is_missing(ratio_of[key]) else "-"
        ax.errorbar(xs, ys, yerr=errs if binned else None, marker="o", linestyle=linestyle, color=color,
                    capsize=3, label=_curve_label(key[0], ratio_of[key]))
    if len(bins) <= 30:
        ax.xaxis.set_major_locator(FixedLocator([centers[b] for b in bins]))
        ax.set_xticklabels([f"{lo}–{hi}" if lo != hi else str(lo) for lo, hi in bins])
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("gold document position" + (" (grouped; bars: 95% interval)" if binned else ""))
    ax.set_ylabel("accuracy (answer in output)")
    ax.set_title("Accuracy by gold document position")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return _save_figure(fig, path)


def plot_accuracy_vs_setting(rows_by_setting: Mapping[str, Sequence[Row]], path: PathLike, xlabel: str,
                             title: str = "Accuracy by setting") -> Path:
    """Plot accuracy across named settings (e.g. 10/20/40 documents, or gold positions), one
    line per (method, ratio) with its bootstrap interval; ratio-less methods are dashed."""
    settings = list(rows_by_setting)
    if not settings:
        raise ValueError("plot_accuracy_vs_setting needs at least one setting")
    keys = sorted({_sort_key(r) for rows in rows_by_setting.values() for r in rows
                   if not _is_missing(r.get("accuracy"))})
    if not keys:
        raise ValueError("plot_accuracy_vs_setting needs at least one row with an accuracy")
    fig = Figure(figsize=(7.0, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    for key, color in zip(keys, _colors(len(keys))):
        xs, ys, lower, upper, ratio = [], [], [], [], None
        for x, setting in enumerate(settings):
            for row in rows_by_setting[setting]:
                if _sort_key(row) != key or _is_missing(row.get("accuracy")):
                    continue
                y = float(row["accuracy"])
                ci = row.get("accuracy_ci") or (y, y)
                xs.append(x)
                ys.append(y)
                lower.append(max(0.0, y - float(ci[0])))
                upper.append(max(0.0, float(ci[1]) - y))
                ratio = row.get("ratio")
        ax.errorbar(xs, ys, yerr=[lower, upper], marker="o", capsize=3, color=color,
                    linestyle="--" if _is_missing(ratio) else "-", label=_curve_label(key[0], ratio))
    ax.xaxis.set_major_locator(FixedLocator(list(range(len(settings)))))
    ax.set_xticklabels(settings)
    ax.set_xlim(-0.4, len(settings) - 0.6)
    ax.set_ylim(bottom=0.0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (answer in output)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return _save_figure(fig, path)
