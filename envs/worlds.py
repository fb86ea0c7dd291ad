"""One world of a batched simulator: the env ``gym.make`` gives, its task layer, its kernel.

Shared by the CPU engine (:mod:`metarobot.envs.batched`) and the Warp engine
(:mod:`metarobot.envs.warp`).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from gymnasium.wrappers import OrderEnforcing, PassiveEnvChecker, TimeLimit

from metarobot.envs.kernels import Kernel, find_kernel
from metarobot.envs.randomized import RandomizedDynamics

__all__ = ["kernel_for", "make_world", "time_limit"]

# Wrappers that change no observation, reward or action: the kernel path may skip them.
_TRANSPARENT = (TimeLimit, OrderEnforcing, PassiveEnvChecker)
# Keywords of the within-episode change schedule (set on the RandomizedDynamics layer).
_SCHEDULE = ("change_step", "hazard", "change_to")


def make_world(env_id: str, env_kwargs: dict[str, Any]) -> tuple[gym.Env, RandomizedDynamics]:
    """The world's outermost env (what ``gym.make`` gives) and its RandomizedDynamics layer.

    ``resample_on_reset`` and the change schedule (``change_step``, ``hazard``,
    ``change_to``) are set on the RandomizedDynamics layer rather than passed to the env's
    constructor, so that a user's entry point need not accept them.
    """
    kwargs = dict(env_kwargs)
    resample = kwargs.pop("resample_on_reset", None)
    schedule = {k: kwargs.pop(k) for k in _SCHEDULE if k in kwargs}
    env = gym.make(env_id, disable_env_checker=True, **kwargs)
    rd = _find_rd(env)
    if rd is None:  # a plain Gymnasium id: every world runs the nominal task
        env = RandomizedDynamics(env, family=env_id)
        rd = env
    if resample is not None:
        rd.resample_on_reset = resample
    if schedule:
        rd.set_change_schedule(**schedule)
    return env, rd


def _find_rd(env: gym.Env) -> RandomizedDynamics | None:
    cur: Any = env
    while cur is not None:
        if isinstance(cur, RandomizedDynamics):
            return cur
        cur = getattr(cur, "env", None)
    return None


def _chain(env: gym.Env) -> list[Any]:
    out, cur = [], env
    while isinstance(cur, gym.Wrapper):
        out.append(cur)
        cur = cur.env
    return out


def time_limit(env: gym.Env) -> int | None:
    """The episode length the wrapper stack enforces (the smallest ``TimeLimit``), or None."""
    limits = [w._max_episode_steps for w in _chain(env) if isinstance(w, TimeLimit)]
    return min(limits) if limits else None


def kernel_for(env: gym.Env, rd: RandomizedDynamics) -> Kernel | None:
    """The vectorized kernel reproducing ``env.step``, or None when only the env's code can."""
    for w in _chain(env):
        if not isinstance(w, (*_TRANSPARENT, RandomizedDynamics)):
            return None
    if type(rd).step is not RandomizedDynamics.step:
        return None
    return find_kernel(rd.unwrapped)
