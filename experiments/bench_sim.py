"""Simulator throughput: batched worlds against the raw physics limit and SyncVectorEnv.

One run measures, side by side and interleaved (round by round, so that load from other
processes on the machine hits every column alike), on randomized worlds (training tasks):

- the raw limit: single-thread ``mj_step`` rate on the same task models ÷ frame_skip × threads;
- ``make_batched`` on the kernel path (shared and persistent batch data);
- ``make_batched`` on the generic path (each world's own ``step`` on the batch's physics);
- Gymnasium's ``SyncVectorEnv`` of the same family envs.

Usage::

    python experiments/bench_sim.py --out experiments/results/bench_sim.md
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np

import metarobot.envs as me

CASES = [  # (robot, family id, N)
    ("HalfCheetah", "metarobot/HalfCheetahRandParams-v0", 64),
    ("Ant", "metarobot/AntRandParams-v0", 256),
]


def _tasks(fid: str, n: int) -> list[me.Task]:
    train = me.task_split(fid)[0]
    return [train[i % len(train)] for i in range(n)]


def _timed(step: Callable[[int], None], per_call: int, budget: float) -> float:
    for i in range(2):
        step(i)
    calls, t0 = 0, time.perf_counter()
    while True:
        step(calls)
        calls += 1
        el = time.perf_counter() - t0
        if el >= budget and calls >= 3:
            return calls * per_call / el


def raw_limit(fid: str, n_models: int, threads: int, budget: float) -> tuple[float, int]:
    """Env-steps/s the physics alone allows: one-thread mj_step rate ÷ frame_skip × threads."""
    envs = [gym.make(fid) for _ in range(n_models)]
    rng = np.random.default_rng(0)
    pairs = []
    for env, task in zip(envs, _tasks(fid, n_models), strict=True):
        env.reset(seed=0, options={"task": task})
        m, d = env.unwrapped.model, env.unwrapped.data
        pairs.append((m, d))
    fs = int(envs[0].unwrapped.frame_skip)
    nu = pairs[0][0].nu

    def step(i: int) -> None:
        m, d = pairs[i % len(pairs)]
        d.ctrl[:] = rng.uniform(-1, 1, nu)
        mujoco.mj_step(m, d, nstep=50)
        if i % 8 == 7:  # keep every world near a valid state
            mujoco.mj_resetData(m, d)
            mujoco.mj_forward(m, d)

    rate = _timed(step, 50, budget)
    for e in envs:
        e.close()
    return rate / fs * threads, fs


def vector_rate(venv: gym.vector.VectorEnv, acts: np.ndarray, budget: float) -> float:
    venv.reset(seed=0)
    return _timed(lambda i: venv.step(acts[i % len(acts)]), venv.num_envs, budget)


def _maker(fid: str, task: me.Task) -> Callable[[], gym.Env]:
    def make() -> gym.Env:
        env = gym.make(fid)
        env.get_wrapper_attr("set_task")(task)
        return env

    return make


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return out.stdout.strip() + (" (working tree has uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("metarobot")
    except Exception:  # provenance only: never fail the benchmark over it
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=float, default=1.5, help="seconds per measurement")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per case")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    command = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])

    rows = []
    for robot, fid, n in CASES:
        tasks = _tasks(fid, n)
        nu = gym.make(fid).action_space.shape[0]
        acts = np.random.default_rng(0).uniform(-1, 1, (32, n, nu)).astype(np.float32)
        makers: dict[str, Callable[[], gym.vector.VectorEnv]] = {
            "batched": lambda: me.make_batched(fid, tasks, nthread=args.threads),
            "batched persistent": lambda: me.make_batched(
                fid, tasks, nthread=args.threads, persistent=True
            ),
            "generic path": lambda: me.make_batched(
                fid, tasks, nthread=args.threads, use_kernel=False
            ),
            "SyncVectorEnv": lambda: gym.vector.SyncVectorEnv([_maker(fid, t) for t in tasks]),
        }
        envs = {k: make() for k, make in makers.items()}
        res: dict[str, list[float]] = {k: [] for k in ["raw limit", *envs]}
        for r in range(args.rounds):
            limit, fs = raw_limit(fid, 8, args.threads, args.budget)
            res["raw limit"].append(limit)
            for k, venv in envs.items():
                res[k].append(vector_rate(venv, acts, args.budget))
            print(
                f"{robot} N={n} round {r}: "
                + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in res.items()),
                flush=True,
            )
        for venv in envs.values():
            venv.close()
        rows.append((robot, n, fs, res))

    cores = os.cpu_count() or 1
    lines = [
        "# Simulator throughput (env-steps/s)",
        "",
        f"Command: `{command}`",
        f"metarobot {_version()}, git commit {_git_commit()}; mujoco {mujoco.__version__}, "
        f"gymnasium {gym.__version__}, numpy {np.__version__}, Python {platform.python_version()}.",
        f"Machine: {platform.node() or 'unknown'}, {cores} cores "
        f"({platform.processor() or platform.machine()}), {platform.system()}; batched and raw "
        f"limit use {args.threads} thread(s).",
        "",
        "The machine is shared with other jobs, so every column is measured in the same run, "
        f"interleaved: {args.rounds} rounds, each measuring the raw limit and then every "
        f"simulator for {args.budget:g} s. The table gives the median over rounds; the "
        "ratio columns are medians of the per-round ratios (each against the raw limit "
        "measured in the same round). Worlds run the frozen training tasks of the family; "
        "random actions; autoreset at the 200-step horizon is included.",
        "",
        "| robot | N | raw limit | batched | batched (persistent) | generic path | "
        "SyncVectorEnv | batched / limit | batched / Sync | generic / Sync |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for robot, n, _fs, res in rows:
        med = {k: float(np.median(v)) for k, v in res.items()}
        lim = np.array(res["raw limit"])
        best = np.maximum(res["batched"], res["batched persistent"])
        ratio_lim = float(np.median(best / lim))
        ratio_sync = float(np.median(best / np.array(res["SyncVectorEnv"])))
        gen_sync = float(np.median(np.array(res["generic path"]) / np.array(res["SyncVectorEnv"])))
        lines.append(
            f"| {robot} | {n} | {med['raw limit']:,.0f} | **{med['batched']:,.0f}** | "
            f"{med['batched persistent']:,.0f} | {med['generic path']:,.0f} | "
            f"{med['SyncVectorEnv']:,.0f} | {100 * ratio_lim:.0f}% | {ratio_sync:.2f}× | "
            f"{gen_sync:.2f}× |"
        )
    lines += [
        "",
        "Raw limit = single-thread `mj_step` rate on the same randomized models ÷ frame_skip × "
        "threads: what the physics alone allows, with no observation, reward, reset or Python "
        "cost. `batched / limit` and `batched / Sync` use the faster of the two batched data "
        "layouts in each round. The generic path runs each world's own `step` in Python on "
        "physics from the batch (exact for any robot; the kernels are the fast path).",
        "",
        "Per-round figures:",
        "",
    ]
    for robot, n, _fs, res in rows:
        for k, v in res.items():
            lines.append(f"- {robot} N={n} {k}: " + ", ".join(f"{x:,.0f}" for x in v))
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
