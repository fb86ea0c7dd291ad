"""Adaptation throughput: N sequential ``adapt`` calls vs one ``adapt_many`` call.

For N ∈ {1, 16, 64, 256} held-out-style tasks of a family, adapts the same policy to every task
(K episodes, S gradient steps each) both ways and reports adaptations/s and the speed-up, on the
CPU and, when present, on CUDA. A second table isolates the gradient step: ``vmap(grad(loss))``
over N parameter sets vs a Python loop of ``grad(loss)``.

Usage::

    python experiments/bench_adapt.py --out experiments/results/bench_adapt.md
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch
from torch.func import grad, vmap

import metarobot
import metarobot.envs as me
from metarobot.adaptation import surrogate_loss
from metarobot.provenance import provenance_lines


def device_name(dev: str) -> str:
    if dev.startswith("cuda"):
        return torch.cuda.get_device_name(0)
    threads = torch.get_num_threads()
    return f"CPU ({os.cpu_count()} cores, {platform.machine()}, torch threads {threads})"


def bench_end_to_end(
    fid: str, sizes: list[int], dev: str, k: int, s: int, seq_max: int, extra: dict
):
    policy = metarobot.make_policy(fid, seed=0)
    tasks_all = me.task_split(fid, n_train=max(sizes))[0]
    rows = []
    metarobot.adapt_many(
        policy, fid, tasks_all[:2], episodes=k, steps=s, device=dev, seed=0, **extra
    )  # warm-up
    for n in sizes:
        tasks = tasks_all[:n]
        t0 = time.perf_counter()
        metarobot.adapt_many(policy, fid, tasks, episodes=k, steps=s, device=dev, seed=0, **extra)
        t_many = time.perf_counter() - t0
        m = min(n, seq_max)  # time a prefix of the loop when N is large, then scale
        t0 = time.perf_counter()
        for i in range(m):
            metarobot.adapt(
                policy, fid, task=tasks[i], episodes=k, steps=s, device=dev, seed=i, **extra
            )
        t_seq = (time.perf_counter() - t0) * n / m
        rows.append((n, n / t_seq, n / t_many, t_seq / t_many, m))
        print(
            f"  [{dev}] N={n:4d}: loop {n / t_seq:7.2f}/s  adapt_many {n / t_many:7.2f}/s  "
            f"speed-up {t_seq / t_many:5.2f}x (loop timed on {m})",
            flush=True,
        )
    return rows


def bench_grad(fid: str, sizes: list[int], dev: str, samples: int = 200):
    policy = metarobot.make_policy(fid, seed=0).to(dev)
    rows = []
    for n in sizes:
        g = torch.Generator(device="cpu").manual_seed(n)
        params = {
            k: (
                v.unsqueeze(0).expand(n, *v.shape).clone()
                + 0.01 * torch.randn(n, *v.shape, generator=g).to(dev)
            )
            for k, v in policy.params.items()
        }
        data = {
            "obs": torch.randn(n, 1, samples, policy.obs_dim, generator=g).to(dev),
            "actions": torch.randn(n, 1, samples, policy.act_dim, generator=g).to(dev),
            "logp": torch.zeros(n, 1, samples).to(dev),
            "adv": torch.randn(n, 1, samples, generator=g).to(dev),
            "mask": torch.ones(n, 1, samples).to(dev),
        }
        f = grad(lambda p, d: surrogate_loss(policy, p, d))
        vf = vmap(f)

        def loop():
            return [
                f({k: v[i] for k, v in params.items()}, {k: v[i] for k, v in data.items()})
                for i in range(n)
            ]

        def batched():
            return vf(params, data)

        res = []
        for fn in (loop, batched):
            fn()
            if dev.startswith("cuda"):
                torch.cuda.synchronize()
            reps, t0 = 0, time.perf_counter()
            while True:
                fn()
                reps += 1
                if dev.startswith("cuda"):
                    torch.cuda.synchronize()
                el = time.perf_counter() - t0
                if el > 0.5 and reps >= 3:
                    break
            res.append(n * reps / el)
        rows.append((n, res[0], res[1], res[1] / res[0]))
        print(
            f"  [{dev}] grad N={n:4d}: loop {res[0]:9.0f}/s vmap {res[1]:9.0f}/s "
            f"({res[1] / res[0]:.1f}x)",
            flush=True,
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--env", default="metarobot/HalfCheetahRandParams-v0")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 16, 64, 256])
    ap.add_argument("--episodes", type=int, default=1)
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1, help="fine-tuning rounds per adaptation")
    ap.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
    ap.add_argument(
        "--seq-max",
        type=int,
        default=32,
        help="time at most this many sequential adapt calls, then scale to N",
    )
    ap.add_argument("--devices", nargs="+", default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    extra = {"rounds": args.rounds, "optimizer": args.optimizer}

    lines = ["# Adaptation throughput: sequential `adapt` vs `adapt_many`", ""]
    lines += [
        *provenance_lines(),
        "",
        f"Family `{args.env}`; each adaptation runs {args.rounds} round(s) of K={args.episodes} "
        f"episode(s) of 200 steps and S={args.steps} gradient step(s) ({args.optimizer}), then "
        "the safeguard's validation episodes.",
        "",
    ]
    for dev in devices:
        print(f"device {dev}: {device_name(dev)}", flush=True)
        e2e = bench_end_to_end(
            args.env, args.sizes, dev, args.episodes, args.steps, args.seq_max, extra
        )
        gr = bench_grad(args.env, args.sizes, dev)
        lines += [
            f"## {dev}: {device_name(dev)}",
            "",
            "End to end (episodes on the batched simulator + gradient steps), adaptations/s:",
            "",
            "| N | loop of `adapt` | `adapt_many` | speed-up |",
            "|---:|---:|---:|---:|",
        ]
        for n, seq, many, sp, m in e2e:
            note = "" if m == n else f" (loop timed on {m}, scaled)"
            lines.append(f"| {n} | {seq:.2f}{note} | {many:.2f} | **{sp:.2f}×** |")
        lines += [
            "",
            "Gradient step only (`grad` of the surrogate, 200 samples per parameter set), "
            "parameter sets/s:",
            "",
            "| N | Python loop | `vmap` | speed-up |",
            "|---:|---:|---:|---:|",
        ]
        for n, lp, vm, sp in gr:
            lines.append(f"| {n} | {lp:,.0f} | {vm:,.0f} | **{sp:.1f}×** |")
        lines.append("")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
