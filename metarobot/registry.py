"""The method registry: a method's name → how it trains, its policy type and its loader.

Configs, the CLI, the experiment runner and the evaluation table read this one table; adding a
method is one :func:`register` call here plus its module. A method trains through *jobs*
(picklable units of work, each writing one checkpoint); jobs with the same key are shared
between methods (the ensemble and the parameter average use the same experts).

Budgets: :attr:`MethodSpec.planned_steps` is the most environment steps a method's training
may consume under a config (every meta-training episode, every expert, teacher and student
together). :func:`check_budget` refuses a config in which a method would exceed
``budget_steps``; the oracle is a per-task reference with its own stated budget.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym

from metarobot import baselines
from metarobot.checkpoint import AnyPolicy, load
from metarobot.envs import task_split
from metarobot.episodic_mlp import train_ppo_mlp
from metarobot.learners import MAML, MetaLearner, MetaSGD, Reptile
from metarobot.ppo import PPOSettings
from metarobot.recurrent import train_recurrent
from metarobot.returns import evaluation_returns
from metarobot.rma import train_rma

if TYPE_CHECKING:
    from metarobot.config import ExperimentConfig

__all__ = [
    "METHODS",
    "MethodSpec",
    "TrainJob",
    "check_budget",
    "get",
    "horizon",
    "meta_learner",
    "method_names",
    "register",
]

#: Expert i of training seed s trains with PPO seed ``EXPERT_SEED_BASE + s + i`` and the oracle
#: of test task t with ``ORACLE_SEED_BASE + 100·s + t``: disjoint from the methods' own seeds.
EXPERT_SEED_BASE = 10_000
ORACLE_SEED_BASE = 20_000
#: Oracle restart r adds ``ORACLE_RESTART_STRIDE · r`` to its seed; its selection episodes use
#: evaluation seed ``ORACLE_SELECT_SEED``, which no table's evaluation seeds reach.
ORACLE_RESTART_STRIDE = 1_000
ORACLE_SELECT_SEED = 999_983

Trainer = Callable[["ExperimentConfig", Path, Path, dict[str, Any]], None]


@dataclass(frozen=True)
class TrainJob:
    """One unit of training that writes one checkpoint (plain data: picklable).

    Attributes:
        key: Checkpoint file stem under ``<out>/checkpoints/``; unique across methods (jobs with
            the same key are run once).
        label: Human-readable name (``train maml (seed 0)``).
        trainer: Module-level function ``(cfg, out, checkpoint_path, args)`` doing the work.
        args: Arguments of the work.
        weight: Relative cost, for the progress bar.
    """

    key: str
    label: str
    trainer: Trainer
    args: dict[str, Any] = field(default_factory=dict)
    weight: float = 1.0


@dataclass(frozen=True)
class MethodSpec:
    """Everything the package needs to know about a method.

    Attributes:
        name: Name in configs, the CLI and result tables.
        summary: One line for tables and ``--help``.
        policy_type: ``mlp``, ``ensemble``, ``rma`` or ``recurrent``.
        jobs: ``(cfg, training seed) → jobs`` that train it.
        load: ``(cfg, training seed, checkpoint folder) → policy`` (a list of per-task
            policies for a reference method).
        planned_steps: ``cfg → the most env steps`` its training may use (0: no training).
        own_step_size: Adaptation uses the policy's own (meta-learned) step sizes; False uses
            the config's ``eval.adapt_lr``.
        reference: A per-task reference (the oracle): trained once with the first training
            seed, outside the budget.
        learner: For meta-learners, ``(env_id, **MetaConfig fields) → MetaLearner``.
    """

    name: str
    summary: str
    policy_type: str
    jobs: Callable[[ExperimentConfig, int], list[TrainJob]]
    load: Callable[[ExperimentConfig, int, Path], Any]
    planned_steps: Callable[[ExperimentConfig], int]
    own_step_size: bool = True
    reference: bool = False
    learner: Callable[..., MetaLearner] | None = None


#: Every registered method, in table order.
METHODS: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    """Add a method (its name must be new)."""
    if spec.name in METHODS:
        raise ValueError(f"method {spec.name!r} is already registered")
    METHODS[spec.name] = spec
    return spec


def get(name: str) -> MethodSpec:
    """The spec of a method.

    Raises:
        ValueError: On an unknown name (the message lists the known ones).
    """
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known methods are {method_names()}")
    return METHODS[name]


def method_names() -> list[str]:
    """Registered method names in table order."""
    return list(METHODS)


def horizon(env_id: str) -> int:
    """Episode length limit of a family."""
    spec = gym.spec(env_id)
    if spec.max_episode_steps is None:
        raise ValueError(f"{env_id!r} has no max_episode_steps; register it with one")
    return int(spec.max_episode_steps)


def check_budget(cfg: ExperimentConfig) -> dict[str, int]:
    """Planned training steps of every method of ``cfg``; enforce ``cfg.budget_steps``.

    Returns:
        ``{method: planned env steps}`` (the oracle's is its own reference budget).

    Raises:
        ValueError: Naming the first method whose training would exceed ``budget_steps``.
    """
    planned = {m: get(m).planned_steps(cfg) for m in cfg.methods}
    if cfg.budget_steps is not None:
        for m, steps in planned.items():
            if not get(m).reference and steps > cfg.budget_steps:
                raise ValueError(
                    f"method {m!r} would use up to {steps:,} environment steps, more than "
                    f"budget_steps={cfg.budget_steps:,}; lower its settings or raise the budget"
                )
    return planned


# ---------------------------------------------------------------------- helpers


def _ppo_steps(cfg: ExperimentConfig, timesteps: int) -> int:
    """SB3's PPO collects whole rollouts of ``n_steps × n_envs``: round up to one."""
    chunk = baselines.PPO_DEFAULTS["n_steps"] * cfg.baselines.n_envs
    return math.ceil(timesteps / chunk) * chunk


def meta_learner(name: str, env_id: str, **config: Any) -> MetaLearner:
    """A meta-learner of a registered meta-learning method."""
    spec = get(name)
    if spec.learner is None:
        raise ValueError(
            f"{name!r} is not a meta-learner; meta-learners are "
            f"{[m for m, s in METHODS.items() if s.learner is not None]}"
        )
    return spec.learner(env_id, **config)


def _engine(cfg: ExperimentConfig) -> dict[str, Any]:
    """The simulator arguments of the episodic-PPO trainers (``engine``, ``device``)."""
    if cfg.engine == "batch":
        return {}
    return {"engine": "warp", "device": None if cfg.device == "auto" else cfg.device}


def _meta_kwargs(cfg: ExperimentConfig, name: str, seed: int) -> dict[str, Any]:
    m = cfg.meta
    over: dict[str, Any] = {"seed": seed, "device": "cpu", "nthread": cfg.nthread}
    if cfg.engine == "warp":
        over.update(engine="warp", device=cfg.device)
    if name == "reptile":
        over.update(
            inner_steps=m.reptile_inner_steps, outer_lr=m.reptile_lr, inner_lr=m.reptile_inner_lr
        )
    return dataclasses.asdict(m.meta_config(**over))


def _train_meta(cfg: ExperimentConfig, out: Path, path: Path, args: dict[str, Any]) -> None:
    name, seed = args["method"], args["seed"]
    learner = meta_learner(name, cfg.family, **_meta_kwargs(cfg, name, seed))
    try:
        policy = learner.train(
            cfg.meta.iterations,
            log_path=out / "logs" / f"{name}-s{seed}.csv",
            tensorboard_dir=out / "tb" / f"{name}-s{seed}",
            checkpoint_every=cfg.meta.checkpoint_every,
            progress=False,
            state_path=path.with_suffix(".state.pt"),
            max_env_steps=cfg.budget_steps,
        )
    finally:
        learner.close()
    policy.save(path)  # the finished unit's marker


def _meta_jobs(cfg: ExperimentConfig, seed: int, name: str) -> list[TrainJob]:
    return [
        TrainJob(
            f"{name}-s{seed}",
            f"train {name} (seed {seed})",
            _train_meta,
            {"method": name, "seed": seed},
            3.0,
        )
    ]


def _meta_steps(cfg: ExperimentConfig, name: str) -> int:
    m = cfg.meta
    per_task = (
        m.episodes * m.reptile_inner_steps if name == "reptile" else m.episodes + m.post_episodes
    )
    most = m.iterations * m.meta_batch * per_task * horizon(cfg.family)
    # With a budget, meta-training stops before an iteration could exceed it.
    return most if cfg.budget_steps is None else min(most, cfg.budget_steps)


def _load_seeded(name: str) -> Callable[[ExperimentConfig, int, Path], AnyPolicy]:
    def loader(cfg: ExperimentConfig, seed: int, ck: Path) -> AnyPolicy:
        return load(ck / f"{name}-s{seed}.pt")

    loader.__name__ = f"load_{name}"
    return loader


def _register_meta(name: str, summary: str, factory: Callable[..., MetaLearner]) -> None:
    register(
        MethodSpec(
            name,
            summary,
            "mlp",
            jobs=lambda cfg, seed: _meta_jobs(cfg, seed, name),
            load=_load_seeded(name),
            planned_steps=lambda cfg: _meta_steps(cfg, name),
            learner=factory,
        )
    )


def _train_expert(cfg: ExperimentConfig, out: Path, path: Path, args: dict[str, Any]) -> None:
    b = cfg.baselines
    train_tasks = task_split(cfg.family)[0]
    init_seed = EXPERT_SEED_BASE + args["seed"]
    pol = baselines.train_expert(
        cfg.family,
        train_tasks[args["index"] % len(train_tasks)],
        b.expert_timesteps,
        seed=init_seed + args["index"],
        init_state=baselines.shared_init(cfg.family, init_seed, tuple(cfg.meta.hidden)),
        n_envs=b.n_envs,
        nthread=cfg.nthread,
        hidden=tuple(cfg.meta.hidden),
    )
    pol.save(path)


def _expert_jobs(cfg: ExperimentConfig, seed: int) -> list[TrainJob]:
    return [
        TrainJob(
            f"expert-{i}-s{seed}",
            f"train expert {i} (seed {seed})",
            _train_expert,
            {"index": i, "seed": seed},
        )
        for i in range(cfg.baselines.n_experts)
    ]


def _load_experts(cfg: ExperimentConfig, seed: int, ck: Path) -> list[AnyPolicy]:
    return [load(ck / f"expert-{i}-s{seed}.pt") for i in range(cfg.baselines.n_experts)]


def _episodic_settings(cfg: ExperimentConfig) -> PPOSettings:
    """The episodic PPO settings of RMA's teacher (also DR's and the oracles' when chosen)."""
    r = cfg.rma
    return PPOSettings(
        lr=r.lr,
        epochs=r.epochs,
        minibatches=r.minibatches,
        scale_rewards=r.scale_rewards,
        lr_schedule=r.lr_schedule,
    )


def _baseline_ppo_steps(cfg: ExperimentConfig, timesteps: int) -> int:
    """Most steps a DR or oracle run can use with the table's baseline trainer."""
    if cfg.baselines.trainer == "episodic":  # never exceeded, but one iteration always runs
        return max(timesteps, cfg.rma.teacher_envs * horizon(cfg.family))
    return _ppo_steps(cfg, timesteps)


def _train_dr(cfg: ExperimentConfig, out: Path, path: Path, args: dict[str, Any]) -> None:
    b = cfg.baselines
    if b.trainer == "episodic":
        train_ppo_mlp(
            cfg.family,
            task_split(cfg.family)[0],
            b.dr_timesteps,
            seed=args["seed"],
            n_envs=cfg.rma.teacher_envs,
            nthread=cfg.nthread,
            hidden=cfg.episodic_hidden(),
            init_log_std=cfg.rma.init_log_std,
            settings=_episodic_settings(cfg),
            **_engine(cfg),
        ).save(path)
        return
    pol = baselines.train_domain_randomization(
        cfg.family,
        b.dr_timesteps,
        seed=args["seed"],
        n_envs=b.n_envs,
        nthread=cfg.nthread,
        hidden=tuple(cfg.meta.hidden),
        tasks=task_split(cfg.family)[0],
    )
    pol.save(path)


def _test_tasks(cfg: ExperimentConfig) -> list[Any]:
    return cfg.test_tasks()


def _train_oracle(cfg: ExperimentConfig, out: Path, path: Path, args: dict[str, Any]) -> None:
    b, t, seed = cfg.baselines, args["task"], args["seed"]
    task = _test_tasks(cfg)[t]
    best, returns = None, []
    for r in range(b.oracle_restarts):
        pol = _train_one_oracle(
            cfg, task, ORACLE_SEED_BASE + 100 * seed + t + ORACLE_RESTART_STRIDE * r
        )
        if b.oracle_restarts == 1:
            best = pol
            break
        ret = float(
            evaluation_returns(
                [pol], cfg.family, [task], episodes=2, seed=ORACLE_SELECT_SEED, nthread=cfg.nthread
            )[0]
        )
        returns.append(round(ret, 3))
        if best is None or ret > max(returns[:-1]):
            best = pol
    assert best is not None
    if returns:
        best.meta["restart_returns"] = returns
        best.meta["env_steps"] = int(best.meta["env_steps"]) * b.oracle_restarts
    best.save(path)


def _train_one_oracle(cfg: ExperimentConfig, task: Any, ppo_seed: int) -> AnyPolicy:
    b = cfg.baselines
    if b.trainer == "episodic":
        return train_ppo_mlp(
            cfg.family,
            [task],
            b.oracle_timesteps,
            seed=ppo_seed,
            method="oracle",
            n_envs=cfg.rma.teacher_envs,
            nthread=cfg.nthread,
            hidden=cfg.episodic_hidden(),
            init_log_std=cfg.rma.init_log_std,
            settings=_episodic_settings(cfg),
            task=task.to_json(),
            **_engine(cfg),
        )
    return baselines.train_expert(
        cfg.family,
        task,
        b.oracle_timesteps,
        seed=ppo_seed,
        n_envs=b.n_envs,
        nthread=cfg.nthread,
        hidden=tuple(cfg.meta.hidden),
        method="oracle",
    )


def _oracle_jobs(cfg: ExperimentConfig, seed: int) -> list[TrainJob]:
    return [
        TrainJob(
            f"oracle-t{t}-s{seed}",
            f"train oracle task {t} (seed {seed})",
            _train_oracle,
            {"task": t, "seed": seed},
        )
        for t in range(cfg.eval.n_test_tasks)
    ]


def _load_oracles(cfg: ExperimentConfig, seed: int, ck: Path) -> list[AnyPolicy]:
    return [load(ck / f"oracle-t{t}-s{seed}.pt") for t in range(cfg.eval.n_test_tasks)]


def _train_rma(cfg: ExperimentConfig, out: Path, path: Path, args: dict[str, Any]) -> None:
    r = cfg.rma
    pol = train_rma(
        cfg.family,
        teacher_steps=r.teacher_steps,
        student_steps=r.student_steps,
        seed=args["seed"],
        tasks=task_split(cfg.family)[0],
        n_envs=r.teacher_envs,
        student_envs=r.student_envs,
        nthread=cfg.nthread,
        hidden=cfg.episodic_hidden(),
        z_dim=r.z_dim,
        history=r.history,
        reward_in_history=r.reward_in_history,
        init_log_std=r.init_log_std,
        settings=_episodic_settings(cfg),
        **_engine(cfg),
    )
    pol.save(path)


def _rma_steps(cfg: ExperimentConfig) -> int:
    # Episodic PPO and the student never exceed their budgets, but always run one iteration.
    h, r = horizon(cfg.family), cfg.rma
    return max(r.teacher_steps, r.teacher_envs * h) + max(r.student_steps, r.student_envs * h)


def _train_rec(cfg: ExperimentConfig, out: Path, path: Path, args: dict[str, Any]) -> None:
    r = cfg.recurrent
    pol = train_recurrent(
        cfg.family,
        steps=r.steps,
        seed=args["seed"],
        tasks=task_split(cfg.family)[0],
        n_envs=r.n_envs,
        nthread=cfg.nthread,
        hidden=r.hidden,
        init_log_std=r.init_log_std,
        settings=PPOSettings(
            lr=r.lr,
            epochs=r.epochs,
            minibatches=r.minibatches,
            bptt=r.bptt or None,
            scale_rewards=r.scale_rewards,
            lr_schedule=r.lr_schedule,
        ),
        **_engine(cfg),
    )
    pol.save(path)


def _one_job(name: str, trainer: Trainer, weight: float) -> Callable[..., list[TrainJob]]:
    def jobs(cfg: ExperimentConfig, seed: int) -> list[TrainJob]:
        return [
            TrainJob(
                f"{name}-s{seed}", f"train {name} (seed {seed})", trainer, {"seed": seed}, weight
            )
        ]

    return jobs


# ---------------------------------------------------------------------- the table

_register_meta("maml", "MAML, second order (Finn et al., 2017)", MAML)
_register_meta(
    "fomaml", "first-order MAML", lambda env_id, **kw: MAML(env_id, first_order=True, **kw)
)
_register_meta("reptile", "Reptile (Nichol et al., 2018)", Reptile)
_register_meta("metasgd", "Meta-SGD: MAML with learned per-parameter step sizes", MetaSGD)
register(
    MethodSpec(
        "rma",
        "RMA: privileged PPO teacher + history adaptation module (Kumar et al., 2021)",
        "rma",
        jobs=_one_job("rma", _train_rma, 3.0),
        load=_load_seeded("rma"),
        planned_steps=_rma_steps,
    )
)
register(
    MethodSpec(
        "recurrent",
        "GRU policy over (obs, previous action, previous reward), PPO (RL²-style)",
        "recurrent",
        jobs=_one_job("recurrent", _train_rec, 3.0),
        load=_load_seeded("recurrent"),
        planned_steps=lambda cfg: max(
            cfg.recurrent.steps, cfg.recurrent.n_envs * horizon(cfg.family)
        ),
    )
)
register(
    MethodSpec(
        "ensemble",
        "mean of PPO experts' actions, ŷ = 1/M Σ yᵢ",
        "ensemble",
        jobs=_expert_jobs,
        load=lambda cfg, seed, ck: baselines.ensemble(_load_experts(cfg, seed, ck)),
        planned_steps=lambda cfg: (
            cfg.baselines.n_experts * _ppo_steps(cfg, cfg.baselines.expert_timesteps)
        ),
        own_step_size=False,
    )
)
register(
    MethodSpec(
        "param_average",
        "PPO experts' weights averaged",
        "mlp",
        jobs=_expert_jobs,
        load=lambda cfg, seed, ck: baselines.parameter_average(_load_experts(cfg, seed, ck)),
        planned_steps=lambda cfg: (
            cfg.baselines.n_experts * _ppo_steps(cfg, cfg.baselines.expert_timesteps)
        ),
        own_step_size=False,
    )
)
register(
    MethodSpec(
        "domain_randomization",
        "one PPO policy over the whole training distribution",
        "mlp",
        jobs=_one_job("domain_randomization", _train_dr, 2.0),
        load=_load_seeded("domain_randomization"),
        planned_steps=lambda cfg: _baseline_ppo_steps(cfg, cfg.baselines.dr_timesteps),
        own_step_size=False,
    )
)
register(
    MethodSpec(
        "oracle",
        "PPO trained on each test task (the reference: score 1)",
        "mlp",
        jobs=_oracle_jobs,
        load=_load_oracles,
        planned_steps=lambda cfg: (
            cfg.baselines.oracle_restarts * _baseline_ppo_steps(cfg, cfg.baselines.oracle_timesteps)
        ),
        own_step_size=False,
        reference=True,
    )
)
register(
    MethodSpec(
        "scratch",
        "a freshly initialized policy, adapted like the others",
        "mlp",
        jobs=lambda cfg, seed: [],
        load=lambda cfg, seed, ck: baselines.scratch(
            cfg.family, seed=seed, hidden=tuple(cfg.meta.hidden)
        ),
        planned_steps=lambda cfg: 0,
        own_step_size=False,
    )
)
