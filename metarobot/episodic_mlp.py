"""Feedforward PPO policies trained with the context methods' episodic PPO.

RMA's teacher and the recurrent policy train with :func:`metarobot.ppo.train_episodic_ppo`
(observation normalization, reward scaling, task-balanced losses). The SB3 baselines do not
normalize. So that a table can compare *inputs* rather than trainers, this module trains a
plain MLP with that same trainer: on the whole training split it is domain randomization that
differs from RMA's teacher only in not seeing the task's features; on one task it is a
per-task oracle. ``[baselines] trainer = "episodic"`` selects it for a table's DR policy and
oracle (see :class:`metarobot.config.BaselineConfig`).

The result is an ordinary :class:`~metarobot.policies.Policy` (the actor's weights plus the
trainer's observation normalizer), so evaluation, ``adapt``, checkpoints and ``to_sb3`` treat it
like every other MLP policy.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from metarobot.envs import Task
from metarobot.policies import GaussianMLP, Policy, make_policy
from metarobot.ppo import PPOSettings, train_episodic_ppo, training_curve
from metarobot.validation import check_int

__all__ = ["MLPActorCritic", "train_ppo_mlp"]


class MLPActorCritic(nn.Module):
    """A :class:`GaussianMLP` actor and a tanh MLP critic, both on normalized observations.

    Args:
        obs_dim: Observation size.
        act_dim: Action size.
        hidden: Hidden sizes of actor and critic.
        generator: Generator of the orthogonal initialization.
        init_log_std: Initial log standard deviation of the actions.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int],
        generator: torch.Generator,
        init_log_std: float = 0.0,
    ) -> None:
        super().__init__()
        self.actor = GaussianMLP(obs_dim, act_dim, tuple(hidden), init_log_std, generator=generator)
        layers: list[nn.Module] = []
        sizes = [obs_dim, *hidden]
        # Built on the meta device so torch's global generator is never drawn from.
        for a, b in itertools.pairwise(sizes):
            layers += [nn.Linear(a, b, device="meta"), nn.Tanh()]
        layers.append(nn.Linear(sizes[-1], 1, device="meta"))
        self.critic = nn.Sequential(*layers).to_empty(device="cpu")
        with torch.no_grad():
            for m in self.critic:
                if isinstance(m, nn.Linear):
                    nn.init.orthogonal_(m.weight, gain=math.sqrt(2.0), generator=generator)
                    nn.init.zeros_(m.bias)

    @property
    def log_std(self) -> nn.Parameter:
        """The actor's state-independent log standard deviation."""
        return self.actor.log_std

    def make_input(
        self, obs: np.ndarray, prev_act: np.ndarray, prev_rew: np.ndarray, feats: np.ndarray
    ) -> np.ndarray:
        """The normalized observation only: no context."""
        return obs

    def forward(
        self, x: torch.Tensor, h0: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, None]:
        """``x [N, T, obs]`` → action mean, value, no state."""
        return self.actor.mean(x), self.critic(x).squeeze(-1), None


def train_ppo_mlp(
    env_id: str,
    tasks: Sequence[Task],
    steps: int,
    *,
    seed: int = 0,
    method: str = "domain_randomization",
    n_envs: int = 16,
    nthread: int | None = None,
    hidden: Sequence[int] = (64, 64),
    init_log_std: float = 0.0,
    settings: PPOSettings | None = None,
    engine: str = "batch",
    device: str | None = None,
    **meta: Any,
) -> Policy:
    """Train an MLP policy with episodic PPO on ``tasks`` (each episode draws one of them).

    Args:
        env_id: Family id.
        tasks: Tasks to train on (the training split for DR; one test task for an oracle).
        steps: Environment-step budget (never exceeded; one iteration always runs).
        seed: Seed of the initialization, task draws, start states and action noise.
        method: Algorithm name written into the policy's metadata.
        n_envs: Worlds (episodes) per PPO iteration.
        nthread: Simulator threads.
        hidden: Hidden sizes of actor and critic.
        init_log_std: Initial log standard deviation of the actions.
        settings: PPO hyper-parameters.
        engine: ``"batch"`` or ``"warp"`` (device-resident rollouts and updates on ``device``;
            see :func:`~metarobot.ppo.train_episodic_ppo`).
        device: The Warp device (``engine="warp"`` only).
        **meta: More metadata (e.g. ``task``).

    Returns:
        The policy; ``meta["env_steps"]`` counts every environment step used.

    Raises:
        ValueError: On ``steps`` < 1, no tasks, or bad PPO settings.
    """
    check_int("steps", steps)
    if not tasks:
        raise ValueError("tasks must hold at least one task")
    base = make_policy(env_id, hidden=tuple(hidden))
    gen = torch.Generator().manual_seed(int(seed))
    net = MLPActorCritic(base.obs_dim, base.act_dim, hidden, gen, init_log_std)
    norm, used, log = train_episodic_ppo(
        net,
        env_id,
        list(tasks),
        steps,
        seed=seed,
        n_envs=n_envs,
        nthread=nthread,
        settings=settings,
        engine=engine,
        device=device,
    )
    info = {
        **base.meta,
        "algorithm": method,
        "trainer": "episodic",
        "engine": engine,
        "timesteps": steps,
        "env_steps": used,
        "final_return": log[-1]["return"],
        "training_curve": training_curve(log),
        **meta,
    }
    return Policy(net.actor, dict(net.actor.named_parameters()), norm, meta=info)
