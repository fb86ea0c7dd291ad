"""Gaussian MLP policy whose parameters are data.

The network is an ``nn.Module`` used only as a *shape* for ``torch.func.functional_call``: the
weights live in a plain ``dict[str, Tensor]``, so an adapted policy is a new dict (cheap, no module
copy) and N parameter sets stack into one dict with a leading dimension for ``torch.func.vmap``.

A running observation normalizer is shared by all tasks; it is updated during meta-training and
frozen during adaptation.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from metarobot.io import FORMAT, FORMAT_VERSION, atomic_torch_save, versions

__all__ = [
    "EnsembleMLP",
    "GaussianMLP",
    "Params",
    "Policy",
    "RunningNorm",
    "build_net",
    "gaussian_log_prob",
    "make_policy",
    "resolve_device",
    "robot_name",
]

Params = dict[str, torch.Tensor]
_LOG_2PI = math.log(2.0 * math.pi)


def resolve_device(device: str | torch.device) -> torch.device:
    """Turn ``"auto"``/``"cpu"``/``"cuda"``/``"cuda:N"`` into a device.

    Raises:
        ValueError: On an unknown device or CUDA requested without a GPU.
    """
    if isinstance(device, torch.device):
        dev = device
    elif device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError) as err:
            raise ValueError(
                f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}"
            ) from err
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use 'cpu'")
    return dev


class GaussianMLP(nn.Module):
    """Tanh MLP for the action mean plus a state-independent log standard deviation.

    Args:
        obs_dim: Observation size.
        act_dim: Action size.
        hidden: Hidden layer sizes.
        init_log_std: Initial log standard deviation of every action dimension.
        generator: Generator of the (orthogonal) weight initialization; torch's global
            generator is never used.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: tuple[int, ...] = (64, 64),
        init_log_std: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        sizes = (obs_dim, *hidden)
        layers: list[nn.Module] = []
        # Built on the meta device (no storage, no draws from torch's global generator), then
        # materialized and initialized from ``generator`` only.
        for a, b in itertools.pairwise(sizes):
            layers += [nn.Linear(a, b, device="meta"), nn.Tanh()]
        out = nn.Linear(sizes[-1], act_dim, device="meta")
        layers.append(out)
        self.mean = nn.Sequential(*layers)
        self.log_std = nn.Parameter(torch.empty(act_dim, device="meta"))
        self.to_empty(device="cpu")
        self.obs_dim, self.act_dim, self.hidden = obs_dim, act_dim, tuple(hidden)
        with torch.no_grad():
            self.log_std.fill_(float(init_log_std))
            # Orthogonal init as in PPO codebases; a small last layer keeps initial actions near 0.
            for layer in self.mean:
                if isinstance(layer, nn.Linear):
                    gain = 0.01 if layer is out else math.sqrt(2.0)
                    nn.init.orthogonal_(layer.weight, gain=gain, generator=generator)
                    nn.init.zeros_(layer.bias)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``(..., act_dim)`` and log std ``(act_dim,)``."""
        return self.mean(obs), self.log_std

    def config(self) -> dict[str, Any]:
        """Plain-data description from which :func:`build_net` rebuilds the shape."""
        return {
            "kind": "mlp",
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "hidden": list(self.hidden),
        }


class EnsembleMLP(nn.Module):
    """M Gaussian MLPs whose action mean is the mean of the members' means, ŷ = 1/M Σ yᵢ.

    The ensemble is itself a functional policy network (its parameters are all members'
    parameters plus one shared log std), so it can be evaluated, adapted and saved like any
    other policy.

    Args:
        obs_dim: Observation size.
        act_dim: Action size.
        hidden: Hidden sizes of every member.
        members: Number of members M.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], members: int) -> None:
        super().__init__()
        if members < 1:
            raise ValueError(f"members must be >= 1, got {members!r}")
        self.members = nn.ModuleList(GaussianMLP(obs_dim, act_dim, hidden) for _ in range(members))
        self.log_std = nn.Parameter(torch.zeros(act_dim))
        self.obs_dim, self.act_dim, self.hidden = obs_dim, act_dim, tuple(hidden)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean over members of their action means, and the shared log std."""
        means = torch.stack([m.mean(obs) for m in self.members])
        return means.mean(0), self.log_std

    def config(self) -> dict[str, Any]:
        """Plain-data description from which :func:`build_net` rebuilds the shape."""
        return {
            "kind": "ensemble",
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "hidden": list(self.hidden),
            "members": len(self.members),
        }


def build_net(config: Mapping[str, Any]) -> nn.Module:
    """Rebuild a network shape from its ``config()``.

    Raises:
        ValueError: On an unknown kind.
    """
    kind = config.get("kind", "mlp")
    obs_dim, act_dim = int(config["obs_dim"]), int(config["act_dim"])
    hidden = tuple(int(h) for h in config["hidden"])
    if kind == "mlp":
        return GaussianMLP(obs_dim, act_dim, hidden)
    if kind == "ensemble":
        return EnsembleMLP(obs_dim, act_dim, hidden, int(config["members"]))
    raise ValueError(f"unknown network kind {kind!r}; known kinds are 'mlp' and 'ensemble'")


def gaussian_log_prob(
    mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor
) -> torch.Tensor:
    """Log density of a diagonal Gaussian, summed over the action dimension."""
    z = (actions - mean) * torch.exp(-log_std)
    return (-0.5 * z.pow(2) - log_std - 0.5 * _LOG_2PI).sum(-1)


class RunningNorm:
    """Running mean and variance of observations (parallel Welford update), clipped output.

    Args:
        dim: Observation size.
        clip: Normalized observations are clipped to ``[-clip, clip]``.
    """

    def __init__(self, dim: int, clip: float = 10.0) -> None:
        self.mean = np.zeros(dim, dtype=np.float64)
        self.var = np.ones(dim, dtype=np.float64)
        self.count = 1e-4
        self.clip = float(clip)

    def update(self, x: np.ndarray) -> None:
        """Fold a batch ``(B, dim)`` of finite observations into the statistics."""
        x = np.asarray(x, dtype=np.float64).reshape(-1, self.mean.shape[0])
        x = x[np.all(np.isfinite(x), axis=1)]
        if len(x) == 0:
            return
        b_mean, b_var, b_n = x.mean(0), x.var(0), x.shape[0]
        delta = b_mean - self.mean
        tot = self.count + b_n
        self.mean = self.mean + delta * b_n / tot
        m2 = self.var * self.count + b_var * b_n + delta**2 * self.count * b_n / tot
        self.var = m2 / tot
        self.count = tot

    def torch(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and inverse std as float32 tensors on ``device``."""
        mean = torch.as_tensor(self.mean, dtype=torch.float32, device=device)
        inv = torch.as_tensor(1.0 / np.sqrt(self.var + 1e-8), dtype=torch.float32, device=device)
        return mean, inv

    def state_dict(self) -> dict[str, Any]:
        """Plain-data state."""
        return {
            "mean": self.mean.tolist(),
            "var": self.var.tolist(),
            "count": self.count,
            "clip": self.clip,
        }

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> RunningNorm:
        """Inverse of :meth:`state_dict`."""
        norm = cls(len(state["mean"]), float(state["clip"]))
        norm.mean = np.asarray(state["mean"], dtype=np.float64)
        norm.var = np.asarray(state["var"], dtype=np.float64)
        norm.count = float(state["count"])
        return norm


class Policy:
    """A Gaussian policy: network shape, parameters, normalizer, step sizes and metadata.

    Args:
        net: The network shape (its own weights are not used once ``params`` is given).
        params: Parameter dict; default: a copy of ``net``'s initial weights.
        normalizer: Observation normalizer; default: identity statistics.
        inner_lr: Per-parameter adaptation step sizes (MetaSGD learns them); a float means the
            same step size for every parameter.
        meta: Metadata (family id, spaces, algorithm, config) saved with checkpoints.
        seed: Seed of the generator used by ``act(deterministic=False)``.
    """

    def __init__(
        self,
        net: nn.Module,
        params: Mapping[str, torch.Tensor] | None = None,
        normalizer: RunningNorm | None = None,
        inner_lr: float | Mapping[str, torch.Tensor] = 0.1,
        meta: Mapping[str, Any] | None = None,
        seed: int | None = None,
    ) -> None:
        self.net = net
        src = params if params is not None else dict(net.named_parameters())
        self.params: Params = {k: v.detach().clone() for k, v in src.items()}
        self.normalizer = normalizer or RunningNorm(net.obs_dim)
        if isinstance(inner_lr, Mapping):
            self.inner_lr: Params = {k: v.detach().clone() for k, v in inner_lr.items()}
        else:
            lr = float(inner_lr)
            if not (math.isfinite(lr) and lr > 0):
                raise ValueError(f"inner_lr must be a finite number in (0, inf), got {inner_lr!r}")
            self.inner_lr = {k: torch.full_like(v, lr) for k, v in self.params.items()}
        self.meta: dict[str, Any] = dict(meta or {})
        self._rng = np.random.default_rng(seed)

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(
        cls,
        obs_dim: int,
        act_dim: int,
        *,
        hidden: tuple[int, ...] = (64, 64),
        init_log_std: float = 0.0,
        inner_lr: float = 0.1,
        seed: int = 0,
        meta: Mapping[str, Any] | None = None,
    ) -> Policy:
        """A freshly initialized policy; weights drawn from a generator seeded by ``seed``."""
        for name, v in (("obs_dim", obs_dim), ("act_dim", act_dim)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        gen = torch.Generator().manual_seed(int(seed))
        net = GaussianMLP(obs_dim, act_dim, hidden, init_log_std, generator=gen)
        full_meta = {"hidden": list(hidden), "init_log_std": init_log_std, **(meta or {})}
        return cls(net, None, None, inner_lr, full_meta, seed)

    def clone(self) -> Policy:
        """An independent copy (parameters, normalizer, step sizes and metadata)."""
        return Policy(
            self.net,
            self.params,
            copy.deepcopy(self.normalizer),
            self.inner_lr,
            copy.deepcopy(self.meta),
        )

    def with_params(self, params: Mapping[str, torch.Tensor]) -> Policy:
        """A copy of this policy with other parameters."""
        new = self.clone()
        new.params = {k: v.detach().clone() for k, v in params.items()}
        return new

    @property
    def obs_dim(self) -> int:
        """Observation size."""
        return self.net.obs_dim

    @property
    def act_dim(self) -> int:
        """Action size."""
        return self.net.act_dim

    @property
    def device(self) -> torch.device:
        """Where the parameters live."""
        return next(iter(self.params.values())).device

    def to(self, device: str | torch.device) -> Policy:
        """Move parameters and step sizes to ``device`` (in place); returns self."""
        dev = resolve_device(device)
        self.params = {k: v.to(dev) for k, v in self.params.items()}
        self.inner_lr = {k: v.to(dev) for k, v in self.inner_lr.items()}
        return self

    # ------------------------------------------------------------------ functional
    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        """Normalize observations with the (frozen) running statistics."""
        mean, inv = self.normalizer.torch(obs.device)
        c = self.normalizer.clip
        return torch.clamp((obs - mean) * inv, -c, c)

    def distribution(
        self, params: Mapping[str, torch.Tensor], obs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log std for normalized ``obs`` under ``params`` (vmap-able)."""
        return functional_call(self.net, dict(params), (obs,))

    def check_obs(self, obs: np.ndarray) -> np.ndarray:
        """Validate an observation batch's shape.

        Raises:
            ValueError: If the last dimension is not ``obs_dim``.
        """
        arr = np.asarray(obs, dtype=np.float32)
        if arr.ndim == 0 or arr.shape[-1] != self.obs_dim:
            raise ValueError(
                f"obs has shape {arr.shape}, but the policy expects observations of size "
                f"{self.obs_dim} (shape ({self.obs_dim},) or (batch, {self.obs_dim}))"
            )
        return arr

    #: A plain MLP policy has no per-episode state.
    stateful = False

    def reset(self) -> None:
        """Start of an episode: nothing to forget (the interface of stateful policies)."""

    def action_bounds(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The action space's bounds recorded in the metadata, if any."""
        low, high = self.meta.get("action_low"), self.meta.get("action_high")
        if low is None or high is None:
            return None
        return np.asarray(low, dtype=np.float32), np.asarray(high, dtype=np.float32)

    def act(
        self,
        obs: np.ndarray,
        deterministic: bool = False,
        rng: np.random.Generator | None = None,
        *,
        reward: float | None = None,
        clip: bool = True,
    ) -> np.ndarray:
        """Actions for one observation ``(obs_dim,)`` or a batch ``(B, obs_dim)``.

        Args:
            obs: Raw (unnormalized) observations.
            deterministic: Return the mean action instead of a sample.
            rng: Generator for the action noise; default: the policy's own.
            reward: The previous step's reward; ignored (a plain policy has no context).
            clip: Clip to the action bounds of the env the policy was made for, as SB3's
                ``predict`` does; ``False`` gives the raw mean or sample.

        Returns:
            Actions as float32, shaped like ``obs`` with ``act_dim`` last.
        """
        arr = self.check_obs(obs)
        with torch.no_grad():
            x = torch.as_tensor(arr, device=self.device)
            mean, log_std = self.distribution(self.params, self.normalize(x))
            out = mean.cpu().numpy()
            if not deterministic:
                noise = (rng or self._rng).standard_normal(out.shape).astype(np.float32)
                out = out + np.exp(log_std.cpu().numpy()) * noise
        bounds = self.action_bounds() if clip else None
        if bounds is not None:
            out = np.clip(out, bounds[0], bounds[1])
        return out.astype(np.float32)

    def predict(
        self,
        obs: np.ndarray,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, None]:
        """SB3-style ``predict`` (so SB3 evaluation helpers accept a metarobot policy)."""
        return self.act(obs, deterministic=deterministic), None

    # ------------------------------------------------------------------ persistence
    def to_payload(self) -> dict[str, Any]:
        """Plain-data checkpoint contents (see :mod:`metarobot.checkpoint`)."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "net": self.net.config(),
            "params": {k: v.detach().cpu() for k, v in self.params.items()},
            "inner_lr": {k: v.detach().cpu() for k, v in self.inner_lr.items()},
            "normalizer": self.normalizer.state_dict(),
            "meta": json.dumps(self.meta),
            "versions": versions(),
        }

    @classmethod
    def from_payload(cls, raw: Mapping[str, Any]) -> Policy:
        """Inverse of :meth:`to_payload`.

        Raises:
            ValueError: If the parameter shapes do not match the network.
        """
        net = build_net(raw["net"])
        policy = cls(
            net,
            raw["params"],
            RunningNorm.from_state_dict(raw["normalizer"]),
            raw["inner_lr"],
            json.loads(raw.get("meta") or "{}"),
        )
        expected = {k: v.shape for k, v in net.named_parameters()}
        got = {k: v.shape for k, v in policy.params.items()}
        if expected != got:
            raise ValueError(f"parameter shapes {got} do not match the network {expected}")
        return policy

    def save(self, path: str) -> None:
        """Write a checkpoint atomically (see :mod:`metarobot.checkpoint`)."""
        atomic_torch_save(self.to_payload(), path)


def robot_name(env: gym.Env) -> str | None:
    """The Gymnasium MuJoCo robot class behind ``env`` (e.g. ``"HalfCheetahEnv"``), if any."""
    for cls in type(env.unwrapped).__mro__:
        if cls.__module__.startswith("gymnasium.envs.mujoco.") and cls.__name__ != "MujocoEnv":
            return cls.__name__
    return None


def make_policy(
    env_id: str,
    *,
    hidden: Sequence[int] = (64, 64),
    init_log_std: float = 0.0,
    inner_lr: float = 0.1,
    seed: int = 0,
) -> Policy:
    """A fresh policy sized for ``env_id``, with its metadata (family, robot, spaces)."""
    env = gym.make(env_id, disable_env_checker=True)
    try:
        obs_space, act_space = env.observation_space, env.action_space
        meta = {
            "family": env_id,
            "robot": robot_name(env),
            "observation_shape": list(obs_space.shape),
            "action_low": np.asarray(act_space.low).tolist(),
            "action_high": np.asarray(act_space.high).tolist(),
        }
    finally:
        env.close()
    return Policy.create(
        int(obs_space.shape[0]),
        int(act_space.shape[0]),
        hidden=tuple(hidden),
        init_log_std=init_log_std,
        inner_lr=inner_lr,
        seed=seed,
        meta=meta,
    )
