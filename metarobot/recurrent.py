"""Recurrent (RL²-style) meta-policy: a GRU over (observation, previous action, previous reward).

The policy infers the dynamics from what it has seen in the current episode (Duan et al., 2016;
Ni et al., ICML 2022: recurrent model-free RL is a strong baseline on POMDPs). It is trained
with PPO across the family's training tasks on the batched simulator, one whole episode per
world per iteration, and back-propagates through whole episodes (the GRU state starts at zero at
every reset, so training sequences need no burn-in).

Actor and critic share the embedding and the GRU; training is :mod:`metarobot.ppo`'s episodic
PPO (task-balanced, time limits bootstrapped). Observations are normalized with running
statistics (frozen in the deployed policy).

Adaptation with K episodes (``metarobot.adapt``) runs the K episodes one after another with the
GRU state carried across them and starts later episodes from the state it ended in (checked
against the un-adapted policy by the safeguard in :mod:`metarobot.adaptation`).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from metarobot.envs import Task, task_split
from metarobot.gru import gru_sequence
from metarobot.invariant import rowwise_gru_cell, rowwise_sequential
from metarobot.io import FORMAT, FORMAT_VERSION, versions
from metarobot.policies import RunningNorm, make_policy
from metarobot.ppo import PPOSettings, cat_inputs, train_episodic_ppo, training_curve
from metarobot.rollout import run_actor_episodes
from metarobot.stateful import StatefulPolicy
from metarobot.validation import check_int

__all__ = ["GRUActorCritic", "RecurrentPolicy", "train_recurrent"]


class GRUActorCritic(nn.Module):
    """Embedding → GRU → actor mean and critic value; state-independent log std.

    Args:
        obs_dim: Observation size.
        act_dim: Action size.
        hidden: Embedding and GRU size.
        init_log_std: Initial log std.
    """

    def __init__(
        self, obs_dim: int, act_dim: int, hidden: int = 64, init_log_std: float = 0.0
    ) -> None:
        super().__init__()
        self.obs_dim, self.act_dim, self.hidden = obs_dim, act_dim, hidden
        self.embed = nn.Sequential(nn.Linear(obs_dim + act_dim + 1, hidden), nn.Tanh())
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.pi = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, act_dim))
        self.vf = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        self.log_std = nn.Parameter(torch.full((act_dim,), float(init_log_std)))

    def init_weights(self, generator: torch.Generator) -> None:
        """Orthogonal weights from ``generator`` (small last actor layer), zero biases."""
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name == "log_std":
                    continue
                if p.ndim >= 2:
                    gain = 0.01 if name.startswith("pi.2") else 1.0
                    nn.init.orthogonal_(p, gain=gain, generator=generator)
                else:
                    p.zero_()

    def make_input(
        self, obs: np.ndarray, prev_act: np.ndarray, prev_rew: np.ndarray, feats: np.ndarray
    ) -> np.ndarray:
        """``[normalized obs, previous action, previous reward]`` (task features unused)."""
        rew = prev_rew if isinstance(prev_rew, torch.Tensor) else np.asarray(prev_rew)
        return cat_inputs([obs, prev_act, rew[:, None]])

    def forward(
        self, x: torch.Tensor, h0: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sequences ``x [N, T, in]`` → mean ``[N, T, A]``, value ``[N, T]``, last state."""
        out, h = gru_sequence(self.gru, self.embed(x), h0)  # nn.GRU's result, faster backward
        return self.pi(out), self.vf(out).squeeze(-1), h


class RecurrentPolicy(StatefulPolicy):
    """The deployed recurrent policy.

    Args:
        config: ``obs_dim``, ``act_dim``, ``hidden``.
        net: The trained network.
        normalizer: Frozen observation statistics.
        meta: Metadata (family, spaces, algorithm, ...).
        h0: Initial GRU state of every episode (zeros unless set by adaptation).
    """

    kind = "recurrent"

    def __init__(
        self,
        config: dict[str, Any],
        net: GRUActorCritic,
        normalizer: RunningNorm,
        meta: dict[str, Any],
        h0: np.ndarray | None = None,
    ) -> None:
        super().__init__(meta)
        self.config = dict(config)
        self.net = net
        self.normalizer = normalizer
        self.h0 = None if h0 is None else np.asarray(h0, dtype=np.float64)

    @property
    def obs_dim(self) -> int:  # noqa: D102
        return int(self.config["obs_dim"])

    @property
    def act_dim(self) -> int:  # noqa: D102
        return int(self.config["act_dim"])

    @classmethod
    def batch_actor(cls, policies: Sequence[StatefulPolicy]) -> _GRUActor:  # noqa: D102
        return _GRUActor(policies)

    def batch_key(self) -> tuple[Any, ...]:  # noqa: D102
        return (self.kind, id(self.net))

    @classmethod
    def device_actor(  # noqa: D102
        cls, policies: Sequence[StatefulPolicy], device: Any
    ) -> _GRUDeviceActor:
        return _GRUDeviceActor(policies, torch.device(device))

    def with_initial_state(self, h0: np.ndarray | None) -> RecurrentPolicy:
        """A copy whose episodes start from GRU state ``h0`` (None: zeros)."""
        new = self.clone()
        assert isinstance(new, RecurrentPolicy)
        new.h0 = None if h0 is None else np.asarray(h0, dtype=np.float64).copy()
        return new

    def to_payload(self) -> dict[str, Any]:  # noqa: D102
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "net": {"kind": self.kind, **self.config},
            "state": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
            "normalizer": self.normalizer.state_dict(),
            "h0": None if self.h0 is None else torch.as_tensor(self.h0),
            "meta": json.dumps(self.meta),
            "versions": versions(),
        }

    @classmethod
    def from_payload(cls, raw: dict[str, Any]) -> RecurrentPolicy:  # noqa: D102
        cfg = {k: v for k, v in raw["net"].items() if k != "kind"}
        net = GRUActorCritic(int(cfg["obs_dim"]), int(cfg["act_dim"]), int(cfg["hidden"]))
        net.load_state_dict(raw["state"])
        h0 = raw.get("h0")
        return cls(
            cfg,
            net,
            RunningNorm.from_state_dict(raw["normalizer"]),
            json.loads(raw.get("meta") or "{}"),
            None if h0 is None else h0.numpy(),
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
    ) -> list[RecurrentPolicy]:
        """One candidate per task: the GRU state after K consecutive episodes on it.

        With ``engine="warp"`` the episodes and the GRU run on ``device`` (:meth:`device_actor`).

        Returns:
            The candidates (not yet checked against the un-adapted policy).
        """
        n = len(tasks)
        base = [self.with_initial_state(None)] * n
        if engine == "batch":
            actor: _GRUActor | _GRUDeviceActor = _GRUActor(base)
        else:
            actor = _GRUDeviceActor(base, torch.device(device or "cpu"))
        actor.reset(np.ones(n, dtype=bool))
        for j in range(episodes):
            run_actor_episodes(
                actor,
                env_id,
                tasks,
                episodes=1,
                seeds=[None if s is None else s + 7_919 * j for s in seeds],
                nthread=nthread,
                reset_actor=False,
                engine=engine,
                device=device,
            )
            actor.new_episode_keep_memory()
        h = actor.h.detach().cpu().double().numpy() if torch.is_tensor(actor.h) else actor.h
        return [self.with_initial_state(h[i]) for i in range(n)]

    def fine_tuned(
        self,
        env_id: str,
        task: Task,
        *,
        rounds: int,
        episodes: int,
        seed: int,
        lr: float = 3e-4,
        epochs: int = 10,
        keep: str = "best",
        nthread: int | None = None,
    ) -> RecurrentPolicy:
        """PPO fine-tuning of the GRU network on one environment (actor, critic and GRU).

        ``rounds`` batches of ``episodes`` episodes each: the first measures this policy, each
        later one the network after one more PPO update (``epochs`` passes, truncated
        back-propagation through 50-step chunks, rewards scaled as in training) on the
        previous batch, so R rounds make R − 1 updates from R·K episodes. The observation
        statistics stay frozen. ``keep="best"`` returns the network whose own batch scored
        highest (this policy's included); ``"final"`` the last one measured.

        Args:
            env_id: Family id.
            task: The environment's task.
            rounds: R ≥ 2 batches.
            episodes: K ≥ 1 episodes per batch.
            seed: Seed of start states, action noise and minibatch order.
            lr: Adam step size.
            epochs: Passes over each batch.
            keep: ``"best"`` or ``"final"``.
            nthread: Simulator threads.

        Returns:
            A new policy (this one is not modified); ``meta["fine_tune_returns"]`` holds each
            round's mean return.

        Raises:
            ValueError: On ``rounds < 2``, bad counts, or an unknown ``keep``.
        """
        check_int("rounds", rounds, minimum=2)
        k = check_int("episodes", episodes)
        if keep not in ("best", "final"):
            raise ValueError(f"keep must be 'best' or 'final', got {keep!r}")
        net = copy.deepcopy(self.net)
        chosen = {k_: v.detach().clone() for k_, v in net.state_dict().items()}
        best, returns = -math.inf, []

        def on_batch(it: int, ret: float) -> bool:
            nonlocal best, chosen
            returns.append(ret)
            if keep == "final" or ret > best:
                best = max(best, ret)
                chosen = {k_: v.detach().clone() for k_, v in net.state_dict().items()}
            return it < rounds  # the last batch only measures the last update

        hid = self.net.hidden
        h0 = None if self.h0 is None else torch.as_tensor(self.h0, dtype=torch.float32)
        horizon = gym.spec(env_id).max_episode_steps
        if horizon is None:
            raise ValueError(f"{env_id!r} has no max_episode_steps; register it with one")
        train_episodic_ppo(
            net,
            env_id,
            [task],
            rounds * k * int(horizon),
            seed=seed,
            n_envs=k,
            nthread=nthread,
            settings=PPOSettings(
                lr=lr, epochs=epochs, minibatches=min(4, k), batch_steps=1, bptt=50
            ),
            initial_state=lambda n: None if h0 is None else h0.expand(1, n, hid).contiguous(),
            norm=self.normalizer,
            freeze_norm=True,
            on_batch=on_batch,
        )
        net.load_state_dict(chosen)
        meta = {**copy.deepcopy(self.meta), "fine_tune_returns": returns}
        norm = copy.deepcopy(self.normalizer)
        return RecurrentPolicy(dict(self.config), net, norm, meta, self.h0)


class _GRUActor:
    """GRU states of N worlds, in float64 and row by row, so a world's actions do not depend on N.

    See :mod:`metarobot.invariant`: a plain batched forward is not row-invariant on every CPU.
    """

    def __init__(self, policies: Sequence[StatefulPolicy]) -> None:
        p0 = policies[0]
        if not isinstance(p0, RecurrentPolicy) or any(
            not isinstance(p, RecurrentPolicy) or p.net is not p0.net for p in policies
        ):
            raise ValueError("a batch of recurrent policies must share one network")
        self.p = p0
        self.net = copy.deepcopy(p0.net).double().eval()
        n, hid = len(policies), p0.net.hidden
        self.h0 = np.stack([p.h0 if p.h0 is not None else np.zeros(hid) for p in policies])  # type: ignore[attr-defined]
        self.h = self.h0.copy()
        self.prev_a = np.zeros((n, p0.act_dim))
        self.mean, self.inv = p0.normalizer.mean, 1.0 / np.sqrt(p0.normalizer.var + 1e-8)
        self.clipv = p0.normalizer.clip
        self.low, self.high = p0.low.astype(np.float64), p0.high.astype(np.float64)

    def reset(self, mask: np.ndarray) -> None:
        self.h[mask] = self.h0[mask]
        self.prev_a[mask] = 0.0

    def new_episode_keep_memory(self) -> None:
        """Start new episodes everywhere but keep the GRU states (RL² trials)."""
        self.prev_a[:] = 0.0

    def act(self, obs: np.ndarray, rewards: np.ndarray, noise: np.ndarray | None) -> np.ndarray:
        on = np.clip(
            (np.asarray(obs, dtype=np.float64) - self.mean) * self.inv, -self.clipv, self.clipv
        )
        x = np.concatenate([on, self.prev_a, np.asarray(rewards, np.float64)[:, None]], axis=1)
        net = self.net
        with torch.no_grad():
            e = rowwise_sequential(net.embed, torch.as_tensor(x))
            h = rowwise_gru_cell(e, torch.as_tensor(self.h), net.gru)
            m = rowwise_sequential(net.pi, h).numpy()
        self.h = h.numpy()
        act = m if noise is None else m + np.exp(self.net.log_std.detach().numpy()) * noise
        act = np.clip(act, self.low, self.high)
        self.prev_a = act
        return act.astype(np.float32)


class _GRUDeviceActor:
    """:class:`_GRUActor` with its GRU states and network as float32 tensors on one device.

    Batched over worlds, for the Warp engine's episodes (row-invariance is not promised).
    """

    def __init__(self, policies: Sequence[StatefulPolicy], device: torch.device) -> None:
        host = _GRUActor(policies)  # the same checks and the same starting state
        p0, dev = host.p, device
        self.device, self.clipv = dev, host.clipv
        self.net = copy.deepcopy(p0.net).float().to(dev).eval()

        def t(x: Any) -> torch.Tensor:
            return torch.as_tensor(np.asarray(x), dtype=torch.float32, device=dev)

        self.h0, self.h, self.prev_a = t(host.h0), t(host.h), t(host.prev_a)
        self.mean, self.inv = t(host.mean), t(host.inv)
        self.low, self.high = t(host.low), t(host.high)
        self.std_a = torch.exp(self.net.log_std.detach())

    def reset(self, mask: Any) -> None:
        m = torch.as_tensor(mask, dtype=torch.bool, device=self.device)
        self.h[m] = self.h0[m]
        self.prev_a[m] = 0.0

    def new_episode_keep_memory(self) -> None:
        """Start new episodes everywhere but keep the GRU states (RL² trials)."""
        self.prev_a.zero_()

    def act(self, obs: Any, rewards: Any, noise: Any) -> torch.Tensor:
        dev = self.device
        obs = torch.as_tensor(obs, dtype=torch.float32, device=dev)
        r = torch.as_tensor(rewards, dtype=torch.float32, device=dev)
        with torch.no_grad():
            on = torch.clamp((obs - self.mean) * self.inv, -self.clipv, self.clipv)
            e = self.net.embed(torch.cat([on, self.prev_a, r[:, None]], dim=1))
            _, h = self.net.gru(e[:, None], self.h[None])
            self.h = h[0]
            act = self.net.pi(self.h)
            if noise is not None:
                act = act + self.std_a * torch.as_tensor(noise, dtype=act.dtype, device=dev)
            act = torch.clamp(act, self.low, self.high)
        self.prev_a = act
        return act


# ---------------------------------------------------------------------- training


def train_recurrent(
    env_id: str,
    *,
    steps: int,
    seed: int = 0,
    tasks: Sequence[Task] | None = None,
    n_envs: int = 32,
    nthread: int | None = None,
    hidden: int = 64,
    settings: PPOSettings | None = None,
    init_log_std: float = 0.0,
    engine: str = "batch",
    device: str | None = None,
) -> RecurrentPolicy:
    """Train a recurrent policy with episodic PPO across the family's training tasks.

    Args:
        env_id: Family id.
        steps: Environment-step budget (never exceeded; at least one iteration of ``n_envs``
            episodes runs).
        seed: Seed of everything.
        tasks: Training tasks (default: the family's frozen training split).
        n_envs: Worlds (episodes) per iteration.
        nthread: Simulator threads.
        hidden: GRU size.
        settings: PPO hyper-parameters (see :class:`~metarobot.ppo.PPOSettings`).
        init_log_std: Initial action log std.
        engine: ``"batch"`` or ``"warp"``: rollouts on MuJoCo Warp with the GRU state, inputs
            and buffers on ``device``, and the update there too (see
            :func:`~metarobot.ppo.train_episodic_ppo`).
        device: The Warp device (``engine="warp"`` only).

    Returns:
        The policy; ``meta["env_steps"]`` is the number of environment steps used.

    Raises:
        ValueError: On a budget < 1.
    """
    check_int("steps", steps)
    check_int("hidden", hidden)
    train = list(tasks) if tasks is not None else task_split(env_id)[0]
    meta = {**make_policy(env_id).meta, "algorithm": "recurrent"}
    obs_dim = int(meta["observation_shape"][0])
    act_dim = len(meta["action_low"])
    net = GRUActorCritic(obs_dim, act_dim, hidden, init_log_std)
    net.init_weights(torch.Generator().manual_seed(seed))
    norm, used, log = train_episodic_ppo(
        net,
        env_id,
        train,
        steps,
        seed=seed,
        n_envs=n_envs,
        nthread=nthread,
        settings=settings,
        engine=engine,
        device=device,
    )
    meta.update(
        env_steps=used,
        iterations=len(log),
        final_return=log[-1]["return"],
        engine=engine,
        training_curve=training_curve(log),
    )
    cfg = {"obs_dim": obs_dim, "act_dim": act_dim, "hidden": hidden}
    return RecurrentPolicy(cfg, net, norm, meta)
