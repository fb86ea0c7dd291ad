"""Seeded, frozen train/test task splits of any family.

``task_split(env_id)`` draws the training tasks and the test tasks of a family from two
independent generators whose seeds are fixed by the family id, through the family's own specs,
so every user of the package gets the same split, now and later, in every process. Any
registered id whose env is or wraps a ``RandomizedDynamics`` has a split (a user's own robot as
much as a ``metarobot/...`` family). Test tasks are never used for training or tuning.

Default sizes follow PEARL: 40 training tasks, 10 test tasks. Families with a ``"test"`` draw of
their own (``AntCrippled`` tests on a leg never crippled in training; ``HalfCheetahCrippled`` on
joints never disabled in training) take test tasks from it. ``HalfCheetahDir`` has exactly two
tasks (forward, backward), so both splits hold both, as in MAML.

Families with ``ood_overrides`` (the ``<Robot>Physical`` families) also have a frozen
out-of-distribution split, ``ood_split(env_id)``: tasks drawn from ranges outside the training
ones, from a third generator, disjoint from both other splits.
"""

from __future__ import annotations

import functools
import zlib

import gymnasium as gym

from metarobot.envs.randomization import Task
from metarobot.envs.registry import randomized_of

__all__ = ["SPLIT_SEED", "ood_split", "task_split"]

#: Base seed of every frozen split; changing it changes every published split.
SPLIT_SEED = 20_240_601


def _seeds(env_id: str) -> tuple[int, int]:
    h = zlib.crc32(env_id.encode())
    return SPLIT_SEED + 2 * h, SPLIT_SEED + 2 * h + 1


def _ood_seed(env_id: str) -> int:
    return SPLIT_SEED + zlib.crc32(f"{env_id}#ood".encode())


def _registration_key(env_id: str) -> str:
    """What identifies the registration of ``env_id`` (a re-registered id gets a new split)."""
    spec = gym.spec(env_id)
    return repr((spec.entry_point, spec.kwargs, spec.max_episode_steps))


@functools.lru_cache(maxsize=64)
def _split(
    env_id: str, n_train: int, n_test: int, registration: str
) -> tuple[tuple[Task, ...], tuple[Task, ...]]:
    env, rd = randomized_of(env_id)
    try:
        if not getattr(rd, "DISJOINT_SPLIT", True):
            tasks: list[Task] = []
            for goal in rd.goal_specs.values():  # a finite Choice family
                for v in goal.values:
                    name = next(iter(rd.goal_specs))
                    tasks.append(Task.make(rd.family, goal={name: (v,)}))
            return tuple(tasks), tuple(tasks)
        s_train, s_test = _seeds(env_id)
        train = rd.sample_tasks(n_train, seed=s_train, split="train")
        test = rd.sample_tasks(n_test, seed=s_test, split="test")
    finally:
        env.close()
    overlap = set(train) & set(test)
    if overlap:
        raise RuntimeError(f"{env_id}: train and test splits overlap in {len(overlap)} task(s)")
    return tuple(train), tuple(test)


@functools.lru_cache(maxsize=64)
def _ood(env_id: str, n: int, registration: str) -> tuple[Task, ...]:
    env, rd = randomized_of(env_id)
    try:
        if "ood" not in rd.splits:
            raise ValueError(
                f"env_id {env_id!r} has no out-of-distribution split: its family defines no "
                "ood_overrides (the <Robot>Physical families do)"
            )
        tasks = rd.sample_tasks(n, seed=_ood_seed(env_id), split="ood")
    finally:
        env.close()
    train, test = _split(env_id, 40, 10, registration)
    if set(tasks) & (set(train) | set(test)):
        raise RuntimeError(f"{env_id}: the ood split overlaps the train/test split")
    return tuple(tasks)


def _check_id(env_id: str) -> None:
    if not isinstance(env_id, str) or env_id not in gym.registry:
        raise ValueError(
            f"env_id {env_id!r} is not a registered Gymnasium id; register the family with "
            "gym.register (or import the module that does) before using it"
        )


def ood_split(env_id: str, n: int = 10) -> list[Task]:
    """The frozen out-of-distribution tasks of a family (outside its training ranges).

    Args:
        env_id: A registered family id whose family defines ``ood_overrides``.
        n: Number of tasks (>= 1).

    Returns:
        The tasks; the same on every call and machine, none of them in ``task_split(env_id)``.

    Raises:
        ValueError: If the id is not a registered family, its family has no ``"ood"`` split,
            or ``n`` < 1.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    _check_id(env_id)
    return list(_ood(env_id, n, _registration_key(env_id)))


def task_split(env_id: str, n_train: int = 40, n_test: int = 10) -> tuple[list[Task], list[Task]]:
    """The frozen train/test split of a family.

    Args:
        env_id: Any registered id whose env is or wraps a ``RandomizedDynamics`` (the
            ``metarobot/...`` families, or a user's ``gym.register``-ed robot).
        n_train: Number of training tasks (>= 1).
        n_test: Number of test tasks (>= 1).

    Returns:
        ``(train_tasks, test_tasks)``; disjoint, the same on every call and machine.

    Raises:
        ValueError: If the id is not a registered family (see ``check_family``) or a count is
            < 1.
    """
    for name, v in (("n_train", n_train), ("n_test", n_test)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    _check_id(env_id)
    train, test = _split(env_id, n_train, n_test, _registration_key(env_id))
    return list(train), list(test)
