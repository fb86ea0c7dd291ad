"""Simulator throughput: env-steps/s of single, Sync/Async vector and batched MuJoCo worlds.

Measures, in one run, on randomized HalfCheetah and Ant worlds (training tasks of the
``*RandParams`` families), for N ∈ {16, 64, 256} worlds:

- ``env.step``: one Gymnasium env stepped in a Python loop (independent of N);
- ``SyncVectorEnv`` and ``AsyncVectorEnv`` (Gymnasium) of N family envs;
- ``make_batched``: our batched simulator, one ``mujoco.rollout`` call per vector step;
- the raw limit: raw ``mj_step`` rate on these models ÷ frame_skip × threads.

Usage::

    python experiments/bench_sim.py --out experiments/results/bench_sim.md
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np

import metarobot.envs as me

ROBOTS = {"HalfCheetah": "metarobot/HalfCheetahRandParams-v0", "Ant": "metarobot/AntRandParams-v0"}


def _timed(step: Callable[[int], None], steps_per_call: int, budget_s: float) -> float:
    """Env-steps/s of repeated ``step(i)`` calls, after a warm-up, for ~budget_s seconds."""
    for i in range(3):
        step(i)
    calls, t0 = 0, time.perf_counter()
    while True:
        step(calls)
        calls += 1
        el = time.perf_counter() - t0
        if el >= budget_s and calls >= 5:
            return calls * steps_per_call / el


def _tasks(fid: str, n: int) -> list[me.Task]:
    train = me.task_split(fid)[0]
    return [train[i % len(train)] for i in range(n)]


def _maker(fid: str, task: me.Task) -> Callable[[], gym.Env]:
    def make() -> gym.Env:
        env = gym.make(fid)
        env.get_wrapper_attr("set_task")(task)
        return env

    return make


def bench_single(fid: str, acts: np.ndarray, budget: float) -> float:
    env = gym.make(fid)
    env.get_wrapper_attr("set_task")(_tasks(fid, 1)[0])
    env.reset(seed=0)

    def step(i: int) -> None:
        _, _, term, trunc, _ = env.step(acts[i % len(acts), 0])
        if term or trunc:
            env.reset()

    r = _timed(step, 1, budget)
    env.close()
    return r


def bench_vector(venv: gym.vector.VectorEnv, acts: np.ndarray, budget: float) -> float:
    venv.reset(seed=0)

    def step(i: int) -> None:
        venv.step(acts[i % len(acts)])

    r = _timed(step, venv.num_envs, budget)
    venv.close()
    return r


def raw_rate(fid: str, n_models: int, nstep: int = 2000) -> tuple[float, int]:
    """Raw mj_step/s on one thread over the task models, and frame_skip."""
    benv = me.make_batched(fid, _tasks(fid, n_models), nthread=1)
    benv.reset(seed=0)
    rates = []
    rng = np.random.default_rng(0)
    for w in benv._worlds:
        m, d = w.unwrapped.model, w.unwrapped.data
        d.ctrl[:] = rng.uniform(-1, 1, m.nu)
        mujoco.mj_step(m, d, nstep=50)
        t0 = time.perf_counter()
        mujoco.mj_step(m, d, nstep=nstep)
        rates.append(nstep / (time.perf_counter() - t0))
    fs = benv.frame_skip
    benv.close()
    return float(np.mean(rates)), fs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[16, 64, 256])
    ap.add_argument("--budget", type=float, default=2.0, help="seconds per measurement")
    ap.add_argument(
        "--async-max",
        type=int,
        default=64,
        help="largest N for AsyncVectorEnv (one process per world)",
    )
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    cores = os.cpu_count() or 1
    rows = []
    for robot, fid in ROBOTS.items():
        nu = gym.make(fid).action_space.shape[0]
        rng = np.random.default_rng(0)
        acts = rng.uniform(-1, 1, (64, max(args.sizes), nu)).astype(np.float32)
        raw, fs = raw_rate(fid, 16)
        limit = raw / fs * args.threads
        single = bench_single(fid, acts, args.budget)
        print(
            f"{robot}: raw mj_step {raw:,.0f}/s, frame_skip {fs}, limit {limit:,.0f} env-steps/s, "
            f"env.step {single:,.0f}/s",
            flush=True,
        )
        for n in args.sizes:
            a = acts[:, :n]
            tasks = _tasks(fid, n)
            sync = bench_vector(
                gym.vector.SyncVectorEnv([_maker(fid, t) for t in tasks]), a, args.budget
            )
            if n <= args.async_max:
                asy = bench_vector(
                    gym.vector.AsyncVectorEnv([_maker(fid, t) for t in tasks]), a, args.budget
                )
            else:
                asy = float("nan")
            bat = bench_vector(me.make_batched(fid, tasks, nthread=args.threads), a, args.budget)
            rows.append((robot, n, single, sync, asy, bat, limit))
            print(
                f"  N={n:4d} sync {sync:10,.0f}  async {asy:10,.0f}  batched {bat:10,.0f}  "
                f"({bat / sync:.2f}x sync, {100 * bat / limit:.0f}% of limit)",
                flush=True,
            )

    lines = [
        "# Simulator throughput (env-steps/s)",
        "",
        f"Machine: {cores} cores ({platform.processor() or platform.machine()}), "
        f"threads used by the batched simulator and the limit: {args.threads}; "
        f"mujoco {mujoco.__version__}, gymnasium {gym.__version__}, numpy {np.__version__}.",
        "Worlds run the frozen training tasks of `HalfCheetahRandParams` / `AntRandParams` "
        "(PEARL ranges); random actions; autoreset at the 200-step horizon is included.",
        f"Command: `python experiments/bench_sim.py{' --out ' + str(args.out) if args.out else ''}`"
        f" ({args.budget:g} s per measurement).",
        "",
        "| robot | N | env.step | SyncVectorEnv | AsyncVectorEnv | batched (ours) | raw limit "
        "| batched / Sync | batched / limit |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for robot, n, single, sync, asy, bat, limit in rows:
        asy_s = f"{asy:,.0f}" if np.isfinite(asy) else f"n/a (> {args.async_max} processes)"
        lines.append(
            f"| {robot} | {n} | {single:,.0f} | {sync:,.0f} | {asy_s} | **{bat:,.0f}** | "
            f"{limit:,.0f} | {bat / sync:.2f}× | {100 * bat / limit:.0f}% |"
        )
    lines += [
        "",
        "Raw limit = single-thread `mj_step` rate on the same randomized models ÷ frame_skip × "
        "threads: the rate the physics alone allows, with no observation, reward or Python cost.",
        "AsyncVectorEnv starts one process per world; above "
        f"{args.async_max} worlds that exceeds what a 2-core / 24 GiB machine should run.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
