"""Reptile for policies: move the initialization toward each task's adapted parameters.

Per iteration and task: S on-policy adaptation steps, each on fresh episodes collected with the
current adapted parameters (clipped surrogate, step size α); then the outer step
θ ← θ + ε · mean_i(θ'_i − θ) (Nichol et al., 2018). No second derivatives.
"""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import torch
from torch.func import vmap

from metarobot.adaptation import inner_update
from metarobot.envs import Task
from metarobot.learners.base import MetaLearner
from metarobot.policies import Params
from metarobot.rollout import EpisodeBatch

__all__ = ["REPTILE_DEFAULTS", "Reptile", "reptile_update"]

#: Reptile's own defaults where they differ from :class:`MetaConfig`'s (ε is ``outer_lr``).
REPTILE_DEFAULTS = {"inner_steps": 3, "outer_lr": 0.5}


def reptile_update(theta: Params, adapted: Params, epsilon: float) -> Params:
    """θ + ε · mean_i(θ'_i − θ), with ``adapted`` stacked over tasks."""
    return {k: theta[k] + epsilon * (adapted[k] - theta[k].unsqueeze(0)).mean(0) for k in theta}


class Reptile(MetaLearner):
    """Reptile meta-learner (``outer_lr`` is the interpolation rate ε).

    Args:
        env_id: Family to meta-train on.
        policy (Policy | None): Initial policy (optional).
        **config (Any): :class:`metarobot.learners.base.MetaConfig` fields (``inner_steps`` defaults
            to 3 here).
    """

    name: ClassVar[str] = "reptile"

    def __init__(self, env_id: str, policy=None, **config) -> None:  # noqa: ANN001, ANN003
        for key, value in REPTILE_DEFAULTS.items():
            config.setdefault(key, value)
        super().__init__(env_id, policy, **config)

    def iteration_steps(self) -> int:  # noqa: D102
        cfg = self.config
        horizon = int(gym.spec(self.env_id).max_episode_steps or 1000)
        return cfg.meta_batch * cfg.episodes * cfg.inner_steps * horizon

    def outer_step(  # noqa: D102
        self, tasks: list[Task], pre: EpisodeBatch, seeds: list[int]
    ) -> dict[str, float]:
        cfg = self.config
        pol = self.policy
        theta = {k: v.detach() for k, v in pol.params.items()}
        alpha = {k: v.detach() for k, v in pol.inner_lr.items()}
        step = vmap(lambda p, d: inner_update(pol, p, alpha, d, cfg.clip))
        params = self.stack(theta, len(tasks))
        batch = pre
        returns = []
        with torch.no_grad():
            for s in range(cfg.inner_steps):
                if s > 0:
                    batch = self.collect(
                        tasks, params, [x + s for x in seeds], cfg.episodes, stacked=True
                    )
                returns.append(float(batch.returns.mean()))
                params = step(params, batch.loss_inputs())
            new = reptile_update(theta, params, cfg.outer_lr)
        pol.params = {k: v.clone() for k, v in new.items()}
        return {"post_return": returns[-1], "inner_returns": float(sum(returns) / len(returns))}
