"""Collect episodes from the batched simulator; fit the value baseline; compute GAE.

No learning happens here: this module turns (policy, parameter sets, tasks) into typed tensors.
Episodes are laid out task-major, ``[N tasks, K episodes, T steps, ...]``, padded to the horizon
with a validity ``mask``.

Randomness: task i draws everything from ``np.random.default_rng(seed_i)`` — first the reset seeds
of its K worlds, then all of its action noise — so its episodes do not depend on which other tasks
are collected alongside it (``adapt_many`` equals sequential ``adapt``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.func import vmap

from metarobot.envs.batched import BatchedMujocoEnv, make_batched
from metarobot.envs.randomization import Task
from metarobot.policies import Policy, RunningNorm, gaussian_log_prob, resolve_device
from metarobot.stateful import BatchActor, StatefulPolicy

#: With a device-resident engine, look whether any world is still alive every this many steps
#: (one flag crosses to the host); the episodes are trimmed to the same length either way.
_ALIVE_CHECK = 16

__all__ = [
    "ActorEpisodes",
    "EpisodeBatch",
    "collect",
    "compute_advantages",
    "draw_episode_randomness",
    "episode_env",
    "episode_returns",
    "linear_baseline",
    "run_actor_episodes",
]


@dataclass
class EpisodeBatch:
    """Episodes of N tasks × K episodes padded to T steps.

    Attributes:
        obs: Normalized observations ``[N, K, T, obs_dim]`` (float32).
        raw_obs: Raw observations ``[N, K, T, obs_dim]`` (float32), for normalizer updates.
        actions: Sampled actions ``[N, K, T, act_dim]`` (before clipping to the action space).
        rewards: ``[N, K, T]``.
        mask: 1 for steps inside the episode, else 0 ``[N, K, T]``.
        logp: Log-probability of ``actions`` under the sampling parameters ``[N, K, T]``.
        returns: Undiscounted episode returns ``[N, K]``.
        diverged: Number of episodes that ended because the simulation diverged.
        advantages: Normalized GAE advantages ``[N, K, T]`` (after ``compute_advantages``).
        reset_seeds: The reset seed of each world (task-major), which identifies its episode.
        diverged_mask: ``[N, K]`` booleans: which episodes ended in a diverged simulation.
    """

    obs: torch.Tensor
    raw_obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    mask: torch.Tensor
    logp: torch.Tensor
    returns: torch.Tensor
    diverged: int
    advantages: torch.Tensor | None = None
    reset_seeds: tuple[int, ...] = ()
    diverged_mask: np.ndarray | None = None

    def task(self, i: int) -> EpisodeBatch:
        """The episodes of task ``i`` (leading dimension kept, size 1)."""
        sl = slice(i, i + 1)
        return EpisodeBatch(
            self.obs[sl],
            self.raw_obs[sl],
            self.actions[sl],
            self.rewards[sl],
            self.mask[sl],
            self.logp[sl],
            self.returns[sl],
            0,
            None if self.advantages is None else self.advantages[sl],
        )

    def loss_inputs(self) -> dict[str, torch.Tensor]:
        """The tensors a surrogate loss needs, each with leading task dimension."""
        if self.advantages is None:
            raise ValueError("advantages are not computed yet; call compute_advantages first")
        return {
            "obs": self.obs,
            "actions": self.actions,
            "logp": self.logp,
            "adv": self.advantages,
            "mask": self.mask,
        }


def task_rngs(seeds: Sequence[int | None]) -> list[np.random.Generator]:
    """One generator per task (``None`` draws fresh entropy)."""
    return [np.random.default_rng(s) for s in seeds]


def collect(
    policy: Policy,
    env: BatchedMujocoEnv,
    params: Mapping[str, torch.Tensor],
    *,
    n_tasks: int,
    episodes: int,
    seeds: Sequence[int | None],
    stacked: bool,
    deterministic: bool = False,
    tasks: Sequence[Task] | None = None,
    normalizers: Sequence[RunningNorm] | None = None,
) -> EpisodeBatch:
    """Run one episode in each of the ``n_tasks × episodes`` worlds of ``env``.

    Args:
        policy: Supplies the network shape and the (frozen) observation normalizer.
        env: Batched env whose world ``i·episodes + k`` runs task ``i``; autoreset is not used.
        params: Parameters; with ``stacked=True`` each tensor has a leading task dimension.
        n_tasks: N.
        episodes: K, episodes per task.
        seeds: One seed per task (world reset seeds and action noise are drawn from it).
        stacked: Whether ``params`` holds one parameter set per task.
        deterministic: Act with the mean action (no noise).
        tasks: If given, the N tasks to switch the worlds to (task i in worlds
            ``i·episodes … i·episodes + episodes − 1``); else the worlds keep their tasks.
        normalizers: With ``stacked=True``, one observation normalizer per task (policies
            trained apart have their own statistics); default: ``policy``'s for every task.

    Returns:
        The episodes.

    Raises:
        ValueError: If the env's world count or spaces do not match.
    """
    n, k = n_tasks, episodes
    if env.num_envs != n * k:
        raise ValueError(f"env has {env.num_envs} worlds, expected n_tasks·episodes = {n * k}")
    obs_dim = env.single_observation_space.shape[0]
    act_dim = env.single_action_space.shape[0]
    if obs_dim != policy.obs_dim or act_dim != policy.act_dim:
        raise ValueError(
            f"policy has obs/act sizes ({policy.obs_dim}, {policy.act_dim}) but env {env.env_id} "
            f"has ({obs_dim}, {act_dim})"
        )
    if len(seeds) != n:
        raise ValueError(f"seeds must hold one seed per task ({n}), got {len(seeds)}")
    if normalizers is not None and (not stacked or len(normalizers) != n):
        raise ValueError(f"normalizers must hold one normalizer per task ({n}) with stacked=True")
    normalize = policy.normalize if normalizers is None else _per_task_normalize(normalizers)
    horizon = int(env.max_episode_steps)
    reset_seeds, noise = draw_episode_randomness(seeds, k, horizon, act_dim)
    low, high = env.single_action_space.low, env.single_action_space.high
    dev = policy.device

    def dist(p: Mapping[str, torch.Tensor], o: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return policy.distribution(p, o)

    batched_dist = vmap(dist) if stacked else None
    # Act in float64 and round actions to float32: the rounding absorbs the last-bit differences
    # that batched float matmuls of different batch sizes produce, so a task's episodes are the
    # same whether it is collected alone or with others (chaotic robots would amplify them).
    params64 = {key: v.double() for key, v in params.items()}

    # Buffers live on the policy's device. With an engine that keeps observations on the device
    # (Warp, as_torch=True) nothing crosses to the host inside the loop except one flag every
    # _ALIVE_CHECK steps; with the CPU engine observations arrive as numpy arrays.
    def buf(*shape: int) -> torch.Tensor:
        return torch.zeros((horizon, *shape), dtype=torch.float32, device=dev)

    obs_buf, act_buf = buf(n, k, obs_dim), buf(n, k, act_dim)
    rew_buf, mask_buf, logp_buf = buf(n, k), buf(n, k), buf(n, k)
    alive = torch.ones(n * k, dtype=torch.bool, device=dev)
    diverged = torch.zeros(n * k, dtype=torch.bool, device=dev)
    options = None
    if tasks is not None:
        if len(tasks) != n:
            raise ValueError(f"tasks must hold one task per task slot ({n}), got {len(tasks)}")
        options = {"tasks": [t for t in tasks for _ in range(k)]}
    obs, _ = env.reset(seed=reset_seeds, options=options)
    on_device = isinstance(obs, torch.Tensor)
    low_t = torch.as_tensor(low, dtype=torch.float32, device=dev)
    high_t = torch.as_tensor(high, dtype=torch.float32, device=dev)
    noise_t = torch.as_tensor(noise, dtype=torch.float64, device=dev)

    def tensor(x: Any, dtype: torch.dtype) -> torch.Tensor:  # numpy (CPU engine) or torch
        return torch.as_tensor(x, device=dev).to(dtype)

    with torch.no_grad():
        for t in range(horizon):
            o = tensor(obs, torch.float32).reshape(n, k, obs_dim)
            on = normalize(o).double()
            if stacked:
                mean, log_std = batched_dist(params64, on)  # [N,K,A], [N,A]
                log_std = log_std[:, None, :]
            else:
                mean, log_std = dist(params64, on)
            act = (mean if deterministic else mean + torch.exp(log_std) * noise_t[t]).float()
            obs_buf[t], act_buf[t] = o, act
            logp_buf[t] = gaussian_log_prob(mean.float(), log_std.float(), act)
            mask_buf[t] = alive.reshape(n, k)
            a_env = torch.clamp(act.reshape(n * k, act_dim), low_t, high_t)
            obs, rew, term, trunc, info = env.step(a_env if on_device else a_env.cpu().numpy())
            rew_buf[t] = torch.where(alive, tensor(rew, torch.float32), 0.0).reshape(n, k)
            diverged |= alive & tensor(info["diverged"], torch.bool)
            alive &= ~(tensor(term, torch.bool) | tensor(trunc, torch.bool))
            if (not on_device or (t + 1) % _ALIVE_CHECK == 0) and not bool(alive.any()):
                break
        # The last step any world was alive: the same length whichever engine ran it.
        live = torch.nonzero(mask_buf.reshape(horizon, -1).any(1)).flatten()
        horizon_used = int(live.max()) + 1 if len(live) else 1

    bufs = {"obs": obs_buf, "act": act_buf, "rew": rew_buf, "mask": mask_buf, "logp": logp_buf}
    return _episode_batch(
        policy, bufs, horizon_used, diverged.reshape(n, k).cpu().numpy(), reset_seeds, normalize
    )


def _per_task_normalize(
    normalizers: Sequence[RunningNorm],
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``obs [N, ...leading, obs_dim]`` → task i normalized with ``normalizers[i]``.

    Elementwise the same float32 operations as :meth:`Policy.normalize`, so a policy's
    episodes do not depend on the policies it runs beside.
    """
    cache: dict[torch.device, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def normalize(obs: torch.Tensor) -> torch.Tensor:
        if obs.device not in cache:
            pairs = [nm.torch(obs.device) for nm in normalizers]
            clip = torch.tensor([nm.clip for nm in normalizers], device=obs.device)
            cache[obs.device] = (
                torch.stack([m for m, _ in pairs]),
                torch.stack([i for _, i in pairs]),
                clip,
            )
        mean, inv, clip = cache[obs.device]
        shape = (len(normalizers),) + (1,) * (obs.dim() - 2) + (obs.shape[-1],)
        c = clip.reshape((len(normalizers),) + (1,) * (obs.dim() - 1))
        return torch.clamp((obs - mean.reshape(shape)) * inv.reshape(shape), -c, c)

    return normalize


def episode_env(
    env_id: str,
    tasks: Sequence[Task],
    episodes: int,
    *,
    nthread: int | None = None,
    engine: str = "batch",
    device: str | torch.device | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
) -> Any:
    """The batched env :func:`collect` runs: world ``i·K + k`` on ``tasks[i]``, no autoreset.

    Args:
        env_id: Family id.
        tasks: The N tasks.
        episodes: K worlds per task.
        nthread: Simulator threads (CPU engine).
        engine: ``"batch"`` (mujoco.batch on CPU threads) or ``"warp"`` (MuJoCo Warp; its
            observations stay on ``device`` as torch tensors, so collection makes no host
            round trip per step).
        device: The Warp device (the policy's device: ``"cpu"`` or ``"cuda"``); ignored by the
            CPU engine.
        env_kwargs: Passed to ``gym.make`` for every world (e.g. a within-episode change
            schedule: ``{"change_step": 100, "change_to": "test"}``).
    """
    worlds = [t for t in tasks for _ in range(episodes)]
    dev = str(device) if engine == "warp" and device is not None else None
    return make_batched(
        env_id,
        worlds,
        autoreset_mode="disabled",
        nthread=nthread,
        engine=engine,
        device=dev,
        **dict(env_kwargs or {}),
    )


def draw_episode_randomness(
    seeds: Sequence[int | None], episodes: int, horizon: int, act_dim: int
) -> tuple[list[int], np.ndarray]:
    """Per task, from ``default_rng(seed_i)``: K world reset seeds, then all action noise.

    Returns:
        The reset seeds (task-major, ``N·K``) and standard-normal noise ``[T, N, K, A]``.
    """
    rngs = task_rngs(seeds)
    reset_seeds = [int(s) for r in rngs for s in r.integers(0, 2**31 - 1, size=episodes)]
    noise = np.stack([r.standard_normal((horizon, episodes, act_dim)) for r in rngs], axis=1)
    return reset_seeds, noise


def _episode_batch(
    policy: Policy,
    bufs: Mapping[str, torch.Tensor],
    steps: int,
    diverged: np.ndarray,
    reset_seeds: Sequence[int],
    normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> EpisodeBatch:
    """Step-major buffers ``[T, N, K, ...]`` (first ``steps`` used) → an :class:`EpisodeBatch`."""
    dev = policy.device

    def tt(x: torch.Tensor) -> torch.Tensor:  # [T, N, K, ...] -> [N, K, T, ...]
        return torch.movedim(x[:steps], 0, 2).contiguous().to(dev)

    raw = tt(bufs["obs"])
    rewards = tt(bufs["rew"])
    return EpisodeBatch(
        obs=(normalize or policy.normalize)(raw),
        raw_obs=raw,
        actions=tt(bufs["act"]),
        rewards=rewards,
        mask=tt(bufs["mask"]),
        logp=tt(bufs["logp"]),
        returns=rewards.sum(-1),
        diverged=int(diverged.sum()),
        reset_seeds=tuple(reset_seeds),
        diverged_mask=diverged.copy(),
    )


def _discounted(rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    out = torch.zeros_like(rewards)
    run = torch.zeros_like(rewards[..., 0])
    for t in range(rewards.shape[-1] - 1, -1, -1):
        run = (rewards[..., t] + gamma * run) * mask[..., t]
        out[..., t] = run
    return out


def linear_baseline(batch: EpisodeBatch, gamma: float, reg: float = 1e-5) -> torch.Tensor:
    """Per-task linear value baseline (MAML's ``LinearFeatureBaseline``).

    Fitted by ridge regression of discounted returns on ``[o, o², t, t², t³, 1]`` over the task's
    episodes: no training, unbiased per task, and cheap enough to refit for every batch.

    Returns:
        Values ``[N, K, T]`` (0 outside episodes).
    """
    obs = batch.obs.double()
    n, k, t_len, _ = obs.shape
    mask = batch.mask.double()
    t = torch.arange(t_len, dtype=torch.float64, device=obs.device) / 100.0
    t = t.view(1, 1, t_len, 1).expand(n, k, t_len, 1)
    feats = torch.cat([obs, obs**2, t, t**2, t**3, torch.ones_like(t)], dim=-1)
    feats = feats * mask[..., None]
    targets = _discounted(batch.rewards.double(), mask, gamma)
    x = feats.reshape(n, k * t_len, -1)
    y = targets.reshape(n, k * t_len, 1)
    xtx = x.transpose(1, 2) @ x
    xty = x.transpose(1, 2) @ y
    eye = torch.eye(xtx.shape[-1], dtype=torch.float64, device=obs.device)
    scale = xtx.diagonal(dim1=1, dim2=2).mean(-1).clamp_min(1.0)[:, None, None]
    w = torch.linalg.solve(xtx + reg * scale * eye, xty)
    values = (x @ w).reshape(n, k, t_len) * mask
    return values


def compute_advantages(
    batch: EpisodeBatch, gamma: float = 0.99, lam: float = 0.95, normalize: bool = True
) -> EpisodeBatch:
    """Fill ``batch.advantages`` with GAE(γ, λ) on the linear baseline, normalized per task.

    Returns:
        The same batch (advantages set).
    """
    values = linear_baseline(batch, gamma)
    rew = batch.rewards.double()
    mask = batch.mask.double()
    t_len = rew.shape[-1]
    adv = torch.zeros_like(rew)
    last = torch.zeros_like(rew[..., 0])
    for t in range(t_len - 1, -1, -1):
        nxt_mask = mask[..., t + 1] if t + 1 < t_len else torch.zeros_like(last)
        nxt_v = values[..., t + 1] if t + 1 < t_len else torch.zeros_like(last)
        delta = rew[..., t] + gamma * nxt_v * nxt_mask - values[..., t]
        last = (delta + gamma * lam * nxt_mask * last) * mask[..., t]
        adv[..., t] = last
    if normalize:
        cnt = mask.sum(dim=(1, 2), keepdim=True).clamp_min(1.0)
        mu = (adv * mask).sum(dim=(1, 2), keepdim=True) / cnt
        var = (((adv - mu) * mask) ** 2).sum(dim=(1, 2), keepdim=True) / cnt
        adv = (adv - mu) / torch.sqrt(var + 1e-8) * mask
    batch.advantages = adv.float()
    return batch


@dataclass
class ActorEpisodes:
    """Episodes of N tasks × K worlds run by a :class:`~metarobot.stateful.BatchActor`.

    Attributes:
        returns: Undiscounted returns ``[N, K]``.
        rewards: Per-step rewards ``[N, K, T]`` (0 after an episode's end).
        diverged: ``[N, K]`` booleans: which episodes ended in a diverged simulation.
        reset_seeds: The reset seed of each world (task-major).
    """

    returns: np.ndarray
    rewards: np.ndarray
    diverged: np.ndarray
    reset_seeds: tuple[int, ...]


def run_actor_episodes(
    actor: BatchActor,
    env_id: str,
    tasks: Sequence[Task],
    *,
    episodes: int,
    seeds: Sequence[int | None],
    deterministic: bool = True,
    nthread: int | None = None,
    reset_actor: bool = True,
    env_kwargs: Mapping[str, Any] | None = None,
    engine: str = "batch",
    device: str | torch.device | None = None,
) -> ActorEpisodes:
    """Run one episode in each of ``N × K`` worlds (world ``i·K + k`` runs ``tasks[i]``).

    Seeds are drawn as in :func:`collect` (task i: reset seeds, then action noise, from
    ``default_rng(seeds[i])``), so a stateful policy and an MLP meet the same start states.

    Args:
        actor: Acts for the ``N·K`` worlds; its world order matches the env's.
        env_id: Family id.
        tasks: The N tasks.
        episodes: K.
        seeds: One seed per task.
        deterministic: Mean actions (else sampled with the drawn noise).
        nthread: Simulator threads.
        reset_actor: Start the actor's episodes (False lets an actor carry memory across
            episodes; it is still told nothing else).
        env_kwargs: Passed to ``gym.make`` for every world (see :func:`episode_env`).
        engine: ``"batch"`` (numpy actor) or ``"warp"``: MuJoCo Warp on ``device``, with a
            device actor (``StatefulPolicy.device_actor``): observations, rewards, noise, the
            policy's state and actions stay on the device until the episodes end.
        device: The Warp device (``"cpu"``, ``"cuda"``); ignored by the CPU engine.

    Returns:
        The episodes' returns, rewards and divergence flags.
    """
    n, k = len(tasks), episodes
    if len(seeds) != n:
        raise ValueError(f"seeds must hold one seed per task ({n}), got {len(seeds)}")
    if engine == "warp":
        return _run_device_episodes(
            actor, env_id, tasks, k, seeds, deterministic, reset_actor, env_kwargs, device
        )
    env = episode_env(env_id, tasks, k, nthread=nthread, env_kwargs=env_kwargs)
    try:
        horizon = int(env.max_episode_steps)
        act_dim = int(env.single_action_space.shape[0])
        reset_seeds, noise = draw_episode_randomness(seeds, k, horizon, act_dim)
        noise = noise.reshape(horizon, n * k, act_dim)
        obs, _ = env.reset(seed=reset_seeds)
        if reset_actor:
            actor.reset(np.ones(n * k, dtype=bool))
        alive = np.ones(n * k, dtype=bool)
        diverged = np.zeros(n * k, dtype=bool)
        last_r = np.zeros(n * k)
        rewards = np.zeros((horizon, n * k))
        for t in range(horizon):
            act = actor.act(obs, last_r, None if deterministic else noise[t])
            obs, rew, term, trunc, info = env.step(act)
            rewards[t] = np.where(alive, rew, 0.0)
            last_r = np.asarray(rew, dtype=np.float64)
            diverged |= alive & info["diverged"]
            alive &= ~(term | trunc)
            if not alive.any():
                break
    finally:
        env.close()
    per_step = np.moveaxis(rewards, 0, 1).reshape(n, k, horizon)
    return ActorEpisodes(per_step.sum(-1), per_step, diverged.reshape(n, k), tuple(reset_seeds))


def _run_device_episodes(
    actor: Any,
    env_id: str,
    tasks: Sequence[Task],
    k: int,
    seeds: Sequence[int | None],
    deterministic: bool,
    reset_actor: bool,
    env_kwargs: Mapping[str, Any] | None,
    device: str | torch.device | None,
) -> ActorEpisodes:
    """:func:`run_actor_episodes` on MuJoCo Warp, every per-step tensor on the device."""
    n = len(tasks)
    env = episode_env(env_id, tasks, k, engine="warp", device=device, env_kwargs=env_kwargs)
    try:
        dev = env.torch_device
        horizon = int(env.max_episode_steps)
        act_dim = int(env.single_action_space.shape[0])
        reset_seeds, noise_np = draw_episode_randomness(seeds, k, horizon, act_dim)
        noise = torch.as_tensor(
            noise_np.reshape(horizon, n * k, act_dim), dtype=torch.float32, device=dev
        )
        obs, _ = env.reset(seed=reset_seeds)
        if reset_actor:
            actor.reset(torch.ones(n * k, dtype=torch.bool, device=dev))
        alive = torch.ones(n * k, dtype=torch.bool, device=dev)
        diverged = torch.zeros_like(alive)
        last_r = torch.zeros(n * k, device=dev)
        rewards = torch.zeros((horizon, n * k), dtype=torch.float64, device=dev)
        for t in range(horizon):
            act = actor.act(obs, last_r, None if deterministic else noise[t])
            obs, rew, term, trunc, info = env.step(act)
            rewards[t] = torch.where(alive, rew.double(), 0.0)
            last_r = rew
            diverged |= alive & info["diverged"]
            alive &= ~(term | trunc)
            # One flag crosses to the host every _ALIVE_CHECK steps (as in collect); steps past
            # every episode's end add nothing, since rewards and divergence are masked by alive.
            if (t + 1) % _ALIVE_CHECK == 0 and not bool(alive.any()):
                break
    finally:
        env.close()
    per_step = rewards.cpu().numpy().T.reshape(n, k, horizon)
    div = diverged.cpu().numpy().reshape(n, k)
    return ActorEpisodes(per_step.sum(-1), per_step, div, tuple(reset_seeds))


def episode_returns(
    policies: Sequence[Policy | StatefulPolicy],
    env_id: str,
    tasks: Sequence[Task],
    *,
    episodes: int,
    seeds: Sequence[int | None],
    nthread: int | None = None,
    rewards: bool = False,
    engine: str = "batch",
    env_kwargs: Mapping[str, Any] | None = None,
    device: str | torch.device | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...], np.ndarray | None]:
    """Deterministic episodes of ``policies[i]`` on ``tasks[i]`` (any policy type).

    Plain MLP policies run stacked through :func:`collect`; stateful ones through their
    :class:`~metarobot.stateful.BatchActor` (world ``i·K + k`` runs ``policies[i]``).
    Policies that cannot share one run (of different types, network shapes, or — stateful —
    networks, e.g. environments fine-tuned one by one) run in groups, one run per group; task
    i's episodes start from the states ``seeds[i]`` draws either way, so paired comparisons
    stay paired.

    ``engine="warp"`` runs MLP policies on MuJoCo Warp on their device (see
    :func:`episode_env`) and stateful ones on ``device`` (default: CUDA when torch sees it,
    else the CPU) through their device actor. ``env_kwargs`` are passed to ``gym.make`` for
    every world (e.g. a within-episode change schedule).

    Returns:
        Returns ``[N, K]``, diverged flags ``[N, K]``, the world reset seeds, and with
        ``rewards`` the per-step rewards ``[N, K, T]`` (else None).

    Raises:
        ValueError: On a policy count that does not match the tasks, or a stateful policy
            type without a device actor on ``engine="warp"``.
    """
    n = len(tasks)
    if len(policies) != n:
        raise ValueError(f"need one policy per task, got {len(policies)} policies for {n} tasks")
    groups = _batch_groups(policies)
    if len(groups) > 1:
        kw = {
            "nthread": nthread,
            "rewards": rewards,
            "engine": engine,
            "env_kwargs": env_kwargs,
            "device": device,
        }
        runs = [
            episode_returns(
                [policies[i] for i in idx],
                env_id,
                [tasks[i] for i in idx],
                episodes=episodes,
                seeds=[seeds[i] for i in idx],
                **kw,
            )
            for idx in groups
        ]
        return _assemble(groups, runs, n, episodes, rewards)
    lead = policies[0]
    if isinstance(lead, StatefulPolicy):
        worlds = [p for p in policies for _ in range(episodes)]
        dev = None
        if engine == "batch":
            actor: Any = type(lead).batch_actor(worlds)
        else:
            dev = resolve_device("auto" if device is None else device)
            actor = type(lead).device_actor(worlds, dev)
        ep = run_actor_episodes(
            actor,
            env_id,
            tasks,
            episodes=episodes,
            seeds=seeds,
            nthread=nthread,
            env_kwargs=env_kwargs,
            engine=engine,
            device=dev,
        )
        return ep.returns, ep.diverged, ep.reset_seeds, ep.rewards if rewards else None
    env = episode_env(
        env_id,
        tasks,
        episodes,
        nthread=nthread,
        engine=engine,
        device=lead.device,
        env_kwargs=env_kwargs,
    )
    try:
        stacked = {k: torch.stack([p.params[k].detach() for p in policies]) for k in lead.params}
        batch = collect(
            lead,
            env,
            stacked,
            n_tasks=n,
            episodes=episodes,
            seeds=list(seeds),
            stacked=True,
            deterministic=True,
            normalizers=[p.normalizer for p in policies],
        )
    finally:
        env.close()
    rets = batch.returns.cpu().numpy().astype(np.float64)
    assert batch.diverged_mask is not None
    per_step = batch.rewards.cpu().numpy().astype(np.float64) if rewards else None
    return rets, batch.diverged_mask, batch.reset_seeds, per_step


def _batch_groups(policies: Sequence[Policy | StatefulPolicy]) -> list[list[int]]:
    """Indices of the policies that can share one batched run, group by group (in order)."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, p in enumerate(policies):
        if isinstance(p, StatefulPolicy):
            key = p.batch_key()
        else:  # MLPs stack when their parameter shapes match (normalizers may differ)
            key = ("mlp", *((k, tuple(v.shape)) for k, v in sorted(p.params.items())))
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def _assemble(
    groups: list[list[int]],
    runs: list[tuple[np.ndarray, np.ndarray, tuple[int, ...], np.ndarray | None]],
    n: int,
    episodes: int,
    rewards: bool,
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...], np.ndarray | None]:
    """Put the groups' results back in task order (rewards padded with zeros to one length)."""
    rets = np.zeros((n, episodes))
    div = np.zeros((n, episodes), dtype=bool)
    seeds = [0] * (n * episodes)
    t_len = max(r[3].shape[-1] for r in runs) if rewards else 0  # type: ignore[union-attr]
    per_step = np.zeros((n, episodes, t_len)) if rewards else None
    for idx, (r, d, s, rw) in zip(groups, runs, strict=True):
        rets[idx], div[idx] = r, d
        for j, i in enumerate(idx):
            seeds[i * episodes : (i + 1) * episodes] = s[j * episodes : (j + 1) * episodes]
            if per_step is not None and rw is not None:
                per_step[i, :, : rw.shape[-1]] = rw[j]
    return rets, div, tuple(seeds), per_step
