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

import io
import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices

from metarobot.adaptation import adapt
from metarobot.envs import BatchedMujocoEnv, Task, make_batched, task_split
from metarobot.policies import GaussianMLP, Policy, RunningNorm
from metarobot.stateful import StatefulPolicy
from metarobot.validation import check_int

__all__ = [
    "SB3Reptile",
    "SB3VecEnv",
    "TaskScheduleCallback",
    "adapt_sb3",
    "clone_sb3",
    "from_sb3",
    "make_sb3_vec_env",
    "to_sb3",
    "write_actor",
]

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
    policy: Policy | StatefulPolicy, env: gym.Env | VecEnv, algo: str = "PPO", **algo_kwargs: Any
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
    if isinstance(policy, StatefulPolicy):
        raise ValueError(
            f"to_sb3 converts MLP policies; a {policy.kind} policy carries per-episode context "
            "that SB3's MlpPolicy cannot hold: use it through reset()/act() (or predict(..., "
            "episode_start=...)), and metarobot.adapt to adapt it"
        )
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
    return write_actor(model, policy)


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

    def get_tasks(self) -> list[Task]:
        """The task each world runs (its current episode's, after any autoreset)."""
        return self.venv.get_tasks()

    def _indices(self, indices: VecEnvIndices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        if isinstance(indices, int):
            return [indices]
        return list(indices)

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:  # noqa: D102
        return [getattr(self.venv.worlds[i], attr_name) for i in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:  # noqa: D102
        for i in self._indices(indices):
            setattr(self.venv.worlds[i], attr_name, value)

    def env_method(  # noqa: D102
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **kwargs: Any
    ) -> list[Any]:
        return [
            getattr(self.venv.worlds[i], method_name)(*method_args, **kwargs)
            for i in self._indices(indices)
        ]

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:  # noqa: D102
        return [isinstance(self.venv.worlds[i], wrapper_class) for i in self._indices(indices)]


def make_sb3_vec_env(
    env_id: str, tasks: Sequence[Task], *, nthread: int | None = None, **kwargs: Any
) -> SB3VecEnv:
    """An :class:`SB3VecEnv` of ``len(tasks)`` worlds (one task each)."""
    return SB3VecEnv(
        make_batched(env_id, tasks, autoreset_mode="same_step", nthread=nthread, **kwargs)
    )


def clone_sb3(model: BaseAlgorithm, env: Any = None) -> BaseAlgorithm:
    """An independent copy of an SB3 model (through its own save/load format)."""
    buf = io.BytesIO()
    model.save(buf)
    buf.seek(0)
    return type(model).load(
        buf, env=env if env is not None else model.get_env(), device=model.device
    )


def write_actor(model: BaseAlgorithm, policy: Policy) -> BaseAlgorithm:
    """Copy a metarobot policy's actor weights into an SB3 model, in place.

    The observation normalization is folded into the first layer:
    W((x − μ)·s) + b = (W·s) x + (b − (W·s) μ).
    """
    layers, log_std = _actor_layers(model)
    if len(layers) != len(policy.net.hidden) + 1:
        raise ValueError("the SB3 actor and the metarobot policy have different depths")
    mean, inv = policy.normalizer.torch(torch.device("cpu"))
    if not np.all(np.isfinite(inv.numpy())):
        raise ValueError("policy normalizer has non-finite statistics")
    with torch.no_grad():
        for i, layer in enumerate(layers):
            w = policy.params[f"mean.{2 * i}.weight"].detach().cpu()
            b = policy.params[f"mean.{2 * i}.bias"].detach().cpu()
            if i == 0:
                w = w * inv[None, :]
                b = b - w @ mean
            layer.weight.copy_(w.to(layer.weight.device))
            layer.bias.copy_(b.to(layer.bias.device))
        log_std.copy_(policy.params["log_std"].detach().to(log_std.device))
    return model


def adapt_sb3(model: BaseAlgorithm, env: Any, **adapt_kwargs: Any) -> BaseAlgorithm:
    """``metarobot.adapt`` for an SB3 PPO/A2C model: returns an adapted model of the same type.

    The actor is adapted exactly as a metarobot policy would be; the critic is copied unchanged.
    """
    policy = from_sb3(model)
    adapted = adapt(policy, env, **adapt_kwargs)
    return write_actor(clone_sb3(model), adapted)


class TaskScheduleCallback(BaseCallback):
    """Give every env of an SB3 VecEnv a new task every ``every`` environment steps.

    Works with ``DummyVecEnv``, ``SubprocVecEnv`` and :class:`SB3VecEnv` of metarobot families:
    new tasks are set with ``set_task`` and take effect at each env's next reset (a task never
    changes mid-episode).

    Args:
        every: Steps (summed over envs, as SB3 counts them) between task switches.
        tasks: Tasks to draw from; default: the family's frozen training split.
        seed: Seed of the draw.
    """

    def __init__(self, every: int, tasks: Sequence[Task] | None = None, seed: int = 0) -> None:
        super().__init__()
        check_int("every", every)
        self.every = every
        self.tasks = list(tasks) if tasks is not None else None
        self.rng = np.random.default_rng(seed)
        self.switches = 0
        self._last = 0

    def _switch(self) -> None:
        env = self.training_env
        if self.tasks is None:
            self.tasks = task_split(env.get_attr("family", indices=[0])[0])[0]
        for i in range(env.num_envs):
            task = self.tasks[int(self.rng.integers(len(self.tasks)))]
            env.env_method("set_task", task, indices=[i])
        self.switches += 1

    def _on_training_start(self) -> None:
        self._switch()

    def _on_step(self) -> bool:
        if self.num_timesteps - self._last >= self.every:
            self._last = self.num_timesteps
            self._switch()
        return True


class SB3Reptile:
    """Reptile over any SB3 algorithm: the inner loop is the algorithm's own ``learn()``.

    Each meta-iteration draws ``meta_batch`` training tasks; for each, a copy of the current model
    learns ``inner_timesteps`` steps on that task; then every floating-point parameter of the
    policy moves toward the mean of the adapted ones, θ ← θ + ε · mean_i(θ'_i − θ).

    Args:
        algo_class: An SB3 algorithm class (``PPO``, ``SAC``, ...).
        env_id: A metarobot family id.
        meta_batch: Tasks per meta-iteration.
        inner_timesteps: ``learn()`` steps per task.
        epsilon: Outer step size ε.
        n_envs: Worlds per task (on the batched simulator).
        seed: Seed of task sampling and of the model.
        tasks: Training tasks (default: the frozen training split).
        **algo_kwargs: Passed to ``algo_class``.
    """

    def __init__(
        self,
        algo_class: type[BaseAlgorithm],
        env_id: str,
        *,
        meta_batch: int = 4,
        inner_timesteps: int = 2048,
        epsilon: float = 0.5,
        n_envs: int = 4,
        seed: int = 0,
        tasks: Sequence[Task] | None = None,
        **algo_kwargs: Any,
    ) -> None:

        if not (isinstance(algo_class, type) and issubclass(algo_class, BaseAlgorithm)):
            raise ValueError(f"algo_class must be an SB3 algorithm class, got {algo_class!r}")
        for name, v in (
            ("meta_batch", meta_batch),
            ("inner_timesteps", inner_timesteps),
            ("n_envs", n_envs),
        ):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if not (math.isfinite(epsilon) and 0 < epsilon <= 1):
            raise ValueError(f"epsilon must be in (0, 1], got {epsilon!r}")
        self.env_id = env_id
        self.tasks = list(tasks) if tasks is not None else task_split(env_id)[0]
        self.meta_batch, self.inner_timesteps, self.epsilon = meta_batch, inner_timesteps, epsilon
        self.n_envs = n_envs
        self.rng = np.random.default_rng(seed)
        self.venv = make_sb3_vec_env(env_id, [self.tasks[0]] * n_envs, nthread=0)
        algo_kwargs.setdefault("device", "cpu")
        algo_kwargs.setdefault("verbose", 0)
        self.model = algo_class("MlpPolicy", self.venv, seed=seed, **algo_kwargs)
        self.iterations = 0

    def _float_state(self, model: BaseAlgorithm) -> dict[str, torch.Tensor]:
        return {
            k: v.detach().clone()
            for k, v in model.policy.state_dict().items()
            if torch.is_floating_point(v)
        }

    def learn(self, iterations: int) -> BaseAlgorithm:
        """Run ``iterations`` meta-iterations; returns the meta-trained SB3 model."""
        check_int("iterations", iterations)
        for _ in range(iterations):
            theta = self._float_state(self.model)
            deltas = {k: torch.zeros_like(v) for k, v in theta.items()}
            for _ in range(self.meta_batch):
                task = self.tasks[int(self.rng.integers(len(self.tasks)))]
                self.venv.venv.set_tasks([task] * self.n_envs)
                inner = clone_sb3(self.model, self.venv)  # a copy: same parameters as θ
                inner.learn(self.inner_timesteps, reset_num_timesteps=True)
                adapted = self._float_state(inner)
                for k in deltas:
                    deltas[k] += (adapted[k] - theta[k]) / self.meta_batch
            new_state = self.model.policy.state_dict()
            for k in deltas:
                new_state[k] = theta[k] + self.epsilon * deltas[k]
            self.model.policy.load_state_dict(new_state)
            self.iterations += 1
        return self.model
