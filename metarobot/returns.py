"""Mean returns of deterministic evaluation episodes: the one measurement of a policy on a task.

Both the evaluation protocol (:mod:`metarobot.evaluation`, which re-exports
:func:`evaluation_returns`) and the methods that select among their own candidates (the
oracle's restarts in :mod:`metarobot.registry`) measure a policy this way. It lives below both
so that imports flow one way: registry → returns ← evaluation → registry.

Evaluation episodes come from their own seed stream (``seed + EVAL_SEED_OFFSET + 7919·i`` for
task i), disjoint from the adaptation episodes drawn with ``seed + i``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from metarobot.checkpoint import AnyPolicy
from metarobot.envs import Task
from metarobot.rollout import episode_returns

__all__ = ["EVAL_SEED_OFFSET", "evaluation_returns"]

#: Offset between adaptation and evaluation seed streams.
EVAL_SEED_OFFSET = 1_000_003


def evaluation_returns(
    policies: Sequence[AnyPolicy],
    env_id: str,
    tasks: Sequence[Task],
    *,
    episodes: int,
    seed: int,
    nthread: int | None = None,
    return_seeds: bool = False,
    return_diverged: bool = False,
) -> Any:
    """Mean return of ``policies[i]`` on ``tasks[i]`` over ``episodes`` deterministic episodes.

    All policies must be of one type and share one network shape (they run together). A
    stateful policy starts every episode from ``reset()``.

    Returns:
        Array ``[N]`` of mean returns; with ``return_seeds`` also the world reset seeds; with
        ``return_diverged`` also the number of diverged episodes per task (a diverged episode
        ends early with the reward collected so far; it never feeds NaN anywhere).
    """
    n = len(tasks)
    seeds = [seed + EVAL_SEED_OFFSET + 7919 * i for i in range(n)]
    rets, div, reset_seeds, _ = episode_returns(
        policies, env_id, tasks, episodes=episodes, seeds=seeds, nthread=nthread
    )
    out = rets.mean(1)
    extra: list[Any] = []
    if return_seeds:
        extra.append(reset_seeds)
    if return_diverged:
        extra.append(div.sum(1))
    return (out, *extra) if extra else out
