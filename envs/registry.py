"""Gymnasium's registry is the family registry.

Any id registered with ``gym.register`` whose env is, or wraps, a :class:`RandomizedDynamics` is
a family: it works wherever a ``metarobot/...`` id works (splits, batched simulator, learners,
CLI). :func:`check_family` is the one test of that.
"""

from __future__ import annotations

import gymnasium as gym

from metarobot.envs.randomized import RandomizedDynamics, find_randomized

__all__ = ["check_family", "randomized_of"]


def randomized_of(env_id: str) -> tuple[gym.Env, RandomizedDynamics]:
    """Make ``env_id`` and return the env with its ``RandomizedDynamics`` layer.

    The caller closes the env.

    Raises:
        ValueError: Naming ``env_id`` when it is not registered or its env does not wrap a
            ``RandomizedDynamics``.
    """
    if not isinstance(env_id, str) or env_id not in gym.registry:
        raise ValueError(
            f"env_id {env_id!r} is not a registered Gymnasium id; register the family with "
            "gym.register (or import the module that does) before using it"
        )
    env = gym.make(env_id, disable_env_checker=True)
    try:
        return env, find_randomized(env)
    except ValueError:
        env.close()
        raise ValueError(
            f"env_id {env_id!r} is registered, but its env is not and does not wrap a "
            "RandomizedDynamics, so it defines no task distribution; wrap it, e.g. "
            "RandomizedDynamics(env, body_mass=(0.5, 2.0))"
        ) from None


def check_family(env_id: str) -> None:
    """Raise unless ``env_id`` is a family: registered, its env is or wraps a RandomizedDynamics.

    Raises:
        ValueError: Naming ``env_id`` and what is missing.
    """
    env, _ = randomized_of(env_id)
    env.close()
