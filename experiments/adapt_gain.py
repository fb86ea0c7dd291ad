"""Does `metarobot.adapt` ever make a shipped policy worse? Mean gain per policy and K, with CIs.

For every checkpoint under experiments/checkpoints/ (or those given), on its family's held-out
test tasks and with evaluation seeds the tables never used: adapt with K episodes (defaults,
safeguard on) and measure the mean return of separate evaluation episodes; the gain is the
paired difference to K = 0 per (task, seed), averaged, with a 95% bootstrap CI over tasks×seeds.

    python experiments/adapt_gain.py --out experiments/results/adapt_gain.md
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import metarobot
from metarobot.adaptation import DEFAULT_MARGIN, DEFAULT_VALIDATION_EPISODES
from metarobot.envs import task_split
from metarobot.evaluation import evaluate_method
from metarobot.provenance import provenance_lines

ROOT = Path(__file__).resolve().parent


def bootstrap_ci(x: np.ndarray, reps: int, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = rng.choice(x, size=(reps, len(x)), replace=True).mean(1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("checkpoints", nargs="*", help="default: experiments/checkpoints/*.pt")
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 2, 3, 5])
    ap.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102])
    ap.add_argument("--tasks", type=int, default=10, help="test tasks per family")
    ap.add_argument("--episodes", type=int, default=2, help="evaluation episodes per cell")
    ap.add_argument("--reps", type=int, default=2000, help="bootstrap replicates")
    ap.add_argument("--out", default=str(ROOT / "results" / "adapt_gain.md"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    paths = [Path(p) for p in args.checkpoints] or sorted((ROOT / "checkpoints").glob("*.pt"))
    rows: list[tuple] = []
    t0 = time.perf_counter()
    for path in paths:
        policy = metarobot.load(path)
        family = policy.meta["family"]
        tasks = task_split(family)[1][: args.tasks]
        recs = evaluate_method(
            path.stem,
            policy,
            family,
            tasks,
            ks=[0, *args.ks],
            seeds=args.seeds,
            episodes=args.episodes,
            nthread=1,
        )
        base = {(r["task"], r["seed"]): r["return"] for r in recs if r["k"] == 0}
        for k in args.ks:
            diff = np.array(
                [r["return"] - base[(r["task"], r["seed"])] for r in recs if r["k"] == k]
            )
            lo, hi = bootstrap_ci(diff, args.reps)
            rows.append((path.stem, k, float(np.mean(list(base.values()))), diff.mean(), lo, hi))
        write(args, rows, paths, time.perf_counter() - t0)  # after every policy: nothing is lost
        print(f"{path.stem}: done ({time.perf_counter() - t0:.0f} s)", flush=True)
    print(Path(args.out).read_text())


def write(args: argparse.Namespace, rows: list[tuple], paths: list[Path], seconds: float) -> None:
    done = {r[0] for r in rows}
    missing = [p.stem for p in paths if p.stem not in done]
    lines = [
        "# Does adaptation ever hurt? Mean return gain of `metarobot.adapt` over no adaptation",
        "",
        *provenance_lines(),
        f"- wall time: {seconds:.0f} s",
        "",
        f"Held-out test tasks (first {args.tasks} of each family's frozen split) × evaluation "
        f"seeds {args.seeds} (never used by the tables); {args.episodes} evaluation episodes "
        "per cell. Adaptation with default settings (safeguard on: an update is kept only if "
        f"its paired gain on max(K, {DEFAULT_VALIDATION_EPISODES}) fresh validation episodes "
        f"clears zero by {DEFAULT_MARGIN:g} standard error(s)). Gain = return after "
        "adapting with K episodes − return without, paired per (task, seed); 95% bootstrap CI. "
        "The target is a gain ≥ 0 within its CI for every policy and K.",
        "",
        "| checkpoint | K | mean return (K=0) | mean gain | 95% CI | ≥ 0 within CI |",
        "|---|---:|---:|---:|---|---|",
    ]
    for name, k, r0, g, lo, hi in rows:
        ok = "yes" if hi >= 0 else "**no**"
        lines.append(f"| {name} | {k} | {r0:.1f} | {g:+.2f} | [{lo:+.2f}, {hi:+.2f}] | {ok} |")
    if missing:
        lines += ["", "Not measured yet (the run was stopped): " + ", ".join(missing) + "."]
    Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
