"""One row per training seed: does each seed, on its own, give the table's verdict?

Reads a results folder written by ``metarobot run`` (its ``results.csv``) and, for every
training seed, aggregates that seed's runs alone (its evaluation seeds × held-out tasks, 95%
stratified-bootstrap CIs, as in the table). A seed *solves* a task when the adaptive method's
mean score on it is at least ``--solved``; it *gives the verdict* when the adaptive method's mean
is at least ``--target`` with its CI above every other non-oracle method's CI.

Usage::

    metarobot run experiments/configs/quickstart_seeds.toml --workers 2
    python experiments/seed_verdicts.py runs/quickstart_seeds --method rma \\
        --out experiments/results/quickstart_seeds/seed_verdicts.md
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from metarobot.evaluation import aggregate
from metarobot.provenance import provenance_lines


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records of a ``results.csv`` with numeric fields parsed."""
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{path} holds no records")
    ints, floats = ("task", "seed", "k", "train_seed"), ("return", "score")
    return [
        {
            **r,
            **{key: int(r[key]) for key in ints},
            **{key: float(r[key]) for key in floats},
        }
        for r in rows
    ]


def seed_rows(
    records: Sequence[dict[str, Any]], method: str, k: int, target: float, solved: float, reps: int
) -> tuple[list[str], list[bool], list[bool]]:
    """Markdown rows, one per training seed, with whether it solved every task and gave the verdict.

    Raises:
        ValueError: If ``method`` or ``k`` is not in the records.
    """
    at_k = [r for r in records if r["k"] == k]
    if not any(r["method"] == method for r in at_k):
        raise ValueError(f"method {method!r} at k={k} is not in the records")
    others = sorted({r["method"] for r in at_k} - {method, "oracle"})
    rows, solved_all, verdicts = [], [], []
    # The oracle is a per-task reference trained once (first training seed): its records carry
    # that seed only, so per-seed aggregates cover the trained methods.
    for seed in sorted({r["train_seed"] for r in at_k if r["method"] == method}):
        agg = {
            a["method"]: a
            for a in aggregate(
                [r for r in at_k if r["train_seed"] == seed and r["method"] != "oracle"], reps
            )
        }
        mine = agg[method]
        tasks = mine["per_task"]
        ok_tasks = all(v >= solved for v in tasks.values())
        above = all(mine["mean_low"] > agg[o]["mean_high"] for o in others if o in agg)
        verdict = mine["mean"] >= target and above
        solved_all.append(ok_tasks)
        verdicts.append(verdict)
        cells = [f"{mine['mean']:.2f} [{mine['mean_low']:.2f}, {mine['mean_high']:.2f}]"]
        cells += [f"{agg[o]['mean']:.2f}" if o in agg else "–" for o in others]
        cells += [" ".join(f"{tasks[t]:.2f}" for t in sorted(tasks))]
        cells += ["yes" if ok_tasks else "**no**", "yes" if verdict else "**no**"]
        rows.append(f"| {seed} | " + " | ".join(cells) + " |")
    header = (
        f"| training seed | {method} mean (95% CI) | "
        + " | ".join(f"{o} mean" for o in others)
        + f" | {method} per task | solves every task (≥ {solved}) | verdict |"
    )
    sep = "|---:|---:|" + "---:|" * len(others) + "---|:---:|:---:|"
    return [header, sep, *rows], solved_all, verdicts


def main() -> None:
    """Parse the command line and write (or print) the per-seed table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="a results folder with results.csv")
    p.add_argument("--method", default="rma", help="the adaptive method under test")
    p.add_argument("--k", type=int, default=0, help="adaptation episodes (0: online only)")
    p.add_argument("--target", type=float, default=0.9, help="mean normalized score to reach")
    p.add_argument("--solved", type=float, default=0.9, help="per-task score that counts as solved")
    p.add_argument("--reps", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--out", type=Path, default=None, help="write Markdown here")
    args = p.parse_args()
    records = read_records(args.run / "results.csv")
    rows, solved_all, verdicts = seed_rows(
        records, args.method, args.k, args.target, args.solved, args.reps
    )
    n = len(verdicts)
    text = "\n".join(
        [
            f"# Per-seed verdicts: {args.run.name}",
            "",
            *provenance_lines(),
            "",
            f"Each training seed aggregated alone (its evaluation seeds × held-out tasks, K = "
            f"{args.k}, normalized scores, 95% stratified-bootstrap CIs). Verdict: {args.method}'s "
            f"mean ≥ {args.target} with its CI above every other method's.",
            "",
            *rows,
            "",
            f"{sum(solved_all)} of {n} training seeds solve every task; {sum(verdicts)} of {n} "
            "give the verdict.",
            "",
        ]
    )
    if args.out is None:
        print(text)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
