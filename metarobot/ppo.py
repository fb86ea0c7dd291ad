"""Episodic PPO on the batched simulator: the trainer of the context-conditioned methods.

Each iteration runs whole episodes, ``n_envs`` at a time (tasks drawn from the training
split), until the batch holds ``batch_steps`` steps, then ``epochs`` PPO passes over whole
sequences, so a recurrent network back-propagates through entire episodes from a zero state (no
burn-in) and a feedforward one treats the sequence as a batch. What differs between methods is
the network and its inputs (:class:`EpisodicNet`): RMA's teacher reads ``[obs, privileged task
features]``, the recurrent policy ``[obs, previous action, previous reward]``.

Task balance: with early termination, a task that a policy fails ends after a few steps (an
InvertedPendulum with its motor reversed falls in ~5 of 200), so plain per-step averaging
gives it a few percent of the gradient and learning it stalls. ``balance=True`` (the default)
weights every episode's steps by ``1/length``, so each sampled task counts equally in the policy
and value losses — the multi-task objective, averaged over tasks rather than steps.

Time limits are bootstrapped with the value of the final observation; advantages are GAE(γ, λ)
normalized over the batch; observations are normalized with running statistics updated after
every iteration (so a rollout and its update see the same statistics).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from metarobot.context import TaskFeatures
from metarobot.envs import Task, make_batched
from metarobot.policies import RunningNorm
from metarobot.validation import check_int

__all__ = ["EpisodicNet", "PPOSettings", "train_episodic_ppo"]


class EpisodicNet(Protocol):
    """A network PPO can train on whole episodes."""

    log_std: nn.Parameter

    def make_input(
        self, obs: np.ndarray, prev_act: np.ndarray, prev_rew: np.ndarray, feats: np.ndarray
    ) -> np.ndarray:
        """Network input ``[N, in]`` from normalized observations and context."""

    def forward(
        self, x: torch.Tensor, h0: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``x [N, T, in]`` → action mean ``[N, T, A]``, value ``[N, T]``, last state."""

    def __call__(
        self, x: torch.Tensor, h0: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """See :meth:`forward`."""

    def parameters(self) -> Any:
        """Trainable parameters."""


class PPOSettings:
    """Hyper-parameters of :func:`train_episodic_ppo` (PPO defaults of SB3 where they apply).

    Args:
        lr: Adam learning rate.
        epochs: Passes over each batch.
        minibatches: Groups of episodes per pass (at most one episode per group).
        gamma: Discount.
        lam: GAE λ.
        clip: Clip range of the probability ratio.
        ent_coef: Entropy bonus.
        vf_coef: Value-loss weight.
        max_grad_norm: Gradient-norm clip.
        balance: Weight each episode by ``1/length`` (every task counts equally).
        batch_steps: Episodes are collected (``n_envs`` at a time) until a batch holds at least
            this many steps, so short episodes do not make for tiny, noisy updates.
    """

    def __init__(
        self,
        lr: float = 3e-4,
        epochs: int = 10,
        minibatches: int = 8,
        gamma: float = 0.99,
        lam: float = 0.95,
        clip: float = 0.2,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        balance: bool = True,
        batch_steps: int = 2048,
    ) -> None:
        self.lr, self.epochs, self.minibatches = lr, epochs, minibatches
        self.gamma, self.lam, self.clip = gamma, lam, clip
        self.ent_coef, self.vf_coef, self.max_grad_norm = ent_coef, vf_coef, max_grad_norm
        self.balance = balance
        self.batch_steps = batch_steps


def train_episodic_ppo(
    net: EpisodicNet,
    env_id: str,
    tasks: Sequence[Task],
    steps: int,
    *,
    seed: int,
    n_envs: int = 16,
    nthread: int | None = None,
    features: TaskFeatures | None = None,
    settings: PPOSettings | None = None,
    initial_state: Callable[[int], torch.Tensor | None] = lambda n: None,
) -> tuple[RunningNorm, int, list[dict[str, float]]]:
    """Train ``net`` with PPO until the next iteration could exceed ``steps`` env steps.

    Args:
        net: The network (trained in place).
        env_id: Family id.
        tasks: Training tasks (each iteration draws ``n_envs`` of them).
        steps: Environment-step budget; never exceeded (one iteration uses at most
            ``n_envs × horizon`` steps, and at least one iteration runs).
        seed: Seed of the task draws, start states, action noise and minibatch order.
        n_envs: Worlds per iteration.
        nthread: Simulator threads.
        features: Privileged task features passed to ``net.make_input`` (else zeros).
        settings: PPO hyper-parameters.
        initial_state: ``n → h0`` for recurrent networks (None for feedforward ones).

    Returns:
        The observation normalizer, the env steps used, and one log row per iteration.

    Raises:
        ValueError: If ``steps`` cannot hold one iteration or the minibatch count is invalid.
    """
    ps = settings or PPOSettings()
    check_int("minibatches", ps.minibatches)
    check_int("epochs", ps.epochs)
    check_int("batch_steps", ps.batch_steps)
    env = make_batched(env_id, list(tasks[:1]) * n_envs, autoreset_mode="disabled", nthread=nthread)
    horizon = int(env.max_episode_steps)
    obs_dim = int(env.single_observation_space.shape[0])
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x6E0]))
    opt = torch.optim.Adam(net.parameters(), lr=ps.lr, eps=1e-5)
    norm = RunningNorm(obs_dim)
    used, it = 0, 0
    log: list[dict[str, float]] = []
    try:
        while it == 0 or used + n_envs * horizon <= steps:
            parts = []
            while True:
                part = _rollout(net, norm, env, tasks, rng, features, initial_state(n_envs))
                parts.append(part)
                used += int(part["mask"].sum())
                got = sum(int(p["mask"].sum()) for p in parts)
                if got >= ps.batch_steps or used + n_envs * horizon > steps:
                    break
            batch = _concat(parts)
            adv, ret = _gae(batch, ps.gamma, ps.lam)
            stats = _update(net, opt, batch, adv, ret, rng, ps, initial_state)
            norm.update(batch["raw_obs"][batch["mask"] > 0])
            it += 1
            log.append({"iteration": it, "env_steps": used, "return": batch["ret"], **stats})
    finally:
        env.close()
    return norm, used, log


def _rollout(
    net: EpisodicNet,
    norm: RunningNorm,
    env: Any,
    tasks: Sequence[Task],
    rng: np.random.Generator,
    features: TaskFeatures | None,
    h0: torch.Tensor | None,
) -> dict[str, Any]:
    n = env.num_envs
    horizon = int(env.max_episode_steps)
    act_dim = int(env.single_action_space.shape[0])
    low, high = env.single_action_space.low, env.single_action_space.high
    idx = rng.integers(0, len(tasks), size=n)
    batch_tasks = [tasks[int(i)] for i in idx]
    feats = features.batch(batch_tasks) if features is not None else np.zeros((n, 1), np.float32)
    obs, _ = env.reset(
        seed=[int(s) for s in rng.integers(0, 2**31 - 1, size=n)],
        options={"tasks": batch_tasks},
    )
    mean_n, inv_n = norm.mean, 1.0 / np.sqrt(norm.var + 1e-8)
    h = h0
    prev_a = np.zeros((n, act_dim))
    prev_r = np.zeros(n)
    alive = np.ones(n, dtype=bool)
    xs, raws, acts, logps, vals, rews, masks = [], [], [], [], [], [], []
    boot = np.zeros(n)
    std = np.exp(net.log_std.detach().numpy().astype(np.float64))
    for _t in range(horizon):
        on = np.clip((obs - mean_n) * inv_n, -norm.clip, norm.clip)
        x = net.make_input(on, prev_a, prev_r, feats).astype(np.float32)
        with torch.no_grad():
            mu, v, h = net(torch.as_tensor(x)[:, None], h)
        mu, v = mu[:, 0].numpy().astype(np.float64), v[:, 0].numpy()
        a = mu + std * rng.standard_normal(mu.shape)
        logp = (-0.5 * ((a - mu) / std) ** 2 - np.log(std) - 0.5 * math.log(2 * math.pi)).sum(-1)
        a_env = np.clip(a, low, high)
        xs.append(x)
        raws.append(np.asarray(obs, dtype=np.float64).copy())
        acts.append(a.astype(np.float32))
        logps.append(logp)
        vals.append(v)
        masks.append(alive.astype(np.float32))
        obs, r, term, trunc, _ = env.step(a_env)
        rews.append(np.where(alive, r, 0.0))
        timeout = alive & trunc & ~term
        if timeout.any():  # bootstrap a time limit from the value of the final observation
            on2 = np.clip((obs - mean_n) * inv_n, -norm.clip, norm.clip)
            x2 = net.make_input(on2, a_env, np.asarray(r, np.float64), feats).astype(np.float32)
            with torch.no_grad():
                _, v2, _ = net(torch.as_tensor(x2)[:, None], h)
            boot = np.where(timeout, v2[:, 0].numpy(), boot)
        prev_a, prev_r = a_env, np.asarray(r, dtype=np.float64)
        alive &= ~(term | trunc)
        if not alive.any():
            break
    rew = np.stack(rews, 1)
    return {
        "x": np.stack(xs, 1),
        "raw_obs": np.stack(raws, 1),
        "act": np.stack(acts, 1),
        "logp": np.stack(logps, 1).astype(np.float32),
        "val": np.stack(vals, 1),
        "rew": rew,
        "mask": np.stack(masks, 1),
        "boot": boot,
        "ret": float(rew.sum(1).mean()),
    }


def _concat(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack rollouts along the world axis, padding time to the longest (mask 0)."""
    if len(parts) == 1:
        return parts[0]
    t_len = max(p["mask"].shape[1] for p in parts)
    out: dict[str, Any] = {}
    for key in ("x", "raw_obs", "act", "logp", "val", "rew", "mask"):
        arrs = []
        for p in parts:
            a = p[key]
            pad = [(0, 0), (0, t_len - a.shape[1])] + [(0, 0)] * (a.ndim - 2)
            arrs.append(np.pad(a, pad))
        out[key] = np.concatenate(arrs, axis=0)
    out["boot"] = np.concatenate([p["boot"] for p in parts])
    out["ret"] = float(out["rew"].sum(1).mean())
    return out


def _gae(batch: dict[str, Any], gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    rew, val, mask, boot = batch["rew"], batch["val"], batch["mask"], batch["boot"]
    n, t_len = rew.shape
    adv = np.zeros((n, t_len))
    last = np.zeros(n)
    for t in range(t_len - 1, -1, -1):
        nxt_alive = mask[:, t + 1] if t + 1 < t_len else np.zeros(n)
        # After an episode's last step: the bootstrap value (time limit) or 0 (termination).
        nxt_v = np.where(nxt_alive > 0, val[:, t + 1] if t + 1 < t_len else 0.0, boot)
        delta = rew[:, t] + gamma * nxt_v - val[:, t]
        last = (delta + gamma * lam * nxt_alive * last) * mask[:, t]
        adv[:, t] = last
    return adv, adv + val


def _update(
    net: EpisodicNet,
    opt: torch.optim.Optimizer,
    batch: dict[str, Any],
    adv: np.ndarray,
    ret: np.ndarray,
    rng: np.random.Generator,
    ps: PPOSettings,
    initial_state: Callable[[int], torch.Tensor | None],
) -> dict[str, float]:
    mask = torch.as_tensor(batch["mask"])
    lengths = mask.sum(1, keepdim=True).clamp_min(1.0)
    # Per-step weights: 1/length balances tasks; plain PPO weighs every step alike.
    weight = mask / lengths if ps.balance else mask
    valid = mask > 0
    a_t = torch.as_tensor(adv, dtype=torch.float32)
    a_t = (a_t - a_t[valid].mean()) / a_t[valid].std().clamp_min(1e-8) * mask
    x = torch.as_tensor(batch["x"])
    acts = torch.as_tensor(batch["act"])
    old_logp = torch.as_tensor(batch["logp"])
    ret_t = torch.as_tensor(ret, dtype=torch.float32)
    n = x.shape[0]
    groups = np.array_split(np.arange(n), min(ps.minibatches, n))  # never an empty group
    pg = vloss = torch.zeros(())
    for _ in range(ps.epochs):
        perm = rng.permutation(n)
        for g in groups:
            idx = torch.as_tensor(perm[g])
            mu, v, _ = net(x[idx], initial_state(len(g)))
            log_std = net.log_std
            logp = (
                -0.5 * ((acts[idx] - mu) / log_std.exp()) ** 2
                - log_std
                - 0.5 * math.log(2 * math.pi)
            ).sum(-1)
            ratio = torch.exp(logp - old_logp[idx])
            w = weight[idx]
            total = w.sum().clamp_min(1e-8)
            surr = torch.minimum(ratio * a_t[idx], ratio.clamp(1 - ps.clip, 1 + ps.clip) * a_t[idx])
            pg = -(surr * w).sum() / total
            vloss = (((v - ret_t[idx]) ** 2) * w).sum() / total
            ent = (log_std + 0.5 * math.log(2 * math.pi * math.e)).sum()
            loss = pg + ps.vf_coef * vloss - ps.ent_coef * ent
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(list(net.parameters()), ps.max_grad_norm)
            opt.step()
    return {"policy_loss": float(pg.detach()), "value_loss": float(vloss.detach())}
