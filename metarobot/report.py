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

__all__ = [
    "adaptation_curve_png",
    "learning_curve_png",
    "summary_markdown",
    "within_episode_png",
    "write_csv",
]


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


def _ci(a: Mapping[str, Any], name: str) -> str:
    return f"{_fmt(a[name])} [{_fmt(a[name + '_low'])}, {_fmt(a[name + '_high'])}]"


def _per_k_table(
    agg: Sequence[Mapping[str, Any]], stat: str, ks: list[int], methods: list[str]
) -> list[str]:
    """Rows of one aggregate: best non-oracle per K bold, ≈ where CIs overlap the best's."""
    cell = {(a["method"], a["k"]): a for a in agg}
    lower_better = stat == "og"
    best = {}
    for k in ks:
        cands = [
            cell[(m, k)]
            for m in methods
            if (m, k) in cell and m != "oracle" and math.isfinite(cell[(m, k)][stat])
        ]
        if cands:
            pick = min if lower_better else max
            best[k] = pick(cands, key=lambda a: a[stat])
    lines = [
        "| method | " + " | ".join(f"K={k}" for k in ks) + f" | mean return (K=0 → K={ks[-1]}) |",
        "|---|" + "---:|" * len(ks) + "---:|",
    ]
    for m in methods:
        cells = []
        for k in ks:
            a = cell.get((m, k))
            if a is None:
                cells.append("")
                continue
            txt = _ci(a, stat)
            b = best.get(k)
            overlap = b is not None and (
                a[stat + "_low"] <= b[stat + "_high"]
                if lower_better
                else a[stat + "_high"] >= b[stat + "_low"]
            )
            if b is not None and b["method"] == m:
                txt = f"**{txt}**"
            elif m != "oracle" and overlap:
                txt = f"≈ {txt}"
            cells.append(txt)
        r0, r1 = cell.get((m, ks[0])), cell.get((m, ks[-1]))
        ret = f"{r0['mean_return']:.1f} → {r1['mean_return']:.1f}" if r0 and r1 else ""
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {ret} |")
    return lines


_STAT_TITLES = {
    "iqm": "IQM",
    "mean": "mean",
    "median": "median",
    "og": "optimality gap (mean shortfall below 1; lower is better)",
}


def summary_markdown(
    agg: Sequence[Mapping[str, Any]],
    title: str,
    notes: Sequence[str] = (),
    *,
    header: Sequence[str] = (),
    budgets: Mapping[str, tuple[int, int | None]] | None = None,
) -> str:
    """The results page: provenance, rliable's four aggregates per K, per-task scores, budgets.

    Args:
        agg: Output of :func:`metarobot.evaluation.aggregate`.
        title: Page title.
        notes: Paragraphs after the tables.
        header: Provenance lines (command, version, commit, machine) placed first.
        budgets: ``method → (planned env steps, env steps used)`` (used may be None).
    """
    ks = sorted({a["k"] for a in agg})
    methods = list(dict.fromkeys(a["method"] for a in agg))
    lines = [f"# {title}", ""]
    if header:
        lines += [*header, ""]
    lines += [
        "Normalized score (0 = random actions, 1 = oracle without adaptation) after K "
        "adaptation episodes, aggregated over tasks × runs (a run is one training seed × "
        "evaluation seed) with 95% stratified-bootstrap CIs, as rliable computes them. Bold: "
        "best non-oracle method at that K; ≈: its CI overlaps the best one's. The IQM drops the "
        "top and bottom quarter of scores, so where outcomes are bimodal (a policy solves some "
        "tasks and fails others) read it with the mean and the per-task table.",
        "",
    ]
    for stat in ("iqm", "mean", "median", "og"):
        lines += [f"## {_STAT_TITLES[stat]}", ""]
        lines += _per_k_table(agg, stat, ks, methods)
        lines.append("")
    k0 = ks[0]
    tasks = sorted({t for a in agg for t in a.get("per_task", {})})
    if tasks:
        lines += [
            f"## per task (mean score at K={k0} and K={ks[-1]})",
            "",
            "| method | " + " | ".join(f"task {t}" for t in tasks) + " |",
            "|---|" + "---:|" * len(tasks),
        ]
        cell = {(a["method"], a["k"]): a for a in agg}
        for m in methods:
            a0, a1 = cell.get((m, k0)), cell.get((m, ks[-1]))
            row = []
            for t in tasks:
                v0 = a0["per_task"].get(t, math.nan) if a0 else math.nan
                v1 = a1["per_task"].get(t, math.nan) if a1 else math.nan
                row.append(f"{_fmt(v0)} → {_fmt(v1)}")
            lines.append(f"| {m} | " + " | ".join(row) + " |")
        lines.append("")
    if budgets:
        lines += [
            "## training budget (environment steps)",
            "",
            "| method | planned (most) | used |",
            "|---|---:|---:|",
        ]
        for m in methods:
            if m in budgets:
                planned, used = budgets[m]
                used_txt = f"{used:,}" if used is not None else "–"
                lines.append(f"| {m} | {planned:,} | {used_txt} |")
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
    logs: Mapping[str, Sequence[Mapping[str, float]]],
    path: str | Path,
    title: str,
    window: int = 5,
    training: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
) -> None:
    """Training curves: meta-learners by meta-iteration, episodic-PPO methods by env steps.

    ``logs`` maps ``"<method> s<seed>"`` to a meta-learner's rows (return before, dashed, and
    after, solid, adaptation per meta-iteration); ``training`` maps ``"<method> s<seed>"`` to
    the ``training_curve`` an episodic-PPO trainer stores in its checkpoint (mean return of each
    iteration's training episodes against env steps: DR, RMA's teacher, the recurrent policy).
    Seeds of one method are averaged (band: min–max over seeds) and curves are smoothed with a
    ``window``-iteration moving average. Each kind gets its own panel when both are present.
    """
    groups: dict[str, list[Sequence[Mapping[str, float]]]] = {}
    for name, rows in logs.items():
        if rows:
            groups.setdefault(name.split(" ")[0], []).append(rows)
    curves: dict[str, list[Mapping[str, Sequence[float]]]] = {}
    for name, curve in (training or {}).items():
        if curve and curve.get("return"):
            curves.setdefault(name.split(" ")[0], []).append(curve)
    panels = int(bool(groups)) + int(bool(curves))
    fig, axes = plt.subplots(1, max(panels, 1), figsize=(7.5 * max(panels, 1), 4.8), dpi=120)
    axes = list(np.atleast_1d(axes))
    cmap = plt.get_cmap("tab10")
    if groups or not curves:
        ax = axes.pop(0)
        _meta_panel(ax, groups, window, cmap)
        ax.set_title(title if panels < 2 else f"{title}: meta-learners")
    if curves:
        ax = axes.pop(0)
        _training_panel(ax, curves, window, cmap)
        ax.set_title(title if panels < 2 else f"{title}: episodic PPO")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def _meta_panel(
    ax: Any, groups: Mapping[str, list[Sequence[Mapping[str, float]]]], window: int, cmap: Any
) -> None:
    """Meta-training return before (dashed) and after (solid) adaptation vs meta-iteration."""
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
    ax.grid(alpha=0.3)
    if ax.get_lines():
        ax.legend(fontsize=7, ncol=2, loc="best")
    else:
        ax.text(0.5, 0.5, "no meta-learner in this experiment", ha="center", transform=ax.transAxes)


def _training_panel(
    ax: Any, curves: Mapping[str, list[Mapping[str, Sequence[float]]]], window: int, cmap: Any
) -> None:
    """Episodic-PPO training return vs env steps, one line per method (seeds averaged)."""
    for i, (method, runs) in enumerate(curves.items()):
        n = min(len(c["return"]) for c in runs)
        steps = np.array(runs[0]["env_steps"][:n], dtype=float)
        ys = np.array([_smooth(np.asarray(c["return"][:n], dtype=float), window) for c in runs])
        label = f"{method} (teacher)" if method == "rma" else method
        ax.plot(steps, ys.mean(0), color=cmap(i % 10), label=f"{label}, {len(runs)} seed(s)")
        if len(runs) > 1:
            ax.fill_between(steps, ys.min(0), ys.max(0), color=cmap(i % 10), alpha=0.12)
    ax.set_xlabel("environment steps")
    ax.set_ylabel(f"mean training-episode return ({window}-iteration moving average)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")


def within_episode_png(
    curves: Mapping[str, np.ndarray],
    path: str | Path,
    title: str,
    online: Sequence[str] = (),
    change_step: int | None = None,
) -> None:
    """Mean reward per step since reset (K = 0), one line per method.

    Args:
        curves: Method → per-step mean reward over held-out tasks, episodes and seeds ``[T]``.
        path: PNG file.
        title: Plot title.
        online: Methods that adapt within the episode (drawn thicker).
        change_step: The step at which the dynamics change within the episode (marked), if any.
    """
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    cmap = plt.get_cmap("tab10")
    for i, (m, y) in enumerate(curves.items()):
        style = "--" if m in ("oracle", "scratch") else "-"
        ax.plot(
            np.arange(len(y)),
            y,
            style,
            color=cmap(i % 10),
            lw=2.2 if m in online else 1.0,
            label=m + (" (online)" if m in online else ""),
        )
    if change_step is not None:
        ax.axvline(change_step, color="k", ls=":", lw=1.2)
        ax.text(change_step, ax.get_ylim()[1], " dynamics change", va="top", fontsize=8)
    ax.set_xlabel("step since reset")
    ax.set_ylabel("mean reward at that step (held-out tasks, K = 0)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2, loc="best")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
