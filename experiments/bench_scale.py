"""Parallel efficiency: an experiment's units on 1, 2, … workers (local processes and Ray).

Runs the same small experiment (InvertedPendulumRandParams, every method) from scratch with each
backend and worker count and reports wall time, speed-up and efficiency T₁ / (n · Tₙ). Results
are identical across runs (checked); only the wall time changes.

    python experiments/bench_scale.py --out experiments/results/bench_scale.md
"""

from __future__ import annotations

import argparse
import filecmp
import os
import tempfile
import time
from pathlib import Path

from metarobot.config import parse_config
from metarobot.experiment import run_experiment

CONFIG = {
    "name": "scale",
    "family": "metarobot/InvertedPendulumRandParams-v0",
    "train_seeds": [0, 1],
    "meta": {
        "iterations": 15,
        "meta_batch": 6,
        "episodes": 1,
        "post_episodes": 1,
        "hidden": [32, 32],
    },
    "baselines": {
        "n_experts": 4,
        "expert_timesteps": 4096,
        "dr_timesteps": 4096,
        "oracle_timesteps": 4096,
        "n_envs": 8,
    },
    "eval": {
        "ks": [0, 1, 2],
        "seeds": [0, 1, 2],
        "episodes": 1,
        "n_test_tasks": 4,
        "bootstrap_reps": 200,
    },
}


def timed(backend: str, workers: int, out: Path) -> float:
    t0 = time.perf_counter()
    run_experiment(parse_config(CONFIG), out, progress=False, backend=backend, workers=workers)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    ap.add_argument("--ray", action="store_true", help="also measure the Ray backend")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ref = None
        for backend in ["local", *(["ray"] if args.ray else [])]:
            for n in args.workers:
                out = Path(tmp) / f"{backend}-{n}"
                if backend == "ray":
                    import ray

                    ray.init(num_cpus=n, include_dashboard=False, log_to_driver=False)
                try:
                    seconds = timed(backend, n if backend == "local" else 1, out)
                finally:
                    if backend == "ray":
                        ray.shutdown()
                same = ref is None or filecmp.cmp(ref, out / "results.csv", shallow=False)
                ref = ref or out / "results.csv"
                rows.append((backend, n, seconds, same))
                print(
                    f"{backend} workers={n}: {seconds:.1f} s (results identical: {same})",
                    flush=True,
                )
    base = {b: s for b, n, s, _ in rows if n == 1}
    lines = [
        "# Parallel efficiency of experiment units",
        "",
        f"{os.cpu_count()} cores. A small InvertedPendulumRandParams experiment (all 9 methods, "
        "2 training seeds: 35 units) from scratch per row. Efficiency = T₁ / (n · Tₙ), against the "
        "same backend with one worker.",
        "Command: `python experiments/bench_scale.py"
        + (" --ray" if args.ray else "")
        + (f" --out {args.out}`" if args.out else "`"),
        "",
        "| backend | workers | wall time (s) | speed-up | efficiency | results.csv identical |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for b, n, s, same in rows:
        t1 = base.get(b)
        sp = t1 / s if t1 else float("nan")
        lines.append(f"| {b} | {n} | {s:.1f} | {sp:.2f}× | {sp / n:.2f} | {same} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
