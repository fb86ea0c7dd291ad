"""``metarobot`` command line: run, train, evaluate, adapt, bench."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _cmd_run(args: argparse.Namespace) -> int:
    from metarobot.experiment import run_experiment
    from metarobot.provenance import command_line

    result = run_experiment(
        args.config,
        args.out,
        progress=not args.quiet,
        backend=args.backend,
        workers=args.workers,
        address=args.address,
        command=command_line(),
    )
    out = Path(result["out"])
    print(Path(result["summary"]).read_text())
    print(
        f"ran {len(result['ran'])} unit(s), reused {len(result['skipped'])} finished unit(s) "
        f"in {result['seconds']:.0f} s"
    )
    print(f"results: {out / 'results.csv'}")
    print(f"plots:   {out / 'adaptation_curve.png'}, {out / 'learning_curve.png'}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from metarobot import registry

    spec = registry.get(args.algo)
    if spec.learner is not None:
        learner = registry.meta_learner(
            args.algo,
            args.env,
            meta_batch=args.meta_batch,
            episodes=args.episodes,
            seed=args.seed,
            device=args.device,
            inner_lr=args.inner_lr,
        )
        try:
            learner.train(
                args.iterations,
                log_path=args.log,
                checkpoint_path=args.out,
                progress=not args.quiet,
                state_path=args.state,
                checkpoint_every=args.checkpoint_every,
            )
        finally:
            learner.close()
        last = learner.history[-1]
        print(
            f"saved {args.out}: {args.algo} on {args.env}, {args.iterations} iterations, "
            f"{learner.env_steps:,} env steps, last pre/post-adaptation return "
            f"{last['pre_return']:.1f} / {last.get('post_return', float('nan')):.1f}"
        )
        return 0
    from metarobot.checkpoint import load
    from metarobot.config import ExperimentConfig

    cfg = ExperimentConfig(name="train", family=args.env, methods=[args.algo])
    if args.steps is not None:
        cfg.rma.teacher_steps = max(1, int(args.steps * 0.8))
        cfg.rma.student_steps = max(1, args.steps - cfg.rma.teacher_steps)
        cfg.recurrent.steps = args.steps
        cfg.baselines.dr_timesteps = args.steps
    jobs = spec.jobs(cfg, args.seed)
    if len(jobs) != 1:
        raise ValueError(
            f"--algo {args.algo!r} does not train one policy on its own (use metarobot run); "
            f"trainable alone: {_trainable()}"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    jobs[0].trainer(cfg, out.parent, out, jobs[0].args)
    steps = load(out).meta.get("env_steps")
    print(
        f"saved {out}: {args.algo} on {args.env}, {steps:,} env steps, "
        f"{time.perf_counter() - t0:.0f} s"
    )
    return 0


def _trainable() -> list[str]:
    from metarobot import registry
    from metarobot.config import ExperimentConfig

    out = []
    for name in registry.method_names():
        spec = registry.get(name)
        cfg = ExperimentConfig(name="probe", family="metarobot/InvertedPendulumRandParams-v0")
        if not spec.reference and len(spec.jobs(cfg, 0)) == 1:
            out.append(name)
    return out


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from metarobot.checkpoint import load
    from metarobot.envs import task_split
    from metarobot.evaluation import RECORD_FIELDS, evaluate_method
    from metarobot.report import write_csv

    policy = load(args.checkpoint)
    env_id = args.env or policy.meta.get("family")
    if not env_id:
        raise ValueError("--env is required: the checkpoint names no family")
    test = task_split(env_id)[1]
    if not 1 <= args.tasks <= len(test):
        raise ValueError(f"--tasks must be in [1, {len(test)}] for {env_id}, got {args.tasks}")
    tasks = test[: args.tasks]
    recs = evaluate_method(
        policy.meta.get("algorithm", "policy"),
        policy,
        env_id,
        tasks,
        ks=args.ks,
        seeds=args.seeds,
        episodes=args.episodes,
        adapt_lr=args.lr,
    )
    for k in args.ks:
        rets = [r["return"] for r in recs if r["k"] == k]
        print(f"K={k}: mean return {sum(rets) / len(rets):.2f} over {len(rets)} (task, seed) runs")
    if args.out:
        write_csv(recs, args.out, [f for f in RECORD_FIELDS if f != "score"])
        print(f"records: {args.out}")
    return 0


def _cmd_adapt(args: argparse.Namespace) -> int:
    from metarobot.adaptation import adapt
    from metarobot.checkpoint import load
    from metarobot.envs import Task, task_split

    policy = load(args.checkpoint)
    if (args.task is None) == (args.task_index is None):
        raise ValueError("give exactly one of --task JSON or --task-index i")
    if args.task is not None:
        task = Task.from_json(args.task)
    else:
        train, test = task_split(args.env)
        tasks = test if args.split == "test" else train
        if not 0 <= args.task_index < len(tasks):
            raise ValueError(
                f"--task-index must be in [0, {len(tasks) - 1}] for the "
                f"{args.split} split of {args.env}, got {args.task_index}"
            )
        task = tasks[args.task_index]
    t0 = time.perf_counter()
    adapted = adapt(
        policy,
        args.env,
        task=task,
        episodes=args.episodes,
        steps=args.steps,
        lr=args.lr,
        device=args.device,
        seed=args.seed,
        safe=not args.no_safeguard,
        rounds=args.rounds,
        optimizer=args.optimizer,
        algorithm=args.algorithm,
        progress=args.rounds > 1,
        **({} if args.margin is None else {"margin": args.margin}),
    )
    adapted.save(args.out)
    info = adapted.meta.get("adapted", {})
    verdict = ""
    if "accepted" in info:
        verdict = (
            f"; safeguard {'kept' if info['accepted'] else 'rejected'} the update (validation "
            f"return {info['validation_return_adapted']:.1f} adapted vs "
            f"{info['validation_return_original']:.1f} original)"
        )
    per = f"{args.rounds} rounds × " if args.rounds > 1 else ""
    print(
        f"adapted {args.checkpoint} to {task} with {per}{args.episodes} episode(s) "
        f"({info.get('update', '')}) in {time.perf_counter() - t0:.1f} s{verdict}; saved {args.out}"
    )
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    import gymnasium as gym
    import numpy as np

    from metarobot.envs import make_batched, task_split

    train = task_split(args.env)[0]
    tasks = [train[i % len(train)] for i in range(args.num_envs)]
    rng = np.random.default_rng(0)
    results = {}
    for name in ("batched", "sync"):
        if name == "batched":
            venv = make_batched(args.env, tasks)
        else:

            def maker(t: object) -> object:
                def make() -> gym.Env:
                    e = gym.make(args.env)
                    e.get_wrapper_attr("set_task")(t)
                    return e

                return make

            venv = gym.vector.SyncVectorEnv([maker(t) for t in tasks])
        venv.reset(seed=0)
        acts = rng.uniform(-1, 1, (16, *venv.action_space.shape)).astype(np.float32)
        steps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            venv.step(acts[steps % 16])
            steps += 1
        results[name] = steps * args.num_envs / (time.perf_counter() - t0)
        venv.close()
    print(
        json.dumps(
            {
                "env": args.env,
                "num_envs": args.num_envs,
                "batched_steps_per_s": round(results["batched"]),
                "sync_vector_env_steps_per_s": round(results["sync"]),
                "speedup": round(results["batched"] / results["sync"], 2),
            },
            indent=2,
        )
    )
    return 0


def _positive(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return v


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (one sub-command per job)."""
    p = argparse.ArgumentParser(
        prog="metarobot",
        description="Adapt robot control policies to new dynamics: meta-train, adapt, evaluate.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser(
        "run",
        help="run a whole experiment from a TOML config (resumable)",
        description="Train or reuse every method of the config, evaluate them on "
        "the held-out tasks and write results.csv, summary.md and plots. "
        "Re-running the same command skips finished units.",
    )
    r.add_argument("config", help="experiment config, e.g. experiments/configs/quickstart.toml")
    r.add_argument("--out", default=None, help="output folder (default: the config's 'out')")
    r.add_argument(
        "--backend",
        choices=["local", "ray"],
        default="local",
        help="where units run: 'local' (this machine, --workers processes) or 'ray' (each unit "
        "a Ray task; needs pip install 'metarobot[ray]')",
    )
    r.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="local backend: worker processes running independent units in parallel",
    )
    r.add_argument(
        "--address",
        default=None,
        help="ray backend: cluster address (default: a local Ray instance)",
    )
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(fn=_cmd_run)

    t = sub.add_parser(
        "train",
        help="meta-train one policy on a family",
        description="Meta-train a policy with one algorithm and save it.",
    )
    t.add_argument(
        "--algo",
        choices=_trainable(),
        required=True,
        help="method: a meta-learner, a context method (rma, recurrent) or domain_randomization",
    )
    t.add_argument("--env", required=True, help="family id, e.g. metarobot/HalfCheetahVel-v0")
    t.add_argument("--iterations", type=_positive, default=50, help="meta-iterations")
    t.add_argument(
        "--steps",
        type=_positive,
        default=None,
        help="env-step budget of rma (80%% teacher, 20%% student), recurrent and "
        "domain_randomization (default: the config defaults)",
    )
    t.add_argument("--meta-batch", type=_positive, default=20, help="tasks per iteration")
    t.add_argument("--episodes", type=_positive, default=2, help="adaptation episodes per task (K)")
    t.add_argument("--inner-lr", type=float, default=0.1, help="adaptation step size α")
    t.add_argument("--seed", type=int, default=0, help="seed of everything")
    t.add_argument("--device", default="auto", help="auto, cpu or cuda")
    t.add_argument("--log", default=None, help="CSV log file (one row per iteration)")
    t.add_argument("--out", required=True, help="checkpoint file to write")
    t.add_argument(
        "--state",
        default=None,
        help="resumable training-state file: written every --checkpoint-every "
        "iterations; if it exists, training resumes from it",
    )
    t.add_argument(
        "--checkpoint-every",
        type=_positive,
        default=10,
        help="iterations between checkpoints and state files",
    )
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(fn=_cmd_train)

    e = sub.add_parser(
        "evaluate",
        help="evaluate a checkpoint on held-out tasks",
        description="Adapt a saved policy with K episodes on each held-out task "
        "and report the mean return of separate evaluation episodes.",
    )
    e.add_argument("--checkpoint", required=True, help="policy file (.pt)")
    e.add_argument("--env", default=None, help="family id (default: the checkpoint's)")
    e.add_argument(
        "--ks",
        type=int,
        nargs="+",
        default=[0, 1, 2, 3, 5],
        help="adaptation budgets in episodes (0: no adaptation)",
    )
    e.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="evaluation seeds")
    e.add_argument("--tasks", type=_positive, default=10, help="number of test tasks")
    e.add_argument("--episodes", type=_positive, default=2, help="evaluation episodes")
    e.add_argument(
        "--lr", type=float, default=None, help="adaptation step size (default: the policy's own)"
    )
    e.add_argument("--out", default=None, help="write the records to this CSV")
    e.set_defaults(fn=_cmd_evaluate)

    a = sub.add_parser(
        "adapt",
        help="adapt a saved policy to one new environment",
        description="Collect K episodes on the environment, fine-tune the policy "
        "and save the adapted policy.",
    )
    a.add_argument("--checkpoint", required=True, help="policy file to adapt (.pt)")
    a.add_argument("--env", required=True, help="family id of the new environment")
    a.add_argument("--task", default=None, help="the environment's task as JSON (Task.to_json)")
    a.add_argument(
        "--task-index",
        type=int,
        default=None,
        help="or: index of a task in the family's frozen split",
    )
    a.add_argument(
        "--split", choices=["test", "train"], default="test", help="split --task-index refers to"
    )
    a.add_argument("--episodes", type=_positive, default=2, help="episodes of experience (K)")
    a.add_argument(
        "--rounds",
        type=_positive,
        default=1,
        help="rounds of collect-K-episodes-then-update (R·K episodes in all; RMA's round 1 "
        "infers its latent, later rounds fine-tune its actor; a recurrent policy's GRU is "
        "fine-tuned with PPO and needs --optimizer adam)",
    )
    a.add_argument(
        "--optimizer",
        choices=["sgd", "adam"],
        default="sgd",
        help="update of each step: sgd (the policy's meta-learned step sizes or --lr) or adam "
        "(moments kept across rounds; step size --lr, default 3e-4)",
    )
    a.add_argument(
        "--algorithm",
        choices=["ppo", "sac"],
        default="ppo",
        help="fine-tuning rounds: ppo (on-policy, every policy type) or sac (off-policy soft "
        "actor-critic with a replay buffer of every round's episodes; MLP and RMA policies, CPU "
        "engine; "
        "--lr replaces its step size 3e-4, --steps and --optimizer do not apply)",
    )
    a.add_argument(
        "--steps",
        type=_positive,
        default=None,
        help="gradient steps (default: as in meta-training)",
    )
    a.add_argument(
        "--lr", type=float, default=None, help="step size (default: the policy's meta-learned one)"
    )
    a.add_argument("--seed", type=int, default=0, help="seed of the adaptation episodes")
    a.add_argument(
        "--no-safeguard",
        action="store_true",
        help="keep the update even if it lowers the return on fresh validation episodes",
    )
    a.add_argument(
        "--margin",
        type=float,
        default=None,
        help="standard errors of the paired validation gain an update must clear to be kept "
        "(>= 0; 0 keeps any update that is not lower on average; default: adapt's, 1)",
    )
    a.add_argument("--device", default="auto", help="auto, cpu or cuda")
    a.add_argument("--out", required=True, help="where to save the adapted policy")
    a.set_defaults(fn=_cmd_adapt)

    b = sub.add_parser(
        "bench",
        help="measure simulator throughput (batched vs SyncVectorEnv)",
        description="Quick throughput check; the full benchmarks are experiments/bench_*.py.",
    )
    b.add_argument("--env", default="metarobot/HalfCheetahRandParams-v0", help="family id")
    b.add_argument("--num-envs", type=_positive, default=64, help="number of worlds")
    b.add_argument("--seconds", type=float, default=2.0, help="seconds per measurement")
    b.set_defaults(fn=_cmd_bench)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``metarobot`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.fn(args))
    except (ValueError, FileNotFoundError) as err:
        print(f"metarobot {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
