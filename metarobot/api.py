"""The package's top-level ``adapt``: metarobot policies and SB3 models alike.

:func:`metarobot.adaptation.adapt` adapts metarobot policies; an SB3 PPO/A2C model goes through
:func:`metarobot.sb3.adapt_sb3` (its actor is adapted the same way, and a model of the same type
comes back). This module is the one place that knows both, so neither imports the other.
"""

from __future__ import annotations

from typing import Any

import torch
from stable_baselines3.common.base_class import BaseAlgorithm

from metarobot.adaptation import adapt as adapt_policy
from metarobot.envs import Task
from metarobot.sb3 import adapt_sb3

__all__ = ["adapt"]


def adapt(
    policy: Any,
    env: Any,
    episodes: int = 1,
    steps: int | None = None,
    lr: float | None = None,
    device: str | torch.device = "auto",
    seed: int | None = None,
    *,
    task: Task | None = None,
    **kwargs: Any,
) -> Any:
    """Adapt a policy to one environment with K episodes of experience.

    Args:
        policy: A metarobot policy (MLP, ensemble, RMA, recurrent) or an SB3 PPO/A2C model (then
            an adapted model of the same type is returned). Not modified.
        env: A family env from ``gym.make`` (its current task is used), a family id together
            with ``task``, or a batched env whose worlds share one task.
        episodes: K ≥ 1 episodes of experience.
        steps: Gradient steps for MLP policies (default: as in meta-training).
        lr: Step size for MLP policies; ``None`` uses the policy's (meta-learned) ones.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        seed: Seed of the episodes (same seed → same adapted policy on CPU).
        task: The task, when ``env`` is a family id.
        **kwargs: ``safe`` (default True: keep the adaptation only if its gain on fresh
            validation episodes clears zero by ``margin`` standard errors),
            ``validation_episodes``, ``margin``, ``rounds`` (R rounds of K episodes then an
            update, MLP policies and SB3 models), ``clip``, ``gamma``, ``lam``, ``nthread`` (see
            :func:`metarobot.adapt_many`).

    Returns:
        The adapted policy.

    Raises:
        ValueError: On bad arguments or a policy that does not fit the environment.
    """
    call = {"episodes": episodes, "steps": steps, "lr": lr, "device": device, "seed": seed}
    if isinstance(policy, BaseAlgorithm):
        return adapt_sb3(policy, env, task=task, **call, **kwargs)
    return adapt_policy(policy, env, task=task, **call, **kwargs)
