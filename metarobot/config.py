"""Typed experiment configs loaded from TOML (stdlib ``tomllib`` + dataclasses).

Every key is checked: an unknown key, a value of the wrong type or out of range raises a
``ValueError`` that names the key (``meta.iterations``) and what is allowed.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from metarobot import registry
from metarobot.envs import Task, check_family, ood_split, task_split
from metarobot.learners import MetaConfig
from metarobot.learners.reptile import REPTILE_DEFAULTS
from metarobot.ppo import LR_SCHEDULES

__all__ = [
    "BASELINE_TRAINERS",
    "BaselineConfig",
    "EvalConfig",
    "ExperimentConfig",
    "MetaSection",
    "RMASection",
    "RecurrentSection",
    "load_config",
    "parse_config",
]

_M = MetaConfig  # the one schema of meta-learning hyper-parameters; [meta] mirrors it


@dataclass
class MetaSection:
    """The ``[meta]`` table of an experiment config.

    Its fields are :class:`~metarobot.learners.MetaConfig`'s (same defaults, checked by
    ``MetaConfig.validate``), plus the iteration count, the checkpoint period and Reptile's own
    settings.

    Attributes:
        iterations: Meta-iterations (with ``budget_steps``: training stops before the next one
            could pass it).
        meta_batch: Tasks per iteration.
        episodes: K, adaptation episodes per task (inner-loop data).
        post_episodes: Episodes per task after adaptation (outer-loss data).
        inner_steps: S, adaptation gradient steps.
        inner_lr: Adaptation step size α (Meta-SGD: its initial value).
        outer_lr: Adam learning rate of the outer update (MAML, first-order MAML, Meta-SGD).
        reptile_lr: Reptile's ε, the interpolation rate toward the adapted parameters.
        reptile_inner_steps: Reptile's gradient steps per task in the inner loop.
        reptile_inner_lr: Reptile's inner step size.
        outer_epochs: Passes of the clipped outer surrogate over each batch.
        clip: Clip range of the surrogate (inner and outer).
        gamma: Discount.
        lam: GAE λ.
        hidden: Hidden layer sizes of the MLPs of every method (RMA's too; the GRU has its own).
        init_log_std: Initial log std of the policy.
        checkpoint_every: Iterations between resumable state files.
    """

    iterations: int = 50
    meta_batch: int = _M.meta_batch
    episodes: int = _M.episodes
    post_episodes: int = _M.post_episodes
    inner_steps: int = _M.inner_steps
    inner_lr: float = _M.inner_lr
    outer_lr: float = _M.outer_lr
    reptile_lr: float = REPTILE_DEFAULTS["outer_lr"]
    reptile_inner_steps: int = REPTILE_DEFAULTS["inner_steps"]
    reptile_inner_lr: float = _M.inner_lr
    outer_epochs: int = _M.outer_epochs
    clip: float = _M.clip
    gamma: float = _M.gamma
    lam: float = _M.lam
    hidden: list[int] = field(default_factory=lambda: list(_M.hidden))
    init_log_std: float = _M.init_log_std
    checkpoint_every: int = 10

    def meta_config(self, **overrides: Any) -> MetaConfig:
        """The :class:`MetaConfig` this section describes (``overrides`` win)."""
        names = {f.name for f in dataclasses.fields(MetaConfig)}
        kw = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name in names}
        kw["hidden"] = tuple(self.hidden)
        kw.update(overrides)
        return MetaConfig(**kw)


@dataclass
class BaselineConfig:
    """Training budgets of the PPO baselines.

    Attributes:
        n_experts: Experts of the ensemble and the parameter average (one training task each).
        expert_timesteps: SB3 PPO steps per expert.
        dr_timesteps: PPO steps of the domain-randomization policy.
        oracle_timesteps: PPO steps of each per-test-task oracle (the reference, outside the
            budget).
        n_envs: Parallel worlds of the SB3 PPO runs.
        trainer: PPO of the DR policy and the oracles: ``sb3`` (SB3's PPO, no normalization)
            or ``episodic`` (:mod:`metarobot.ppo`, the trainer of RMA's teacher and the
            recurrent policy, with RMA's ``teacher_envs``, ``lr`` and ``scale_rewards``), so
            that DR differs from RMA's teacher only in not seeing the task. The experts always
            use SB3: the parameter average needs one shared initialization and normalizer.
        oracle_restarts: PPO runs per test task for the oracle, each with its own seed; the
            one with the best return on that task (2 deterministic episodes from start states
            no evaluation uses) is the reference. PPO seeds differ (HalfCheetahReversedIID
            test task 4: 598 vs 417 per 200 steps; HalfCheetahDir forward: 616 to 849).
    """

    n_experts: int = 8
    expert_timesteps: int = 50_000
    dr_timesteps: int = 200_000
    oracle_timesteps: int = 50_000
    n_envs: int = 8
    trainer: str = "sb3"
    oracle_restarts: int = 1


@dataclass
class EvalConfig:
    """The ``[eval]`` table: the evaluation protocol.

    Attributes:
        ks: Adaptation episodes K to evaluate (must include 0: no adaptation).
        seeds: Evaluation seeds (each one draws its own adaptation and evaluation episodes).
        episodes: Separate evaluation episodes per task after adaptation.
        n_test_tasks: Held-out tasks of the evaluated split, from its start.
        split: The held-out split evaluated: ``"test"`` (the frozen test split, drawn from the
            training distribution) or ``"ood"`` (the out-of-distribution split of families that
            define one, outside the training ranges; ``metarobot.envs.ood_split``).
        adapt_steps: Gradient steps per adaptation (MLP policies).
        adapt_lr: Adaptation step size of the methods without a meta-learned one.
        bootstrap_reps: Resamples of the stratified bootstrap behind each 95% CI.
    """

    ks: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 5])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    episodes: int = 2
    n_test_tasks: int = 10
    split: str = "test"
    adapt_steps: int = 1
    adapt_lr: float = 0.1
    bootstrap_reps: int = 2000


@dataclass
class RMASection:
    """RMA: privileged PPO teacher, then the history adaptation module (student).

    Attributes:
        teacher_steps: Env steps of the teacher's episodic PPO.
        student_steps: Env steps of the student's own rollouts (DAgger).
        history: H, past (observation, action) pairs the adaptation module reads.
        reward_in_history: Add the reward that followed each action to those pairs; left out:
            exactly on families whose tasks differ in their reward (goal families).
        z_dim: Size of the dynamics latent.
        teacher_envs: Worlds (episodes) the teacher runs at a time.
        student_envs: Worlds (episodes) per student iteration.
        lr: The teacher's Adam learning rate.
        scale_rewards: Scale the teacher's rewards by the running std of discounted returns
            (see :class:`~metarobot.ppo.PPOSettings`).
        lr_schedule: ``"constant"``, ``"linear"`` (annealed to 0 over the budget) or
            ``"adaptive"`` (follows the policy's KL divergence, rsl_rl's schedule) for the
            teacher, and for DR, the experts and the oracles when ``[baselines] trainer`` is
            ``"episodic"`` (they share the teacher's PPO settings).
        epochs: The teacher's PPO passes per batch (shared the same way).
        minibatches: The teacher's groups of episodes per pass (shared the same way).
        init_log_std: Initial log std of the teacher's actions (and of the episodic DR
            policy's and oracles').
        hidden: Hidden sizes of the episodic-PPO MLPs: RMA's actor and critic, and DR's and the
            oracles' when ``[baselines] trainer`` is ``"episodic"``; left out: ``meta.hidden``
            (which also sizes the gradient meta-learners and the SB3 experts).
    """

    teacher_steps: int = 200_000
    student_steps: int = 50_000
    history: int = 16
    reward_in_history: bool | None = None
    z_dim: int = 8
    teacher_envs: int = 16
    student_envs: int = 32
    lr: float = 1e-3
    scale_rewards: bool = True
    lr_schedule: str = "constant"
    epochs: int = 10
    minibatches: int = 8
    init_log_std: float = 0.0
    hidden: list[int] | None = None


@dataclass
class RecurrentSection:
    """Recurrent (GRU) policy trained with episodic PPO across the training tasks.

    Attributes:
        steps: Env-step budget.
        n_envs: Worlds (episodes) run at a time.
        hidden: GRU size.
        lr: Adam learning rate.
        epochs: PPO passes per batch.
        minibatches: Groups of episodes (or of chunks, with ``bptt``) per pass.
        bptt: Truncated back-propagation through time: chunks of this many steps, each started
            from its rollout state; 0 back-propagates through whole episodes. Measured on
            InvertedPendulumRandParams (one core, seed 0): 400k steps take 223 s with 50 and
            496 s with 0; with 50, reward scaling and 64 worlds, 300k steps (92 s) balance all
            10 training tasks for the full 200 steps.
        scale_rewards: Scale rewards by the running std of discounted returns (see
            :class:`~metarobot.ppo.PPOSettings`).
        lr_schedule: ``"constant"``, ``"linear"`` (annealed to 0 over the budget) or
            ``"adaptive"`` (follows the policy's KL divergence, rsl_rl's schedule).
        init_log_std: Initial log std of the actions.
    """

    steps: int = 250_000
    n_envs: int = 32
    hidden: int = 64
    lr: float = 1e-3
    epochs: int = 8
    minibatches: int = 4
    bptt: int = 50
    scale_rewards: bool = True
    lr_schedule: str = "constant"
    init_log_std: float = 0.0


#: Held-out splits a table can evaluate (``[eval] split``).
EVAL_SPLITS = ("test", "ood")

#: PPO implementations of the DR policy and the oracles (``[baselines] trainer``).
BASELINE_TRAINERS = ("sb3", "episodic")

# Integer settings for which 0 means something (every other integer must be >= 1).
_ZERO_ALLOWED = ("eval.ks", "eval.seeds", "recurrent.bptt")


@dataclass
class ExperimentConfig:
    """One experiment: a family, the methods to compare, budgets and the protocol.

    ``budget_steps`` (when set) is the environment-step budget every trained method must fit
    in; a method whose settings would exceed it is refused. ``imports`` names Python modules
    to import first, so that families they register with ``gym.register`` can be used.

    Attributes:
        name: Name of the experiment (shown in its ``summary.md``).
        family: Gymnasium id of the task family (any registered randomized id).
        out: Output folder of the run.
        methods: Methods to compare (registered names; must include ``oracle``).
        train_seeds: Training seeds; every method trains once per seed.
        nthread: Simulator threads per unit (0: all cores).
        torch_threads: Torch threads per unit.
        budget_steps: Environment steps every trained method must fit in (unset: no limit).
        engine: Simulator of training: ``"batch"`` (mujoco.batch on CPU threads) or
            ``"warp"`` (MuJoCo Warp on ``device``: the meta-learners, RMA's teacher, the
            recurrent policy and the episodic DR and oracles train with device-resident
            rollouts and updates; SB3 experts and RMA's student stay on the CPU). Evaluation
            always runs on the CPU engine, so scores are comparable across engines.
        device: The Warp device with ``engine = "warp"``: ``"auto"`` (CUDA when torch sees
            it, else Warp's CPU device), ``"cuda"``, ``"cuda:N"`` or ``"cpu"``.
        imports: Python modules to import first (families they register become usable).
        meta: The ``[meta]`` table (gradient meta-learners).
        baselines: The ``[baselines]`` table (PPO experts, DR, oracles).
        rma: The ``[rma]`` table.
        recurrent: The ``[recurrent]`` table.
        eval: The ``[eval]`` table (the protocol).
        description: One line on what the run is for.
    """

    name: str
    family: str
    out: str = "runs/experiment"
    methods: list[str] = field(default_factory=registry.method_names)
    train_seeds: list[int] = field(default_factory=lambda: [0])
    nthread: int = 1
    torch_threads: int = 1
    budget_steps: int | None = None
    engine: str = "batch"
    device: str = "auto"
    imports: list[str] = field(default_factory=list)
    meta: MetaSection = field(default_factory=MetaSection)
    baselines: BaselineConfig = field(default_factory=BaselineConfig)
    rma: RMASection = field(default_factory=RMASection)
    recurrent: RecurrentSection = field(default_factory=RecurrentSection)
    eval: EvalConfig = field(default_factory=EvalConfig)
    description: str = ""

    def test_tasks(self, limit: bool = True) -> list[Task]:
        """The held-out tasks a table evaluates: the first ``eval.n_test_tasks`` of its split.

        Raises:
            ValueError: For ``eval.split = "ood"`` on a family without an ood split.
        """
        tasks = ood_split(self.family) if self.eval.split == "ood" else task_split(self.family)[1]
        return list(tasks[: self.eval.n_test_tasks] if limit else tasks)

    def episodic_hidden(self) -> tuple[int, ...]:
        """Hidden sizes of the episodic-PPO MLPs (``rma.hidden``, else ``meta.hidden``)."""
        return tuple(self.meta.hidden if self.rma.hidden is None else self.rma.hidden)

    def validate(self) -> None:
        """Range checks that types alone do not express."""
        for mod in self.imports:
            try:
                importlib.import_module(mod)
            except ImportError as err:
                raise ValueError(f"imports: cannot import module {mod!r}: {err}") from err
        check_family(self.family)
        known = registry.method_names()
        bad = [m for m in self.methods if m not in known]
        if bad:
            raise ValueError(f"methods: unknown {bad}; allowed: {known}")
        if not self.methods:
            raise ValueError("methods must name at least one method")
        if "oracle" not in self.methods:
            raise ValueError("methods must include 'oracle' (scores are normalized by it)")
        if not self.train_seeds or any(s < 0 for s in self.train_seeds):
            raise ValueError("train_seeds must be a non-empty list of integers >= 0")
        if not self.eval.seeds or any(s < 0 for s in self.eval.seeds):
            raise ValueError("eval.seeds must be a non-empty list of integers >= 0")
        if not self.eval.ks or any(k < 0 for k in self.eval.ks) or 0 not in self.eval.ks:
            raise ValueError("eval.ks must be integers >= 0 and include 0")
        for key, sizes in (("meta.hidden", self.meta.hidden), ("rma.hidden", self.rma.hidden)):
            if sizes is not None and (not sizes or any(h < 1 for h in sizes)):
                raise ValueError(f"{key} must be a non-empty list of integers >= 1")
        if self.nthread < 0:
            raise ValueError(f"nthread must be >= 0, got {self.nthread}")
        if self.torch_threads < 1:
            raise ValueError(f"torch_threads must be >= 1, got {self.torch_threads}")
        if self.baselines.trainer not in BASELINE_TRAINERS:
            raise ValueError(
                f"baselines.trainer must be one of {list(BASELINE_TRAINERS)}, "
                f"got {self.baselines.trainer!r}"
            )
        if self.engine not in ("batch", "warp"):
            raise ValueError(f"engine must be one of ['batch', 'warp'], got {self.engine!r}")
        if self.device != "auto" and not (
            self.device == "cpu" or re.fullmatch(r"cuda(:\d+)?", self.device)
        ):
            raise ValueError(
                f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}"
            )
        if self.budget_steps is not None and self.budget_steps < 1:
            raise ValueError(f"budget_steps must be >= 1 (or left out), got {self.budget_steps}")
        for sec_name in ("meta", "baselines", "rma", "recurrent", "eval"):
            sec = getattr(self, sec_name)
            for f in dataclasses.fields(sec):
                v = getattr(sec, f.name)
                key = f"{sec_name}.{f.name}"
                if isinstance(v, bool):
                    continue
                if key == "recurrent.bptt" and v < 0:
                    raise ValueError(f"{key} must be >= 0 (0: whole episodes), got {v}")
                if isinstance(v, int) and v < 1 and key not in _ZERO_ALLOWED:
                    raise ValueError(f"{key} must be >= 1, got {v}")
                bad_float = isinstance(v, float) and not (math.isfinite(v) and v > 0)
                if bad_float and (f.name != "init_log_std" or not math.isfinite(v)):
                    raise ValueError(f"{key} must be a finite number > 0, got {v}")
        try:  # MetaConfig's checks are the checks of [meta]
            self.meta.meta_config().validate()
        except ValueError as err:
            raise ValueError(f"meta.{err}") from err
        for key in ("rma", "recurrent"):
            sched = getattr(self, key).lr_schedule
            if sched not in LR_SCHEDULES:
                raise ValueError(
                    f"{key}.lr_schedule must be one of {list(LR_SCHEDULES)}, got {sched!r}"
                )
        if self.eval.split not in EVAL_SPLITS:
            raise ValueError(
                f"eval.split must be one of {list(EVAL_SPLITS)}, got {self.eval.split!r}"
            )
        n_test = len(self.test_tasks(limit=False))
        if self.eval.n_test_tasks > n_test:
            raise ValueError(
                f"eval.n_test_tasks must be <= {n_test} for the {self.eval.split} split of "
                f"{self.family}"
            )
        registry.check_budget(self)


def _check_type(key: str, value: Any, tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_type(key, value, a)
            except ValueError:
                pass
        raise ValueError(f"{key} must be of type {tp}, got {value!r}")
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ValueError(f"{key} must be a list, got {value!r}")
        return [_check_type(f"{key}[{i}]", v, item) for i, v in enumerate(value)]
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{key} must be a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{key} must be an integer, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{key} must be a string, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{key} must be true or false, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    raise ValueError(f"{key}: unsupported type {tp}")


def _build(cls: type, data: Any, prefix: str = "") -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{prefix or 'config'} must be a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f" in [{prefix}]" if prefix else ""
        raise ValueError(
            f"unknown config key(s) {unknown}{where}; allowed keys are {sorted(names)}"
        )
    kwargs = {}
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        if f.name in data:
            kwargs[f.name] = _check_type(key, data[f.name], hints[f.name])
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ValueError(f"missing required config key {key!r}")
    return cls(**kwargs)


def parse_config(data: dict[str, Any]) -> ExperimentConfig:
    """Build and validate a config from a parsed TOML document."""
    cfg = _build(ExperimentConfig, data)
    cfg.validate()
    return cfg


def load_config(path: str | Path) -> ExperimentConfig:
    """Load and validate a TOML experiment config.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: On a TOML syntax error or an invalid key or value (the message names it).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no config file at {str(p)!r}")
    try:
        data = tomllib.loads(p.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ValueError(f"{str(p)!r} is not UTF-8 text (TOML must be UTF-8): {err}") from err
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{str(p)!r} is not valid TOML: {err}") from err
    return parse_config(data)
