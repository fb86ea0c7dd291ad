"""Bridge to stable-baselines3: models in and out, and the batched simulator as an SB3 VecEnv.

- :func:`from_sb3` turns an SB3 PPO/A2C model (MLP actor with tanh activations) into a metarobot
  :class:`~metarobot.policies.Policy` with the same deterministic actions.
- :func:`to_sb3` builds an SB3 model whose actor carries a metarobot policy's weights, with the
  observation normalization folded into the first layer, so a plain ``PPO.load`` (no metarobot
  import) reproduces the policy's deterministic actions (exactly where normalized observations
  stay inside the normalizer's clip range of ±10).
- :class:`SB3VecEnv` exposes :class:`~metarobot.envs.BatchedMujocoEnv` as an SB3 ``VecEnv``
  (terminal observations in ``infos``, ``TimeLimit.truncated`` set on time-outs), so SB3
  algorithms collect experience through ``mujoco.rollout``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices

from metarobot.envs import BatchedMujocoEnv, Task, make_batched
from metarobot.policies import GaussianMLP, Policy, RunningNorm

__all__ = ["SB3VecEnv", "from_sb3", "make_sb3_vec_env", "to_sb3"]

_ALGOS: dict[str, type[BaseAlgorithm]] = {"PPO": PPO, "A2C": A2C}


def _actor_layers(model: BaseAlgorithm) -> tuple[list[torch.nn.Linear], torch.Tensor]:
    policy = model.policy
    if not hasattr(policy, "mlp_extractor") or not hasattr(policy, "log_std"):
        raise ValueError(
            f"unsupported SB3 model {type(model).__name__}: needs an on-policy MLP actor with a "
            "Gaussian action distribution (PPO or A2C with MlpPolicy)"
        )
    if getattr(policy, "squash_output", False):
        raise ValueError("SB3 policies with squashed (tanh) outputs are not supported")
    act_fn = policy.activation_fn
    if act_fn is not torch.nn.Tanh:
        raise ValueError(f"only tanh MLP actors are supported, got activation {act_fn.__name__}")
    linears = [m for m in policy.mlp_extractor.policy_net if isinstance(m, torch.nn.Linear)]
    return [*linears, policy.action_net], policy.log_std


def from_sb3(model: BaseAlgorithm, meta: dict[str, Any] | None = None) -> Policy:
    """A metarobot policy with the actor of an SB3 PPO or A2C model.

    Args:
        model: The SB3 model (its ``VecNormalize`` statistics, if any, are not included).
        meta: Extra metadata (e.g. ``{"family": ...}``).

    Returns:
        A policy whose ``act(obs, deterministic=True)`` equals ``model.predict(obs, True)``
        (before the action-space clipping SB3 applies).

    Raises:
        ValueError: If the model is not an MLP Gaussian actor-critic.
    """
    layers, log_std = _actor_layers(model)
    obs_space, act_space = model.observation_space, model.action_space
    if not isinstance(obs_space, gym.spaces.Box) or not isinstance(act_space, gym.spaces.Box):
        raise ValueError("only Box observation and action spaces are supported")
    hidden = tuple(layer.out_features for layer in layers[:-1])
    net = GaussianMLP(int(obs_space.shape[0]), int(act_space.shape[0]), hidden)
    params = {"log_std": log_std.detach().cpu().clone()}
    for i, layer in enumerate(layers):
        params[f"mean.{2 * i}.weight"] = layer.weight.detach().cpu().clone()
        params[f"mean.{2 * i}.bias"] = layer.bias.detach().cpu().clone()
    norm = RunningNorm(net.obs_dim, clip=math.inf)  # identity: SB3 saw raw observations
    norm.count = 0.0
    info = {
        "observation_shape": list(obs_space.shape),
        "action_low": np.asarray(act_space.low).tolist(),
        "action_high": np.asarray(act_space.high).tolist(),
        "source": f"sb3.{type(model).__name__}",
        "hidden": list(hidden),
        **(meta or {}),
    }
    return Policy(net, params, norm, 0.01, info)


def to_sb3(
    policy: Policy, env: gym.Env | VecEnv, algo: str = "PPO", **algo_kwargs: Any
) -> BaseAlgorithm:
    """An SB3 model whose actor is ``policy`` (normalization folded into the first layer).

    Args:
        policy: The metarobot policy.
        env: Env (or VecEnv) the model will train on; its spaces must match the policy.
        algo: ``"PPO"`` or ``"A2C"``.
        **algo_kwargs: Passed to the algorithm's constructor.

    Returns:
        The SB3 model (its critic is freshly initialized).

    Raises:
        ValueError: On an unsupported algorithm or mismatched spaces.
    """
    if algo not in _ALGOS:
        raise ValueError(f"algo must be one of {sorted(_ALGOS)}, got {algo!r}")
    obs_space, act_space = env.observation_space, env.action_space
    if obs_space.shape != (policy.obs_dim,) or act_space.shape != (policy.act_dim,):
        raise ValueError(
            f"policy has observation/action sizes ({policy.obs_dim}, {policy.act_dim}) but env has "
            f"{obs_space.shape} / {act_space.shape}"
        )
    kwargs = dict(algo_kwargs)
    pk = dict(kwargs.pop("policy_kwargs", {}) or {})
    pk.setdefault("net_arch", {"pi": list(policy.net.hidden), "vf": list(policy.net.hidden)})
    pk.setdefault("activation_fn", torch.nn.Tanh)
    kwargs.setdefault("device", "cpu")
    model = _ALGOS[algo]("MlpPolicy", env, policy_kwargs=pk, **kwargs)
    layers, log_std = _actor_layers(model)
    mean, inv = policy.normalizer.torch(torch.device("cpu"))
    with torch.no_grad():
        for i, layer in enumerate(layers):
            w = policy.params[f"mean.{2 * i}.weight"].detach().cpu()
            b = policy.params[f"mean.{2 * i}.bias"].detach().cpu()
            if i == 0:  # W((x − μ)·s) + b = (W·s) x + (b − (W·s) μ)
                w = w * inv[None, :]
                b = b - w @ mean
            layer.weight.copy_(w)
            layer.bias.copy_(b)
        log_std.copy_(policy.params["log_std"].detach().cpu())
    return model


class SB3VecEnv(VecEnv):
    """The batched simulator as a stable-baselines3 ``VecEnv``.

    Worlds reset themselves in the step that ends them (SB3's convention); the last observation
    of an episode is in ``infos[i]["terminal_observation"]`` and a time-out sets
    ``infos[i]["TimeLimit.truncated"]``.

    Args:
        env: A batched env created with ``autoreset_mode="same_step"``.
    """

    def __init__(self, env: BatchedMujocoEnv) -> None:
        if env.autoreset_mode.name != "SAME_STEP":
            raise ValueError("SB3VecEnv needs a batched env with autoreset_mode='same_step'")
        self.venv = env
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)
        self._actions: np.ndarray | None = None
        self._seeds: list[int | None] = [None] * env.num_envs
        self._options: list[dict[str, Any]] = [{} for _ in range(env.num_envs)]

    def reset(self) -> np.ndarray:  # noqa: D102
        seeds = self._seeds
        obs, _ = self.venv.reset(seed=seeds if any(s is not None for s in seeds) else None)
        self._seeds = [None] * self.num_envs
        return obs.astype(np.float32)

    def seed(self, seed: int | None = None) -> Sequence[int | None]:  # noqa: D102
        if seed is None:
            return [None] * self.num_envs
        self._seeds = [seed + i for i in range(self.num_envs)]
        return list(self._seeds)

    def step_async(self, actions: np.ndarray) -> None:  # noqa: D102
        self._actions = np.asarray(actions).reshape(self.num_envs, -1)

    def step_wait(self) -> Any:  # noqa: D102
        if self._actions is None:
            raise RuntimeError("step_wait called before step_async")
        act = np.clip(self._actions, self.action_space.low, self.action_space.high)
        obs, rew, term, trunc, info = self.venv.step(act)
        self._actions = None
        dones = term | trunc
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if dones.any():
            final = info["final_obs"]
            for i in np.flatnonzero(dones):
                infos[i]["terminal_observation"] = np.asarray(final[i], dtype=np.float32)
                infos[i]["TimeLimit.truncated"] = bool(trunc[i] and not term[i])
                infos[i]["diverged"] = bool(info["diverged"][i])
        return obs.astype(np.float32), rew.astype(np.float32), dones, infos

    def close(self) -> None:  # noqa: D102
        self.venv.close()

    def _indices(self, indices: VecEnvIndices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        if isinstance(indices, int):
            return [indices]
        return list(indices)

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:  # noqa: D102
        return [getattr(self.venv._worlds[i], attr_name) for i in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:  # noqa: D102
        for i in self._indices(indices):
            setattr(self.venv._worlds[i], attr_name, value)

    def env_method(  # noqa: D102
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **kwargs: Any
    ) -> list[Any]:
        return [
            getattr(self.venv._worlds[i], method_name)(*method_args, **kwargs)
            for i in self._indices(indices)
        ]

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:  # noqa: D102
        return [isinstance(self.venv._worlds[i], wrapper_class) for i in self._indices(indices)]


def make_sb3_vec_env(
    env_id: str, tasks: Sequence[Task], *, nthread: int | None = None, **kwargs: Any
) -> SB3VecEnv:
    """An :class:`SB3VecEnv` of ``len(tasks)`` worlds (one task each)."""
    return SB3VecEnv(
        make_batched(env_id, tasks, autoreset_mode="same_step", nthread=nthread, **kwargs)
    )
