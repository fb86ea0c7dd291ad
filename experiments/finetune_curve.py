"""Fine-tuning curves: normalized score on held-out tasks vs episodes spent in the new environment.

For each method's shipped checkpoint (and a freshly initialized policy, ``scratch``), every
budget E of fine-tuning episodes and every seed, the held-out tasks of a family are fine-tuned
with ``metarobot.adapt_many`` — ``rounds = E / K`` rounds of {K episodes with the current policy,
S Adam steps of PPO's clipped surrogate, or with ``--algorithm sac`` soft actor-critic steps on
a replay buffer of every round's episodes}, the best round kept, the safeguard on — and the
result is scored on separate evaluation episodes (mean action). Each budget is a fresh call,
so each point is what a user gets from ``adapt(..., episodes=K, rounds=E/K)``. Scores are
normalized per task as in the tables: ``(R − R_random) / (R_oracle − R_random)``, with the
oracle's returns read from the family's committed table (``--table``). Rows are appended to the
CSV as they finish, and a rerun skips finished rows, so an interrupted run resumes.

Usage::

    python experiments/finetune_curve.py --family HalfCheetahVel \\
        --table experiments/results/half_cheetah_vel \\
        --out experiments/results/finetune_HalfCheetahVel
"""

from __future__ import annotations

import argparse
import csv
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from tqdm.auto import tqdm

import metarobot
from metarobot.adaptation import adapt_many
from metarobot.envs import task_split
from metarobot.evaluation import aggregate, evaluation_returns, random_returns
from metarobot.provenance import command_line, provenance_lines
from metarobot.sac import SACSettings

FIELDS = ["method", "seed", "episodes", "task", "return", "score", "accepted", "seconds"]


def oracle_returns(table: Path, n_tasks: int) -> np.ndarray:
    """Per-task mean return of the oracle at K = 0 in a committed table's ``results.csv``."""
    per: dict[int, list[float]] = {}
    with (table / "results.csv").open() as fh:
        for r in csv.DictReader(fh):
            if r["method"] == "oracle" and int(r["k"]) == 0:
                per.setdefault(int(r["task"]), []).append(float(r["return"]))
    if not set(range(n_tasks)) <= set(per):
        raise ValueError(
            f"{table}/results.csv has oracle rows for tasks {sorted(per)}, need 0..{n_tasks - 1}"
        )
    return np.array([np.mean(per[t]) for t in range(n_tasks)])


def start_policy(
    family: str, method: str, seed: int, hidden: Sequence[int], run: Path | None = None
) -> Any:
    """The shipped checkpoint of ``method`` on ``family`` (or, with ``run``, that run's seed-0
    checkpoint), or a fresh policy for ``scratch``."""
    if method == "scratch":
        return metarobot.make_policy(f"metarobot/{family}-v0", hidden=tuple(hidden), seed=seed)
    path = Path("experiments/checkpoints") / f"{family}-{method}.pt"
    if run is not None:
        path = run / "checkpoints" / f"{method}-s0.pt"
    if not path.exists():
        raise ValueError(f"no shipped checkpoint {path}")
    return metarobot.load(path)


def fine_tuning_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``adapt_many`` options of the chosen algorithm (beside episodes, rounds and lr)."""
    if args.algorithm == "sac":
        return {
            "algorithm": "sac",
            "sac": SACSettings(utd=args.utd, init_alpha=args.init_alpha),
        }
    return {"steps": args.steps, "optimizer": "adam"}


def update_text(args: argparse.Namespace) -> str:
    """How each round updates the policy, for the report."""
    k = args.episodes_per_round
    if args.algorithm == "sac":
        return (
            f"`adapt_many(episodes={k}, rounds=E/{k}, algorithm='sac', lr={args.lr}, "
            f"sac=SACSettings(utd={args.utd:g}, init_alpha={args.init_alpha:g}))`: soft "
            "actor-critic, every round's episodes "
            f"in a replay buffer per task, {args.utd:g} gradient step(s) per environment step "
            "of a round, fresh twin critics fitted alone in round 1"
        )
    return (
        f"`adapt_many(episodes={k}, rounds=E/{k}, steps={args.steps}, lr={args.lr}, "
        "optimizer='adam')`"
    )


def read_done(path: Path) -> list[dict[str, Any]]:
    """Rows already written (empty if the file does not exist)."""
    if not path.exists():
        return []
    with path.open() as fh:
        return list(csv.DictReader(fh))


def main() -> None:
    """Parse the command line, run the missing (method, seed, budget) cells, write the report."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", required=True, help="family name, e.g. HalfCheetahVel")
    p.add_argument("--table", type=Path, required=True, help="committed table with oracle rows")
    p.add_argument("--methods", nargs="+", default=["domain_randomization", "metasgd", "scratch"])
    p.add_argument("--budgets", type=int, nargs="+", default=[0, 5, 10, 20, 50, 100, 200])
    p.add_argument("--episodes-per-round", type=int, default=5, help="K")
    p.add_argument("--steps", type=int, default=10, help="Adam steps per round (epochs)")
    p.add_argument(
        "--lr",
        type=float,
        default=None,
        help="step size (chosen on training tasks; default: PPO's Adam 1e-3, SAC's 3e-4)",
    )
    p.add_argument(
        "--algorithm",
        choices=["ppo", "sac"],
        default="ppo",
        help="fine-tuning rounds: PPO (--steps Adam epochs per round) or SAC (off-policy, every "
        "round's episodes kept in a replay buffer; MLP and RMA policies)",
    )
    p.add_argument(
        "--utd", type=float, default=1.0, help="SAC: gradient steps per environment step"
    )
    p.add_argument(
        "--init-alpha",
        type=float,
        default=SACSettings.init_alpha,
        help="SAC: initial temperature (entropy weight)",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--tasks", type=int, default=5, help="first N held-out tasks (as the table)")
    p.add_argument("--eval-episodes", type=int, default=2)
    p.add_argument("--hidden", type=int, nargs="+", default=[64, 64], help="scratch's sizes")
    p.add_argument(
        "--split",
        choices=["test", "train"],
        default="test",
        help="held-out tasks (normalized by the table's oracle) or, to choose settings without "
        "touching them, training tasks (raw returns)",
    )
    p.add_argument(
        "--run",
        type=Path,
        default=None,
        help="take the starting policies from this `metarobot run` folder (seed 0) instead of "
        "experiments/checkpoints/",
    )
    p.add_argument("--out", type=Path, required=True, help="output prefix (.csv, .md, .png)")
    args = p.parse_args()
    if args.lr is None:
        args.lr = 1e-3 if args.algorithm == "ppo" else 3e-4
    k = args.episodes_per_round
    if k < 1 or any(b < 0 or b % k for b in args.budgets):
        raise ValueError(f"--budgets must be multiples of --episodes-per-round ({k}) and >= 0")
    torch.set_num_threads(1)
    env_id = f"metarobot/{args.family}-v0"
    train, test = task_split(env_id)
    tasks = (test if args.split == "test" else train)[: args.tasks]
    # Training tasks have no oracle: a screen there reports returns (score = return).
    oracle = oracle_returns(args.table, len(tasks)) if args.split == "test" else None
    rand = random_returns(env_id, tasks, episodes=10, seed=0, nthread=1)
    csv_path = args.out.with_suffix(".csv")
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    done = {(r["method"], int(r["seed"]), int(r["episodes"])) for r in read_done(csv_path)}
    cells = [
        (m, s, b)
        for m in args.methods
        for s in args.seeds
        for b in args.budgets
        if (m, s, b) not in done
    ]
    new_file = not csv_path.exists()
    with csv_path.open("a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        if new_file:
            w.writeheader()
        for method, seed, budget in tqdm(cells, desc="fine-tuning cells"):
            t0 = time.perf_counter()
            policy = start_policy(args.family, method, seed, args.hidden, args.run)
            if budget == 0:
                tuned, accepted = [policy] * len(tasks), [""] * len(tasks)
            else:
                tuned = adapt_many(
                    policy,
                    env_id,
                    tasks,
                    episodes=k,
                    rounds=budget // k,
                    lr=args.lr,
                    seed=1_000 * seed,
                    device="cpu",
                    nthread=1,
                    **fine_tuning_options(args),
                )
                accepted = [str(bool(t.meta["adapted"]["accepted"])) for t in tuned]
            rets = evaluation_returns(
                tuned, env_id, tasks, episodes=args.eval_episodes, seed=77_777 + seed, nthread=1
            )
            secs = time.perf_counter() - t0
            for i, ret in enumerate(rets):
                score = ret if oracle is None else (ret - rand[i]) / (oracle[i] - rand[i])
                w.writerow(
                    {
                        "method": method,
                        "seed": seed,
                        "episodes": budget,
                        "task": i,
                        "return": float(ret),
                        "score": float(score),
                        "accepted": accepted[i],
                        "seconds": round(secs, 2),
                    }
                )
            fh.flush()
    report(args, csv_path, oracle, rand)


def report(
    args: argparse.Namespace, csv_path: Path, oracle: np.ndarray | None, rand: np.ndarray
) -> None:
    """Write the Markdown table and the plot from every row of the CSV."""
    rows = read_done(csv_path)
    records = [
        {
            "method": r["method"],
            "k": int(r["episodes"]),
            "task": int(r["task"]),
            "seed": int(r["seed"]),
            "train_seed": 0,
            "return": float(r["return"]),
            "score": float(r["score"]),
        }
        for r in rows
    ]
    agg = {(a["method"], a["k"]): a for a in aggregate(records, reps=2000)}
    budgets = sorted({rec["k"] for rec in records})
    methods = [m for m in args.methods if any((m, b) in agg for b in budgets)]
    lines = [
        f"# Fine-tuning curves{' (SAC)' if args.algorithm == 'sac' else ''}: {args.family}",
        "",
        *provenance_lines(command_line()),
        "",
        (
            f"Mean normalized score (95% stratified-bootstrap CI) over {args.tasks} held-out "
            "tasks × "
            if oracle is not None
            else f"Screen on training tasks: mean return (95% CI) over the first {args.tasks} "
            "training tasks × "
        )
        + f"{len(args.seeds)} seeds after E episodes of fine-tuning in each task: "
        + update_text(args)
        + ", each environment keeping its "
        "best round (`keep='best'`: the round whose own episodes scored highest, the start "
        "included; K more episodes measure the last update), then the safeguard (its "
        "validation episodes come on top of E). "
        + (
            "Normalized per task by random actions "
            f"({', '.join(f'{x:.1f}' for x in rand)}) and the oracle of `{args.table}` "
            f"({', '.join(f'{x:.1f}' for x in oracle)}); "
            if oracle is not None
            else ""
        )
        + f"scratch is a fresh {tuple(args.hidden)} policy fine-tuned by the same loop."
        + (
            " For RMA, round 1 infers its latent ẑ and rounds 2..R fine-tune the actor with ẑ "
            "folded into its first layer (`RMAPolicy.folded`); for the recurrent policy, the "
            "R rounds are R batches of K episodes with R − 1 PPO updates of its GRU network "
            f"({args.steps} epochs each; `RecurrentPolicy.fine_tuned`)."
            if {"rma", "recurrent"} & set(args.methods)
            else ""
        ),
        "",
        "| method | " + " | ".join(f"E = {b}" for b in budgets) + " |",
        "|---|" + "---:|" * len(budgets),
    ]
    for m in methods:
        cells = []
        for b in budgets:
            a = agg.get((m, b))
            cells.append(
                "–" if a is None else f"{a['mean']:.2f} [{a['mean_low']:.2f}, {a['mean_high']:.2f}]"
            )
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Share of the remaining gap to the oracle closed, (S(E) − S(0)) / (1 − S(0)):",
        "",
    ]
    for m in methods:
        if (m, 0) not in agg or oracle is None:
            continue
        s0 = agg[(m, 0)]["mean"]
        parts = [
            f"E = {b}: {(agg[(m, b)]['mean'] - s0) / (1 - s0):+.2f}"
            for b in budgets
            if b > 0 and (m, b) in agg and s0 < 1
        ]
        lines.append(f"- {m}: " + ", ".join(parts))
    kept = [r for r in rows if r["accepted"] in ("True", "False")]
    if kept:
        frac = np.mean([r["accepted"] == "True" for r in kept])
        lines += ["", f"The safeguard kept {frac:.0%} of the {len(kept)} fine-tuned policies."]
    # Every row of a cell carries the cell's wall time, so the mean over rows is the mean per cell.
    secs = sum(float(r["seconds"]) for r in rows) / max(1, len(rows))
    lines += [
        "",
        f"Mean wall time per cell (one method, seed and budget, all tasks): {secs:.1f} s.",
        "",
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines))

    fig, ax = plt.subplots(figsize=(7, 4.2))
    xs = [max(b, 1) for b in budgets]
    for m in methods:
        pts = [(x, agg[(m, b)]) for x, b in zip(xs, budgets, strict=True) if (m, b) in agg]
        x = [q[0] for q in pts]
        ax.plot(x, [q[1]["mean"] for q in pts], marker="o", label=m)
        ax.fill_between(
            x, [q[1]["mean_low"] for q in pts], [q[1]["mean_high"] for q in pts], alpha=0.2
        )
    if oracle is not None:
        ax.axhline(1.0, color="k", ls="--", lw=1, label="oracle")
    ax.set_xscale("log")
    ax.set_xticks(xs, [str(b) for b in budgets])
    ax.set_xlabel("fine-tuning episodes in the new environment (E; 0 at the left)")
    ax.set_ylabel("mean normalized score" if oracle is not None else "mean return")
    how = " with SAC" if args.algorithm == "sac" else ""
    ax.set_title(f"{args.family}: fine-tuning{how} ({len(args.seeds)} seeds, 95% CI)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"), dpi=120)
    plt.close(fig)
    print(f"wrote {args.out.with_suffix('.md')}, {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
