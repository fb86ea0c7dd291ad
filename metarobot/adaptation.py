"""The per-environment fine-tuning loop: ``adapt`` and its vectorized form ``adapt_many``.

``adapt(policy, env, episodes=K, steps=S)`` collects K episodes on the environment with the
policy, then takes S gradient steps ``θ ← θ − α ⊙ ∇L(θ)`` on the clipped surrogate of those
episodes (at the first step the clip is inactive and the gradient is the plain advantage-weighted
log-likelihood gradient; later steps re-use the same episodes, and clipping keeps them close to the
data). ``α`` is the policy's (possibly meta-learned, per-parameter) step size unless ``lr`` is
given. The observation normalizer is frozen. The input policy is never modified.

``adapt_many`` does the same for N environments at once: one batched simulator with N·K worlds,
and the N parameter sets stacked and updated by one ``torch.func.vmap``-ed gradient. It returns
exactly what N sequential ``adapt`` calls return (task i uses seed ``seed + i``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch.func import grad, vmap

from metarobot.checkpoint import check_compatible
from metarobot.envs import BatchedMujocoEnv, Task, find_randomized, make_batched
from metarobot.policies import Params, Policy, gaussian_log_prob, resolve_device
from metarobot.rollout import EpisodeBatch, collect, compute_advantages

__all__ = ["adapt", "adapt_many", "inner_update", "surrogate_loss"]


def surrogate_loss(
    policy: Policy,
    params: Mapping[str, torch.Tensor],
    data: Mapping[str, torch.Tensor],
    clip: float = 0.2,
) -> torch.Tensor:
    """PPO's clipped surrogate (to minimize) for one task's episodes (vmap-able).

    Args:
        policy: Supplies the network shape.
        params: One parameter set.
        data: ``obs``, ``actions``, ``logp`` (sampling log-probs), ``adv`` and ``mask`` of one
            task, each ``[K, T, ...]``.
        clip: Clip range ε of the probability ratio.

    Returns:
        ``−mean(min(r·A, clip(r, 1−ε, 1+ε)·A))`` over valid steps.
    """
    mean, log_std = policy.distribution(params, data["obs"])
    logp = gaussian_log_prob(mean, log_std, data["actions"])
    ratio = torch.exp(logp - data["logp"])
    adv = data["adv"]
    obj = torch.minimum(ratio * adv, torch.clamp(ratio, 1.0 - clip, 1.0 + clip) * adv)
    mask = data["mask"]
    return -(obj * mask).sum() / mask.sum().clamp_min(1.0)


def inner_update(
    policy: Policy,
    params: Mapping[str, torch.Tensor],
    lr: Mapping[str, torch.Tensor],
    data: Mapping[str, torch.Tensor],
    clip: float = 0.2,
) -> Params:
    """One adaptation step ``θ − α ⊙ ∇L(θ)`` (differentiable; vmap-able)."""
    g = grad(lambda p: surrogate_loss(policy, p, data, clip))(dict(params))
    return {k: params[k] - lr[k] * g[k] for k in params}


def _check_positive_int(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    return int(v)


def _step_sizes(policy: Policy, lr: float | None, device: torch.device) -> Params:
    if lr is None:
        return {k: v.to(device) for k, v in policy.inner_lr.items()}
    val = float(lr)
    if not (math.isfinite(val) and val > 0):
        raise ValueError(f"lr must be a finite number in (0, inf) or None, got {lr!r}")
    return {k: torch.full_like(v, val, device=device) for k, v in policy.params.items()}


def _default_steps(policy: Policy, steps: int | None) -> int:
    if steps is None:
        steps = int(policy.meta.get("inner_steps", 1))
    return _check_positive_int("steps", steps)


def adapt_many(
    policy: Policy,
    env_id: str,
    tasks: Sequence[Task],
    *,
    episodes: int = 1,
    steps: int | None = None,
    lr: float | None = None,
    device: str | torch.device = "auto",
    seed: int | None = None,
    clip: float = 0.2,
    gamma: float = 0.99,
    lam: float = 0.95,
    nthread: int | None = None,
    return_batch: bool = False,
) -> list[Policy] | tuple[list[Policy], EpisodeBatch]:
    """Adapt one policy to N environments at once (vmapped over parameter sets).

    Args:
        policy: The policy to adapt (not modified).
        env_id: A family id.
        tasks: The N environments' tasks.
        episodes: K ≥ 1 episodes collected per environment.
        steps: S ≥ 1 gradient steps (default: the policy's training inner steps, else 1).
        lr: Step size for every parameter; ``None`` uses the policy's (meta-learned) ones.
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``.
        seed: Task i uses seed ``seed + i`` (``None``: fresh entropy).
        clip: Surrogate clip range.
        gamma: Discount.
        lam: GAE λ.
        nthread: Simulator threads (default: all cores).
        return_batch: Also return the adaptation episodes.

    Returns:
        N adapted policies (and the episodes when ``return_batch``).

    Raises:
        ValueError: On bad counts, step sizes, device, or a policy that does not fit the env.
    """
    if not isinstance(policy, Policy):
        raise ValueError(f"policy must be a metarobot Policy, got {type(policy)!r}")
    k = _check_positive_int("episodes", episodes)
    s = _default_steps(policy, steps)
    if not (isinstance(clip, (int, float)) and 0 < clip < 1):
        raise ValueError(f"clip must be a number in (0, 1), got {clip!r}")
    for name, v in (("gamma", gamma), ("lam", lam)):
        if not (isinstance(v, (int, float)) and 0 <= v <= 1):
            raise ValueError(f"{name} must be a number in [0, 1], got {v!r}")
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0
    ):
        raise ValueError(f"seed must be None or an integer >= 0, got {seed!r}")
    tasks = list(tasks)
    n = len(tasks)
    if n < 1:
        raise ValueError("tasks must hold at least one task")
    dev = resolve_device(device)
    work = policy.clone().to(dev)
    alpha = _step_sizes(work, lr, dev)
    if seed is None:
        seeds: list[int | None] = [None] * n
    else:
        seeds = [int(seed) + i for i in range(n)]
    env = make_batched(
        env_id, [t for t in tasks for _ in range(k)], autoreset_mode="disabled", nthread=nthread
    )
    try:
        check_compatible(work, env._worlds[0])
        stacked = {
            key: v.unsqueeze(0).expand(n, *v.shape).clone() for key, v in work.params.items()
        }
        batch = collect(work, env, stacked, n_tasks=n, episodes=k, seeds=seeds, stacked=True)
    finally:
        env.close()
    compute_advantages(batch, gamma, lam)
    data = batch.loss_inputs()
    step = vmap(lambda p, d: inner_update(work, p, alpha, d, clip))
    params = stacked
    for _ in range(s):
        params = step(params, data)
    adapted = []
    for i in range(n):
        p = work.with_params({key: v[i] for key, v in params.items()})
        p.meta["adapted"] = {"task": tasks[i].to_json(), "episodes": k, "steps": s}
        adapted.append(p.to(policy.device))
    return (adapted, batch) if return_batch else adapted


def _resolve_env(env: Any, task: Task | None) -> tuple[str, Task]:
    if isinstance(env, str):
        if task is None:
            raise ValueError("task is required when env is a family id")
        return env, task
    if isinstance(env, BatchedMujocoEnv):
        tasks = env.get_tasks()
        if any(t != tasks[0] for t in tasks):
            raise ValueError("a batched env given to adapt must run one task in every world")
        return env.env_id, task or tasks[0]
    if isinstance(env, gym.Env):
        rd = find_randomized(env)
        return rd.family, task or rd.get_task()
    raise ValueError(
        "env must be a metarobot family env (gym.make('metarobot/...')), a family id with a "
        f"task, or a batched env; got {type(env)!r}"
    )


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
    """Fine-tune ``policy`` to one environment with a few episodes of experience.

    Args:
        policy: A metarobot :class:`Policy`, or an SB3 PPO/A2C model (then an adapted model of
            the same type is returned). Not modified.
        env: The environment: a family env from ``gym.make`` (its current task is used), a
            family id together with ``task``, or a batched env whose worlds share one task.
        episodes: K ≥ 1 episodes of experience.
        steps: S ≥ 1 gradient steps (default: as in meta-training).
        lr: Step size; ``None`` uses the policy's (meta-learned) step sizes.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        seed: Seed of the episodes (same seed → same adapted policy on CPU).
        task: The task, when ``env`` is a family id.
        **kwargs: Passed to :func:`adapt_many` (``clip``, ``gamma``, ``lam``, ``nthread``).

    Returns:
        A new, standalone adapted policy.

    Raises:
        ValueError: On bad arguments or a policy that does not fit the environment.
    """
    if not isinstance(policy, Policy):
        from stable_baselines3.common.base_class import BaseAlgorithm

        if isinstance(policy, BaseAlgorithm):
            from metarobot.sb3 import adapt_sb3

            return adapt_sb3(
                policy,
                env,
                episodes=episodes,
                steps=steps,
                lr=lr,
                device=device,
                seed=seed,
                task=task,
                **kwargs,
            )
        raise ValueError(
            f"policy must be a metarobot Policy or an SB3 PPO/A2C model, got {type(policy)!r}"
        )
    env_id, the_task = _resolve_env(env, task)
    return adapt_many(
        policy,
        env_id,
        [the_task],
        episodes=episodes,
        steps=steps,
        lr=lr,
        device=device,
        seed=seed,
        **kwargs,
    )[0]
