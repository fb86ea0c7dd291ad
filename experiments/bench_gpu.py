"""MuJoCo Warp engine throughput: env-steps/s against the number of worlds, on one device.

For HalfCheetah and Ant (rand-params families, mass-randomized training tasks) and each world
count, one ``make_batched(id, tasks, engine="warp", device=...)`` is measured three ways:

- **step**: a full vector step (actions in, ``frame_skip`` physics steps, torch observations,
  rewards and episode ends out; autoreset disabled so that no reset falls in the window);
- **reset**: a reset of every world (the family's own reset code on the host, uploaded);
- **with autoresets**: the rate over one episode of the family's horizon H, every world reset
  once: ``N·H / (H·t_step + t_reset)``.

Next to it, the CPU engine (``mujoco.batch`` on all cores) for world counts up to
``--cpu-max-worlds``; and, unless ``--no-adapt``, ``adapt_many`` on the Warp engine (episodes,
gradient steps and safeguard on the device) against the CPU loop (the CPU engine, torch on the
CPU), and one MAML meta-training iteration on each.

Usage (one prepared command per machine)::

    python experiments/bench_gpu.py --device cuda --out experiments/results/bench_gpu.md
    python experiments/bench_gpu.py --device cpu --out experiments/results/bench_gpu.md

Results are written after each measurement, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

import mujoco
import numpy as np
import torch
import warp as wp

import metarobot.envs as me
from metarobot.envs.warp import WarpBatchedEnv, resolve_device

CASES = [
    ("HalfCheetah", "metarobot/HalfCheetahRandParams-v0"),
    ("Ant", "metarobot/AntRandParams-v0"),
]
DEFAULT_WORLDS = {"cuda": [1024, 2048, 4096, 8192, 16384], "cpu": [16, 64, 256]}
DEFAULT_ADAPT = {"cuda": [64, 256], "cpu": [4, 16]}


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


def device_name(dev: str) -> str:
    if dev.startswith("cuda"):
        return f"{torch.cuda.get_device_name(torch.device(dev))} (Warp device {dev})"
    return f"Warp's CPU device ({os.cpu_count()} cores, {platform.processor() or 'x86_64'})"


def _tasks(fid: str, n: int) -> list[me.Task]:
    train = me.task_split(fid)[0]
    return [train[i % len(train)] for i in range(n)]


def _sync(dev: str) -> None:
    if dev.startswith("cuda"):
        torch.cuda.synchronize(torch.device(dev))


def bench_warp(fid: str, n: int, dev: str, steps: int) -> dict[str, float]:
    """Seconds per vector step and per full reset of n worlds, and the first-use cost."""
    t0 = time.perf_counter()
    env = WarpBatchedEnv(fid, _tasks(fid, n), device=dev, autoreset_mode="disabled")
    env.reset(seed=0)
    gen = torch.Generator(device=env.torch_device).manual_seed(0)
    nu = env.single_action_space.shape[0]

    def actions() -> torch.Tensor:
        return torch.rand(n, nu, generator=gen, device=env.torch_device) * 2 - 1

    for _ in range(3):  # compile, then capture the CUDA graph
        env.step(actions())
    _sync(dev)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        env.step(actions())
    _sync(dev)
    t_step = (time.perf_counter() - t0) / steps
    t0 = time.perf_counter()
    env.reset(seed=1)  # same tasks: host resets and state upload, no set_const
    _sync(dev)
    t_reset = time.perf_counter() - t0
    horizon = int(env.max_episode_steps or 1000)
    frame_skip = env.frame_skip
    env.close()
    return {
        "first": first,
        "t_step": t_step,
        "t_reset": t_reset,
        "horizon": horizon,
        "frame_skip": frame_skip,
    }


def bench_cpu_engine(fid: str, n: int, steps: int) -> float:
    """Env-steps/s of the CPU engine (kernel path, all cores), autoreset disabled."""
    env = me.make_batched(fid, _tasks(fid, n), autoreset_mode="disabled")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    nu = env.single_action_space.shape[0]
    for _ in range(2):
        env.step(rng.uniform(-1, 1, (n, nu)))
    t0 = time.perf_counter()
    for _ in range(steps):
        env.step(rng.uniform(-1, 1, (n, nu)))
    el = time.perf_counter() - t0
    env.close()
    return n * steps / el


def bench_adapt(fid: str, sizes: list[int], dev: str) -> list[tuple[int, float, float]]:
    """Adaptations/s of adapt_many on Warp (``dev``) and of the CPU loop (K=1, S=1, guarded)."""
    import metarobot

    policy = metarobot.make_policy(fid, seed=0)
    tasks_all = me.task_split(fid, n_train=max(sizes))[0]
    warp = {"engine": "warp", "device": dev}
    cpu = {"engine": "batch", "device": "cpu"}
    for kw in (warp, cpu):  # compile kernels and warm caches outside the timed runs
        metarobot.adapt_many(policy, fid, tasks_all[:2], episodes=1, steps=1, seed=0, **kw)
    rows = []
    for n in sizes:
        rates = []
        for kw in (warp, cpu):
            _sync(dev)
            t0 = time.perf_counter()
            metarobot.adapt_many(policy, fid, tasks_all[:n], episodes=1, steps=1, seed=0, **kw)
            _sync(dev)
            rates.append(n / (time.perf_counter() - t0))
        rows.append((n, rates[0], rates[1]))
        print(f"  adapt_many N={n}: warp {rates[0]:.2f}/s, cpu loop {rates[1]:.2f}/s", flush=True)
    return rows


#: The flagship context policies the bench times (committed 1M-step HalfCheetahPhysical runs).
CONTEXT_CHECKPOINTS = {
    "rma": "experiments/results/half_cheetah_physical/checkpoints/rma-s0.pt",
    "recurrent": "experiments/results/half_cheetah_physical/checkpoints/recurrent-s0.pt",
}


def bench_context(sizes: list[int], dev: str) -> list[tuple[str, int, float, float]]:
    """Env-steps/s of deterministic episodes of RMA and the recurrent policy (one 200-step
    episode per world, ``episode_returns``) on Warp with their device actors and on the CPU
    engine with their row-invariant float64 actors."""
    import metarobot
    from metarobot.registry import horizon
    from metarobot.rollout import episode_returns

    rows = []
    for name, path in CONTEXT_CHECKPOINTS.items():
        policy = metarobot.load(path)
        fid = policy.meta["family"]
        tasks_all = me.task_split(fid, n_train=max(sizes))[0]
        for engine in ("warp", "batch"):  # compile kernels and warm caches outside the timing
            episode_returns(
                [policy] * 2, fid, tasks_all[:2], episodes=1, seeds=[0, 1], engine=engine,
                device=dev,
            )  # fmt: skip
        for n in sizes:
            rates = []
            for engine in ("warp", "batch"):
                _sync(dev)
                t0 = time.perf_counter()
                episode_returns(
                    [policy] * n, fid, tasks_all[:n], episodes=1, seeds=list(range(n)),
                    engine=engine, device=dev,
                )  # fmt: skip
                _sync(dev)
                rates.append(n * horizon(fid) / (time.perf_counter() - t0))
            rows.append((name, n, rates[0], rates[1]))
            print(f"  {name} N={n}: warp {rates[0]:,.0f}, cpu {rates[1]:,.0f} env-steps/s")
    return rows


def bench_episodic_training(
    fid: str, sizes: list[int], dev: str, iterations: int = 3
) -> list[tuple[str, int, float, float]]:
    """Env-steps/s of the episodic-PPO trainers (DR, the recurrent policy, RMA's teacher) with
    ``n`` worlds per iteration, ``iterations`` PPO iterations each: rollouts and updates on Warp
    (``engine="warp"``, everything on the device) against the CPU engine (torch on the CPU)."""
    from metarobot.episodic_mlp import train_ppo_mlp
    from metarobot.ppo import PPOSettings
    from metarobot.recurrent import train_recurrent
    from metarobot.registry import horizon
    from metarobot.rma import train_rma

    tasks = me.task_split(fid)[0]

    def run(name: str, n: int, steps: int, **engine: str) -> None:
        ps = PPOSettings(batch_steps=1, bptt=50 if name == "recurrent" else None)
        if name == "dr":
            train_ppo_mlp(fid, tasks, steps, seed=0, n_envs=n, settings=ps, **engine)
        elif name == "recurrent":
            train_recurrent(fid, steps=steps, seed=0, tasks=tasks, n_envs=n, settings=ps, **engine)
        else:  # the teacher; the smallest student (its rollouts are CPU-only)
            train_rma(
                fid, teacher_steps=steps, student_steps=1, seed=0, tasks=tasks, n_envs=n,
                student_envs=1, settings=ps, **engine,
            )  # fmt: skip

    rows = []
    for name in ("dr", "recurrent", "rma_teacher"):
        run(name, 2, 2 * horizon(fid), engine="warp", device=dev)  # compile outside the timing
        for n in sizes:
            steps = iterations * n * horizon(fid)
            rates = []
            for engine in ({"engine": "warp", "device": dev}, {"engine": "batch"}):
                _sync(dev)
                t0 = time.perf_counter()
                run(name, n, steps, **engine)
                _sync(dev)
                rates.append(steps / (time.perf_counter() - t0))
            rows.append((name, n, rates[0], rates[1]))
            print(f"  train {name} N={n}: warp {rates[0]:,.0f}, cpu {rates[1]:,.0f} env-steps/s")
    return rows


def bench_meta_iteration(fid: str, dev: str, meta_batch: int) -> list[tuple[str, float]]:
    """Seconds of one MAML iteration (after a warm-up iteration) on Warp and on the CPU engine."""
    import metarobot

    rows = []
    for name, kw in (("warp", {"engine": "warp", "device": dev}), ("cpu", {"device": "cpu"})):
        learner = metarobot.MAML(fid, meta_batch=meta_batch, seed=0, **kw)
        learner.train(1, progress=False)  # compile and warm up
        _sync(dev)
        t0 = time.perf_counter()
        learner.train(2, progress=False)  # one more iteration (train counts from the start)
        _sync(dev)
        rows.append((name, time.perf_counter() - t0))
        print(f"  MAML iteration ({name}): {rows[-1][1]:.2f} s", flush=True)
    return rows


def header(command: str, dev: str) -> list[str]:
    import mujoco_warp

    cores = os.cpu_count()
    return [
        "# MuJoCo Warp engine throughput",
        "",
        f"Command: `{command}`",
        "",
        f"metarobot {_version()}, git commit {_git_commit()}; mujoco {mujoco.__version__}, "
        f"mujoco-warp {mujoco_warp.__version__}, warp-lang {wp.__version__}, "
        f"torch {torch.__version__}, Python {platform.python_version()}.",
        f"Machine: {platform.node() or 'unknown'}, {cores} cores "
        f"({platform.processor() or platform.machine()}), {platform.system()}; "
        f"device: **{device_name(dev)}**; torch threads {torch.get_num_threads()}.",
        "",
    ]


def write(out: Path | None, lines: list[str]) -> None:
    text = "\n".join(lines) + "\n"
    if out is None:
        print(text)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


SECTIONS = ("engine", "adapt", "context", "train", "maml")


def section_engine(args: argparse.Namespace, dev: str, lines: list[str]) -> None:
    """Vector-step throughput of the Warp engine (and the CPU engine) for each robot."""
    kind = "cuda" if dev.startswith("cuda") else "cpu"
    worlds = [int(x) for x in args.worlds.split(",")] if args.worlds else DEFAULT_WORLDS[kind]
    steps = args.steps or (200 if kind == "cuda" else 20)
    lines += [
        'Env-steps/s of `make_batched(id, tasks, engine="warp", device=...)` on mass-randomized '
        "training tasks: **step** = full vector steps (torch actions in, observations, rewards "
        f"and episode ends out as torch tensors; {steps} timed steps, autoreset disabled), "
        "**with resets** = over one episode of the family horizon H with every world reset once "
        "(N·H / (H·t_step + t_reset); resets run the family's own code on the host). "
        "CPU engine = `make_batched(id, tasks)` (`mujoco.batch`, all cores), same actions. "
        "First use = construction, reset and 3 steps; it includes MuJoCo Warp's kernel "
        "compilation only when Warp's kernel cache is cold.",
        "",
    ]
    for robot, fid in CASES:
        lines += [
            f"## {robot} (`{fid}`)",
            "",
            "| worlds | step: env-steps/s | physics steps/s | reset of all worlds (s) | "
            "with resets: env-steps/s | first use (s) | CPU engine: env-steps/s |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        rates: dict[int, float] = {}
        for n in worlds:
            r = bench_warp(fid, n, dev, steps)
            rate = rates[n] = n / r["t_step"]
            h = r["horizon"]
            amortized = n * h / (h * r["t_step"] + r["t_reset"])
            cpu = (
                f"{bench_cpu_engine(fid, n, max(5, steps // 4)):,.0f}"
                if n <= args.cpu_max_worlds
                else "—"
            )
            print(
                f"{robot} N={n}: {rate:,.0f} env-steps/s, reset {r['t_reset']:.2f} s, "
                f"with resets {amortized:,.0f}/s, first use {r['first']:.1f} s, CPU {cpu}",
                flush=True,
            )
            lines.append(
                f"| {n:,} | {rate:,.0f} | {rate * r['frame_skip']:,.0f} | {r['t_reset']:.3f} | "
                f"{amortized:,.0f} | {r['first']:.1f} | {cpu} |"
            )
            write(args.out, [*lines, ""])
        lines.append("")
        big = [v for n, v in rates.items() if n >= 4096]
        if kind == "cuda" and robot == "HalfCheetah" and big:
            verdict = "met" if max(big) >= 1e6 else "missed"
            lines += [
                f"Target HalfCheetah ≥ 1M env-steps/s (step) at 4,096+ worlds: **{verdict}** "
                f"(best {max(big):,.0f}).",
                "",
            ]


def _adapt_sizes(args: argparse.Namespace, dev: str) -> list[int]:
    if args.adapt_sizes:
        return [int(x) for x in args.adapt_sizes.split(",")]
    return DEFAULT_ADAPT["cuda" if dev.startswith("cuda") else "cpu"]


def section_adapt(args: argparse.Namespace, dev: str, lines: list[str]) -> None:
    """``adapt_many`` on the Warp engine against the CPU loop."""
    fid = CASES[0][1]
    lines += [
        f"## `adapt_many` throughput (`{fid}`, K=1 episode, S=1 gradient step)",
        "",
        f"Adaptations/s (K = 1 episode, S = 1 gradient step, safeguard on): "
        f"`adapt_many(..., engine='warp', device='{dev}')` (episodes, gradient steps and "
        "validation episodes on the device) against the CPU loop (CPU engine, torch on the "
        "CPU). Target on an H100/H200: ≥ 20× at N = 256.",
        "",
        "| N | Warp | CPU loop | ratio |",
        "|---:|---:|---:|---:|",
    ]
    for n, on_dev, on_cpu in bench_adapt(fid, _adapt_sizes(args, dev), dev):
        lines.append(f"| {n:,} | {on_dev:.2f} | {on_cpu:.2f} | {on_dev / on_cpu:.2f}× |")
    lines.append("")


def section_context(args: argparse.Namespace, dev: str, lines: list[str]) -> None:
    """Evaluation episodes of RMA and the recurrent policy on Warp against the CPU engine."""
    lines += [
        "## RMA and the recurrent policy: evaluation episodes",
        "",
        "Env-steps/s of one deterministic 200-step episode per world of the committed "
        "HalfCheetahPhysical 1M policies (`episode_returns`): on Warp their device actors "
        "keep RMA's history and latent and the GRU state on the device; the CPU engine runs "
        "their row-invariant float64 actors (all cores).",
        "",
        "| policy | N | Warp | CPU engine | ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, n, on_dev, on_cpu in bench_context(_adapt_sizes(args, dev), dev):
        lines.append(f"| {name} | {n:,} | {on_dev:,.0f} | {on_cpu:,.0f} | {on_dev / on_cpu:.2f}× |")
    lines.append("")


def section_train(args: argparse.Namespace, dev: str, lines: list[str]) -> None:
    """Episodic-PPO training (DR, recurrent, RMA's teacher) on Warp against the CPU engine."""
    fid = CASES[0][1]
    lines += [
        f"## Episodic-PPO training: DR, the recurrent policy, RMA's teacher (`{fid}`)",
        "",
        "Env-steps/s of 3 PPO iterations of N worlds (one episode each, 10 epochs, 8 "
        "minibatches; RMA: the teacher, its student's CPU rollouts excluded by a 1-step "
        "budget): `engine='warp'` keeps the rollout (observations, noise, inputs, GRU "
        "states, buffers) and the update on the device; the CPU engine runs torch on the "
        "CPU.",
        "",
        "| trainer | N | Warp | CPU engine | ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, n, on_dev, on_cpu in bench_episodic_training(fid, _adapt_sizes(args, dev), dev):
        lines.append(f"| {name} | {n:,} | {on_dev:,.0f} | {on_cpu:,.0f} | {on_dev / on_cpu:.2f}× |")
    lines.append("")


def section_maml(args: argparse.Namespace, dev: str, lines: list[str]) -> None:
    """One MAML meta-training iteration on each engine."""
    vel = "metarobot/HalfCheetahVel-v0"
    lines += [
        f"## One MAML meta-training iteration (`{vel}`, meta-batch 20, 2 + 2 episodes)",
        "",
        "| engine | seconds per iteration |",
        "|---|---:|",
    ]
    for name, sec in bench_meta_iteration(vel, dev, 20):
        lines.append(f"| {name} | {sec:.2f} |")
    lines.append("")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda", help="'cuda', 'cuda:N' or 'cpu' (Warp's CPU)")
    ap.add_argument("--worlds", type=str, default=None, help="comma-separated world counts")
    ap.add_argument("--steps", type=int, default=None, help="timed vector steps per point")
    ap.add_argument("--cpu-max-worlds", type=int, default=1024, help="largest CPU-engine run")
    ap.add_argument("--adapt-sizes", type=str, default=None, help="comma-separated N")
    ap.add_argument(
        "--sections",
        type=str,
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run, in this order, from {', '.join(SECTIONS)}",
    )
    ap.add_argument("--no-adapt", action="store_true", help="run the engine section only")
    ap.add_argument("--note", type=str, default="", help="a paragraph written under the header")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    command = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise ValueError(f"--sections: unknown {unknown}; allowed: {', '.join(SECTIONS)}")
    if args.no_adapt:
        sections = [s for s in sections if s == "engine"]
    dev = resolve_device(args.device)  # ValueError naming the device if this machine lacks it
    torch.manual_seed(0)

    lines = header(command, dev)
    if not dev.startswith("cuda"):
        lines += [
            "**No GPU was lent for this run: these are figures of Warp's CPU device, the "
            "correctness machine of the test suite, not of the engine's target. The GPU figures "
            "(1k … 16k worlds) are still to be measured, with `python experiments/bench_gpu.py "
            "--device cuda --out experiments/results/bench_gpu.md`.**",
            "",
        ]
    if args.note:
        lines += [args.note, ""]
    write(args.out, lines)
    runners = {
        "engine": section_engine,
        "adapt": section_adapt,
        "context": section_context,
        "train": section_train,
        "maml": section_maml,
    }
    failed = []
    for name in sections:
        start = len(lines)
        try:
            runners[name](args, dev, lines)
        except Exception as exc:  # one section's failure must not cost the others' figures
            traceback.print_exc()
            failed.append(name)
            first = str(exc).splitlines()[0] if str(exc) else ""
            lines += [
                "",
                f"**Section `{name}` failed on this run** (rows above it in this section were "
                f"measured): `{type(exc).__name__}: {first}`",
                "",
            ]
        print(f"section {name}: {'failed' if name in failed else 'done'} "
              f"({len(lines) - start} lines)", flush=True)  # fmt: skip
        write(args.out, lines)
    if failed:
        raise SystemExit(f"bench_gpu: sections failed: {', '.join(failed)} (see the tracebacks)")


if __name__ == "__main__":
    main()
