"""Re-score a table against the strongest oracle any of several tables trained for each task.

A table divides every return by its own oracle's. When two tables share a family, split and
held-out tasks but train their oracles with different recipes, the weaker oracle inflates the
scores of its table: a method beating its oracle by 17 % on a task says more about the oracle
than about the method. This script takes the ``results.csv`` of the table to score and of the
reference tables, uses for each task the highest mean oracle return (K = 0) among them, keeps
the scored table's own random-action return (recovered from its scores), and reports every
method's mean normalized score at each K with a 95 % stratified-bootstrap CI (runs resampled
within each task, as the tables' CIs), beside the table's own scores.

Usage::

    python experiments/rescore.py experiments/results/walker2d_physical_lownoise \
        --references experiments/results/walker2d_physical \
        --out experiments/results/walker2d_physical_lownoise/rescored.md
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np


def read_rows(table: Path) -> list[dict[str, str]]:
    """The rows of ``table``/results.csv.

    Raises:
        ValueError: If the file is missing or holds no oracle rows.
    """
    path = table / "results.csv"
    if not path.is_file():
        raise ValueError(f"table must be a folder with results.csv, got {str(table)!r}")
    rows = list(csv.DictReader(path.open()))
    if not any(r["method"] == "oracle" for r in rows):
        raise ValueError(f"{path} has no oracle rows")
    return rows


def oracle_returns(rows: list[dict[str, str]]) -> dict[int, float]:
    """Mean K = 0 return of the oracle on each task."""
    per: dict[int, list[float]] = defaultdict(list)
    for r in rows:
        if r["method"] == "oracle" and int(r["k"]) == 0:
            per[int(r["task"])].append(float(r["return"]))
    return {t: float(np.mean(v)) for t, v in per.items()}


def random_returns(rows: list[dict[str, str]], oracle: dict[int, float]) -> dict[int, float]:
    """Each task's random-action return, solved from a row's score = (R − rand)/(oracle − rand)."""
    out: dict[int, float] = {}
    for r in rows:
        s, ret, t = float(r["score"]), float(r["return"]), int(r["task"])
        if r["method"] != "oracle" and t not in out and abs(1.0 - s) > 1e-6:
            out[t] = (ret - s * oracle[t]) / (1.0 - s)
    return out


def bootstrap_mean(
    scores: np.ndarray, tasks: np.ndarray, rng: np.random.Generator, reps: int
) -> tuple[float, float, float]:
    """Mean over tasks of the per-task mean, with a stratified-bootstrap 95 % CI."""
    groups = [scores[tasks == t] for t in np.unique(tasks)]
    point = float(np.mean([g.mean() for g in groups]))
    boots = [np.mean([rng.choice(g, len(g)).mean() for g in groups]) for _ in range(reps)]
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return point, float(lo), float(hi)


def main() -> None:
    """Parse the command line, re-score, write the Markdown report."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("table", type=Path, help="the table to re-score (folder with results.csv)")
    p.add_argument("--references", type=Path, nargs="+", required=True, help="tables' folders")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    if args.reps < 1:
        raise ValueError(f"--reps must be >= 1, got {args.reps}")
    rows = read_rows(args.table)
    own = oracle_returns(rows)
    rand = random_returns(rows, own)
    refs = {str(t): oracle_returns(read_rows(t)) for t in args.references}
    best = dict(own)
    for ref in refs.values():
        for t in own:
            if t not in ref:
                raise ValueError(f"a reference table has no oracle row for task {t}")
            best[t] = max(best[t], ref[t])
    rng = np.random.default_rng(args.seed)
    methods = list(dict.fromkeys(r["method"] for r in rows if r["method"] != "oracle"))
    ks = sorted({int(r["k"]) for r in rows})
    lines = [
        f"# {args.table.name}: scores against the strongest oracle of each task",
        "",
        "Command: `python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]) + "`",
        "",
        "Mean oracle return (K = 0) per task, this table's and each reference's; the highest is",
        "the reference of the re-scored columns (random actions: this table's own).",
        "",
        "| task | random | this table's oracle | "
        + " | ".join(f"`{Path(r).name}`" for r in refs)
        + " | used |",
        "|---:|---:|---:|" + "---:|" * len(refs) + "---:|",
    ]
    for t in sorted(own):
        cells = " | ".join(f"{ref[t]:.1f}" for ref in refs.values())
        lines.append(f"| {t} | {rand[t]:.1f} | {own[t]:.1f} | {cells} | {best[t]:.1f} |")
    lines += [
        "",
        "Mean normalized score with 95% stratified-bootstrap CI: the table's own (its oracle) and",
        "re-scored (the strongest oracle per task); per task, the re-scored means.",
        "",
        "| method | K | own oracle | strongest oracle | per task (strongest) |",
        "|---|---:|---:|---:|---|",
    ]
    for m in methods:
        for k in ks:
            sel = [r for r in rows if r["method"] == m and int(r["k"]) == k]
            tasks = np.array([int(r["task"]) for r in sel])
            own_s = np.array([float(r["score"]) for r in sel])
            new_s = np.array(
                [
                    (float(r["return"]) - rand[int(r["task"])])
                    / (best[int(r["task"])] - rand[int(r["task"])])
                    for r in sel
                ]
            )
            a = bootstrap_mean(own_s, tasks, rng, args.reps)
            b = bootstrap_mean(new_s, tasks, rng, args.reps)
            per = ", ".join(f"{new_s[tasks == t].mean():.2f}" for t in np.unique(tasks))
            lines.append(
                f"| {m} | {k} | {a[0]:.2f} [{a[1]:.2f}, {a[2]:.2f}] | "
                f"{b[0]:.2f} [{b[1]:.2f}, {b[2]:.2f}] | {per} |"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(args.out.read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
