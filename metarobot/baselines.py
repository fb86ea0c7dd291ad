"""Averaged and reference baselines, each a metarobot policy fine-tunable with ``adapt``.

- **Experts**: one stable-baselines3 PPO policy per training task, all from one shared
  initialization (so their weights can be averaged), trained on the batched simulator.
- **Expert ensemble** (model averaging): the action is the mean of the experts' actions,
  ŷ = 1/M Σ yᵢ (:class:`~metarobot.policies.EnsembleMLP`).
- **Parameter average**: one policy whose weights are the mean of the experts' weights.
- **Domain randomization**: one PPO policy trained on the whole training distribution (a new
  task at every reset).
- **Oracle**: a PPO expert trained on each test task (the reference ceiling).
- **Scratch**: a freshly initialized policy, given the same adaptation budget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from stable_baselines3 import PPO

from metarobot.envs import Task, task_split
from metarobot.policies import EnsembleMLP, Policy, RunningNorm, make_policy
from metarobot.sb3 import from_sb3, make_sb3_vec_env
from metarobot.validation import check_int

__all__ = [
    "PPO_DEFAULTS",
    "ensemble",
    "parameter_average",
    "ppo_model",
    "scratch",
    "shared_init",
    "train_domain_randomization",
    "train_expert",
    "train_experts",
]

#: PPO settings for the small MLP baselines (SB3 defaults except a shorter rollout per update,
#: which suits 200-step episodes on 8 parallel worlds).
PPO_DEFAULTS: dict[str, Any] = {
    "n_steps": 256,
    "batch_size": 256,
    "n_epochs": 10,
    "learning_rate": 3e-4,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "clip_range": 0.2,
    "ent_coef": 0.0,
}


def ppo_model(
    venv: Any,
    seed: int,
    hidden: Sequence[int] = (64, 64),
    policy_kwargs_extra: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> PPO:
    """An SB3 PPO model with a tanh MLP actor/critic of ``hidden`` sizes on the CPU.

    Args:
        venv: The SB3 VecEnv.
        seed: PPO seed.
        hidden: Hidden sizes of actor and critic.
        policy_kwargs_extra: More ``policy_kwargs`` (e.g. a features extractor).
        **kwargs: Override :data:`PPO_DEFAULTS`.
    """
    params = {**PPO_DEFAULTS, **kwargs}
    return PPO(
        "MlpPolicy",
        venv,
        seed=seed,
        device="cpu",
        verbose=0,
        policy_kwargs={
            "net_arch": {"pi": list(hidden), "vf": list(hidden)},
            "activation_fn": torch.nn.Tanh,
            **(policy_kwargs_extra or {}),
        },
        **params,
    )


def _meta(env_id: str, method: str, **extra: Any) -> dict[str, Any]:
    base = make_policy(env_id).meta
    return {**base, "family": env_id, "algorithm": method, **extra}


def train_expert(
    env_id: str,
    task: Task,
    timesteps: int,
    *,
    seed: int = 0,
    init_state: Mapping[str, torch.Tensor] | None = None,
    n_envs: int = 8,
    nthread: int | None = None,
    method: str = "expert",
    hidden: Sequence[int] = (64, 64),
    **ppo_kwargs: Any,
) -> Policy:
    """Train one PPO expert on one task (``n_envs`` worlds of that task).

    Args:
        env_id: Family id.
        task: The task.
        timesteps: PPO environment steps (>= 1).
        seed: PPO seed.
        init_state: SB3 policy ``state_dict`` to start from (a shared initialization).
        n_envs: Parallel worlds.
        nthread: Simulator threads.
        method: Recorded in the policy's metadata.
        hidden: Hidden layer sizes of actor and critic.
        **ppo_kwargs: Override :data:`PPO_DEFAULTS`.

    Returns:
        The expert as a metarobot policy.
    """
    check_int("timesteps", timesteps)
    venv = make_sb3_vec_env(env_id, [task] * n_envs, nthread=nthread)
    try:
        model = ppo_model(venv, seed, hidden, **ppo_kwargs)
        if init_state is not None:
            model.policy.load_state_dict(dict(init_state))
        model.learn(timesteps)
    finally:
        venv.close()
    meta = _meta(
        env_id, method, task=task.to_json(), timesteps=timesteps, env_steps=int(model.num_timesteps)
    )
    return from_sb3(model, meta)


def shared_init(
    env_id: str, seed: int, hidden: Sequence[int] = (64, 64)
) -> dict[str, torch.Tensor]:
    """The initial SB3 PPO weights every expert of one training seed starts from.

    Experts share one initialization so that their weights can be averaged.
    """
    venv = make_sb3_vec_env(env_id, task_split(env_id)[0][:1], nthread=0)
    try:
        model = ppo_model(venv, seed, hidden=tuple(hidden))
        return {k: v.clone() for k, v in model.policy.state_dict().items()}
    finally:
        venv.close()


def train_experts(
    env_id: str,
    tasks: Sequence[Task],
    timesteps: int,
    *,
    seed: int = 0,
    progress: bool = False,
    hidden: Sequence[int] = (64, 64),
    **kwargs: Any,
) -> list[Policy]:
    """One expert per task, all starting from the same initialization (seeded by ``seed``)."""
    venv = make_sb3_vec_env(env_id, [tasks[0]], nthread=0)
    init = {k: v.clone() for k, v in ppo_model(venv, seed, hidden).policy.state_dict().items()}
    venv.close()
    experts = []
    for i, task in enumerate(tasks):
        experts.append(
            train_expert(
                env_id, task, timesteps, seed=seed + i, init_state=init, hidden=hidden, **kwargs
            )
        )
        if progress:
            print(f"  expert {i + 1}/{len(tasks)} trained", flush=True)
    return experts


def train_domain_randomization(
    env_id: str,
    timesteps: int,
    *,
    seed: int = 0,
    n_envs: int = 8,
    nthread: int | None = None,
    tasks: Sequence[Task] | None = None,
    hidden: Sequence[int] = (64, 64),
    **ppo_kwargs: Any,
) -> Policy:
    """PPO on the whole training distribution: every world draws a new task at each reset."""
    start = list(tasks) if tasks is not None else task_split(env_id)[0]
    worlds = [start[i % len(start)] for i in range(n_envs)]
    venv = make_sb3_vec_env(env_id, worlds, nthread=nthread, resample_on_reset=True)
    try:
        venv.seed(seed)
        model = ppo_model(venv, seed, hidden, **ppo_kwargs)
        model.learn(timesteps)
    finally:
        venv.close()
    meta = _meta(
        env_id, "domain_randomization", timesteps=timesteps, env_steps=int(model.num_timesteps)
    )
    return from_sb3(model, meta)


def ensemble(experts: Sequence[Policy]) -> Policy:
    """The expert ensemble: action mean = mean of the experts' action means.

    Raises:
        ValueError: If there are no experts or their shapes differ.
    """
    if not experts:
        raise ValueError("ensemble needs at least one expert")
    first = experts[0]
    _check_same_shape(experts, "ensemble")
    net = EnsembleMLP(first.obs_dim, first.act_dim, tuple(first.net.hidden), len(experts))
    params: dict[str, torch.Tensor] = {}
    for i, e in enumerate(experts):
        for k, v in e.params.items():
            if k != "log_std":
                params[f"members.{i}.{k}"] = v.detach().clone()
            else:
                params[f"members.{i}.log_std"] = v.detach().clone()
    params["log_std"] = torch.stack([e.params["log_std"] for e in experts]).mean(0)
    meta = {**first.meta, "algorithm": "ensemble", "members": len(experts)}
    meta["env_steps"] = sum(int(e.meta.get("env_steps", 0)) for e in experts)
    meta.pop("task", None)
    return Policy(net, params, _shared_norm(experts), first.inner_lr["log_std"].mean().item(), meta)


def parameter_average(experts: Sequence[Policy]) -> Policy:
    """One policy whose every weight is the mean of the experts' weights.

    Raises:
        ValueError: If there are no experts or their shapes differ.
    """
    if not experts:
        raise ValueError("parameter_average needs at least one expert")
    first = experts[0]
    _check_same_shape(experts, "parameter_average")
    params = {k: torch.stack([e.params[k] for e in experts]).mean(0) for k in first.params}
    meta = {**first.meta, "algorithm": "param_average", "members": len(experts)}
    meta["env_steps"] = sum(int(e.meta.get("env_steps", 0)) for e in experts)
    meta.pop("task", None)
    return Policy(
        first.net, params, _shared_norm(experts), first.inner_lr["log_std"].mean().item(), meta
    )


def _check_same_shape(experts: Sequence[Policy], what: str) -> None:
    first = experts[0]
    shapes = {k: tuple(v.shape) for k, v in first.params.items()}
    for i, e in enumerate(experts[1:], start=1):
        if (e.obs_dim, e.act_dim) != (first.obs_dim, first.act_dim) or {
            k: tuple(v.shape) for k, v in e.params.items()
        } != shapes:
            raise ValueError(
                f"{what}: expert {i} has another network shape or observation/action size than "
                "expert 0; all experts must share one architecture"
            )
        fam_a, fam_b = first.meta.get("family"), e.meta.get("family")
        if fam_a and fam_b and fam_a != fam_b:
            raise ValueError(f"{what}: expert {i} is for {fam_b!r}, expert 0 for {fam_a!r}")


def _shared_norm(experts: Sequence[Policy]) -> RunningNorm:
    norm = experts[0].normalizer
    for e in experts[1:]:
        if not (
            np.array_equal(e.normalizer.mean, norm.mean)
            and np.array_equal(e.normalizer.var, norm.var)
        ):
            raise ValueError("experts must share one observation normalizer to be averaged")
    out = RunningNorm(len(norm.mean), norm.clip)
    out.mean, out.var, out.count = norm.mean.copy(), norm.var.copy(), norm.count
    return out


def scratch(env_id: str, seed: int = 0, **kwargs: Any) -> Policy:
    """A freshly initialized policy (identity normalizer), the no-prior-knowledge baseline."""
    pol = make_policy(env_id, seed=seed, **kwargs)
    pol.meta["algorithm"] = "scratch"
    pol.meta["env_steps"] = 0
    return pol
