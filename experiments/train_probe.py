"""Train one method on a family's training split and score it on training tasks only.

A screen for choosing families and settings before a table is run: it never touches the test
split, so nothing chosen with it is tuned on held-out tasks. It prints one Markdown row with the
mean return over the first ``--tasks`` training tasks (``--episodes`` deterministic episodes
each, evaluation seed ``--eval-seed``) and the wall time.

With ``--adapt K [K ...]`` it also scores the policy after ``metarobot.adapt_many`` with K
episodes per training task (adaptation episodes seeded apart from the scored ones), one row per K.

Usage::

    python experiments/train_probe.py --family HalfCheetahDir --method recurrent --steps 400000
    python experiments/train_probe.py --family HalfCheetahReversed --method rma --steps 400000
    python experiments/train_probe.py --family HalfCheetahReversed --method domain_randomization
    python experiments/train_probe.py --family InvertedPendulumRandParams --method rma --adapt 1 2

With ``--config TABLE.toml`` the method trains exactly as that table trains it (its registry
jobs, budgets and PPO settings; ``--steps`` and ``--n-envs`` are then unused), and ``--set
section.key=value`` changes one setting first, so a change to a table's recipe can be screened on
training tasks before the table is rerun::

    python experiments/train_probe.py --family HalfCheetahPhysical --method recurrent \
        --config experiments/configs/half_cheetah_physical.toml \
        --set recurrent.lr_schedule='"linear"' --save runs/screen/rec-linear.pt

``--method oracle --oracle-task I`` (with ``--config``) trains one run of the table's oracle
recipe on training task I and scores it there: how a recipe change moves the per-task
reference, which the normalized scores divide by, again without touching the test split.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import tomllib
import torch

import metarobot
from metarobot import registry
from metarobot.adaptation import adapt_many
from metarobot.baselines import train_domain_randomization
from metarobot.config import ExperimentConfig, parse_config
from metarobot.context import TaskFeatures
from metarobot.envs import Task, task_split
from metarobot.evaluation import evaluation_returns
from metarobot.ppo import PPOSettings

METHODS = ("recurrent", "rma", "domain_randomization", "oracle")


def train(method: str, env_id: str, steps: int, seed: int, args: argparse.Namespace) -> object:
    """Train ``method`` on the training split of ``env_id`` for ``steps`` environment steps."""
    tasks = task_split(env_id)[0]
    if method == "recurrent":
        return metarobot.train_recurrent(
            env_id,
            steps=steps,
            seed=seed,
            tasks=tasks,
            n_envs=args.n_envs,
            nthread=1,
            settings=PPOSettings(lr=args.lr, epochs=10),
        )
    if method == "rma":
        teacher = int(steps * 0.8)
        return metarobot.train_rma(
            env_id,
            teacher_steps=teacher,
            student_steps=steps - teacher,
            seed=seed,
            tasks=tasks,
            n_envs=args.n_envs,
            nthread=1,
            settings=PPOSettings(lr=args.lr),
        )
    return train_domain_randomization(env_id, steps, seed=seed, tasks=tasks, nthread=1)


def table_config(config: Path, sets: list[str]) -> ExperimentConfig:
    """The table config at ``config`` with the ``section.key=value`` overrides applied.

    Raises:
        ValueError: On a malformed override or an invalid resulting config.
    """
    data = tomllib.loads(config.read_text(encoding="utf-8"))
    for item in sets:
        key, sep, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or not name:
            raise ValueError(f"--set takes section.key=value, got {item!r}")
        try:
            data.setdefault(section, {})[name] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"--set {item!r}: the value is not TOML ({err})") from err
    return parse_config(data)


def train_oracle_as_table(config: Path, sets: list[str], seed: int, task: Task) -> Any:
    """One oracle run (no restarts) on ``task`` with a table's oracle recipe, as it trains one."""
    return registry._train_one_oracle(table_config(config, sets), task, seed)


def train_as_table(method: str, config: Path, sets: list[str], seed: int) -> tuple[Any, int]:
    """Train ``method`` with the registry jobs of a table config (``sets`` applied first).

    Args:
        method: Registered method name.
        config: The table's TOML file.
        sets: ``section.key=value`` overrides, each value in TOML syntax.
        seed: Training seed.

    Returns:
        The trained policy and the most env steps the table's budget lets it use.

    Raises:
        ValueError: On a malformed override or an invalid resulting config.
    """
    cfg = table_config(config, sets)
    spec = registry.get(method)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        ck = out / "checkpoints"
        ck.mkdir()
        for job in spec.jobs(cfg, seed):
            job.trainer(cfg, out, ck / f"{job.key}.pt", job.args)
        return spec.load(cfg, seed, ck), spec.planned_steps(cfg)


def main() -> None:
    """Parse the command line, train, score on training tasks, print one row."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", required=True, help="family name, e.g. HalfCheetahDir")
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--steps", type=int, default=400_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-envs", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-4, help="PPO step size (rma, recurrent)")
    p.add_argument("--tasks", type=int, default=10, help="first N training tasks scored")
    p.add_argument(
        "--oracle-task",
        type=int,
        default=0,
        help="oracle (needs --config): train one run on this training task and score on it",
    )
    p.add_argument("--episodes", type=int, default=2)
    p.add_argument("--eval-seed", type=int, default=0)
    p.add_argument("--save", type=Path, default=None, help="save the trained policy here")
    p.add_argument(
        "--load", type=Path, default=None, help="score this saved policy instead of training"
    )
    p.add_argument(
        "--true-latent",
        action="store_true",
        help="rma: also score with each task's privileged latent instead of the inferred one",
    )
    p.add_argument(
        "--config", type=Path, default=None, help="train as this table config trains the method"
    )
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="with --config: override one setting (TOML value), repeatable",
    )
    p.add_argument(
        "--adapt", type=int, nargs="*", default=[], metavar="K", help="also score after K episodes"
    )
    args = p.parse_args()
    if args.steps <= 0:
        raise ValueError(f"--steps must be > 0, got {args.steps}")
    if any(k < 1 for k in args.adapt):
        raise ValueError(f"--adapt episodes must each be >= 1, got {args.adapt}")
    if args.sets and args.config is None:
        raise ValueError("--set needs --config")
    if args.method == "oracle" and args.config is None:
        raise ValueError("--method oracle needs --config (the table's oracle recipe)")
    if args.true_latent and args.method != "rma":
        raise ValueError(f"--true-latent needs --method rma, got {args.method!r}")
    torch.set_num_threads(1)
    env_id = f"metarobot/{args.family}-v0"
    t0 = time.time()
    train_tasks = task_split(env_id)[0]
    tasks = train_tasks[: args.tasks]
    if args.method == "oracle":
        if not 0 <= args.oracle_task < len(train_tasks):
            raise ValueError(
                f"--oracle-task must be in [0, {len(train_tasks) - 1}], got {args.oracle_task}"
            )
        tasks = [train_tasks[args.oracle_task]]
        args.steps = table_config(args.config, args.sets).baselines.oracle_timesteps
    if args.load is not None:
        policy = metarobot.load(args.load)
    elif args.method == "oracle":
        policy = train_oracle_as_table(args.config, args.sets, args.seed, tasks[0])
    elif args.config is not None:
        policy, args.steps = train_as_table(args.method, args.config, args.sets, args.seed)
    else:
        policy = train(args.method, env_id, args.steps, args.seed, args)
    wall = time.time() - t0
    rets = evaluation_returns(
        [policy] * len(tasks), env_id, tasks, episodes=args.episodes, seed=args.eval_seed
    )
    if args.save is not None:
        metarobot.save(policy, args.save)
    _row(
        args, f" on training task {args.oracle_task}" if args.method == "oracle" else "", rets, wall
    )
    for k in args.adapt:
        adapted = adapt_many(
            policy, env_id, tasks, episodes=k, seed=args.eval_seed + 1_000, nthread=1
        )
        rets = evaluation_returns(
            adapted, env_id, tasks, episodes=args.episodes, seed=args.eval_seed
        )
        _row(args, f", K = {k}", rets, wall)
    if args.true_latent:
        if not isinstance(policy, metarobot.RMAPolicy):
            raise ValueError(f"--true-latent needs an RMA policy, --load gave {type(policy)!r}")
        with torch.no_grad():
            feats = torch.as_tensor(TaskFeatures(env_id).batch(tasks))
            z = policy.encoder(feats).numpy()
        rets = evaluation_returns(
            [policy.with_latent(zi) for zi in z],
            env_id,
            tasks,
            episodes=args.episodes,
            seed=args.eval_seed,
        )
        _row(args, ", true latent", rets, wall)


def _row(args: argparse.Namespace, label: str, rets: np.ndarray, wall: float) -> None:
    per_task = ", ".join(f"{r:.1f}" for r in rets)
    print(
        f"| {args.family} | {args.method}{label}{''.join(f' {s}' for s in args.sets)} | "
        f"{args.steps:,} | {args.seed} | "
        f"{float(np.mean(rets)):.1f} | {per_task} | {wall:.0f} |",
        flush=True,
    )


if __name__ == "__main__":
    main()
