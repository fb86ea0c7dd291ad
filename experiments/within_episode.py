"""Reward around a change of the dynamics within an episode, for every method of a finished run.

Online adaptation exists for robots whose dynamics change while they run (a payload picked up,
a motor that fails). This script takes the checkpoints of a finished ``metarobot run`` folder
and runs every method's policies on the table's held-out tasks with a within-episode change:
each episode starts on its own task and, after ``--change-step`` steps, continues on a second
task drawn from ``--change-to`` (a split of the family; ``ood``: out of the training ranges),
with the simulation state kept. It writes the mean reward per step (over tasks, episodes and
training seeds; deterministic actions, K = 0) to ``<out>/within_episode_change.csv`` and a plot,
``within_episode_change.png``, with the change step marked.

The same evaluation seeds as the run's own within-episode curve are used, so the steps before
the change are the run's ``within_episode.png``.

Usage::

    python experiments/within_episode.py runs/quickstart --change-step 100 --change-to test
"""

from __future__ import annotations

import argparse
import csv
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from metarobot import registry
from metarobot.config import load_config
from metarobot.evaluation import EVAL_SEED_OFFSET
from metarobot.report import within_episode_png
from metarobot.rollout import episode_returns

SPLITS = ("train", "test", "ood")


def curves(
    run: Path, change_step: int, change_to: str, episodes: int
) -> tuple[dict[str, np.ndarray], list[str], str]:
    """Method → mean reward per step with the change; the online methods; the family."""
    cfg = load_config(run / "config.toml")
    tasks = cfg.test_tasks()
    seed = cfg.eval.seeds[0]
    seeds = [seed + EVAL_SEED_OFFSET + 7919 * i for i in range(len(tasks))]
    kwargs = {"change_step": change_step, "change_to": change_to}
    out: dict[str, np.ndarray] = {}
    online: list[str] = []
    for method in cfg.methods:
        spec = registry.get(method)
        per_seed = []
        train_seeds = cfg.train_seeds[:1] if spec.reference else cfg.train_seeds
        for s in train_seeds:
            loaded = spec.load(cfg, s, run / "checkpoints")
            policies = loaded if isinstance(loaded, list) else [loaded] * len(tasks)
            _, _, _, per_step = episode_returns(
                policies,
                cfg.family,
                tasks,
                episodes=episodes,
                seeds=seeds,
                nthread=cfg.nthread,
                rewards=True,
                env_kwargs=kwargs,
            )
            assert per_step is not None
            # Episodes that end early (a fallen walker) stop there: a reward of 0 afterwards,
            # and every run is padded to the family's horizon so the seeds line up.
            full = np.zeros((*per_step.shape[:-1], registry.horizon(cfg.family)))
            full[..., : per_step.shape[-1]] = per_step
            per_seed.append(full.reshape(-1, full.shape[-1]).mean(0))
            if getattr(policies[0], "kind", None) in ("rma", "recurrent"):
                online.append(method)
        out[method] = np.mean(per_seed, axis=0)
        print(
            f"{method}: mean reward {out[method][:change_step].mean():.3f} before the change, "
            f"{out[method][change_step:].mean():.3f} after",
            flush=True,
        )
    return out, sorted(set(online)), cfg.family


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, evaluate, write the CSV and the plot."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a finished `metarobot run` output folder")
    ap.add_argument("--change-step", type=int, default=100)
    ap.add_argument("--change-to", choices=SPLITS, default="test")
    ap.add_argument("--episodes", type=int, default=2, help="episodes per task and seed")
    ap.add_argument("--out", type=Path, default=None, help="default: the run folder")
    args = ap.parse_args(argv)
    if args.change_step < 1:
        raise ValueError(f"--change-step must be an integer >= 1, got {args.change_step}")
    torch.set_num_threads(1)
    out = args.out or args.run
    out.mkdir(parents=True, exist_ok=True)
    data, online, family = curves(args.run, args.change_step, args.change_to, args.episodes)
    with (out / "within_episode_change.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["step", *data])
        for t in range(len(next(iter(data.values())))):
            w.writerow([t, *(f"{data[m][t]:.6g}" for m in data)])
    title = f"{family.split('/')[-1]}: the task changes to one of the {args.change_to} split "
    title += f"at step {args.change_step}"
    within_episode_png(data, out / "within_episode_change.png", title, online, args.change_step)
    cmd = "python experiments/within_episode.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    (out / "within_episode_change.md").write_text(
        f"Command: `{cmd}`\n\n| method | mean reward before | after |\n|---|---:|---:|\n"
        + "".join(
            f"| {m} | {y[: args.change_step].mean():.3f} | {y[args.change_step :].mean():.3f} |\n"
            for m, y in data.items()
        )
    )


if __name__ == "__main__":
    main()
