"""Off-policy fine-tuning: soft actor-critic rounds for N stacked MLP policies at once.

PPO's fine-tuning rounds (:mod:`metarobot.adaptation`) use each episode for one update and then
throw it away, so with a few thousand steps in the new environment they move a policy little
(`experiments/results/finetune/`: the DR policy on HalfCheetahVel closes 18 % of its gap to the
oracle in 100 episodes, whatever the step size, epochs or clip range). Soft actor-critic
(Haarnoja et al., 2018) keeps every transition in a replay buffer and learns a Q-function from
all of them, which is why it needs far fewer environment steps than PPO on the MuJoCo robots.

Here each round collects K episodes per environment with the current policy (the same batched
episodes as PPO's rounds, so the step count is the same), appends them to that environment's
buffer, and takes ``utd · K · H`` gradient steps (H the horizon: ``utd`` per step the round
could hold, the same count for every environment whatever its episode lengths) on

- twin Q-functions (fresh ``hidden`` MLPs on the policy's normalized observation and the
  clipped action) with soft Bellman targets from Polyak-averaged copies;
- the policy's own Gaussian (its mean network and state-independent log std), by the
  reparameterized SAC loss ``α log π(a|s) − min Q(s, a)``;
- the temperature ``α``, towards a target entropy of ``−act_dim``.

The policy starts trained but the critics start from nothing, so the first ``warmup_rounds``
rounds fit only the critics; an actor step on a random critic would undo what the policy knows.
The observation normalizer stays frozen. All N environments' networks are stacked along a
leading dimension and updated together (batched matmuls, one Adam over the stack), and every
environment draws its minibatches and noise from its own generator (seeded like its episodes),
so an environment's result does not depend on which others run beside it (up to float
rounding).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.func import vmap

from metarobot.policies import GaussianMLP, Params, Policy, gaussian_log_prob
from metarobot.rollout import EpisodeBatch
from metarobot.stacked import StackedAdam
from metarobot.validation import check_float, check_int

__all__ = ["SACFineTuner", "SACSettings"]

#: Seed offset of the SAC minibatch/noise streams from the episodes' seeds.
SAC_SEED_OFFSET = 7_000_003


@dataclass(frozen=True)
class SACSettings:
    """Hyperparameters of SAC fine-tuning (SB3's SAC defaults where one applies).

    Attributes:
        lr: Adam step size of the critics, the policy and the temperature.
        gamma: Discount.
        tau: Polyak coefficient of the target critics.
        batch_size: Transitions per gradient step and environment.
        utd: Gradient steps per environment step of a round (update-to-data ratio; a round of
            K episodes at horizon H takes ``utd · K · H`` steps).
        hidden: Hidden sizes of each Q-function.
        init_alpha: Initial temperature (small: the policy is already trained).
        warmup_rounds: Rounds whose data train only the critics.
    """

    lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005
    batch_size: int = 256
    utd: float = 1.0
    hidden: tuple[int, ...] = (256, 256)
    init_alpha: float = 0.01
    warmup_rounds: int = 1

    def __post_init__(self) -> None:
        for name, high in (("lr", math.inf), ("gamma", 1.0), ("tau", 1.0), ("utd", math.inf)):
            check_float(name, getattr(self, name), high=high)
        check_float("init_alpha", self.init_alpha)
        check_int("batch_size", self.batch_size)
        check_int("warmup_rounds", self.warmup_rounds, minimum=0)
        if not isinstance(self.hidden, (tuple, list)) or not self.hidden:
            raise ValueError(f"hidden must be a non-empty tuple of integers, got {self.hidden!r}")
        for h in self.hidden:
            check_int("hidden", h)


def _init_q(n: int, in_dim: int, hidden: tuple[int, ...], gen: torch.Generator) -> Params:
    """N stacked Q-networks, torch's default Linear initialization (uniform ±1/√fan_in)."""
    sizes = (in_dim, *hidden, 1)
    out: Params = {}
    for j, (a, b) in enumerate(itertools.pairwise(sizes)):
        bound = 1.0 / math.sqrt(a)
        out[f"{j}.weight"] = (torch.rand(n, b, a, generator=gen) * 2 - 1) * bound
        out[f"{j}.bias"] = (torch.rand(n, b, generator=gen) * 2 - 1) * bound
    return out


def _q(params: Params, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """Q-values ``[M, B]`` of M stacked networks on ``obs [M, B, D]`` and ``act [M, B, A]``."""
    x = torch.cat([obs, act], dim=-1)
    layers = len(params) // 2
    for j in range(layers):
        w, b = params[f"{j}.weight"], params[f"{j}.bias"]
        x = torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))
        if j < layers - 1:
            x = torch.relu(x)
    return x.squeeze(-1)


def _twin_q(q: Params, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """Both critics' values ``[2, N, B]`` in one batched pass.

    ``q`` stacks Q1 of the N environments, then their Q2, along its leading dimension (2N).
    """
    n = obs.shape[0]
    two = _q(q, torch.cat([obs, obs]), torch.cat([act, act]))
    return two.view(2, n, -1)


class SACFineTuner:
    """SAC state of N environments: their policies, critics, temperatures and replay buffers.

    Args:
        policy: Supplies the network shape, normalizer and action bounds (not modified).
        params: The N starting parameter sets, stacked (leading dimension N).
        seeds: One seed per environment for its minibatch and noise stream (None: fresh).
        capacity: Transitions each buffer can hold (every round's episodes fit).
        settings: Hyperparameters.
    """

    def __init__(
        self,
        policy: Policy,
        params: Params,
        seeds: Sequence[int | None],
        capacity: int,
        settings: SACSettings,
    ) -> None:
        self.policy, self.cfg = policy, settings
        self.n = n = len(seeds)
        self.actor = {k: v.detach().clone() for k, v in params.items()}
        self.gens = [self._generator(s) for s in seeds]
        # Each environment's critics come from its own stream, as its minibatches do.
        in_dim = policy.obs_dim + policy.act_dim
        q1 = [_init_q(1, in_dim, settings.hidden, g) for g in self.gens]
        q2 = [_init_q(1, in_dim, settings.hidden, g) for g in self.gens]
        # Twin critics stacked along one leading dimension: Q1 of the N environments, then
        # their Q2 (2N networks, evaluated in one batched pass).
        self.q = {k: torch.cat([q[k] for q in q1 + q2]) for k in q1[0]}
        self.q_target = {k: v.clone() for k, v in self.q.items()}
        self.log_alpha = torch.full((n,), math.log(settings.init_alpha))
        self.target_entropy = -float(policy.act_dim)
        self.opt_q = StackedAdam(settings.lr)
        self.opt_pi = StackedAdam(settings.lr)
        self.opt_alpha = StackedAdam(settings.lr)
        bounds = policy.action_bounds()
        a = policy.act_dim
        low, high = (np.full(a, -np.inf), np.full(a, np.inf)) if bounds is None else bounds
        self.low = torch.as_tensor(low, dtype=torch.float32)
        self.high = torch.as_tensor(high, dtype=torch.float32)
        d = policy.obs_dim
        self.obs = torch.zeros(n, capacity, d)
        self.next_obs = torch.zeros(n, capacity, d)
        self.act = torch.zeros(n, capacity, a)
        self.rew = torch.zeros(n, capacity)
        self.done = torch.zeros(n, capacity)
        self.size = torch.zeros(n, dtype=torch.long)
        self.dist = _stacked_distribution(policy)

    @staticmethod
    def _generator(seed: int | None) -> torch.Generator:
        g = torch.Generator()
        s = int(np.random.SeedSequence().generate_state(1)[0]) if seed is None else seed
        g.manual_seed(s + SAC_SEED_OFFSET)
        return g

    # ----------------------------------------------------------------- data
    def add(self, batch: EpisodeBatch, horizon: int) -> list[int]:
        """Append a round's episodes to the buffers; returns the new transitions per environment.

        A step is a transition when its next observation is known: every step but an episode's
        last, plus the last one of an episode that *terminated* (done, no bootstrap). The last
        step of an episode cut by the time limit or by a diverged simulation is dropped.
        """
        obs, mask = batch.obs, batch.mask.bool()
        n, k, t_len, d = obs.shape
        act = torch.clamp(batch.actions, self.low, self.high)
        nxt = torch.cat([obs[:, :, 1:], torch.zeros(n, k, 1, d)], dim=2)
        length = mask.sum(-1)  # [N, K]
        diverged = torch.as_tensor(
            np.zeros((n, k), bool) if batch.diverged_mask is None else batch.diverged_mask
        )
        terminated = (length < horizon) & ~diverged
        last = torch.arange(t_len).view(1, 1, -1) == (length - 1).unsqueeze(-1)
        valid = mask & (~last | terminated.unsqueeze(-1))
        done = (last & terminated.unsqueeze(-1)).float()
        added = []
        for i in range(n):
            sel = valid[i].reshape(-1)
            m = int(sel.sum())
            s = int(self.size[i])
            if s + m > self.obs.shape[1]:
                raise ValueError(f"replay buffer of environment {i} is full ({self.obs.shape[1]})")
            self.obs[i, s : s + m] = obs[i].reshape(-1, d)[sel]
            self.next_obs[i, s : s + m] = nxt[i].reshape(-1, d)[sel]
            self.act[i, s : s + m] = act[i].reshape(-1, act.shape[-1])[sel]
            self.rew[i, s : s + m] = batch.rewards[i].reshape(-1)[sel]
            self.done[i, s : s + m] = done[i].reshape(-1)[sel]
            self.size[i] = s + m
            added.append(m)
        return added

    def _draw(self, *shape: int, normal: bool = False) -> torch.Tensor:
        fn = torch.randn if normal else torch.rand
        return torch.stack([fn(*shape, generator=g) for g in self.gens])

    # --------------------------------------------------------------- update
    def _sample_actions(
        self, actor: Params, obs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterized actions (clipped on the forward pass only) and their log-probs."""
        mean, log_std = self.dist(actor, obs)
        log_std = log_std.unsqueeze(1)
        raw = mean + torch.exp(log_std) * self._draw(*obs.shape[1:-1], mean.shape[-1], normal=True)
        logp = gaussian_log_prob(mean, log_std, raw)
        clipped = raw + (torch.clamp(raw, self.low, self.high) - raw).detach()
        return clipped, logp

    def update(self, train_actor: bool) -> None:
        """One gradient step of every environment's critics (and policy and temperature)."""
        cfg, b = self.cfg, self.cfg.batch_size
        idx = (self._draw(b) * self.size.unsqueeze(1)).long().clamp_max(self.obs.shape[1] - 1)

        def take(x: torch.Tensor) -> torch.Tensor:
            shape = idx.shape + x.shape[2:]
            return torch.gather(x, 1, idx.view(*idx.shape, *[1] * (x.ndim - 2)).expand(shape))

        o, o2, a, r, d = (take(x) for x in (self.obs, self.next_obs, self.act, self.rew, self.done))
        alpha = torch.exp(self.log_alpha).unsqueeze(1)
        with torch.no_grad():
            a2, logp2 = self._sample_actions(self.actor, o2)
            q_next = _twin_q(self.q_target, o2, a2).min(0).values
            y = r + cfg.gamma * (1.0 - d) * (q_next - alpha * logp2)
        q = {k: v.detach().requires_grad_(True) for k, v in self.q.items()}
        q_loss = ((_twin_q(q, o, a) - y) ** 2).mean(2).sum()
        grads = dict(zip(q, torch.autograd.grad(q_loss, list(q.values())), strict=True))
        self.q = self.opt_q.step({k: v.detach() for k, v in q.items()}, grads)
        if train_actor:
            pi = {k: v.detach().requires_grad_(True) for k, v in self.actor.items()}
            a_new, logp = self._sample_actions(pi, o)
            q_pi = _twin_q(self.q, o, a_new).min(0).values
            pi_loss = (alpha * logp - q_pi).mean(1).sum()
            g = dict(zip(pi, torch.autograd.grad(pi_loss, list(pi.values())), strict=True))
            self.actor = self.opt_pi.step({k: v.detach() for k, v in pi.items()}, g)
            # Temperature: d/d log α of −log α · (log π + target), per environment.
            g_alpha = -(logp.detach() + self.target_entropy).mean(1)
            self.log_alpha = self.opt_alpha.step({"a": self.log_alpha}, {"a": g_alpha})["a"]
        with torch.no_grad():  # Polyak averaging, (1 − τ)·target + τ·q, over all tensors at once
            keys = list(self.q)
            mixed = torch._foreach_add(
                torch._foreach_mul([self.q_target[k] for k in keys], 1.0 - cfg.tau),
                torch._foreach_mul([self.q[k] for k in keys], cfg.tau),
            )
            self.q_target = dict(zip(keys, mixed, strict=True))


def _stacked_distribution(
    policy: Policy,
) -> Callable[[Params, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """``(params [N, …], obs [N, B, D]) → (mean [N, B, A], log_std [N, A])`` for N policies.

    A :class:`GaussianMLP` runs as a chain of batched matmuls (the same layers as its
    ``nn.Sequential``); any other network goes through ``vmap`` of the policy's functional
    call, which costs about 1 ms per call on a CPU thread, a tenth of a SAC step.
    """
    net = policy.net
    if not isinstance(net, GaussianMLP):
        return vmap(lambda p, o: policy.distribution(p, o))
    linear = [f"mean.{i}" for i, m in enumerate(net.mean) if isinstance(m, torch.nn.Linear)]

    def dist(params: Params, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = obs
        for j, name in enumerate(linear):
            w, b = params[f"{name}.weight"], params[f"{name}.bias"]
            x = torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))
            if j < len(linear) - 1:
                x = torch.tanh(x)
        return x, params["log_std"]

    return dist
