"""RMA: Rapid Motor Adaptation (Kumar et al., RSS 2021) for randomized-dynamics families.

Two phases, both on the batched simulator over the family's training tasks:

1. **Teacher.** Episodic PPO (:mod:`metarobot.ppo`, task-balanced) on observations extended
   with the task's privileged features (:class:`TaskFeatures`); an
   encoder inside the policy maps them to a small latent ``z`` (tanh, so ``z ∈ [-1, 1]^d``), and
   actor and critic see ``[obs, z]``.
2. **Student.** An adaptation module ``φ(o_t, (o, a)_{t-1..t-H}) → ẑ`` regresses the teacher's
   ``z`` from the last H observations and actions, trained on its *own* rollouts (the teacher's
   actor driven by ``ẑ``; the first iteration uses the true ``z``), with the dataset aggregated
   across iterations (DAgger).

On families whose tasks differ in their *reward* (a goal such as a target velocity or a running
direction), states and actions say nothing about the task, so each history entry also carries
the reward that followed the action, ``(o, a, r)`` (the context of PEARL and VariBAD). This is on
by default exactly for such families (``reward_in_history=None``); the original RMA reads states
and actions only, which is what the dynamics families use.

At test time only ``φ`` is used: no privileged information. The deployed policy is an
:class:`RMAPolicy`: ``reset()`` clears the history, ``act`` infers ``ẑ`` step by step. Its
adaptation with K episodes (``metarobot.adapt``) estimates one latent for the environment, the
mean ``ẑ`` over the K episodes, and acts with it from the first step of the next episode (the
safeguard in :mod:`metarobot.adaptation` keeps it only if it does not lower the return).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from metarobot.context import TaskFeatures
from metarobot.envs import Task, make_batched, task_split
from metarobot.invariant import rowwise_sequential
from metarobot.io import FORMAT, FORMAT_VERSION, versions
from metarobot.policies import GaussianMLP, Policy, RunningNorm, make_policy
from metarobot.ppo import PPOSettings, adam, cat_inputs, train_episodic_ppo, training_curve
from metarobot.rollout import run_actor_episodes
from metarobot.stateful import StatefulPolicy
from metarobot.validation import check_int

__all__ = ["RMAPolicy", "TeacherNet", "history_inputs", "train_rma"]


def _mlp(sizes: Sequence[int], out_tanh: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or out_tanh:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class RMAPolicy(StatefulPolicy):
    """The deployed RMA policy: teacher actor on ``[obs, ẑ]``, ``ẑ`` from the history module.

    Args:
        config: Sizes: ``obs_dim``, ``act_dim``, ``z_dim``, ``history``, ``hidden`` (actor),
            ``phi_hidden``.
        actor: Actor network ``[obs, z] → mean``.
        log_std: Log standard deviation of the actions.
        phi: Adaptation module ``[o_t, H × (o, a)] → ẑ`` on normalized observations.
        obs_mean: Observation mean used by ``φ``'s inputs.
        obs_std: Observation std used by ``φ``'s inputs.
        encoder: The teacher's privileged encoder (kept for analysis and student targets).
        meta: Metadata (family, spaces, algorithm, ...).
        z_fixed: A latent to act with instead of ``φ``'s estimate (set by adaptation).
    """

    kind = "rma"

    def __init__(
        self,
        config: dict[str, Any],
        actor: nn.Sequential,
        log_std: torch.Tensor,
        phi: nn.Sequential,
        obs_mean: np.ndarray,
        obs_std: np.ndarray,
        encoder: nn.Sequential,
        meta: dict[str, Any],
        z_fixed: np.ndarray | None = None,
    ) -> None:
        super().__init__(meta)
        self.config = dict(config)
        self.actor, self.phi, self.encoder = actor, phi, encoder
        self.log_std = log_std.detach().clone()
        self.obs_mean = np.asarray(obs_mean, dtype=np.float64)
        self.obs_std = np.asarray(obs_std, dtype=np.float64)
        self.z_fixed = None if z_fixed is None else np.asarray(z_fixed, dtype=np.float64)

    @property
    def obs_dim(self) -> int:  # noqa: D102
        return int(self.config["obs_dim"])

    @property
    def act_dim(self) -> int:  # noqa: D102
        return int(self.config["act_dim"])

    @property
    def history(self) -> int:
        """H, the number of past (observation, action) pairs ``φ`` reads."""
        return int(self.config["history"])

    @property
    def reward_in_history(self) -> bool:
        """Whether each history entry also holds the reward that followed the action."""
        return bool(self.config.get("reward_in_history", False))

    @classmethod
    def batch_actor(cls, policies: Sequence[StatefulPolicy]) -> _RMAActor:  # noqa: D102
        return _RMAActor(policies)

    def batch_key(self) -> tuple[Any, ...]:  # noqa: D102
        return (self.kind, id(self.actor), id(self.phi))

    @classmethod
    def device_actor(  # noqa: D102
        cls, policies: Sequence[StatefulPolicy], device: Any
    ) -> _RMADeviceActor:
        return _RMADeviceActor(policies, torch.device(device))

    def with_latent(self, z: np.ndarray | None) -> RMAPolicy:
        """A copy that acts with the fixed latent ``z`` (None: back to online ``φ``)."""
        new = self.clone()
        assert isinstance(new, RMAPolicy)
        new.z_fixed = None if z is None else np.asarray(z, dtype=np.float64).copy()
        return new

    def folded(self, z: np.ndarray | None = None) -> Policy:
        """The actor with a fixed latent folded into its first layer, as a plain MLP policy.

        The actor's first layer on ``[n(o), z]`` is ``W_o n(o) + W_z z + b``; with ``z`` fixed,
        ``W_z z + b`` is a constant, so ``actor(·, z)`` *is* an MLP on the normalized
        observation with first-layer bias ``W_z z + b``. That MLP policy (same normalization,
        log std and action bounds) is what the fine-tuning rounds of
        :func:`metarobot.adapt_many` update: it acts as ``with_latent(z)`` does (up to float32
        rounding) and every MLP tool (stacked ``vmap`` updates, the Warp engine) applies.

        Args:
            z: The latent; default: this policy's fixed latent.

        Returns:
            The MLP policy; its ``meta["folded_from"]`` records the algorithm and latent.

        Raises:
            ValueError: If there is no latent to fold (no ``z`` and no fixed latent), or ``z``
                has the wrong size.
        """
        latent = self.z_fixed if z is None else np.asarray(z, dtype=np.float64)
        zd = int(self.config["z_dim"])
        if latent is None:
            raise ValueError("z is required: this RMA policy has no fixed latent to fold")
        if latent.shape != (zd,) or not np.all(np.isfinite(latent)):
            raise ValueError(f"z must be {zd} finite numbers, got shape {latent.shape}")
        o, hidden = self.obs_dim, tuple(int(x) for x in self.config["hidden"])
        net = GaussianMLP(o, self.act_dim, hidden, generator=torch.Generator().manual_seed(0))
        actor = {k: v.detach().double() for k, v in self.actor.state_dict().items()}
        w0, b0 = actor["0.weight"], actor["0.bias"]
        params = {f"mean.{k}": v.float() for k, v in actor.items()}
        params["mean.0.weight"] = w0[:, :o].float()
        params["mean.0.bias"] = (b0 + w0[:, o:] @ torch.as_tensor(latent)).float()
        params["log_std"] = self.log_std.detach().float().clone()
        norm = RunningNorm(o)
        norm.mean = self.obs_mean.copy()
        norm.var = np.maximum(self.obs_std**2 - 1e-8, 0.0)  # RunningNorm divides by √(var + 1e-8)
        norm.count = 1.0
        meta = {k: v for k, v in self.meta.items() if k not in ("adapted", "feature_names")}
        meta["hidden"] = list(hidden)
        meta["algorithm"] = f"{self.kind}-folded"
        meta["folded_from"] = {"algorithm": self.kind, "z": [float(x) for x in latent]}
        return Policy(net, params, norm, meta=meta)

    def to_payload(self) -> dict[str, Any]:  # noqa: D102
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "net": {"kind": self.kind, **self.config},
            "actor": {k: v.detach().cpu() for k, v in self.actor.state_dict().items()},
            "phi": {k: v.detach().cpu() for k, v in self.phi.state_dict().items()},
            "encoder": {k: v.detach().cpu() for k, v in self.encoder.state_dict().items()},
            "log_std": self.log_std.detach().cpu(),
            "obs_mean": torch.as_tensor(self.obs_mean),
            "obs_std": torch.as_tensor(self.obs_std),
            "z_fixed": None if self.z_fixed is None else torch.as_tensor(self.z_fixed),
            "meta": json.dumps(self.meta),
            "versions": versions(),
        }

    @classmethod
    def from_payload(cls, raw: dict[str, Any]) -> RMAPolicy:  # noqa: D102
        cfg = {k: v for k, v in raw["net"].items() if k != "kind"}
        actor, phi, encoder = _networks(cfg)
        actor.load_state_dict(raw["actor"])
        phi.load_state_dict(raw["phi"])
        encoder.load_state_dict(raw["encoder"])
        z = raw.get("z_fixed")
        return cls(
            cfg,
            actor,
            raw["log_std"],
            phi,
            raw["obs_mean"].numpy(),
            raw["obs_std"].numpy(),
            encoder,
            json.loads(raw.get("meta") or "{}"),
            None if z is None else z.numpy(),
        )

    def adapt_candidates(
        self,
        env_id: str,
        tasks: Sequence[Task],
        *,
        episodes: int,
        seeds: Sequence[int | None],
        nthread: int | None = None,
        engine: str = "batch",
        device: Any = None,
    ) -> list[RMAPolicy]:
        """One candidate per task: the mean ``ẑ`` over K episodes on it, used as a fixed latent.

        With ``engine="warp"`` the episodes and ``φ`` run on ``device`` (:meth:`device_actor`).

        Returns:
            The candidates (not yet checked against the un-adapted policy).
        """
        n, k = len(tasks), episodes
        base = self.with_latent(None)
        if engine == "batch":
            actor: _RMAActor | _RMADeviceActor = _RMAActor([base] * (n * k))
        else:
            actor = _RMADeviceActor([base] * (n * k), torch.device(device or "cpu"))
        run_actor_episodes(
            actor,
            env_id,
            tasks,
            episodes=k,
            seeds=seeds,
            nthread=nthread,
            engine=engine,
            device=device,
        )
        z_sum, z_count = _host(actor.z_sum), _host(actor.z_count)
        z = (z_sum / np.maximum(z_count, 1)[:, None]).reshape(n, k, -1).mean(1)
        return [self.with_latent(z[i]) for i in range(n)]


def _entry_dim(cfg: dict[str, Any]) -> int:
    """Size of one history entry: observation, action and, if read, the reward."""
    return int(cfg["obs_dim"]) + int(cfg["act_dim"]) + int(bool(cfg.get("reward_in_history")))


def _reward_input(rewards: np.ndarray) -> np.ndarray:
    # Bounded like the normalized observations, so one diverging step cannot swamp φ's inputs.
    return np.clip(np.asarray(rewards, dtype=np.float64), -10.0, 10.0)


def _networks(cfg: dict[str, Any]) -> tuple[nn.Sequential, nn.Sequential, nn.Sequential]:
    o, a, z, h = int(cfg["obs_dim"]), int(cfg["act_dim"]), int(cfg["z_dim"]), int(cfg["history"])
    actor = _mlp([o + z, *[int(x) for x in cfg["hidden"]], a])
    phi = _mlp([o + h * _entry_dim(cfg), *[int(x) for x in cfg["phi_hidden"]], z], out_tanh=True)
    encoder = _mlp([int(cfg["priv_dim"]), int(cfg["enc_hidden"]), z], out_tanh=True)
    return actor, phi, encoder


class _RMAActor:
    """Histories of N worlds, in float64 and row by row, so a world's actions do not depend on N.

    See :mod:`metarobot.invariant`: a plain batched forward is not row-invariant on every CPU.
    """

    def __init__(self, policies: Sequence[StatefulPolicy]) -> None:
        p0 = policies[0]
        if not isinstance(p0, RMAPolicy) or any(
            not isinstance(p, RMAPolicy) or p.actor is not p0.actor or p.phi is not p0.phi
            for p in policies
        ):
            raise ValueError("a batch of RMA policies must share one actor and one φ")
        self.p = p0
        n, h = len(policies), p0.history
        self.actor = _double(p0.actor)
        self.phi = _double(p0.phi)
        self.log_std = p0.log_std.double()
        self.with_reward = p0.reward_in_history
        self.hist = np.zeros((n, h, _entry_dim(p0.config)))
        zd = int(p0.config["z_dim"])
        self.fixed = np.array([p.z_fixed is not None for p in policies])  # type: ignore[attr-defined]
        self.z_fixed = np.stack(
            [p.z_fixed if p.z_fixed is not None else np.zeros(zd) for p in policies]  # type: ignore[attr-defined]
        )
        self.z_sum = np.zeros((n, zd))
        self.z_count = np.zeros(n)
        self.low, self.high = p0.low.astype(np.float64), p0.high.astype(np.float64)

    def reset(self, mask: np.ndarray) -> None:
        self.hist[mask] = 0.0

    def observe(self, rewards: np.ndarray) -> None:
        """Record the reward that followed each world's last action (if ``φ`` reads rewards)."""
        if self.with_reward:
            self.hist[:, 0, -1] = _reward_input(rewards)

    def infer(self, obs: np.ndarray) -> np.ndarray:
        """``ẑ`` of every world from its current observation and history."""
        on = np.clip((obs - self.p.obs_mean) / self.p.obs_std, -10.0, 10.0)
        inp = np.concatenate([on, self.hist.reshape(len(obs), -1)], axis=1)
        with torch.no_grad():
            return rowwise_sequential(self.phi, torch.as_tensor(inp)).numpy()

    def act(self, obs: np.ndarray, rewards: np.ndarray, noise: np.ndarray | None) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float64)
        # After a reset the newest entry is all zeros and the reward is 0: writing it is a no-op.
        self.observe(rewards)
        zhat = self.infer(obs)
        self.z_sum += zhat
        self.z_count += 1
        z = np.where(self.fixed[:, None], self.z_fixed, zhat)
        return self.act_with(obs, z, noise)

    def act_with(self, obs: np.ndarray, z: np.ndarray, noise: np.ndarray | None) -> np.ndarray:
        """Act with the given latents and push (observation, action) into the histories.

        The entry's reward slot (if any) stays 0 until :meth:`observe` fills it.
        """
        on = np.clip((obs - self.p.obs_mean) / self.p.obs_std, -10.0, 10.0)
        with torch.no_grad():
            mean = rowwise_sequential(
                self.actor, torch.as_tensor(np.concatenate([on, z], axis=1))
            ).numpy()
        act = mean if noise is None else mean + np.exp(self.log_std.numpy()) * noise
        act = np.clip(act, self.low, self.high)
        self.hist[:, 1:] = self.hist[:, :-1]
        self.hist[:, 0] = 0.0
        self.hist[:, 0, : on.shape[1] + act.shape[1]] = np.concatenate([on, act], axis=1)
        return act.astype(np.float32)


class _RMADeviceActor:
    """:class:`_RMAActor` with its state and networks as float32 tensors on one device.

    Batched over worlds, for the Warp engine's episodes (row-invariance is not promised).
    """

    def __init__(self, policies: Sequence[StatefulPolicy], device: torch.device) -> None:
        host = _RMAActor(policies)  # the same checks and the same starting state
        p0, dev = host.p, device
        self.p, self.device, self.with_reward = p0, dev, host.with_reward
        self.actor = copy.deepcopy(p0.actor).float().to(dev)
        self.phi = copy.deepcopy(p0.phi).float().to(dev)

        def t(x: Any, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.as_tensor(np.asarray(x), dtype=dtype, device=dev)

        self.std_a = torch.exp(p0.log_std.detach().float()).to(dev)
        self.obs_mean, self.obs_std = t(p0.obs_mean), t(p0.obs_std)
        self.hist = t(host.hist)
        self.fixed, self.z_fixed = t(host.fixed, torch.bool), t(host.z_fixed)
        self.z_sum, self.z_count = t(host.z_sum), t(host.z_count)
        self.low, self.high = t(host.low), t(host.high)

    def reset(self, mask: Any) -> None:
        self.hist[torch.as_tensor(mask, dtype=torch.bool, device=self.device)] = 0.0

    def act(self, obs: Any, rewards: Any, noise: Any) -> torch.Tensor:
        obs = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        with torch.no_grad():
            if self.with_reward:
                r = torch.as_tensor(rewards, dtype=torch.float32, device=self.device)
                self.hist[:, 0, -1] = torch.clamp(r, -10.0, 10.0)
            on = torch.clamp((obs - self.obs_mean) / self.obs_std, -10.0, 10.0)
            zhat = self.phi(torch.cat([on, self.hist.reshape(len(on), -1)], dim=1))
            self.z_sum += zhat
            self.z_count += 1
            z = torch.where(self.fixed[:, None], self.z_fixed, zhat)
            act = self.actor(torch.cat([on, z], dim=1))
            if noise is not None:
                act = act + self.std_a * torch.as_tensor(noise, dtype=act.dtype, device=act.device)
            act = torch.clamp(act, self.low, self.high)
            self.hist = torch.roll(self.hist, 1, dims=1)
            self.hist[:, 0] = 0.0
            self.hist[:, 0, : on.shape[1] + act.shape[1]] = torch.cat([on, act], dim=1)
        return act


def _host(x: Any) -> np.ndarray:
    """A tensor (on any device) or array as a float64 numpy array."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy().astype(np.float64)
    return np.asarray(x, dtype=np.float64)


def _double(module: nn.Module) -> nn.Module:
    return copy.deepcopy(module).double().eval()


# ---------------------------------------------------------------------- training


class TeacherNet(nn.Module):
    """RMA's teacher: ``z = enc(features)``, actor and critic on ``[normalized obs, z]``.

    Args:
        config: ``obs_dim``, ``act_dim``, ``z_dim``, ``hidden``, ``priv_dim``, ``enc_hidden``
            and optionally ``init_log_std`` (the actions' initial log std, default 0).
        generator: Generator of the orthogonal initialization.
    """

    def __init__(self, config: dict[str, Any], generator: torch.Generator) -> None:
        super().__init__()
        self.obs_dim = int(config["obs_dim"])
        self.actor, _, self.encoder = _networks(config)
        o, z = self.obs_dim, int(config["z_dim"])
        self.critic = _mlp([o + z, *[int(x) for x in config["hidden"]], 1])
        init = float(config.get("init_log_std", 0.0))
        self.log_std = nn.Parameter(torch.full((int(config["act_dim"]),), init))
        with torch.no_grad():
            for net in (self.actor, self.critic, self.encoder):
                lin = [m for m in net if isinstance(m, nn.Linear)]
                for m in lin:
                    gain = 0.01 if (net is self.actor and m is lin[-1]) else 1.0
                    nn.init.orthogonal_(m.weight, gain=gain, generator=generator)
                    nn.init.zeros_(m.bias)

    def make_input(
        self, obs: np.ndarray, prev_act: np.ndarray, prev_rew: np.ndarray, feats: np.ndarray
    ) -> np.ndarray:
        """``[normalized obs, privileged task features]``."""
        return cat_inputs([obs, feats])

    def forward(
        self, x: torch.Tensor, h0: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, None]:
        """``x [N, T, obs + features]`` → mean, value, no state."""
        inp = torch.cat([x[..., : self.obs_dim], self.encoder(x[..., self.obs_dim :])], dim=-1)
        return self.actor(inp), self.critic(inp).squeeze(-1), None


def train_rma(
    env_id: str,
    *,
    teacher_steps: int,
    student_steps: int,
    seed: int = 0,
    tasks: Sequence[Task] | None = None,
    n_envs: int = 16,
    student_envs: int = 32,
    nthread: int | None = None,
    hidden: Sequence[int] = (64, 64),
    z_dim: int = 8,
    history: int = 16,
    reward_in_history: bool | None = None,
    phi_hidden: Sequence[int] = (128, 128),
    enc_hidden: int = 64,
    student_epochs: int = 10,
    student_lr: float = 1e-3,
    init_log_std: float = 0.0,
    settings: PPOSettings | None = None,
    engine: str = "batch",
    device: str | None = None,
) -> RMAPolicy:
    """Train an RMA policy: privileged PPO teacher, then the history student.

    Args:
        env_id: Family id.
        teacher_steps: PPO environment steps of the teacher.
        student_steps: Environment steps of the student's own rollouts (at least one
            iteration of ``student_envs`` episodes runs).
        seed: Seed of everything.
        tasks: Training tasks (default: the family's frozen training split).
        n_envs: Teacher's worlds (episodes) per PPO iteration.
        student_envs: Worlds per student iteration (one episode each).
        nthread: Simulator threads.
        hidden: Actor and critic hidden sizes.
        z_dim: Latent size.
        history: H, past (observation, action) pairs the student reads.
        reward_in_history: Add the reward that followed each action to the student's history;
            None: exactly when the family's tasks differ in their reward (goal families).
        phi_hidden: Student hidden sizes.
        enc_hidden: Privileged encoder hidden size.
        student_epochs: Regression epochs per student iteration.
        student_lr: Student Adam learning rate.
        init_log_std: The teacher's initial log standard deviation of the actions.
        settings: The teacher's PPO hyper-parameters (:class:`~metarobot.ppo.PPOSettings`).
        engine: The teacher's simulator: ``"batch"`` or ``"warp"`` (device-resident rollouts
            and updates on ``device``, see :func:`~metarobot.ppo.train_episodic_ppo`). The
            student's rollouts (``student_steps``) run on the CPU engine either way.
        device: The Warp device (``engine="warp"`` only).

    Returns:
        The deployed policy; ``meta["env_steps"]`` is the total environment steps used.

    Raises:
        ValueError: On a step budget < 1 or a history < 1.
    """
    for name, v in (
        ("teacher_steps", teacher_steps),
        ("student_steps", student_steps),
        ("history", history),
        ("z_dim", z_dim),
    ):
        check_int(name, v)
    train = list(tasks) if tasks is not None else task_split(env_id)[0]
    features = TaskFeatures(env_id)
    base_meta = make_policy(env_id).meta
    obs_dim = int(base_meta["observation_shape"][0])
    cfg = {
        "obs_dim": obs_dim,
        "act_dim": len(base_meta["action_low"]),
        "z_dim": z_dim,
        "history": history,
        "reward_in_history": features.has_goals if reward_in_history is None else reward_in_history,
        "hidden": list(hidden),
        "phi_hidden": list(phi_hidden),
        "priv_dim": features.dim,
        "enc_hidden": enc_hidden,
    }
    gen = torch.Generator().manual_seed(seed)
    teacher = TeacherNet({**cfg, "init_log_std": float(init_log_std)}, gen)
    norm, teacher_used, log = train_episodic_ppo(
        teacher,
        env_id,
        train,
        teacher_steps,
        seed=seed,
        n_envs=n_envs,
        nthread=nthread,
        features=features,
        settings=settings,
        engine=engine,
        device=device,
    )
    _, phi, _ = _networks(cfg)
    with torch.no_grad():
        for m in phi:
            if isinstance(m, nn.Linear):
                nn.init.orthogonal_(m.weight, generator=gen)
                nn.init.zeros_(m.bias)
    meta = {
        **base_meta,
        "algorithm": "rma",
        "teacher_steps": teacher_used,
        "teacher_final_return": log[-1]["return"],
        "training_curve": training_curve(log),  # the teacher's (privileged) PPO
        "teacher_engine": engine,
        "feature_names": features.names,
    }
    policy = RMAPolicy(
        cfg,
        teacher.actor,
        teacher.log_std,
        phi,
        norm.mean,
        np.sqrt(norm.var + 1e-8),
        teacher.encoder,
        meta,
    )
    used = _train_student(
        policy,
        env_id,
        train,
        features,
        student_steps,
        seed=seed,
        n_envs=student_envs,
        nthread=nthread,
        epochs=student_epochs,
        lr=student_lr,
    )
    policy.meta["student_steps"] = used
    policy.meta["env_steps"] = teacher_used + used
    return policy


def history_inputs(
    obs: np.ndarray,
    act: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    history: int,
    rewards: np.ndarray | None = None,
) -> np.ndarray:
    """``φ``'s inputs for recorded episodes: ``[o_t, (o, a)_{t-1}, ..., (o, a)_{t-H}]``.

    Args:
        obs: Raw observations ``[T, N, obs_dim]`` (episode starts at t = 0).
        act: Clipped actions ``[T, N, act_dim]``.
        mean: Observation mean.
        std: Observation std.
        history: H.
        rewards: Rewards ``[T, N]`` (``rewards[t]`` follows ``act[t]``) for a policy whose
            history entries are ``(o, a, r)``; None for ``(o, a)``.

    Returns:
        ``[T, N, obs_dim + H·entry]``, zero-padded before the episode start (the same inputs
        :class:`RMAPolicy` builds step by step).
    """
    on = np.clip((obs - mean) / std, -10.0, 10.0)
    parts = [on, act] if rewards is None else [on, act, _reward_input(rewards)[..., None]]
    pairs = np.concatenate(parts, axis=-1)
    t_len = len(obs)
    padded = np.concatenate([np.zeros((history, *pairs.shape[1:])), pairs], axis=0)
    lags = [padded[history - j : history - j + t_len] for j in range(1, history + 1)]
    return np.concatenate([on, *lags], axis=-1)


def _train_student(
    policy: RMAPolicy,
    env_id: str,
    tasks: Sequence[Task],
    features: TaskFeatures,
    steps: int,
    *,
    seed: int,
    n_envs: int,
    nthread: int | None,
    epochs: int,
    lr: float,
) -> int:
    """DAgger-style regression of ``φ`` on its own rollouts; returns the env steps used.

    Iteration 0 acts with the true latent; later iterations act with ``φ``'s own estimates.
    Every iteration's (input, true latent) pairs join the dataset (the most recent
    :data:`STUDENT_BUFFER_ROLLOUTS` rollouts), and ``φ`` takes ``epochs`` passes' worth of the
    *new* pairs in minibatches drawn from the whole dataset: each iteration costs the same, so
    the student's cost grows linearly with its budget (refitting the whole dataset every
    iteration made it quadratic: 45 of 52 s of a 64k-step student). The budget is never
    exceeded (an iteration uses at most ``n_envs × horizon`` steps), except that one iteration
    always runs.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5A11]))
    env = make_batched(env_id, list(tasks[:1]) * n_envs, autoreset_mode="disabled", nthread=nthread)
    opt = adam(policy.phi.parameters(), lr=lr)
    data = _StudentData(STUDENT_BUFFER_ROLLOUTS)
    used, it = 0, 0
    horizon = int(env.max_episode_steps)
    try:
        while it == 0 or used + n_envs * horizon <= steps:
            episodes = _student_rollout(policy, env, tasks, features, rng, with_true_z=it == 0)
            used += int(episodes[3].sum())
            new = data.add(*_pairs(episodes, policy))
            loss = _fit_student(policy, opt, data, new, rng, epochs)
            policy.meta["student_loss"] = loss
            if it == 0:
                policy.meta["student_loss_first"] = loss
            it += 1
    finally:
        env.close()
    policy.meta["student_iterations"] = it
    return used


def _student_rollout(
    policy: RMAPolicy,
    env: Any,
    tasks: Sequence[Task],
    features: TaskFeatures,
    rng: np.random.Generator,
    *,
    with_true_z: bool,
) -> tuple[np.ndarray, ...]:
    """One episode per world, acting with the true latent or with ``φ``'s estimates.

    Returns:
        Observations ``[T, N, obs]``, actions ``[T, N, act]``, rewards ``[T, N]``, alive masks
        ``[T, N]`` and the true latents ``[N, z]``.
    """
    n_envs = env.num_envs
    idx = rng.integers(0, len(tasks), size=n_envs)
    batch_tasks = [tasks[int(i)] for i in idx]
    with torch.no_grad():
        z_true = policy.encoder(torch.as_tensor(features.batch(batch_tasks))).numpy()
    obs, _ = env.reset(
        seed=[int(s) for s in rng.integers(0, 2**31 - 1, size=n_envs)],
        options={"tasks": batch_tasks},
    )
    actor = _RMAActor([policy] * n_envs)
    alive = np.ones(n_envs, dtype=bool)
    o_buf, a_buf, r_buf, m_buf = [], [], [], []
    for _t in range(int(env.max_episode_steps)):
        o = np.asarray(obs, dtype=np.float64)
        z = z_true.astype(np.float64) if with_true_z else actor.infer(o)
        act = actor.act_with(o, z, rng.standard_normal((n_envs, policy.act_dim)))
        o_buf.append(o)
        a_buf.append(act.astype(np.float64))
        m_buf.append(alive.copy())
        obs, rew, term, trunc, _ = env.step(act)
        actor.observe(rew)
        r_buf.append(np.asarray(rew, dtype=np.float64))
        alive &= ~(term | trunc)
        if not alive.any():
            break
    return np.stack(o_buf), np.stack(a_buf), np.stack(r_buf), np.stack(m_buf), z_true


class _StudentData:
    """The student's aggregated (input, true latent) pairs: the last ``max_rollouts`` rollouts."""

    def __init__(self, max_rollouts: int) -> None:
        self.max_rollouts = max_rollouts
        self.sizes: list[int] = []
        self.x = torch.zeros(0)
        self.y = torch.zeros(0)

    def add(self, x: torch.Tensor, y: torch.Tensor) -> int:
        """Append one rollout's pairs (dropping the oldest rollout beyond the cap); their count."""
        self.x = x if not self.sizes else torch.cat([self.x, x])
        self.y = y if not self.sizes else torch.cat([self.y, y])
        self.sizes.append(len(x))
        if len(self.sizes) > self.max_rollouts:
            drop = self.sizes.pop(0)
            self.x, self.y = self.x[drop:], self.y[drop:]
        return len(x)


#: Rollouts the student's dataset keeps (bounded memory).
STUDENT_BUFFER_ROLLOUTS = 64
#: Minibatch size of the student's regression.
STUDENT_BATCH = 1024


def _fit_student(
    policy: RMAPolicy,
    opt: torch.optim.Optimizer,
    data: _StudentData,
    new: int,
    rng: np.random.Generator,
    epochs: int,
) -> float:
    """``epochs`` × ``new`` pairs of ``φ``'s regression, drawn from the dataset; the last loss.

    Each pass takes the first ``new`` entries of a fresh permutation of the whole dataset (all
    of it in the first iteration, when the dataset is the new rollout).
    """
    x, y = data.x, data.y
    loss = torch.zeros(())
    for _ in range(epochs):
        perm = rng.permutation(len(x))[:new]
        for start in range(0, new, STUDENT_BATCH):
            mb = torch.as_tensor(perm[start : start + STUDENT_BATCH])
            loss = ((policy.phi(x[mb]) - y[mb]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return float(loss.detach())


def _pairs(
    episodes: tuple[np.ndarray, ...], policy: RMAPolicy
) -> tuple[torch.Tensor, torch.Tensor]:
    """``φ``'s inputs and the true latents of every step inside one rollout's episodes."""
    o, a, r, m, z = episodes
    rewards = r if policy.reward_in_history else None
    inp = history_inputs(o, a, policy.obs_mean, policy.obs_std, policy.history, rewards)
    target = np.broadcast_to(z[None], (*m.shape, z.shape[-1]))[m]
    return (
        torch.as_tensor(inp[m], dtype=torch.float32),
        torch.as_tensor(target, dtype=torch.float32),
    )
