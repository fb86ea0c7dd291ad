"""Randomized-dynamics task distributions on Gymnasium MuJoCo robots.

Importing this module registers every shipped family as ``metarobot/<Name>-v0``; any other id
registered with ``gym.register`` whose env is or wraps a ``RandomizedDynamics`` is a family too
(``check_family``)::

    import gymnasium as gym
    import metarobot.envs

    env = gym.make("metarobot/HalfCheetahRandParams-v0")
    tasks = env.get_wrapper_attr("sample_tasks")(5, seed=0)
    obs, info = env.reset(seed=0, options={"task": tasks[0]})
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from metarobot.envs.batched import BatchedMujocoEnv, make_batched
from metarobot.envs.families import ALL_FAMILIES, Family
from metarobot.envs.randomization import (
    Choice,
    DisabledActuators,
    LogUniform,
    ParamSpec,
    SignedUniform,
    Task,
    Uniform,
    pearl_log_uniform,
)
from metarobot.envs.randomized import RandomizedDynamics, find_randomized
from metarobot.envs.registry import check_family
from metarobot.envs.splits import ood_split, task_split

__all__ = [
    "FAMILY_IDS",
    "BatchedMujocoEnv",
    "Choice",
    "DisabledActuators",
    "Family",
    "LogUniform",
    "ParamSpec",
    "RandomizedDynamics",
    "SignedUniform",
    "Task",
    "Uniform",
    "check_family",
    "find_randomized",
    "make_batched",
    "ood_split",
    "pearl_log_uniform",
    "register",
    "task_split",
]

#: The family ids this package ships (any registered id wrapping a RandomizedDynamics is a
#: family too: see ``check_family``).
FAMILY_IDS: tuple[str, ...] = tuple(f.ID for f in ALL_FAMILIES)


def _vector_entry(env_id: str) -> Any:
    def make(num_envs: int, tasks: list[Task] | None = None, **kwargs: Any) -> BatchedMujocoEnv:
        if tasks is None:
            tasks = task_split(env_id)[0]
            tasks = [tasks[i % len(tasks)] for i in range(num_envs)]
        return BatchedMujocoEnv(env_id, tasks, num_envs=num_envs, **kwargs)

    return make


def register() -> None:
    """Register every family with Gymnasium (idempotent).

    ``gym.make(id)`` gives the single env (with a ``TimeLimit`` at the family horizon);
    ``gym.make_vec(id, n, vectorization_mode="vector_entry_point")`` gives the batched simulator
    running the first ``n`` training tasks.
    """
    for fam in ALL_FAMILIES:
        if fam.ID not in gym.registry:
            gym.register(
                id=fam.ID,
                entry_point=fam,
                max_episode_steps=fam.HORIZON,
                vector_entry_point=_vector_entry(fam.ID),
                # Every family passes gymnasium's full check_env in the test suite; the passive
                # checker is left out because it breaks (TypeError at the first step) after a
                # first reset that raised, e.g. for an invalid task.
                disable_env_checker=True,
            )


register()
