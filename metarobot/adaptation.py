"""The per-environment fine-tuning loop: ``adapt`` and its vectorized form ``adapt_many``.

``adapt(policy, env, episodes=K, steps=S)`` collects K episodes on the environment with the
policy, then takes S gradient steps ``θ ← θ − α ⊙ ∇L(θ)`` on the clipped surrogate of those
episodes (at the first step the clip is inactive and the gradient is the plain advantage-weighted
log-likelihood gradient; later steps re-use the same episodes, and clipping keeps them close to the
data). ``α`` is the policy's (possibly meta-learned, per-parameter) step size unless ``lr`` is
given. The observation normalizer is frozen. The input policy is never modified.

With ``rounds=R > 1`` this becomes a fine-tuning loop in the new environment: R rounds of
{collect K episodes with the *current* policy, refit the advantage baseline, S clipped-surrogate
steps on them}, so each round's probability ratios are taken against the policy that collected
its data (PPO's outer loop); ``rounds=1`` is the single update above. The safeguard judges the
final policy against the input.

``adapt_many`` does the same for N environments at once: one batched simulator with N·K worlds,
and the N parameter sets stacked and updated by one ``torch.func.vmap``-ed gradient. It returns
exactly what N sequential ``adapt`` calls return (task i uses seed ``seed + i``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch.func import grad, vmap
from tqdm.auto import tqdm, trange

from metarobot.checkpoint import AnyPolicy, check_compatible
from metarobot.envs import BatchedMujocoEnv, Task, find_randomized
from metarobot.envs.batched import ENGINES
from metarobot.policies import Params, Policy, gaussian_log_prob, resolve_device
from metarobot.recurrent import RecurrentPolicy
from metarobot.rma import RMAPolicy
from metarobot.rollout import (
    EpisodeBatch,
    collect,
    compute_advantages,
    episode_env,
    episode_returns,
)
from metarobot.sac import SACFineTuner, SACSettings
from metarobot.stacked import StackedAdam
from metarobot.stateful import StatefulPolicy
from metarobot.validation import check_int

__all__ = ["adapt", "adapt_many", "inner_update", "surrogate_loss"]


def surrogate_loss(
    policy: Policy,
    params: Mapping[str, torch.Tensor],
    data: Mapping[str, torch.Tensor],
    clip: float = 0.2,
) -> torch.Tensor:
    """PPO's clipped surrogate (to minimize) for one task's episodes (vmap-able).

    Args:
        policy: Supplies the network shape.
        params: One parameter set.
        data: ``obs``, ``actions``, ``logp`` (sampling log-probs), ``adv`` and ``mask`` of one
            task, each ``[K, T, ...]``.
        clip: Clip range ε of the probability ratio.

    Returns:
        ``−mean(min(r·A, clip(r, 1−ε, 1+ε)·A))`` over valid steps.
    """
    mean, log_std = policy.distribution(params, data["obs"])
    logp = gaussian_log_prob(mean, log_std, data["actions"])
    ratio = torch.exp(logp - data["logp"])
    adv = data["adv"]
    obj = torch.minimum(ratio * adv, torch.clamp(ratio, 1.0 - clip, 1.0 + clip) * adv)
    mask = data["mask"]
    return -(obj * mask).sum() / mask.sum().clamp_min(1.0)


def inner_update(
    policy: Policy,
    params: Mapping[str, torch.Tensor],
    lr: Mapping[str, torch.Tensor],
    data: Mapping[str, torch.Tensor],
    clip: float = 0.2,
) -> Params:
    """One adaptation step ``θ − α ⊙ ∇L(θ)`` (differentiable; vmap-able)."""
    g = grad(lambda p: surrogate_loss(policy, p, data, clip))(dict(params))
    return {k: params[k] - lr[k] * g[k] for k in params}


def _positive_lr(lr: Any) -> float:
    val = float(lr)
    if not (math.isfinite(val) and val > 0):
        raise ValueError(f"lr must be a finite number in (0, inf) or None, got {lr!r}")
    return val


def _step_sizes(policy: Policy, lr: float | None, device: torch.device) -> Params:
    if lr is None:
        return {k: v.to(device) for k, v in policy.inner_lr.items()}
    val = _positive_lr(lr)
    return {k: torch.full_like(v, val, device=device) for k, v in policy.params.items()}


def _default_steps(policy: Policy, steps: int | None) -> int:
    if steps is None:
        steps = int(policy.meta.get("inner_steps", 1))
    return check_int("steps", steps)


#: Offset between the adaptation episodes' seeds and the safeguard's validation episodes.
VALIDATION_SEED_OFFSET = 500_009
#: The safeguard's validation episodes per policy when the caller gives none: max(K, this).
DEFAULT_VALIDATION_EPISODES = 4
#: Standard errors of the paired validation gain an update must clear by default.
DEFAULT_MARGIN = 1.0
#: Adam's step size when ``optimizer="adam"`` and no ``lr`` is given (PPO's usual 3e-4).
DEFAULT_ADAM_LR = 3e-4
#: PPO epochs per round when a recurrent policy is fine-tuned and no ``steps`` are given.
DEFAULT_RECURRENT_EPOCHS = 10
#: Optimizers of the MLP update: plain (meta-learned) steps, or Adam across rounds.
OPTIMIZERS = ("sgd", "adam")
#: Fine-tuning algorithms of MLP policies: on-policy PPO rounds, or off-policy SAC rounds.
ALGORITHMS = ("ppo", "sac")
#: Seed offset between consecutive fine-tuning rounds (round r of task i: seed + i + r·this),
#: far from the validation offset so no two episode streams coincide.
ROUND_SEED_STRIDE = 1_000_003


def adapt_many(
    policy: AnyPolicy,
    env_id: str,
    tasks: Sequence[Task],
    *,
    episodes: int = 1,
    steps: int | None = None,
    lr: float | None = None,
    device: str | torch.device = "auto",
    seed: int | None = None,
    clip: float = 0.2,
    gamma: float = 0.99,
    lam: float = 0.95,
    nthread: int | None = None,
    return_batch: bool = False,
    safe: bool = True,
    validation_episodes: int | None = None,
    margin: float = DEFAULT_MARGIN,
    engine: str = "batch",
    rounds: int = 1,
    optimizer: str = "sgd",
    keep: str = "best",
    progress: bool = False,
    algorithm: str = "ppo",
    sac: SACSettings | None = None,
) -> list[AnyPolicy] | tuple[list[AnyPolicy], EpisodeBatch | None]:
    """Adapt one policy to N environments at once.

    What adaptation does depends on the policy type:

    - **MLP policies** (meta-learners, baselines): S gradient steps ``θ − α ⊙ ∇L(θ)`` of PPO's
      clipped surrogate on K sampled episodes per environment, vmapped over environments, with
      the policy's own (meta-learned) step sizes or ``lr``; with ``rounds=R``, R rounds of
      {K fresh episodes with the current parameters, S steps} (R·K episodes in all).
    - **RMA**: the mean latent ``ẑ`` its adaptation module inferred over K episodes becomes a
      fixed latent, so the next episode is adapted from its first step; with ``rounds=R > 1``
      the actor with that latent then takes R − 1 rounds of the MLP fine-tuning loop.
    - **Recurrent**: the K episodes run back to back with the GRU state carried across them;
      later episodes start from the state they ended in; with ``rounds=R > 1`` the GRU
      network is fine-tuned with PPO instead (R batches of K episodes, R − 1 updates).

    The safeguard (``safe=True``, the default) then runs ``validation_episodes`` fresh
    deterministic episodes per environment with the adapted *and* the original policy (same
    start states, seeds disjoint from the adaptation episodes). It keeps the adapted policy only
    if the paired gain ``d_j = R_adapted,j − R_original,j`` is non-negative by a margin:
    ``mean(d) − margin · SE(d) ≥ 0``, with ``SE(d) = std(d) / √V`` over the V episodes;
    otherwise the original comes back unchanged. The margin asks for evidence, not a tie: with a
    plain ``mean(d) ≥ 0`` rule, an update that is slightly harmful on average still passes
    whenever validation noise favours it. ``margin=0`` restores the plain rule. It costs
    ``2 × validation_episodes`` extra episodes per environment.

    Args:
        policy: The policy to adapt (not modified).
        env_id: A family id.
        tasks: The N environments' tasks.
        episodes: K ≥ 1 episodes collected per environment.
        steps: S ≥ 1 gradient steps (MLP policies; default: the policy's training inner steps).
        lr: Step size for every parameter (MLP policies); ``None`` uses the policy's own.
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``.
        seed: Task i uses seed ``seed + i`` (``None``: fresh entropy).
        clip: Surrogate clip range.
        gamma: Discount.
        lam: GAE λ.
        nthread: Simulator threads (default: all cores).
        return_batch: Also return the adaptation episodes (MLP policies; None otherwise).
        safe: Run the safeguard (keep an adaptation only when its validation gain clears the
            margin).
        validation_episodes: Episodes per policy and environment of the safeguard (default
            ``max(K, 4)``; at least 2 when ``margin > 0``, since a standard error needs two).
        margin: Standard errors of the paired validation gain by which an adaptation must
            clear zero to be kept (≥ 0; 0 keeps any adaptation that is not lower on average).
        engine: Simulator of the episodes: ``"batch"`` (mujoco.batch, CPU) or ``"warp"``
            (MuJoCo Warp on ``device``: episodes, gradient steps and the safeguard stay on the
            device; RMA and the recurrent policy run their device actors there, and a
            recurrent policy's PPO fine-tuning, ``rounds > 1``, needs ``"batch"``).
        rounds: R ≥ 1 rounds of collect-then-update. MLP policies: R rounds of gradient
            steps. RMA: round 1 infers the fixed latent ``ẑ``; rounds 2..R fine-tune the actor
            with ``ẑ`` folded into its first layer (:meth:`RMAPolicy.folded`), so an accepted
            result is a plain MLP :class:`~metarobot.policies.Policy`. The recurrent policy
            fine-tunes its GRU network with PPO (``RecurrentPolicy.fine_tuned``: round 1 measures
            the input, each later round follows one update; ``steps`` are its epochs, default
            10; ``optimizer="adam"``), one environment after another.
        optimizer: ``"sgd"``: each step is ``θ − α ⊙ ∇L`` (the meta-learned step sizes, or
            ``lr``); ``"adam"``: Adam with step size ``lr`` (default 3e-4) whose moments carry
            across rounds, as in PPO (MLP policies).
        keep: With ``rounds > 1``: ``"best"`` keeps, per environment, the parameters of the
            round whose own K episodes scored highest (the input's round 0 included; K more
            episodes measure the last update), so later rounds cannot undo what earlier ones
            gained; ``"final"`` keeps the last update. The safeguard then judges that choice.
        progress: Show a progress bar over rounds.
        algorithm: ``"ppo"`` (the rounds above) or ``"sac"``: MLP and RMA policies (RMA: round
            1 infers the latent, rounds 2..R fine-tune the folded actor), CPU engine and torch:
            each round's episodes go to a replay buffer per environment and soft actor-critic
            (:mod:`metarobot.sac`) takes ``sac.utd · K · H`` gradient steps per round on twin
            Q-functions, the policy and its temperature; the first ``sac.warmup_rounds`` rounds
            fit only the critics. ``lr`` (if given) replaces ``sac.lr``; ``steps`` and
            ``optimizer`` do not apply. ``keep`` and the safeguard work as for PPO.
        sac: SAC's settings (default :class:`~metarobot.sac.SACSettings`).

    Returns:
        N adapted policies (and the episodes when ``return_batch``). Each has
        ``meta["adapted"]`` saying what was done and whether the safeguard kept it.

    Raises:
        ValueError: On bad counts, step sizes, device, or engine, or a policy that does not fit
            the env.
    """
    if not isinstance(policy, (Policy, StatefulPolicy)):
        raise ValueError(f"policy must be a metarobot policy, got {type(policy)!r}")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {list(ENGINES)}, got {engine!r}")
    k = check_int("episodes", episodes)
    r = check_int("rounds", rounds)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {optimizer!r}")
    if keep not in ("best", "final"):
        raise ValueError(f"keep must be 'best' or 'final', got {keep!r}")
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {list(ALGORITHMS)}, got {algorithm!r}")
    if algorithm == "sac" and (not isinstance(policy, (Policy, RMAPolicy)) or engine != "batch"):
        raise ValueError(
            "algorithm='sac' fine-tunes MLP and RMA policies on the CPU engine (engine='batch'), "
            f"got {type(policy).__name__} with engine={engine!r}"
        )
    if r > 1 and isinstance(policy, RecurrentPolicy) and engine != "batch":
        raise ValueError(
            f"engine={engine!r} adapts recurrent policies with rounds=1 (their PPO fine-tuning "
            f"runs on the CPU engine), got rounds={rounds}"
        )
    if r > 1 and isinstance(policy, RecurrentPolicy) and optimizer != "adam":
        raise ValueError(
            f"optimizer must be 'adam' for rounds > 1 of a recurrent policy (its PPO fine-tuning "
            f"uses Adam, as its training did), got {optimizer!r}"
        )
    v_eps = (
        max(k, DEFAULT_VALIDATION_EPISODES)
        if validation_episodes is None
        else check_int("validation_episodes", validation_episodes)
    )
    if not (
        isinstance(margin, (int, float)) and not isinstance(margin, bool) and 0 <= margin < math.inf
    ):
        raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")
    if safe and margin > 0 and v_eps < 2:
        raise ValueError(
            f"validation_episodes must be >= 2 when margin > 0 (a standard error needs two "
            f"episodes), got {v_eps}"
        )
    if not (isinstance(clip, (int, float)) and 0 < clip < 1):
        raise ValueError(f"clip must be a number in (0, 1), got {clip!r}")
    for name, v in (("gamma", gamma), ("lam", lam)):
        if not (isinstance(v, (int, float)) and 0 <= v <= 1):
            raise ValueError(f"{name} must be a number in [0, 1], got {v!r}")
    if seed is not None:
        check_int("seed", seed, minimum=0)
    tasks = list(tasks)
    n = len(tasks)
    if n < 1:
        raise ValueError("tasks must hold at least one task")
    dev = resolve_device(device)
    seeds: list[int | None] = [None] * n if seed is None else [int(seed) + i for i in range(n)]
    batch: EpisodeBatch | None = None
    candidates: list[AnyPolicy]
    if algorithm == "sac":
        settings = sac or SACSettings()
        if lr is not None:
            settings = dataclasses.replace(settings, lr=_positive_lr(lr))
        what = (
            f"SAC ({settings.utd:g} gradient steps per environment step, critics only for "
            f"{settings.warmup_rounds} round(s)), {keep} round kept"
        )
        if isinstance(policy, RMAPolicy):
            # Round 1 infers the latent; rounds 2..R are SAC rounds of the folded actor.
            inferred = policy.adapt_candidates(
                env_id, tasks, episodes=k, seeds=seeds, nthread=nthread
            )
            starts = [c.folded() for c in inferred]
            if r == 1:
                candidates = list(inferred)
                what = "fixed latent"
            else:
                candidates, batch = _sac_candidates(
                    starts, env_id, tasks, k, r - 1, seeds, nthread, keep, progress, settings, 1
                )
                what = f"fixed latent, then {r - 1} round(s) of {what}"
        else:
            candidates, batch = _sac_candidates(
                [policy] * n, env_id, tasks, k, r, seeds, nthread, keep, progress, settings, 0
            )
            what = f"{r} rounds of {what}"
    elif isinstance(policy, RMAPolicy) and r > 1:
        # Round 1 infers the latent; rounds 2..R fine-tune the actor with it folded in.
        if optimizer == "sgd" and lr is None:
            raise ValueError(
                "lr is required for rounds > 1 of an RMA policy with optimizer='sgd' (its actor "
                "has no meta-learned step sizes); or use optimizer='adam'"
            )
        inferred = policy.adapt_candidates(
            env_id, tasks, episodes=k, seeds=seeds, nthread=nthread, engine=engine, device=dev
        )
        starts = [c.folded() for c in inferred]
        s = 1 if steps is None else check_int("steps", steps)
        candidates, batch = _gradient_candidates(
            starts[0], env_id, tasks, k, s, lr, dev, seeds, clip, gamma, lam, nthread,
            engine, r, optimizer, keep, progress, starts=starts, first_round=1,
        )  # fmt: skip
        what = f"fixed latent, then {r - 1} rounds × {s} gradient step(s) of the folded actor"
        what += f" ({optimizer}), {keep} round kept"
    elif isinstance(policy, RecurrentPolicy) and r > 1:
        # One PPO fine-tuning per environment (a GRU's update does not vmap over parameter sets).
        s = DEFAULT_RECURRENT_EPOCHS if steps is None else check_int("steps", steps)
        run_seeds = [
            int(np.random.SeedSequence().generate_state(1)[0]) if x is None else x for x in seeds
        ]
        candidates = [
            policy.fine_tuned(
                env_id,
                t,
                rounds=r,
                episodes=k,
                seed=x,
                lr=DEFAULT_ADAM_LR if lr is None else _positive_lr(lr),
                epochs=s,
                keep=keep,
                nthread=nthread,
            )
            for t, x in zip(
                tqdm(tasks, desc="fine-tune", disable=not progress), run_seeds, strict=True
            )
        ]
        what = f"{r} rounds ({r - 1} PPO updates × {s} epochs, adam), {keep} round kept"
    elif isinstance(policy, StatefulPolicy):
        candidates = list(
            policy.adapt_candidates(
                env_id, tasks, episodes=k, seeds=seeds, nthread=nthread, engine=engine, device=dev
            )
        )
        what = {"rma": "fixed latent", "recurrent": "carried GRU state"}.get(policy.kind, "context")
    else:
        s = _default_steps(policy, steps)
        candidates, batch = _gradient_candidates(
            policy,
            env_id,
            tasks,
            k,
            s,
            lr,
            dev,
            seeds,
            clip,
            gamma,
            lam,
            nthread,
            engine,
            r,
            optimizer,
            keep,
            progress,
        )
        what = f"{s} gradient step(s)" if r == 1 else f"{r} rounds × {s} gradient step(s)"
        if optimizer != "sgd":
            what += f" ({optimizer})"
        if r > 1:
            what += f", {keep} round kept"
    for c, t in zip(candidates, tasks, strict=True):
        c.meta["adapted"] = {"task": t.to_json(), "episodes": k, "update": what}
        if r > 1:
            c.meta["adapted"]["rounds"] = r
    if safe:
        candidates = _safeguard(
            policy, candidates, env_id, tasks, v_eps, float(margin), seeds, nthread, engine, dev
        )
    return (candidates, batch) if return_batch else candidates


def _gradient_candidates(
    policy: Policy,
    env_id: str,
    tasks: list[Task],
    k: int,
    s: int,
    lr: float | None,
    dev: torch.device,
    seeds: list[int | None],
    clip: float,
    gamma: float,
    lam: float,
    nthread: int | None,
    engine: str,
    rounds: int = 1,
    optimizer: str = "sgd",
    keep: str = "best",
    progress: bool = False,
    *,
    starts: Sequence[Policy] | None = None,
    first_round: int = 0,
) -> tuple[list[AnyPolicy], EpisodeBatch]:
    """Rounds ``first_round..rounds-1`` of {collect K episodes, S steps} for N stacked tasks.

    ``starts`` gives each task its own starting parameters (same network and normalizer as
    ``policy``, e.g. RMA's folded actors); by default every task starts from ``policy``.
    """
    n = len(tasks)
    out_dev = policy.device
    work = policy.clone().to(dev)
    if optimizer == "adam":
        adam = StackedAdam(DEFAULT_ADAM_LR if lr is None else _positive_lr(lr))
        grads = vmap(grad(lambda p, d: surrogate_loss(work, p, d, clip)))

        def step(p: Params, d: Mapping[str, torch.Tensor]) -> Params:
            return adam.step(p, grads(p, d))
    else:
        alpha = _step_sizes(work, lr, dev)
        step = vmap(lambda p, d: inner_update(work, p, alpha, d, clip))
    env = episode_env(env_id, tasks, k, nthread=nthread, engine=engine, device=dev)
    try:
        check_compatible(work, env.host_env if engine == "warp" else env.worlds[0])
        if starts is None:
            params = {k: v.unsqueeze(0).expand(n, *v.shape).clone() for k, v in work.params.items()}
        else:
            params = {k: torch.stack([p.params[k].to(dev) for p in starts]) for k in work.params}
        pick_best = keep == "best" and rounds > 1
        best, best_ret = params, None
        for r in trange(
            first_round,
            rounds,
            desc="adapt rounds",
            disable=not progress or rounds - first_round <= 1,
        ):
            # Round 0 uses the given seeds, so rounds=1 is the single update; later rounds draw
            # fresh start states and noise, and collect with the parameters updated so far.
            batch = collect(
                work, env, params, n_tasks=n, episodes=k, seeds=_round(seeds, r), stacked=True
            )
            if pick_best:  # the episodes just collected measure the parameters that ran them
                best, best_ret = _keep_better(best, best_ret, params, batch.returns.mean(1))
            compute_advantages(batch, gamma, lam)
            data = batch.loss_inputs()
            for _ in range(s):
                params = step(params, data)
        adapted = _close_rounds(
            work, env, params, best, best_ret, k, _round(seeds, first_round + rounds),
            pick_best, starts, out_dev,
        )  # fmt: skip
    finally:
        env.close()
    return adapted, batch


def _sac_candidates(
    starts: list[Policy],
    env_id: str,
    tasks: list[Task],
    k: int,
    rounds: int,
    seeds: list[int | None],
    nthread: int | None,
    keep: str,
    progress: bool,
    settings: SACSettings,
    first_round: int,
) -> tuple[list[AnyPolicy], EpisodeBatch]:
    """R rounds of {collect K episodes, SAC steps on every transition so far} for N tasks.

    ``starts`` holds each task's starting MLP policy (one network shape and normalizer; RMA's
    folded actors differ per task in their first-layer bias); round r collects with the seeds of
    round ``first_round + r``.
    """
    n = len(tasks)
    out_dev = starts[0].device
    work = starts[0].clone().to("cpu")
    env = episode_env(env_id, tasks, k, nthread=nthread)
    try:
        check_compatible(work, env.worlds[0])
        horizon = int(env.max_episode_steps)
        params = {
            key: torch.stack([s.params[key].detach().to("cpu") for s in starts])
            for key in work.params
        }
        tuner = SACFineTuner(work, params, seeds, rounds * k * horizon, settings)
        pick_best = keep == "best" and rounds > 1
        best, best_ret = params, None
        for r in trange(rounds, desc="adapt rounds (SAC)", disable=not progress or rounds <= 1):
            batch = collect(
                work,
                env,
                tuner.actor,
                n_tasks=n,
                episodes=k,
                seeds=_round(seeds, first_round + r),
                stacked=True,
            )
            if pick_best:
                best, best_ret = _keep_better(best, best_ret, tuner.actor, batch.returns.mean(1))
            tuner.add(batch, horizon)
            # The same number of steps for every environment (utd per step a round can hold,
            # K·H), so that no environment's result depends on the others' episode lengths.
            for _ in range(round(settings.utd * k * horizon)):
                tuner.update(train_actor=r >= settings.warmup_rounds)
        adapted = _close_rounds(
            work, env, tuner.actor, best, best_ret, k, _round(seeds, first_round + rounds),
            pick_best, starts, out_dev,
        )  # fmt: skip
    finally:
        env.close()
    return adapted, batch


def _close_rounds(
    work: Policy,
    env: BatchedMujocoEnv,
    params: Params,
    best: Params,
    best_ret: torch.Tensor | None,
    k: int,
    last_seeds: list[int | None],
    pick_best: bool,
    starts: Sequence[Policy] | None,
    out_dev: torch.device,
) -> list[AnyPolicy]:
    """The end of the rounds: each task's best round (if kept), as one policy per task.

    With ``pick_best``, K more episodes (seeds ``last_seeds``) measure the last update and each
    task keeps the better of it and its best earlier round. Policy i is built from
    ``starts[i]`` (its metadata, e.g. RMA's folded latent), or from ``work`` when ``starts`` is
    None.
    """
    n = len(last_seeds)
    if pick_best:
        last = collect(work, env, params, n_tasks=n, episodes=k, seeds=last_seeds, stacked=True)
        params, _ = _keep_better(best, best_ret, params, last.returns.mean(1))
    return [
        (work if starts is None else starts[i])
        .with_params({key: v[i] for key, v in params.items()})
        .to(out_dev)
        for i in range(n)
    ]


def _round(seeds: list[int | None], r: int) -> list[int | None]:
    """The episode seeds of fine-tuning round ``r`` (round 0: the given seeds)."""
    return [None if x is None else x + r * ROUND_SEED_STRIDE for x in seeds]


def _keep_better(
    best: Params, best_ret: torch.Tensor | None, params: Params, ret: torch.Tensor
) -> tuple[Params, torch.Tensor]:
    """Per task, the parameter set with the higher measured return (ties keep ``best``)."""
    if best_ret is None:
        return params, ret
    better = ret > best_ret
    out = {
        key: torch.where(better.view(-1, *[1] * (v.ndim - 1)), params[key], best[key])
        for key, v in best.items()
    }
    return out, torch.where(better, ret, best_ret)


def _safeguard(
    policy: AnyPolicy,
    candidates: list[AnyPolicy],
    env_id: str,
    tasks: list[Task],
    episodes: int,
    margin: float,
    seeds: list[int | None],
    nthread: int | None,
    engine: str,
    dev: torch.device,
) -> list[AnyPolicy]:
    """Per task: the candidate if its paired validation gain clears zero by ``margin`` SEs."""
    n = len(tasks)
    vseeds = [None if s is None else s + VALIDATION_SEED_OFFSET for s in seeds]
    base = [policy] * n
    if isinstance(policy, Policy):  # one stacked run needs every parameter set on one device
        run_dev = dev if engine == "warp" else torch.device("cpu")  # Warp: stay on the device
        base = [policy.clone().to(run_dev)] * n
        candidates_run: list[AnyPolicy] = [c.clone().to(run_dev) for c in candidates]  # type: ignore[union-attr]
    else:
        candidates_run = candidates
    rets, _, _, _ = episode_returns(
        [*base, *candidates_run],
        env_id,
        [*tasks, *tasks],
        episodes=episodes,
        seeds=[*vseeds, *vseeds],
        nthread=nthread,
        engine=engine,
        device=dev,
    )
    mean = rets.mean(1)
    gain = rets[n:] - rets[:n]  # paired: same start states for both policies
    se = gain.std(1, ddof=1) / np.sqrt(episodes) if episodes > 1 else np.zeros(n)
    out: list[AnyPolicy] = []
    for i, cand in enumerate(candidates):
        lower = float(gain[i].mean() - margin * se[i])
        keep = bool(lower >= 0.0)
        info = {
            **cand.meta["adapted"],
            "accepted": keep,
            "validation_episodes": episodes,
            "validation_margin": margin,
            "validation_return_original": float(mean[i]),
            "validation_return_adapted": float(mean[n + i]),
            "validation_gain_lower_bound": lower,
        }
        chosen = cand if keep else policy.clone()
        chosen.meta["adapted"] = info
        out.append(chosen)
    return out


def _resolve_env(env: Any, task: Task | None) -> tuple[str, Task]:
    if isinstance(env, str):
        if task is None:
            raise ValueError("task is required when env is a family id")
        return env, task
    if isinstance(env, BatchedMujocoEnv):
        tasks = env.get_tasks()
        if any(t != tasks[0] for t in tasks):
            raise ValueError("a batched env given to adapt must run one task in every world")
        return env.env_id, task or tasks[0]
    if isinstance(env, gym.Env):
        rd = find_randomized(env)
        return rd.family, task or rd.get_task()
    raise ValueError(
        "env must be a metarobot family env (gym.make('metarobot/...')), a family id with a "
        f"task, or a batched env; got {type(env)!r}"
    )


def adapt(
    policy: AnyPolicy,
    env: Any,
    episodes: int = 1,
    steps: int | None = None,
    lr: float | None = None,
    device: str | torch.device = "auto",
    seed: int | None = None,
    *,
    task: Task | None = None,
    **kwargs: Any,
) -> Any:
    """Fine-tune ``policy`` to one environment with a few episodes of experience.

    Args:
        policy: A metarobot policy (MLP, ensemble, RMA or recurrent); not modified. (SB3
            models go through :func:`metarobot.adapt`, which returns the same SB3 type.)
        env: The environment: a family env from ``gym.make`` (its current task is used), a
            family id together with ``task``, or a batched env whose worlds share one task.
        episodes: K ≥ 1 episodes of experience.
        steps: S ≥ 1 gradient steps (default: as in meta-training).
        lr: Step size; ``None`` uses the policy's (meta-learned) step sizes.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        seed: Seed of the episodes (same seed → same adapted policy on CPU).
        task: The task, when ``env`` is a family id.
        **kwargs: Passed to :func:`adapt_many` (``rounds``, ``progress``, ``safe``,
            ``validation_episodes``, ``clip``,
            ``gamma``, ``lam``, ``nthread``).

    Returns:
        A new, standalone adapted policy (see :func:`adapt_many` for what adaptation does per
        policy type, and for the safeguard that keeps it from making the policy worse).

    Raises:
        ValueError: On bad arguments or a policy that does not fit the environment.
    """
    if not isinstance(policy, (Policy, StatefulPolicy)):
        raise ValueError(
            f"policy must be a metarobot policy (SB3 models: metarobot.adapt), got {type(policy)!r}"
        )
    env_id, the_task = _resolve_env(env, task)
    return adapt_many(
        policy,
        env_id,
        [the_task],
        episodes=episodes,
        steps=steps,
        lr=lr,
        device=device,
        seed=seed,
        **kwargs,
    )[0]
