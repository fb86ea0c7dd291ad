"""Trainer throughput against the simulator alone, with a profile split for each trainer.

One run measures, in one process with one torch thread and one simulator thread, on the same
worlds (``--envs`` training tasks of the family, one episode per world per rollout):

- the batched simulator alone: the trainers' episodic pattern (reset every world, step random
  actions until every world's episode has ended), no policy;
- each trainer for the same environment steps: episodic-PPO domain randomization (the trainer
  of RMA's teacher and of the episodic DR/oracle baselines), the recurrent policy, RMA (teacher
  then student, 80 / 20 of the steps), MAML, and SB3's PPO with the same rollout size, epochs
  and minibatches.

Each row gives env-steps/s and its fraction of the simulator alone. Each trainer then runs once
more under ``cProfile`` and its time is split into simulate (the batched env's ``step`` and
``reset``), policy forward (network calls made by the rollout code), update (PPO / student /
meta updates, gradient work) and the rest (Python and numpy overhead of rollouts and
bookkeeping). The profile inflates Python-heavy parts, so the split is a share, and the speeds
come from the unprofiled run.

With ``--workers 2`` the same measurements also run as two processes side by side (one thread
each), and the table gives their summed env-steps/s.

Goals (issue "Training at the simulator's speed"): DR/teacher ≥ 60 % of the simulator alone,
RMA ≥ 50 %, recurrent ≥ 40 %, every trainer ≥ 3× SB3 PPO.

Usage::

    python experiments/bench_train.py --out experiments/results/bench_train.md
    python experiments/bench_train.py --families HalfCheetahRandParams --steps 30000 --workers 1
"""

from __future__ import annotations

import argparse
import cProfile
import json
import multiprocessing as mp
import os
import platform
import pstats
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import metarobot.envs as me
from metarobot.config import RecurrentSection, RMASection
from metarobot.provenance import git_commit, numerics

#: Goals as fractions of the simulator alone (issue 21); SB3 is the 3× reference.
GOALS: dict[str, float] = {"dr": 0.60, "rma": 0.50, "recurrent": 0.40}
#: The trainers of the table, in order.
TRAINERS: tuple[str, ...] = ("dr", "recurrent", "rma", "maml", "sb3_ppo", "sb3_same")
LABELS: dict[str, str] = {
    "sim": "simulator alone (random actions)",
    "dr": "episodic PPO (DR, RMA teacher, oracles)",
    "recurrent": "recurrent (GRU PPO)",
    "rma": "RMA teacher + student",
    "maml": "MAML",
    "sb3_ppo": "SB3 PPO (its defaults)",
    "sb3_same": "SB3 PPO (episodic PPO's rollout, epochs, minibatches)",
}


def _train_tasks(fid: str, n: int) -> list[me.Task]:
    train = me.task_split(fid)[0]
    return [train[i % len(train)] for i in range(n)]


# ----------------------------------------------------------------------------- the runs


def run_sim(fid: str, n_envs: int, steps: int, seed: int) -> int:
    """The trainers' episodic pattern with random actions; returns the env steps taken."""
    tasks = _train_tasks(fid, n_envs)
    env = me.make_batched(fid, tasks, autoreset_mode="disabled", nthread=1)
    rng = np.random.default_rng(seed)
    low, high = env.single_action_space.low, env.single_action_space.high
    used = 0
    try:
        while used < steps:
            env.reset(seed=[int(s) for s in rng.integers(0, 2**31 - 1, size=n_envs)])
            alive = np.ones(n_envs, dtype=bool)
            for _ in range(int(env.max_episode_steps)):
                _, _, term, trunc, _ = env.step(rng.uniform(low, high, size=(n_envs, len(low))))
                used += int(alive.sum())
                alive &= ~(term | trunc)
                if not alive.any():
                    break
    finally:
        env.close()
    return used


#: Minibatches per PPO pass: episodic PPO (DR, RMA's teacher, SB3 with its recipe) and the
#: recurrent trainer; ``None`` keeps the tables' defaults (8 and 4). Set by ``--minibatches``.
RECIPE: dict[str, int | None] = {"episodic": None, "recurrent": None}


def run_trainer(name: str, fid: str, n_envs: int, steps: int, seed: int) -> int:
    """Train ``name`` for ``steps`` env steps on the first ``n_envs``-world setting."""
    if name == "sim":
        return run_sim(fid, n_envs, steps, seed)
    from metarobot.ppo import PPOSettings

    train = me.task_split(fid)[0]
    mb = RECIPE["episodic"] or RMASection().minibatches
    if name == "dr":
        from metarobot.episodic_mlp import train_ppo_mlp

        ps = PPOSettings(minibatches=mb)
        pol = train_ppo_mlp(fid, train, steps, seed=seed, n_envs=n_envs, nthread=1, settings=ps)
        return int(pol.meta["env_steps"])
    if name == "recurrent":
        from metarobot.recurrent import train_recurrent

        r = RecurrentSection()  # the settings a table trains with
        ps = PPOSettings(
            lr=r.lr,
            epochs=r.epochs,
            minibatches=RECIPE["recurrent"] or r.minibatches,
            bptt=r.bptt or None,
        )
        rec = train_recurrent(
            fid, steps=steps, seed=seed, n_envs=n_envs, nthread=1, hidden=r.hidden, settings=ps
        )
        return int(rec.meta["env_steps"])
    if name == "rma":
        from metarobot.rma import train_rma

        m = RMASection()
        teacher = int(0.8 * steps)
        rma = train_rma(
            fid,
            teacher_steps=teacher,
            student_steps=steps - teacher,
            seed=seed,
            n_envs=n_envs,
            student_envs=n_envs,
            nthread=1,
            history=m.history,
            z_dim=m.z_dim,
            settings=PPOSettings(lr=m.lr, minibatches=mb),
        )
        return int(rma.meta["env_steps"])
    if name == "maml":
        from metarobot.learners import MAML

        learner = MAML(fid, meta_batch=n_envs // 4, seed=seed, nthread=1, device="cpu")
        learner.train(10**6, max_env_steps=steps, progress=False)
        return int(learner.env_steps)
    if name in ("sb3_ppo", "sb3_same"):
        from stable_baselines3 import PPO

        from metarobot.sb3 import make_sb3_vec_env

        venv = make_sb3_vec_env(fid, _train_tasks(fid, n_envs), nthread=1)
        horizon = int(venv.venv.max_episode_steps)
        # SB3's defaults (2048 steps per env, minibatches of 64), or episodic PPO's recipe: one
        # horizon per env, its minibatches, 10 epochs (the same gradient work per sample).
        recipe = {"n_steps": horizon, "batch_size": horizon * n_envs // mb}
        model = PPO(
            "MlpPolicy",
            venv,
            seed=seed,
            device="cpu",
            verbose=0,
            **(recipe if name == "sb3_same" else {}),
        )
        model.learn(steps)
        venv.close()
        return int(model.num_timesteps)
    raise ValueError(f"unknown trainer {name!r}; allowed: {['sim', *TRAINERS]}")


# ----------------------------------------------------------------------------- profile split

_ROLLOUT_FUNCS = {
    ("ppo.py", "_rollout"),
    ("rma.py", "_student_rollout"),
    ("rollout.py", "collect"),
    ("on_policy_algorithm.py", "collect_rollouts"),
}
_FORWARD_FUNCS = {
    ("module.py", "_wrapped_call_impl"),
    ("module.py", "_call_impl"),
    ("rma.py", "infer"),
    ("rma.py", "act_with"),
    ("policies.py", "predict_values"),
    ("rollout.py", "dist"),
    ("apis.py", "wrapped"),  # torch.func.vmap
}
_SIM_FUNCS = {("batched.py", "step"), ("batched.py", "reset")}
_UPDATE_FUNCS = {
    ("ppo.py", "_update"),
    ("rma.py", "_fit_student"),
    ("ppo.py", "train"),  # SB3's PPO.train
    ("maml.py", "outer_step"),
}
#: The network's own gradient work inside an update: module calls, backward, the optimizer step.
_NET_FUNCS = {
    ("module.py", "_wrapped_call_impl"),
    ("module.py", "_call_impl"),
    ("_tensor.py", "backward"),
    ("optimizer.py", "wrapper"),
}
#: Updates whose network work is split out (metarobot's episodic PPO and RMA's student fit).
_NET_SPLIT = {("ppo.py", "_update"), ("rma.py", "_fit_student")}


def _key(func: tuple[str, int, str]) -> tuple[str, str]:
    return (os.path.basename(func[0]), func[2])


def profile_split(stats: pstats.Stats) -> dict[str, float]:
    """Seconds of simulate / forward / update / the rest from a cProfile run."""
    st = stats.stats  # type: ignore[attr-defined]
    total = max(v[3] for v in st.values())
    sim = sum(v[3] for f, v in st.items() if _key(f) in _SIM_FUNCS)
    fwd = 0.0
    for f, v in st.items():
        if _key(f) in _FORWARD_FUNCS:
            fwd += sum(c[3] for caller, c in v[4].items() if _key(caller) in _ROLLOUT_FUNCS)
    upd = 0.0
    for f, v in st.items():
        if _key(f) in _UPDATE_FUNCS:
            # Without the episodes an update collects itself (MAML's post-adaptation episodes).
            inner = sum(
                c[3]
                for g, w in st.items()
                if _key(g) == ("base.py", "collect")
                for caller, c in w[4].items()
                if caller == f
            )
            upd += v[3] - inner
    net = sum(
        c[3]
        for f, v in st.items()
        if _key(f) in _NET_FUNCS
        for caller, c in v[4].items()
        if _key(caller) in _NET_SPLIT
    )
    rest = max(0.0, total - sim - fwd - upd)
    out = {"total": total, "simulate": sim, "forward": fwd, "update": upd, "rest": rest}
    return {**out, "update_net": net} if net > 0 else out


# ----------------------------------------------------------------------------- one process


def measure(fid: str, name: str, n_envs: int, steps: int, seed: int, profile: bool) -> dict:
    """Wall time (and optionally the profile split) of one trainer in this process."""
    torch.set_num_threads(1)
    run_trainer(name, fid, n_envs, min(steps, 2 * n_envs * 200), seed)  # warm-up: first calls
    t0 = time.perf_counter()
    used = run_trainer(name, fid, n_envs, steps, seed)
    wall = time.perf_counter() - t0
    row: dict = {"name": name, "steps": used, "wall": wall, "rate": used / wall}
    if profile and name != "sim":
        prof = cProfile.Profile()
        prof.enable()
        run_trainer(name, fid, n_envs, steps, seed)
        prof.disable()
        row["split"] = profile_split(pstats.Stats(prof))
    return row


def _paired_worker(args: tuple, barrier: Any, queue: Any) -> None:
    fid, name, n_envs, steps, seed, recipe = args
    RECIPE.update(recipe)  # a spawned process starts from the module's defaults
    torch.set_num_threads(1)
    run_trainer(name, fid, n_envs, min(steps, 2 * n_envs * 200), seed)  # warm-up: first calls
    barrier.wait()  # both processes time the same stretch of the machine
    t0 = time.perf_counter()
    used = run_trainer(name, fid, n_envs, steps, seed)
    queue.put(used / (time.perf_counter() - t0))


def _pair(fid: str, name: str, n_envs: int, steps: int, seed: int) -> float:
    """Summed env-steps/s of two processes running ``name`` side by side (after warm-up)."""
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(
            target=_paired_worker,
            args=((fid, name, n_envs, steps, seed + i, dict(RECIPE)), barrier, queue),
        )
        for i in range(2)
    ]
    for p in procs:
        p.start()
    rates = [queue.get() for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"a {name} worker failed (exit code {p.exitcode})")
    return float(sum(rates))


# ----------------------------------------------------------------------------- report


def _goal_text(name: str, frac: float, sb3_rate: float | None, rate: float) -> str:
    parts = []
    if name in GOALS:
        goal = GOALS[name]
        parts.append(f"≥ {goal:.0%} of sim: {'met' if frac >= goal else 'not met'}")
    if sb3_rate and name not in ("sim", "sb3_ppo", "sb3_same"):
        ratio = rate / sb3_rate
        parts.append(f"{ratio:.1f}× SB3 PPO (goal ≥ 3×: {'met' if ratio >= 3 else 'not met'})")
    return "; ".join(parts) or "—"


def _share_cells(row: dict) -> list[str]:
    """The profile columns of one row: shares of its time, and its ceiling where it has one."""
    sp = row.get("split")
    if not sp:
        return ["100%", *["—"] * 5] if row["name"] == "sim" else ["—"] * 6
    cells = [f"{sp[k] / sp['total']:.0%}" for k in ("simulate", "forward", "update")]
    net = sp.get("update_net")
    cells.append(f"{net / sp['total']:.0%}" if net else "—")
    cells.append(f"{sp['rest'] / sp['total']:.0%}")
    cells.append(f"{sp['simulate'] / (sp['simulate'] + net):.2f}" if net else "—")
    return cells


def report(results: dict[str, list[dict]], pairs: dict[str, dict[str, float]], args) -> str:
    """The Markdown page."""
    lines = [
        "# Trainer throughput vs the simulator alone",
        "",
        f"Command: `python experiments/bench_train.py {shlex.join(sys.argv[1:])}`  ",
        f"Commit {git_commit() or 'unknown'}; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores; {numerics()}.  ",
        f"Each run: one process, one torch thread, one simulator thread, {args.envs} worlds "
        f"(training tasks), {args.steps:,} env steps per trainer, seed {args.seed}; "
        f"minibatches per PPO pass: episodic PPO {RECIPE['episodic'] or RMASection().minibatches}, "
        f"recurrent {RECIPE['recurrent'] or RecurrentSection().minibatches}"
        + (" (the tables' defaults)." if not any(RECIPE.values()) else " (not the default)."),
        "",
        "Speed is env-steps/s of an unprofiled run after a warm-up; *of sim* divides it by the "
        "simulator alone measured right before that trainer (the simulator row is their mean). "
        "The split (shares of a second, cProfile) "
        "is simulate = the batched env's step/reset, forward = network calls of the rollout, "
        "update = gradient work (PPO, student regression, MAML's meta-update), rest = Python "
        "and numpy overhead of rollouts and bookkeeping.",
        "",
        "*Update net* is the part of the update spent in the network itself (forward calls, "
        "backward, the optimizer step) at the trainer's recipe (epochs × minibatches per "
        "batch); the rest of the update is losses, indexing and gradient clipping. *Ceiling* "
        "is the fraction of the simulator a trainer could reach if nothing but the simulation "
        "and that network work took time, simulate / (simulate + update net): a goal above it "
        "cannot be met at this recipe by making the code faster, only by less gradient work "
        "per env step (fewer epochs, bigger minibatches) or faster kernels.",
        "",
    ]
    for fid, rows in results.items():
        sb3 = next((r for r in rows if r["name"] == "sb3_ppo"), None)
        lines += [
            f"## {fid}",
            "",
            "| trainer | env steps | s | env-steps/s | of sim | simulate | forward | update "
            "| update net | rest | ceiling | goal |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in rows:
            frac = r["rate"] / r["sim_rate"]
            shares = _share_cells(r)
            goal = _goal_text(r["name"], frac, sb3["rate"] if sb3 else None, r["rate"])
            lines.append(
                f"| {LABELS[r['name']]} | {r['steps']:,} | {r['wall']:.1f} | {r['rate']:,.0f} "
                f"| {frac:.2f} | " + " | ".join(shares) + f" | {goal} |"
            )
        if fid in pairs:
            p = pairs[fid]
            lines += [
                "",
                "Two processes side by side (one thread each), summed env-steps/s:",
                "",
                "| trainer | env-steps/s (2 workers) | of sim (2 workers) | speed-up over 1 |",
                "|---|---:|---:|---:|",
            ]
            one = {r["name"]: r["rate"] for r in rows}
            for name, rate in p.items():
                of_sim = f"{rate / p['sim']:.2f}" if "sim" in p else "—"
                lines.append(
                    f"| {LABELS[name]} | {rate:,.0f} | {of_sim} | {rate / one[name]:.2f} |"
                )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run the measurements, write the page."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", nargs="+", default=["HalfCheetahRandParams", "AntRandParams"])
    ap.add_argument("--trainers", nargs="+", default=list(TRAINERS), choices=TRAINERS)
    ap.add_argument("--steps", type=int, default=60_000)
    ap.add_argument("--envs", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2, choices=(1, 2))
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument(
        "--minibatches",
        type=int,
        default=None,
        help="minibatches per pass of episodic PPO (DR, RMA's teacher, SB3's recipe); default 8",
    )
    ap.add_argument(
        "--recurrent-minibatches",
        type=int,
        default=None,
        help="minibatches per pass of the recurrent trainer; default 4",
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    for flag, value in (
        ("--minibatches", args.minibatches),
        ("--recurrent-minibatches", args.recurrent_minibatches),
    ):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be >= 1, got {value}")
    RECIPE.update(episodic=args.minibatches, recurrent=args.recurrent_minibatches)
    torch.set_num_threads(1)
    # Measurements are kept in <out>.json as they finish; a rerun with the same settings measures
    # only what is missing (an interrupted run resumes; --workers 2 later adds the pairs).
    cache_path = args.out.with_suffix(".json") if args.out is not None else None
    key = f"steps={args.steps} envs={args.envs} seed={args.seed}"
    if any(RECIPE.values()):
        key += f" minibatches={RECIPE['episodic']} recurrent_minibatches={RECIPE['recurrent']}"
    cache: dict = {}
    if cache_path is not None and cache_path.exists():
        cache = json.loads(cache_path.read_text())
    runs = cache.setdefault(key, {})

    def save() -> None:
        if cache_path is not None:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            cache_path.write_text(json.dumps(cache, indent=1) + "\n")

    for fam in args.families:
        fid = fam if "/" in fam else f"metarobot/{fam}-v0"
        got = runs.setdefault(fid, {"singles": {}, "pairs": {}})
        for name in args.trainers:
            if name in got["singles"]:
                continue
            # The simulator alone right before each trainer: load from other processes hits both.
            sim = measure(fid, "sim", args.envs, args.steps, args.seed, False)
            row = measure(fid, name, args.envs, args.steps, args.seed, not args.no_profile)
            row["sim_rate"], row["sim_steps"] = sim["rate"], sim["steps"]
            print(f"{fid} {name}: {row['rate']:,.0f} env-steps/s (sim {row['sim_rate']:,.0f})")
            got["singles"][name] = row
            save()
        if args.workers == 2:
            for name in ["sim", *args.trainers]:
                if name not in got["pairs"]:
                    got["pairs"][name] = _pair(fid, name, args.envs, args.steps, args.seed)
                    print(f"{fid} {name} ×2: {got['pairs'][name]:,.0f} env-steps/s", flush=True)
                    save()
    results: dict[str, list[dict]] = {}
    pairs: dict[str, dict[str, float]] = {}
    for fid, got in runs.items():
        rows = [got["singles"][n] for n in TRAINERS if n in got["singles"]]
        if not rows:
            continue
        sim_rate = float(np.mean([r["sim_rate"] for r in rows]))
        sim_steps = int(np.mean([r.get("sim_steps", args.steps) for r in rows]))
        sim = {"name": "sim", "steps": sim_steps, "wall": 0.0, "rate": sim_rate}
        sim["sim_rate"] = sim_rate
        sim["wall"] = sim["steps"] / sim_rate
        results[fid] = [sim, *rows]
        if got["pairs"]:
            pairs[fid] = dict(got["pairs"])
    text = report(results, pairs, args)
    if args.out is not None:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
