"""The shared meta-training loop.

``MetaLearner.train`` owns the loop — sample training tasks → collect pre-adaptation episodes →
algorithm step (inner adaptation + outer update) → update the observation normalizer → log →
checkpoint — and each algorithm writes only ``outer_step`` (SB3's ``train()`` idea).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

from metarobot.envs import Task, task_split
from metarobot.envs.batched import ENGINES
from metarobot.io import atomic_torch_save
from metarobot.policies import Params, Policy, RunningNorm, make_policy, resolve_device
from metarobot.rollout import EpisodeBatch, collect, compute_advantages, episode_env
from metarobot.validation import check_int

__all__ = ["MetaConfig", "MetaLearner", "make_policy"]  # make_policy: from metarobot.policies


@dataclass
class MetaConfig:
    """Hyper-parameters shared by every meta-learner.

    Attributes:
        meta_batch: Tasks per iteration.
        episodes: K, adaptation episodes per task (inner loop data).
        post_episodes: Episodes per task after adaptation (outer loss data).
        inner_steps: S, adaptation gradient steps.
        inner_lr: Initial adaptation step size α.
        outer_lr: Outer learning rate (Adam for the MAML family; ε for Reptile).
        outer_epochs: Passes of the clipped outer surrogate over each batch.
        clip: Clip range of the surrogate (inner and outer).
        gamma: Discount.
        lam: GAE λ.
        hidden: Hidden layer sizes.
        init_log_std: Initial log std of the policy.
        n_train_tasks: Size of the frozen training split to sample from.
        seed: Seed of everything (weights, task sampling, episodes).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        nthread: Simulator threads (default: all cores).
        engine: Simulator: ``"batch"`` (mujoco.batch on CPU threads) or ``"warp"`` (MuJoCo
            Warp on ``device``: episodes are collected there, with no host round trip per step).
    """

    meta_batch: int = 20
    episodes: int = 2
    post_episodes: int = 2
    inner_steps: int = 1
    inner_lr: float = 0.1
    outer_lr: float = 1e-3
    outer_epochs: int = 5
    clip: float = 0.2
    gamma: float = 0.99
    lam: float = 0.95
    hidden: tuple[int, ...] = (64, 64)
    init_log_std: float = 0.0
    n_train_tasks: int = 40
    seed: int = 0
    device: str = "auto"
    nthread: int | None = None
    engine: str = "batch"

    def validate(self) -> None:
        """Raise a ValueError naming the first bad field and its allowed range."""
        for name in (
            "meta_batch",
            "episodes",
            "post_episodes",
            "inner_steps",
            "outer_epochs",
            "n_train_tasks",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        for name in ("inner_lr", "outer_lr"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number in (0, inf), got {v!r}")
        check_int("seed", self.seed, minimum=0)
        if self.nthread is not None and (
            isinstance(self.nthread, bool) or not isinstance(self.nthread, int) or self.nthread < 0
        ):
            raise ValueError(f"nthread must be None or an integer >= 0, got {self.nthread!r}")
        if not (isinstance(self.init_log_std, (int, float)) and math.isfinite(self.init_log_std)):
            raise ValueError(f"init_log_std must be a finite number, got {self.init_log_std!r}")
        if not self.hidden or any(
            isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in self.hidden
        ):
            raise ValueError(
                f"hidden must be a non-empty list of integers >= 1, got {self.hidden!r}"
            )
        if not (0 < self.clip < 1):
            raise ValueError(f"clip must be in (0, 1), got {self.clip!r}")
        if not (0 < self.gamma <= 1):
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma!r}")
        if not (0 <= self.lam <= 1):
            raise ValueError(f"lam must be in [0, 1], got {self.lam!r}")
        resolve_device(self.device)
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {list(ENGINES)}, got {self.engine!r}")


class MetaLearner:
    """Base of every meta-learner: owns the loop; subclasses implement :meth:`outer_step`.

    Args:
        env_id: The family to meta-train on (its frozen training split).
        policy: Initial policy; default: a fresh one sized for the family.
        **config: Fields of :class:`MetaConfig`.

    Raises:
        ValueError: On an unknown or invalid config field.
    """

    name: ClassVar[str] = "meta"

    def __init__(self, env_id: str, policy: Policy | None = None, **config: Any) -> None:
        fields = {f.name for f in dataclasses.fields(MetaConfig)}
        unknown = set(config) - fields
        if unknown:
            raise ValueError(f"unknown config key(s) {sorted(unknown)}; allowed: {sorted(fields)}")
        if "hidden" in config:
            config["hidden"] = tuple(config["hidden"])
        self.config = MetaConfig(**config)
        self.config.validate()
        cfg = self.config
        self.env_id = env_id
        self.device = resolve_device(cfg.device)
        self.train_tasks: list[Task] = task_split(env_id, n_train=cfg.n_train_tasks)[0]
        if policy is None:
            policy = make_policy(
                env_id,
                hidden=cfg.hidden,
                init_log_std=cfg.init_log_std,
                inner_lr=cfg.inner_lr,
                seed=cfg.seed,
            )
        self.policy = policy.clone().to(self.device)
        self.policy.meta.update(
            algorithm=self.name,
            config=self._config_dict(),
            inner_steps=cfg.inner_steps,
            family=env_id,
        )
        self.rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0x3E7A]))
        self.iteration = 0
        self.env_steps = 0
        self.history: list[dict[str, float]] = []
        self._envs: dict[int, Any] = {}
        self.setup()

    # ------------------------------------------------------------------ hooks
    def setup(self) -> None:
        """Create optimizers etc. (after the policy exists)."""

    def outer_step(
        self, tasks: list[Task], pre: EpisodeBatch, seeds: list[int]
    ) -> dict[str, float]:
        """Adapt to each task from ``pre`` and update the meta-parameters.

        Returns:
            Metrics to log (e.g. ``post_return``).
        """
        raise NotImplementedError

    def iteration_steps(self) -> int:
        """The most environment steps one iteration can use (every episode at the horizon)."""
        cfg = self.config
        horizon = int(gym.spec(self.env_id).max_episode_steps or 1000)
        return cfg.meta_batch * (cfg.episodes + cfg.post_episodes) * horizon

    # ------------------------------------------------------------------ helpers
    def _config_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self.config)
        d["hidden"] = list(d["hidden"])
        return d

    def env_for(self, episodes: int) -> Any:
        """A cached batched env with ``meta_batch × episodes`` worlds."""
        n = self.config.meta_batch * episodes
        if n not in self._envs:
            tasks = [self.train_tasks[i % len(self.train_tasks)] for i in range(n)]
            self._envs[n] = episode_env(
                self.env_id,
                tasks,
                1,
                nthread=self.config.nthread,
                engine=self.config.engine,
                device=self.device,
            )
        return self._envs[n]

    def collect(
        self, tasks: list[Task], params: Params, seeds: list[int], episodes: int, stacked: bool
    ) -> EpisodeBatch:
        """Collect ``episodes`` per task and compute advantages."""
        env = self.env_for(episodes)
        batch = collect(
            self.policy,
            env,
            params,
            n_tasks=len(tasks),
            episodes=episodes,
            seeds=seeds,
            stacked=stacked,
            tasks=tasks,
        )
        self.env_steps += int(batch.mask.sum())
        return compute_advantages(batch, self.config.gamma, self.config.lam)

    def stack(self, params: Params, n: int) -> Params:
        """``n`` copies of ``params`` along a new leading dimension."""
        return {k: v.detach().unsqueeze(0).expand(n, *v.shape).clone() for k, v in params.items()}

    # ------------------------------------------------------------------ loop
    def step(self) -> dict[str, float]:
        """One meta-iteration."""
        cfg = self.config
        t0 = time.perf_counter()
        idx = self.rng.choice(
            len(self.train_tasks),
            size=cfg.meta_batch,
            replace=cfg.meta_batch > len(self.train_tasks),
        )
        tasks = [self.train_tasks[int(i)] for i in idx]
        seeds = [int(s) for s in self.rng.integers(0, 2**31 - 1, size=cfg.meta_batch)]
        pre = self.collect(tasks, self.policy.params, seeds, cfg.episodes, stacked=False)
        metrics = self.outer_step(tasks, pre, seeds)
        self.policy.normalizer.update(pre.raw_obs.reshape(-1, self.policy.obs_dim).cpu().numpy())
        self.iteration += 1
        row = {
            "iteration": float(self.iteration),
            "pre_return": float(pre.returns.mean()),
            "diverged": float(pre.diverged),
            **metrics,
            "env_steps": float(self.env_steps),
            "seconds": time.perf_counter() - t0,
        }
        self.history.append(row)
        return row

    def train(
        self,
        iterations: int,
        *,
        log_path: str | Path | None = None,
        tensorboard_dir: str | Path | None = None,
        checkpoint_path: str | Path | None = None,
        checkpoint_every: int = 10,
        progress: bool = True,
        callback: Callable[[MetaLearner, dict[str, float]], None] | None = None,
        state_path: str | Path | None = None,
        max_env_steps: int | None = None,
    ) -> Policy:
        """Meta-train until ``iterations`` meta-iterations are done in total.

        With ``max_env_steps``, training also stops before an iteration could take the total
        environment steps past it (an iteration uses at most :meth:`iteration_steps`), so a
        budget is used as fully as possible and never exceeded.

        With ``state_path``, the full training state (parameters, step sizes, normalizer,
        optimizer, RNG state, history) is written atomically every ``checkpoint_every``
        iterations, the previous one kept as ``<state_path>.prev``; if the file exists when
        ``train`` starts, training resumes from it and ends with exactly the result of an
        uninterrupted run (CPU, same seed). A truncated or corrupt state file is reported (the
        warning names it) and the previous good one is used.

        Args:
            iterations: Total number of iterations (>= 1).
            log_path: CSV file that receives one row per iteration.
            tensorboard_dir: Folder for TensorBoard event files (needs ``tensorboard``).
            checkpoint_path: Where the meta-policy is saved every ``checkpoint_every`` iterations
                and at the end.
            checkpoint_every: Checkpoint period in iterations.
            progress: Show a progress bar.
            callback: Called after every iteration with the learner and its metrics.
            state_path: Resumable training state (see above).
            max_env_steps: Environment-step budget (see above).

        Returns:
            The meta-trained policy (a copy).
        """
        check_int("iterations", iterations)
        check_int("checkpoint_every", checkpoint_every)
        if state_path is not None:
            self.resume(state_path)
        tb = self._tensorboard(tensorboard_dir)
        bar = tqdm(
            total=iterations,
            initial=min(self.iteration, iterations),
            desc=f"{self.name} {self.env_id}",
            disable=not progress,
        )
        try:
            while self.iteration < iterations and (
                max_env_steps is None or self.env_steps + self.iteration_steps() <= max_env_steps
            ):
                row = self.step()
                self._report_iteration(row, bar, log_path, tb)
                if callback is not None:
                    callback(self, row)
                if self.iteration % checkpoint_every == 0:
                    self._checkpoint(checkpoint_path, state_path)
            if state_path is not None and self.iteration % checkpoint_every != 0:
                self.save_state(state_path)
        finally:
            bar.close()
            if tb is not None:
                tb.close()
        self.policy.meta["iterations"] = self.iteration
        self.policy.meta["env_steps"] = self.env_steps
        if checkpoint_path is not None:
            self.policy.save(checkpoint_path)
        return self.policy.clone()

    # ------------------------------------------------------------------ logging helpers
    @staticmethod
    def _tensorboard(folder: str | Path | None) -> Any:
        if folder is None:
            return None
        from torch.utils.tensorboard import SummaryWriter  # optional and slow to import

        return SummaryWriter(log_dir=str(folder))

    def _report_iteration(
        self, row: dict[str, float], bar: Any, log_path: str | Path | None, tb: Any
    ) -> None:
        """Progress bar, CSV log and TensorBoard scalars of one iteration."""
        bar.update(1)
        bar.set_postfix(
            pre=f"{row['pre_return']:.1f}", post=f"{row.get('post_return', float('nan')):.1f}"
        )
        if log_path is not None:
            self._write_log(log_path)
        if tb is not None:
            for key, val in row.items():
                if key != "iteration":
                    tb.add_scalar(f"{self.name}/{key}", val, self.iteration)

    def _checkpoint(
        self, checkpoint_path: str | Path | None, state_path: str | Path | None
    ) -> None:
        if checkpoint_path is not None:
            self.policy.save(str(checkpoint_path))
        if state_path is not None:
            self.save_state(state_path)

    def _write_log(self, path: str | Path) -> None:
        """Rewrite the CSV log from the history (so a resumed run's log is whole)."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fields = list(dict.fromkeys(k for row in self.history for k in row))
        tmp = Path(path).with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fields)
            w.writeheader()
            w.writerows(self.history)
        os.replace(tmp, path)

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training exactly where it stands."""
        opt = getattr(self, "optimizer", None)
        return {
            "format": "metarobot-train-state",
            "algorithm": self.name,
            "env_id": self.env_id,
            "config": self._config_dict(),
            "iteration": self.iteration,
            "history": self.history,
            "params": {k: v.detach().cpu().clone() for k, v in self.policy.params.items()},
            "inner_lr": {k: v.detach().cpu().clone() for k, v in self.policy.inner_lr.items()},
            "normalizer": self.policy.normalizer.state_dict(),
            "optimizer": opt.state_dict() if opt is not None else None,
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (in place, keeping optimizer references valid).

        Raises:
            ValueError: If the state belongs to another algorithm, family or config.
        """
        if state.get("format") != "metarobot-train-state":
            raise ValueError("not a metarobot training state")
        for key, mine in (
            ("algorithm", self.name),
            ("env_id", self.env_id),
            ("config", self._config_dict()),
        ):
            if state[key] != mine:
                raise ValueError(f"training state has {key}={state[key]!r}, this run has {mine!r}")
        with torch.no_grad():
            for name in ("params", "inner_lr"):
                target = getattr(self.policy, name)
                for k, v in state[name].items():
                    target[k].copy_(v.to(target[k].device))
        self.policy.normalizer = RunningNorm.from_state_dict(state["normalizer"])
        opt = getattr(self, "optimizer", None)
        if opt is not None and state["optimizer"] is not None:
            opt.load_state_dict(state["optimizer"])
        self.rng.bit_generator.state = state["rng"]
        self.iteration = int(state["iteration"])
        self.history = [dict(r) for r in state["history"]]
        self.env_steps = int(self.history[-1].get("env_steps", 0)) if self.history else 0

    def save_state(self, path: str | Path) -> None:
        """Atomically write the training state, keeping the previous one as ``.prev``."""
        p = Path(path)
        if p.exists():
            os.replace(p, p.with_name(p.name + ".prev"))
        atomic_torch_save(self.state_dict(), p)

    def resume(self, path: str | Path) -> bool:
        """Load the training state at ``path`` (or its ``.prev`` if it is damaged).

        Returns:
            Whether a state was loaded (False when neither file exists).

        Raises:
            ValueError: If every existing state file is damaged or belongs to another run.
        """
        p = Path(path)
        candidates = [c for c in (p, p.with_name(p.name + ".prev")) if c.exists()]
        errors = []
        for c in candidates:
            try:
                state = torch.load(c, map_location="cpu", weights_only=False)
            except Exception as err:  # a damaged file may raise anything while unpickling
                errors.append(f"{c}: {err}")
                warnings.warn(
                    f"training state {str(c)!r} is unreadable ({err}); trying the previous one",
                    stacklevel=2,
                )
                continue
            if not isinstance(state, dict) or state.get("format") != "metarobot-train-state":
                errors.append(f"{c}: not a metarobot training state")
                warnings.warn(
                    f"{str(c)!r} is not a metarobot training state; trying the previous one",
                    stacklevel=2,
                )
                continue
            self.load_state_dict(state)  # a state of another run is an error, not damage
            return True
        if errors:
            raise ValueError("no usable training state: " + "; ".join(errors))
        return False

    def close(self) -> None:
        """Release the simulators."""
        for env in self._envs.values():
            env.close()
        self._envs.clear()
