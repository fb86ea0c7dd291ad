"""Learning curves of one trainer against wall-clock time, to compare two versions of the code.

A change that makes a trainer faster must not make it learn less per step (issue "Training at
the simulator's speed"): this script trains ``--trainer`` on ``--family``'s training tasks for
``--steps`` env steps and each ``--seeds``, one torch thread and one simulator thread, and saves
every PPO iteration's env steps, mean training return and wall time. Run it from two checkouts
(e.g. ``git worktree add /tmp/base <commit>`` and ``PYTHONPATH=/tmp/base``) into two JSON
files, then ``--compare`` writes the table and plot.

Usage::

    python experiments/train_curve.py --trainer recurrent --family HalfCheetahRandParams \\
        --steps 200000 --seeds 0 1 --out runs/curves/new.json
    PYTHONPATH=/tmp/base python experiments/train_curve.py ... --out runs/curves/base.json
    python experiments/train_curve.py --compare runs/curves/base.json runs/curves/new.json \\
        --labels "before (966b183)" "after" --out experiments/results/train_curve_recurrent
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

import metarobot.envs as me
from metarobot import ppo
from metarobot.provenance import git_commit, machine, numerics

#: Episodic-PPO recipes of ``--recipe``: the trainer's defaults, or the wide recipe of the 3M
#: legged tables (256×256 MLPs, rsl_rl's adaptive learning rate from 1e-3, action std e^-1).
#: Each is (PPOSettings keywords, network keywords of ``train_ppo_mlp``); left out: their defaults.
RECIPES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "default": ({}, {}),
    "wide": ({"lr": 1e-3, "lr_schedule": "adaptive"}, {"hidden": (256, 256), "init_log_std": -1.0}),
}


def train(
    trainer: str,
    family: str,
    steps: int,
    seed: int,
    minibatches: int | None = None,
    recipe: str = "default",
) -> dict[str, Any]:
    """One run; returns its per-iteration curve and wall time.

    ``minibatches`` (per PPO pass) replaces the recipe's (episodic PPO 8, recurrent 4);
    ``recipe`` picks the episodic-PPO recipe (:data:`RECIPES`; DR only).
    """
    if recipe not in RECIPES or (recipe != "default" and trainer != "dr"):
        raise ValueError(f"recipe must be one of {list(RECIPES)} (non-default: dr only)")
    if minibatches is not None and minibatches < 1:
        raise ValueError(f"minibatches must be >= 1, got {minibatches}")
    fid = f"metarobot/{family}-v0"
    tasks = me.task_split(fid)[0]
    rows: list[dict[str, float]] = []
    t0 = time.perf_counter()
    original = ppo.train_episodic_ppo

    def timed(*args: Any, **kwargs: Any) -> Any:
        def on_batch(it: int, ret: float) -> bool:
            rows.append({"iteration": it, "return": ret, "seconds": time.perf_counter() - t0})
            return True

        out = original(*args, on_batch=on_batch, **kwargs)
        for row, log in zip(rows, out[2], strict=False):
            row["env_steps"] = log["env_steps"]
        return out

    from metarobot import episodic_mlp, recurrent

    module = recurrent if trainer == "recurrent" else episodic_mlp
    module.train_episodic_ppo = timed  # type: ignore[assignment]
    try:
        if trainer == "recurrent":
            recurrent.train_recurrent(
                fid,
                steps=steps,
                seed=seed,
                tasks=tasks,
                n_envs=16,
                nthread=1,
                settings=ppo.PPOSettings(lr=1e-3, epochs=8, minibatches=minibatches or 4, bptt=50),
            )
        else:
            ppo_kw, net_kw = RECIPES[recipe]
            if minibatches is not None:
                ppo_kw = {**ppo_kw, "minibatches": minibatches}
            episodic_mlp.train_ppo_mlp(
                fid,
                tasks,
                steps,
                seed=seed,
                n_envs=16,
                nthread=1,
                settings=ppo.PPOSettings(**ppo_kw),
                **net_kw,
            )
    finally:
        module.train_episodic_ppo = original  # type: ignore[assignment]
    return {"seed": seed, "seconds": time.perf_counter() - t0, "rows": rows}


def compare(paths: list[Path], labels: list[str], out: Path) -> None:
    """Markdown table and plot of two or more saved runs."""
    runs = [json.loads(p.read_text()) for p in paths]
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), dpi=120)
    lines = [
        f"# Learning curves before and after: {runs[0]['trainer']} on {runs[0]['family']}",
        "",
        "- command: `python " + " ".join(shlex.quote(a) for a in sys.argv) + "`",
    ]
    for lab, r in zip(labels, runs, strict=True):
        lines.append(f"- {lab}: `{r['command']}` (commit {r['commit']}; {r['machine']})")
    lines += [
        "",
        "Each run: one torch thread, one simulator thread, 16 worlds, the table's recipe "
        "unless its command sets `--minibatches` or `--recipe`; "
        "training return = mean return of each PPO iteration's episodes on training tasks.",
        "",
    ]
    # Seconds to a common return: the lowest final level any run reached (mean of its last 5
    # iterations), first met by a run's 5-iteration moving average.
    level = min(
        float(np.mean([x["return"] for x in run["rows"][-5:]])) for r in runs for run in r["runs"]
    )
    lines += [
        f"*To {level:.1f}*: env steps and seconds until the run's 5-iteration moving average of "
        f"the training return first reaches {level:.1f}, the lowest final level of all runs.",
        "",
        "| code | seed | env steps | wall s | env-steps/s | mean return, last 5 iterations "
        f"| env steps to {level:.1f} | s to {level:.1f} |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i, (lab, r) in enumerate(zip(labels, runs, strict=True)):
        for run in r["runs"]:
            rows = run["rows"]
            steps = np.array([x["env_steps"] for x in rows])
            rets = np.array([x["return"] for x in rows])
            secs = np.array([x["seconds"] for x in rows])
            style = "-" if run["seed"] == r["runs"][0]["seed"] else "--"
            kw = {"color": plt.get_cmap("tab10")(i), "ls": style}
            axes[0].plot(steps, rets, label=f"{lab}, seed {run['seed']}", **kw)
            axes[1].plot(secs, rets, **kw)
            smooth = np.convolve(rets, np.ones(5) / 5, mode="valid")
            first = int(np.argmax(smooth >= level - 1e-9)) + 4  # the window's last iteration
            lines.append(
                f"| {lab} | {run['seed']} | {int(steps[-1]):,} | {run['seconds']:.0f} | "
                f"{steps[-1] / run['seconds']:,.0f} | {rets[-5:].mean():.1f} | "
                f"{int(steps[first]):,} | {secs[first]:.1f} |"
            )
    axes[0].set_xlabel("environment steps")
    axes[1].set_xlabel("wall-clock seconds")
    for ax in axes:
        ax.set_ylabel("mean training-episode return")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{runs[0]['trainer']} on {runs[0]['family']}")
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"))
    plt.close(fig)
    lines += ["", f"![curves]({out.with_suffix('.png').name})", ""]
    out.with_suffix(".md").write_text("\n".join(lines))


def main() -> None:
    """Parse the command line and train or compare."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trainer", choices=["recurrent", "dr"], default="recurrent")
    ap.add_argument("--family", default="HalfCheetahRandParams")
    ap.add_argument("--steps", type=int, default=200_000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument(
        "--minibatches",
        type=int,
        default=None,
        help="minibatches per PPO pass (default: the recipe's, episodic PPO 8, recurrent 4)",
    )
    ap.add_argument("--recipe", choices=list(RECIPES), default="default", help="DR's recipe")
    ap.add_argument("--compare", type=Path, nargs="+", default=None)
    ap.add_argument("--labels", nargs="+", default=None)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    if args.compare:
        compare(args.compare, args.labels or [p.stem for p in args.compare], args.out)
        return
    torch.set_num_threads(1)
    runs = [
        train(args.trainer, args.family, args.steps, s, args.minibatches, args.recipe)
        for s in args.seeds
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "trainer": args.trainer,
                "family": args.family,
                "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
                "commit": git_commit(),
                "machine": f"{machine()}; {numerics()}",
                "runs": runs,
            }
        )
    )


if __name__ == "__main__":
    main()
