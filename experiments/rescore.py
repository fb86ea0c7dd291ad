"""Re-score a table against the strongest oracle any of several tables trained for each task.

A table divides every return by its own oracle's. When two tables share a family, split and
held-out tasks but train their oracles with different recipes, the weaker oracle inflates the
scores of its table: a method beating its oracle by 17 % on a task says more about the oracle
than about the method. This script takes the ``results.csv`` of the table to score and of the
reference tables, uses for each task the highest mean oracle return (K = 0) among them, keeps
the scored table's own random-action return (recovered from its scores), and reports every
method's mean normalized score at each K with the tables' own 95 % stratified-bootstrap CI
(:func:`metarobot.evaluation.aggregate`: runs resampled within each task), beside the table's
own scores.

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
from typing import Any

import numpy as np

from metarobot.evaluation import aggregate


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


def records(
    rows: list[dict[str, str]], score: dict[int, tuple[float, float]] | None
) -> list[dict[str, Any]]:
    """The rows as :func:`~metarobot.evaluation.aggregate` reads them, oracle rows left out.

    Args:
        rows: ``results.csv`` rows.
        score: Per task ``(random return, oracle return)`` to re-score with; None keeps the
            table's own scores.
    """
    out = []
    for r in rows:
        if r["method"] == "oracle":
            continue
        t, ret = int(r["task"]), float(r["return"])
        if score is None:
            s = float(r["score"])
        else:
            s = (ret - score[t][0]) / (score[t][1] - score[t][0])
        out.append(
            {
                "method": r["method"],
                "k": int(r["k"]),
                "task": t,
                "seed": int(r["seed"]),
                "train_seed": int(r["train_seed"]),
                "return": ret,
                "score": s,
            }
        )
    return out


def main() -> None:
    """Parse the command line, re-score, write the Markdown report."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("table", type=Path, help="the table to re-score (folder with results.csv)")
    p.add_argument("--references", type=Path, nargs="+", required=True, help="tables' folders")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap resamples")
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
    own_agg = {(a["method"], a["k"]): a for a in aggregate(records(rows, None), args.reps)}
    rescored = records(rows, {t: (rand[t], best[t]) for t in own})
    new_agg = aggregate(rescored, args.reps)
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
    for b in new_agg:
        a = own_agg[(b["method"], b["k"])]
        per = ", ".join(f"{v:.2f}" for _, v in sorted(b["per_task"].items()))
        lines.append(
            f"| {b['method']} | {b['k']} | {a['mean']:.2f} [{a['mean_low']:.2f}, "
            f"{a['mean_high']:.2f}] | {b['mean']:.2f} [{b['mean_low']:.2f}, "
            f"{b['mean_high']:.2f}] | {per} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(args.out.read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
