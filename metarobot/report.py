"""Records → Markdown table and PNG plots."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

__all__ = ["adaptation_curve_png", "learning_curve_png", "summary_markdown", "write_csv"]


def write_csv(
    records: Sequence[Mapping[str, Any]], path: str | Path, fields: Sequence[str]
) -> None:
    """Write records (only ``fields``, in order) to a CSV file."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(fields), extrasaction="ignore")
        w.writeheader()
        for r in records:
            w.writerow({k: r[k] for k in fields})


def _fmt(x: float) -> str:
    return "–" if not math.isfinite(x) else f"{x:.2f}"


def summary_markdown(
    agg: Sequence[Mapping[str, Any]], title: str, notes: Sequence[str] = ()
) -> str:
    """A table: one row per method, one column per K, cells ``IQM [95% CI]`` of the score.

    The best IQM in each column is bold; methods whose CI overlaps the best's are marked with ≈.
    """
    ks = sorted({a["k"] for a in agg})
    methods = list(dict.fromkeys(a["method"] for a in agg))
    cell = {(a["method"], a["k"]): a for a in agg}
    best = {}
    for k in ks:
        cands = [
            cell[(m, k)]
            for m in methods
            if (m, k) in cell and m != "oracle" and math.isfinite(cell[(m, k)]["iqm"])
        ]
        if cands:
            best[k] = max(cands, key=lambda a: a["iqm"])
    lines = [
        f"# {title}",
        "",
        "Normalized score (0 = random actions, 1 = oracle without "
        "adaptation): IQM [95% stratified-bootstrap CI] over tasks × seeds, after K "
        "adaptation episodes. Bold: best non-oracle method at that K; ≈: its CI overlaps "
        "the best one's.",
        "",
    ]
    lines.append(
        "| method | " + " | ".join(f"K={k}" for k in ks) + f" | mean return (K=0 → K={ks[-1]}) |"
    )
    lines.append("|---|" + "---:|" * len(ks) + "---:|")
    for m in methods:
        cells = []
        for k in ks:
            a = cell.get((m, k))
            if a is None:
                cells.append("")
                continue
            txt = f"{_fmt(a['iqm'])} [{_fmt(a['ci_low'])}, {_fmt(a['ci_high'])}]"
            b = best.get(k)
            if b is not None and b["method"] == m:
                txt = f"**{txt}**"
            elif b is not None and m != "oracle" and a["ci_high"] >= b["ci_low"]:
                txt = f"≈ {txt}"
            cells.append(txt)
        r0 = cell.get((m, ks[0]))
        r1 = cell.get((m, ks[-1]))
        ret = f"{r0['mean_return']:.1f} → {r1['mean_return']:.1f}" if r0 and r1 else ""
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {ret} |")
    lines.append("")
    lines.extend(notes)
    return "\n".join(lines) + "\n"


def adaptation_curve_png(agg: Sequence[Mapping[str, Any]], path: str | Path, title: str) -> None:
    """Score vs K with CI bands, one line per method."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    methods = list(dict.fromkeys(a["method"] for a in agg))
    cmap = plt.get_cmap("tab10")
    for i, m in enumerate(methods):
        rows = sorted((a for a in agg if a["method"] == m), key=lambda a: a["k"])
        ks = [a["k"] for a in rows]
        style = "--" if m in ("oracle", "scratch") else "-"
        ax.plot(ks, [a["iqm"] for a in rows], style, marker="o", color=cmap(i % 10), label=m)
        ax.fill_between(
            ks,
            [a["ci_low"] for a in rows],
            [a["ci_high"] for a in rows],
            color=cmap(i % 10),
            alpha=0.15,
        )
    ax.set_xlabel("adaptation episodes K")
    ax.set_ylabel("normalized score (IQM, 95% CI)")
    ax.set_title(title)
    ax.axhline(1.0, color="grey", lw=0.8, ls=":")
    ax.axhline(0.0, color="grey", lw=0.8, ls=":")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2, loc="best")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def _smooth(y: np.ndarray, window: int) -> np.ndarray:
    if len(y) < window or window <= 1:
        return y
    kernel = np.ones(window) / window
    pad = np.concatenate([np.full(window - 1, y[0]), y])
    return np.convolve(pad, kernel, mode="valid")


def learning_curve_png(
    logs: Mapping[str, Sequence[Mapping[str, float]]], path: str | Path, title: str, window: int = 5
) -> None:
    """Meta-training return before (dashed) and after (solid) adaptation vs iteration.

    ``logs`` maps ``"<method> s<seed>"`` to its rows; seeds of one method are averaged (band:
    min–max over seeds) and curves are smoothed with a ``window``-iteration moving average.
    """
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    cmap = plt.get_cmap("tab10")
    groups: dict[str, list[Sequence[Mapping[str, float]]]] = {}
    for name, rows in logs.items():
        if rows:
            groups.setdefault(name.split(" ")[0], []).append(rows)
    for i, (method, runs) in enumerate(groups.items()):
        n = min(len(r) for r in runs)
        it = np.array([r["iteration"] for r in runs[0][:n]])
        for key, style, label in (
            ("post_return", "-", "after adaptation"),
            ("pre_return", "--", "before adaptation"),
        ):
            if key not in runs[0][0]:
                continue
            ys = np.array([_smooth(np.array([row[key] for row in r[:n]]), window) for r in runs])
            ax.plot(
                it,
                ys.mean(0),
                style,
                color=cmap(i % 10),
                label=f"{method} ({label})",
                alpha=1.0 if style == "-" else 0.7,
            )
            if len(runs) > 1 and style == "-":
                ax.fill_between(it, ys.min(0), ys.max(0), color=cmap(i % 10), alpha=0.12)
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel(f"mean training-task return ({window}-iteration moving average)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_lines():
        ax.legend(fontsize=7, ncol=2, loc="best")
    else:
        ax.text(0.5, 0.5, "no meta-learner in this experiment", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
