"""SB3 PPO throughput with metarobot's batched VecEnv vs DummyVecEnv and SubprocVecEnv.

Same family, same tasks, same n_envs and PPO settings; two PPO settings are timed: SB3's
defaults (10 epochs of minibatch updates: the gradient work dominates) and a collection-bound
setting (1 epoch, one big minibatch) that shows what the simulator side costs.

    python experiments/bench_sb3.py --out experiments/results/bench_sb3.md
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import gymnasium as gym
import stable_baselines3
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

import metarobot.envs as me
from metarobot.sb3 import make_sb3_vec_env


def _maker(fid, task):
    def make():
        env = gym.make(fid)
        env.get_wrapper_attr("set_task")(task)
        return env

    return make


def venvs(fid, tasks):
    yield "DummyVecEnv", lambda: DummyVecEnv([_maker(fid, t) for t in tasks])
    yield "SubprocVecEnv", lambda: SubprocVecEnv([_maker(fid, t) for t in tasks])
    yield "metarobot SB3VecEnv", lambda: make_sb3_vec_env(fid, tasks)


def time_learn(make_venv, steps, **ppo):
    venv = make_venv()
    try:
        model = PPO("MlpPolicy", venv, seed=0, device="cpu", verbose=0, **ppo)
        model.learn(ppo["n_steps"] * venv.num_envs)  # warm-up (process start, first reset)
        t0 = time.perf_counter()
        model.learn(steps, reset_num_timesteps=False)
        return steps / (time.perf_counter() - t0)
    finally:
        venv.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--env", default="metarobot/HalfCheetahRandParams-v0")
    ap.add_argument("--n-envs", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--steps", type=int, default=32768)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    train = me.task_split(args.env)[0]
    settings = {
        "SB3 defaults (10 epochs, minibatch 64)": {"n_steps": 256},
        "collection-bound (1 epoch, one minibatch)": {"n_steps": 256, "n_epochs": 1},
    }
    rows = []
    for n in args.n_envs:
        tasks = [train[i % len(train)] for i in range(n)]
        for sname, ppo in settings.items():
            if "batch_size" not in ppo and ppo.get("n_epochs") == 1:
                ppo = {**ppo, "batch_size": ppo["n_steps"] * n}
            res = {}
            for name, make in venvs(args.env, tasks):
                res[name] = time_learn(make, args.steps, **ppo)
                print(f"n_envs={n} {sname}: {name} {res[name]:,.0f} steps/s", flush=True)
            rows.append((n, sname, res))
    lines = [
        "# SB3 PPO throughput by VecEnv (env-steps/s, including PPO updates)",
        "",
        f"Family `{args.env}` (frozen training tasks), {args.steps:,} timed steps after a "
        f"warm-up; {os.cpu_count()} cores; torch threads 1; stable-baselines3 "
        f"{stable_baselines3.__version__}.",
        "Command: `python experiments/bench_sb3.py"
        + (f" --out {args.out}`" if args.out else "`"),
        "",
        "| n_envs | PPO setting | DummyVecEnv | SubprocVecEnv | metarobot SB3VecEnv | vs Dummy |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for n, sname, r in rows:
        ours, dummy = r["metarobot SB3VecEnv"], r["DummyVecEnv"]
        lines.append(
            f"| {n} | {sname} | {dummy:,.0f} | {r['SubprocVecEnv']:,.0f} | "
            f"**{ours:,.0f}** | {ours / dummy:.2f}× |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
