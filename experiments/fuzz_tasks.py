"""Fuzz the task machinery: random (valid and invalid) task parameter sets on every family.

For each draw: build a Task from random values (scales spanning 1e-6…1e6, sometimes negative, NaN
or of the wrong length; random disabled actuators and goals), apply it at reset and step a few
random actions. Only documented outcomes are allowed: a ValueError when the task is invalid, and
otherwise finite observations, with divergence reported through ``truncated`` and
``info["diverged"]``. Anything else is counted as a failure and the script exits non-zero.

    python experiments/fuzz_tasks.py --n 10000 --out experiments/results/fuzz_tasks.md
"""

from __future__ import annotations

import argparse
import time
import traceback
from collections import Counter
from pathlib import Path

import gymnasium as gym
import numpy as np

import metarobot.envs as me
from metarobot.envs.randomization import DYNAMICS_FIELDS, n_elements


def random_values(rng: np.random.Generator, n: int) -> list[float]:
    kind = rng.integers(40)  # kinds 0-3 are invalid: about 1 field in 10
    size = n if rng.random() < 0.5 else 1
    if kind == 0:
        size = int(rng.integers(2, n + 3)) if n > 1 else 2  # wrong length (when ≠ 1 and ≠ n)
    vals = np.exp(rng.uniform(np.log(1e-6), np.log(1e6), size=size))
    if kind == 1:
        vals[0] = -vals[0]
    elif kind == 2:
        vals[0] = float("nan")
    elif kind == 3:
        vals[0] = 0.0
    return vals.tolist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    envs = {fid: gym.make(fid) for fid in me.FAMILY_IDS}
    stats = {fid: Counter() for fid in me.FAMILY_IDS}
    failures: list[str] = []
    t0 = time.perf_counter()
    for i in range(args.n):
        fid = me.FAMILY_IDS[i % len(me.FAMILY_IDS)]
        env = envs[fid]
        rd = me.find_randomized(env)
        model = env.unwrapped.model
        sizes = {name: n_elements(model, name) for name in DYNAMICS_FIELDS}
        scales = {}
        for name in DYNAMICS_FIELDS:
            if rng.random() < 0.4:
                if name == "actuator_direction":
                    scales[name] = rng.choice([-1.0, 1.0, 0.5], size=1).tolist()
                else:
                    scales[name] = random_values(rng, sizes[name])
        disabled = rng.integers(0, model.nu + 2, size=int(rng.integers(0, 3))).tolist()
        goal = {k: [float(rng.uniform(-10, 10))] for k in rd.goal_specs}
        family = fid if rng.random() < 0.95 else me.FAMILY_IDS[(i + 1) % len(me.FAMILY_IDS)]
        try:
            task = me.Task.make(family, scales, disabled, goal)
            obs, _ = env.reset(seed=i, options={"task": task})
            assert np.all(np.isfinite(obs)), "non-finite reset observation"
            for _ in range(args.steps):
                obs, r, term, trunc, info = env.step(env.action_space.sample())
                assert np.all(np.isfinite(obs)), "non-finite observation"
                assert np.isfinite(r), "non-finite reward"
                if info.get("diverged"):
                    assert trunc, "diverged without truncation"
                    stats[fid]["diverged"] += 1
                    break
                if term or trunc:
                    break
            stats[fid]["ran"] += 1
        except ValueError:
            stats[fid]["rejected (ValueError)"] += 1
        except Exception:
            stats[fid]["FAILED"] += 1
            failures.append(f"{fid} draw {i}: {traceback.format_exc(limit=3)}")
    elapsed = time.perf_counter() - t0
    lines = [
        "# Task fuzzing",
        "",
        f"{args.n:,} random task parameter sets over {len(me.FAMILY_IDS)} families "
        f"({elapsed:.0f} s), each applied at reset and stepped up to {args.steps} random actions.",
        f"Command: `python experiments/fuzz_tasks.py --n {args.n}"
        + (f" --out {args.out}`" if args.out else "`"),
        "",
        "| family | ran | rejected (ValueError) | diverged (truncated, finite obs) | FAILED |",
        "|---|---:|---:|---:|---:|",
    ]
    for fid, c in stats.items():
        lines.append(
            f"| {fid} | {c['ran']} | {c['rejected (ValueError)']} | {c['diverged']} | "
            f"{c['FAILED']} |"
        )
    total = Counter()
    for c in stats.values():
        total.update(c)
    lines += [
        "",
        f"Total: {total['ran']} ran, {total['rejected (ValueError)']} rejected with "
        f"ValueError, {total['diverged']} diverged safely, {total['FAILED']} failures.",
    ]
    lines += [f"\n```\n{f}\n```" for f in failures[:5]]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    raise SystemExit(1 if failures else 0)


if __name__ == "__main__":
    main()
