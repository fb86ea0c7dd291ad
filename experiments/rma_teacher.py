"""Where RMA loses: its privileged teacher against the deployed student, on a table's tasks.

RMA's score can fall short of the oracle for two reasons: the teacher (the actor on the true
latent ``z = enc(privileged features)``) never learned the tasks, or the student's adaptation
module ``φ`` infers a latent the actor cannot use. This runs both on the held-out tasks of a
finished ``metarobot run`` folder, with the same deterministic evaluation episodes, and
normalizes by that run's random-action and oracle returns (its ``records/random.csv`` and
``results.csv``): if the teacher scores no higher than the student, the budget goes to teaching,
not to inference.

Usage::

    python experiments/rma_teacher.py --config experiments/configs/half_cheetah_physical.toml \\
        --out experiments/results/half_cheetah_physical/rma_teacher.md
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

import metarobot
from metarobot.config import load_config
from metarobot.context import TaskFeatures
from metarobot.evaluation import aggregate
from metarobot.provenance import command_line, provenance_lines
from metarobot.rollout import episode_returns

#: Evaluation episodes start from seeds disjoint from the table's (its seeds are 0, 1, 2, ...).
SEED_BASE = 90_000


def _normalizers(run: Path) -> tuple[dict[int, float], dict[int, float]]:
    """Per-task random-action and oracle (K = 0) returns of a finished run."""
    with (run / "records" / "random.csv").open() as fh:
        rand = {int(r["task"]): float(r["return"]) for r in csv.DictReader(fh)}
    per: dict[int, list[float]] = defaultdict(list)
    with (run / "results.csv").open() as fh:
        for r in csv.DictReader(fh):
            if r["method"] == "oracle" and int(r["k"]) == 0:
                per[int(r["task"])].append(float(r["return"]))
    return rand, {t: float(np.mean(v)) for t, v in per.items()}


def main() -> None:
    """Evaluate teacher and student for every training seed; write the Markdown table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, required=True, help="the table's config (TOML)")
    ap.add_argument("--run", type=Path, default=None, help="run folder (default: config's out)")
    ap.add_argument("--episodes", type=int, default=3, help="episodes per task and policy")
    ap.add_argument("--out", type=Path, required=True, help="Markdown output")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.config)
    run = args.run or Path(cfg.out)
    tasks = cfg.test_tasks()
    features = TaskFeatures(cfg.family)
    rand, oracle = _normalizers(run)
    seeds = [SEED_BASE + i for i in range(len(tasks))]
    records = []
    for train_seed in cfg.train_seeds:
        student = metarobot.load(run / "checkpoints" / f"rma-s{train_seed}.pt")
        with torch.no_grad():
            priv = torch.as_tensor(features.batch(tasks), dtype=torch.float32)
            z = student.encoder(priv).double().numpy()
        teacher = [student.with_latent(z[i]) for i in range(len(tasks))]
        for name, pols in (("teacher (true latent)", teacher), ("student (φ online)", None)):
            rets, *_ = episode_returns(
                pols or [student] * len(tasks),
                cfg.family,
                tasks,
                episodes=args.episodes,
                seeds=seeds,
                nthread=1,
            )
            for t, row in enumerate(rets):
                for e, ret in enumerate(row):
                    score = (ret - rand[t]) / (oracle[t] - rand[t])
                    records.append(
                        {
                            "method": name,
                            "k": 0,
                            "task": t,
                            "seed": e,
                            "train_seed": train_seed,
                            "return": float(ret),
                            "score": float(score),
                        }
                    )
    agg = {a["method"]: a for a in aggregate(records, reps=2000)}
    lines = [
        f"# RMA's teacher vs its student: {cfg.name}",
        "",
        *provenance_lines(command_line()),
        "",
        f"Normalized score (0 = random actions, 1 = the run's oracle) on the {len(tasks)} held-out "
        f"tasks of the {cfg.eval.split} split, {len(cfg.train_seeds)} training seeds × "
        f"{args.episodes} deterministic episodes per task (seeds from {SEED_BASE}); mean with "
        "95% stratified-bootstrap CI. The teacher is the deployed actor driven by the true "
        "latent of each task (its privileged encoder on the task's features), the student the "
        "same actor driven by φ's online estimate.",
        "",
        "| policy | mean score | per task | per training seed |",
        "|---|---:|---|---|",
    ]
    for name, a in agg.items():
        mine = [r for r in records if r["method"] == name]
        per_task = ", ".join(
            f"{np.mean([r['score'] for r in mine if r['task'] == t]):.2f}"
            for t in range(len(tasks))
        )
        per_seed = ", ".join(
            f"{np.mean([r['score'] for r in mine if r['train_seed'] == s]):.2f}"
            for s in cfg.train_seeds
        )
        lines.append(
            f"| {name} | {a['mean']:.2f} [{a['mean_low']:.2f}, {a['mean_high']:.2f}] | "
            f"{per_task} | {per_seed} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
