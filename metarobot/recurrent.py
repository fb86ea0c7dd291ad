"""Recurrent (RL²-style) meta-policy: a GRU over (observation, previous action, previous reward).

The policy infers the dynamics from what it has seen in the current episode (Duan et al., 2016;
Ni et al., ICML 2022: recurrent model-free RL is a strong baseline on POMDPs). It is trained
with PPO across the family's training tasks on the batched simulator, one whole episode per
world per iteration, and back-propagates through whole episodes (the GRU state starts at zero at
every reset, so training sequences need no burn-in).

Actor and critic share the embedding and the GRU; the value of a time-limit truncation is
bootstrapped from the final observation. Observations are normalized with running statistics
(frozen in the deployed policy).

Adaptation with K episodes (``metarobot.adapt``) runs the K episodes one after another with the
GRU state carried across them and starts later episodes from the state it ended in (checked
against the un-adapted policy by the safeguard in :mod:`metarobot.adaptation`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from metarobot.envs import Task, make_batched, task_split
from metarobot.io import FORMAT, FORMAT_VERSION, versions
from metarobot.policies import RunningNorm
from metarobot.rollout import run_actor_episodes
from metarobot.stateful import StatefulPolicy

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

    def forward(
        self, x: torch.Tensor, h0: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sequences ``x [N, T, in]`` → mean ``[N, T, A]``, value ``[N, T]``, last state."""
        out, h = self.gru(self.embed(x), h0)
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
    ) -> list[RecurrentPolicy]:
        """One candidate per task: the GRU state after K consecutive episodes on it.

        Returns:
            The candidates (not yet checked against the un-adapted policy).
        """
        n = len(tasks)
        actor = _GRUActor([self.with_initial_state(None)] * n)
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
            )
            actor.new_episode_keep_memory()
        return [self.with_initial_state(actor.h[i]) for i in range(n)]


class _GRUActor:
    """GRU states of N worlds; float64 so a world's actions do not depend on N."""

    def __init__(self, policies: Sequence[StatefulPolicy]) -> None:
        p0 = policies[0]
        if not isinstance(p0, RecurrentPolicy) or any(
            not isinstance(p, RecurrentPolicy) or p.net is not p0.net for p in policies
        ):
            raise ValueError("a batch of recurrent policies must share one network")
        import copy

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
        with torch.no_grad():
            mean, _, h = self.net(torch.as_tensor(x)[:, None], torch.as_tensor(self.h)[None])
        self.h = h[0].numpy()
        m = mean[:, 0].numpy()
        act = m if noise is None else m + np.exp(self.net.log_std.numpy()) * noise
        act = np.clip(act, self.low, self.high)
        self.prev_a = act
        return act.astype(np.float32)


# ---------------------------------------------------------------------- training


def train_recurrent(
    env_id: str,
    *,
    steps: int,
    seed: int = 0,
    tasks: Sequence[Task] | None = None,
    n_envs: int = 16,
    nthread: int | None = None,
    hidden: int = 64,
    lr: float = 3e-4,
    epochs: int = 4,
    minibatches: int = 4,
    gamma: float = 0.99,
    lam: float = 0.95,
    clip: float = 0.2,
    ent_coef: float = 0.0,
    vf_coef: float = 0.5,
    max_grad_norm: float = 0.5,
    init_log_std: float = 0.0,
) -> RecurrentPolicy:
    """Train a recurrent policy with PPO across the family's training tasks.

    Each iteration runs one episode in each of ``n_envs`` worlds (tasks drawn from the training
    split), then ``epochs`` PPO passes over whole sequences in ``minibatches`` groups of worlds.

    Args:
        env_id: Family id.
        steps: Environment-step budget (training stops at the first iteration that reaches it).
        seed: Seed of everything.
        tasks: Training tasks (default: the family's frozen training split).
        n_envs: Worlds per iteration.
        nthread: Simulator threads.
        hidden: GRU size.
        lr: Adam learning rate.
        epochs: PPO epochs per iteration.
        minibatches: Minibatches (groups of worlds) per epoch.
        gamma: Discount.
        lam: GAE λ.
        clip: PPO clip range.
        ent_coef: Entropy bonus.
        vf_coef: Value-loss weight.
        max_grad_norm: Gradient-norm clip.
        init_log_std: Initial action log std.

    Returns:
        The policy; ``meta["env_steps"]`` is the number of environment steps used.

    Raises:
        ValueError: On a budget < 1 or minibatches not dividing into the worlds.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if not 1 <= minibatches <= n_envs:
        raise ValueError(f"minibatches must be in [1, n_envs={n_envs}], got {minibatches!r}")
    from metarobot.learners.base import make_policy

    train = list(tasks) if tasks is not None else task_split(env_id)[0]
    meta = {**make_policy(env_id).meta, "algorithm": "recurrent"}
    obs_dim = int(meta["observation_shape"][0])
    act_dim = len(meta["action_low"])
    gen = torch.Generator().manual_seed(seed)
    net = GRUActorCritic(obs_dim, act_dim, hidden, init_log_std)
    net.init_weights(gen)
    norm = RunningNorm(obs_dim)
    opt = torch.optim.Adam(net.parameters(), lr=lr, eps=1e-5)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x6E0]))
    env = make_batched(env_id, train[:1] * n_envs, autoreset_mode="disabled", nthread=nthread)
    low, high = env.single_action_space.low, env.single_action_space.high
    used, it = 0, 0
    history: list[dict[str, float]] = []
    try:
        while used < steps:
            batch = _rollout(net, norm, env, train, rng, low, high)
            used += int(batch["mask"].sum())
            adv, ret = _gae(batch, gamma, lam)
            stats = _ppo_update(
                net,
                opt,
                batch,
                adv,
                ret,
                rng,
                epochs,
                minibatches,
                clip,
                ent_coef,
                vf_coef,
                max_grad_norm,
            )
            norm.update(batch["raw_obs"][batch["mask"].astype(bool)])
            it += 1
            history.append({"iteration": it, "env_steps": used, "return": batch["ret"], **stats})
    finally:
        env.close()
    meta.update(env_steps=used, iterations=it, final_return=history[-1]["return"])
    cfg = {"obs_dim": obs_dim, "act_dim": act_dim, "hidden": hidden}
    return RecurrentPolicy(cfg, net, norm, meta)


def _rollout(
    net: GRUActorCritic,
    norm: RunningNorm,
    env: Any,
    tasks: Sequence[Task],
    rng: np.random.Generator,
    low: np.ndarray,
    high: np.ndarray,
) -> dict[str, Any]:
    n = env.num_envs
    horizon = int(env.max_episode_steps)
    idx = rng.integers(0, len(tasks), size=n)
    obs, _ = env.reset(
        seed=[int(s) for s in rng.integers(0, 2**31 - 1, size=n)],
        options={"tasks": [tasks[int(i)] for i in idx]},
    )
    mean_n, inv_n = norm.mean, 1.0 / np.sqrt(norm.var + 1e-8)
    h = torch.zeros(1, n, net.hidden)
    prev_a = np.zeros((n, net.act_dim))
    prev_r = np.zeros(n)
    alive = np.ones(n, dtype=bool)
    xs, raws, acts, logps, vals, rews, masks = [], [], [], [], [], [], []
    boot = np.zeros(n)
    std = np.exp(net.log_std.detach().numpy())
    for _t in range(horizon):
        on = np.clip((obs - mean_n) * inv_n, -norm.clip, norm.clip)
        x = np.concatenate([on, prev_a, prev_r[:, None]], axis=1).astype(np.float32)
        with torch.no_grad():
            mu, v, h = net(torch.as_tensor(x)[:, None], h)
        mu, v = mu[:, 0].numpy(), v[:, 0].numpy()
        a = mu + std * rng.standard_normal(mu.shape)
        logp = (-0.5 * ((a - mu) / std) ** 2 - np.log(std) - 0.5 * math.log(2 * math.pi)).sum(-1)
        a_env = np.clip(a, low, high)
        xs.append(x)
        raws.append(obs.copy())
        acts.append(a.astype(np.float32))
        logps.append(logp)
        vals.append(v)
        masks.append(alive.astype(np.float32))
        obs, r, term, trunc, _ = env.step(a_env)
        rews.append(np.where(alive, r, 0.0))
        ended = alive & (term | trunc)
        timeout = ended & ~term
        if timeout.any():  # bootstrap a time limit from the value of the final observation
            on2 = np.clip((obs - mean_n) * inv_n, -norm.clip, norm.clip)
            x2 = np.concatenate([on2, a_env, r[:, None]], axis=1).astype(np.float32)
            with torch.no_grad():
                _, v2, _ = net(torch.as_tensor(x2)[:, None], h)
            boot = np.where(timeout, v2[:, 0].numpy(), boot)
        prev_a, prev_r = a_env, np.asarray(r, dtype=np.float64)
        alive &= ~(term | trunc)
        if not alive.any():
            break
    mask = np.stack(masks, 1)
    rew = np.stack(rews, 1)
    return {
        "x": np.stack(xs, 1),
        "raw_obs": np.stack(raws, 1),
        "act": np.stack(acts, 1),
        "logp": np.stack(logps, 1).astype(np.float32),
        "val": np.stack(vals, 1),
        "rew": rew,
        "mask": mask,
        "boot": boot,
        "ret": float(rew.sum(1).mean()),
    }


def _gae(batch: dict[str, Any], gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    rew, val, mask, boot = batch["rew"], batch["val"], batch["mask"], batch["boot"]
    n, t_len = rew.shape
    adv = np.zeros((n, t_len))
    last = np.zeros(n)
    for t in range(t_len - 1, -1, -1):
        nxt_alive = mask[:, t + 1] if t + 1 < t_len else np.zeros(n)
        # After the last valid step: the bootstrap value (time limit) or 0 (termination).
        nxt_v = np.where(nxt_alive > 0, val[:, t + 1] if t + 1 < t_len else 0.0, boot)
        delta = rew[:, t] + gamma * nxt_v - val[:, t]
        last = (delta + gamma * lam * nxt_alive * last) * mask[:, t]
        adv[:, t] = last
    return adv, adv + val


def _ppo_update(
    net: GRUActorCritic,
    opt: torch.optim.Optimizer,
    batch: dict[str, Any],
    adv: np.ndarray,
    ret: np.ndarray,
    rng: np.random.Generator,
    epochs: int,
    minibatches: int,
    clip: float,
    ent_coef: float,
    vf_coef: float,
    max_grad_norm: float,
) -> dict[str, float]:
    mask = torch.as_tensor(batch["mask"])
    valid = mask > 0
    a_t = torch.as_tensor(adv, dtype=torch.float32)
    mu_a, sd_a = a_t[valid].mean(), a_t[valid].std().clamp_min(1e-8)
    a_t = (a_t - mu_a) / sd_a * mask
    x = torch.as_tensor(batch["x"])
    acts = torch.as_tensor(batch["act"])
    old_logp = torch.as_tensor(batch["logp"])
    ret_t = torch.as_tensor(ret, dtype=torch.float32)
    n = x.shape[0]
    groups = np.array_split(np.arange(n), minibatches)
    for _ in range(epochs):
        perm = rng.permutation(n)
        for g in groups:
            idx = torch.as_tensor(perm[g])
            mu, v, _ = net(x[idx])
            log_std = net.log_std
            logp = (
                -0.5 * ((acts[idx] - mu) / log_std.exp()) ** 2
                - log_std
                - 0.5 * math.log(2 * math.pi)
            ).sum(-1)
            ratio = torch.exp(logp - old_logp[idx])
            m = mask[idx]
            cnt = m.sum().clamp_min(1.0)
            surr = torch.minimum(ratio * a_t[idx], ratio.clamp(1 - clip, 1 + clip) * a_t[idx])
            pg = -(surr * m).sum() / cnt
            vloss = (((v - ret_t[idx]) ** 2) * m).sum() / cnt
            ent = (log_std + 0.5 * math.log(2 * math.pi * math.e)).sum()
            loss = pg + vf_coef * vloss - ent_coef * ent
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), max_grad_norm)
            opt.step()
    return {"policy_loss": float(pg.detach()), "value_loss": float(vloss.detach())}
