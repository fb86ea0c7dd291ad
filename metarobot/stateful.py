"""Stateful (context-conditioned) policies: one interface for policies with memory.

Every metarobot policy is used the same way::

    policy.reset()                      # at the start of every episode (no-op when stateless)
    action = policy.act(obs, deterministic=True, reward=r_prev)

A stateful policy (RMA's adaptation module over recent history, a recurrent policy) keeps its
per-episode context inside; ``reset()`` clears it. ``reward`` is the reward of the previous step
(0 at the start of an episode); policies that do not read rewards ignore it, and leaving it out
gives a recurrent policy a zero reward input.

For many worlds at once (evaluation, adaptation) the same maths runs through a
:class:`BatchActor`: ``StatefulPolicy.batch_actor(policies)`` gives one actor whose world i runs
``policies[i]``, with per-world state and per-world resets.
"""

from __future__ import annotations

import abc
import copy
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

import numpy as np

from metarobot.io import atomic_torch_save

__all__ = ["BatchActor", "StatefulPolicy"]


class BatchActor(Protocol):
    """N worlds' worth of a policy's per-episode state."""

    def reset(self, mask: np.ndarray) -> None:
        """Start a new episode in the worlds where ``mask`` is true."""

    def act(self, obs: np.ndarray, rewards: np.ndarray, noise: np.ndarray | None) -> np.ndarray:
        """Actions ``(N, act_dim)`` (clipped to the action bounds) for observations ``(N, obs)``.

        Args:
            obs: Current observations.
            rewards: Reward of each world's previous step (0 right after a reset).
            noise: Standard-normal draws ``(N, act_dim)`` for sampled actions; None acts with
                the mean action.
        """


class StatefulPolicy(abc.ABC):
    """Base of policies with per-episode state.

    Subclasses implement :meth:`batch_actor`, :meth:`to_payload`, :meth:`from_payload` and the
    size properties; everything users call (``reset``, ``act``, ``predict``, ``save``) lives
    here.

    Args:
        meta: Metadata saved with checkpoints; needs ``action_low`` and ``action_high``.
        seed: Seed of the generator used by ``act(deterministic=False)``.
    """

    #: Network kind written into checkpoints; :func:`metarobot.load` dispatches on it.
    kind: ClassVar[str] = "stateful"
    #: Stateful policies carry context within an episode.
    stateful: ClassVar[bool] = True

    def __init__(self, meta: dict[str, Any], seed: int | None = None) -> None:
        self.meta: dict[str, Any] = dict(meta)
        self._rng = np.random.default_rng(seed)
        self._actor: BatchActor | None = None
        self.low = np.asarray(self.meta["action_low"], dtype=np.float32)
        self.high = np.asarray(self.meta["action_high"], dtype=np.float32)

    # ------------------------------------------------------------------ sizes
    @property
    @abc.abstractmethod
    def obs_dim(self) -> int:
        """Observation size."""

    @property
    @abc.abstractmethod
    def act_dim(self) -> int:
        """Action size."""

    # ------------------------------------------------------------------ batch maths
    @classmethod
    @abc.abstractmethod
    def batch_actor(cls, policies: Sequence[StatefulPolicy]) -> BatchActor:
        """One actor whose world i runs ``policies[i]`` (all of this class and shape)."""

    def batch_key(self) -> tuple[Any, ...]:
        """Policies with equal keys can run in one :meth:`batch_actor` (they share networks).

        The default is this object alone; subclasses key on the networks they share.
        """
        return (type(self).__name__, id(self))

    @classmethod
    def device_actor(cls, policies: Sequence[StatefulPolicy], device: Any) -> Any:
        """The :meth:`batch_actor` with its state as torch tensors on ``device``.

        Float32 and batched, for episodes on the Warp engine: observations, rewards, noise and
        actions stay on the device.

        Raises:
            ValueError: If this policy type has no device actor.
        """
        raise ValueError(f"{cls.__name__} has no device actor: use engine='batch'")

    # ------------------------------------------------------------------ single env use
    def reset(self) -> None:
        """Forget the current episode's context (call at every episode start)."""
        self._actor = type(self).batch_actor([self])
        self._actor.reset(np.ones(1, dtype=bool))

    def act(
        self,
        obs: np.ndarray,
        deterministic: bool = False,
        *,
        reward: float | None = None,
        clip: bool = True,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """The action for one observation, updating the episode's context.

        Args:
            obs: Raw observation ``(obs_dim,)``.
            deterministic: Mean action instead of a sample.
            reward: Reward of the previous step (0 or None at the episode start).
            clip: Clip to the action bounds (as SB3's ``predict``). Context policies always
                record the clipped action in their history, so ``clip=False`` only changes
                the returned value.
            rng: Generator for the action noise; default: the policy's own.

        Returns:
            float32 action ``(act_dim,)``.

        Raises:
            ValueError: If ``obs`` is not one observation of size ``obs_dim``.
        """
        arr = np.asarray(obs, dtype=np.float64)
        if arr.shape != (self.obs_dim,):
            raise ValueError(
                f"obs has shape {arr.shape}, but this {self.kind} policy acts on one observation "
                f"of shape ({self.obs_dim},) at a time (call reset() at each episode start)"
            )
        if self._actor is None:
            self.reset()
        assert self._actor is not None
        noise = None if deterministic else (rng or self._rng).standard_normal((1, self.act_dim))
        r = np.array([0.0 if reward is None else float(reward)])
        raw = self._actor.act(arr[None], r, noise)[0]
        out = np.clip(raw, self.low, self.high) if clip else raw
        return out.astype(np.float32)

    def predict(
        self,
        obs: np.ndarray,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, None]:
        """SB3-style ``predict`` for one observation; ``episode_start`` true resets the state."""
        if episode_start is not None and bool(np.any(episode_start)):
            self.reset()
        return self.act(obs, deterministic=deterministic), None

    # ------------------------------------------------------------------ persistence
    @abc.abstractmethod
    def to_payload(self) -> dict[str, Any]:
        """Plain-data checkpoint contents (tensors, numbers, strings)."""

    @classmethod
    @abc.abstractmethod
    def from_payload(cls, payload: dict[str, Any]) -> StatefulPolicy:
        """Inverse of :meth:`to_payload`."""

    def save(self, path: str) -> None:
        """Write a checkpoint atomically (load it with ``metarobot.load``)."""
        atomic_torch_save(self.to_payload(), path)

    def clone(self) -> StatefulPolicy:
        """An independent copy (no episode state)."""
        new = copy.copy(self)
        new.meta = copy.deepcopy(self.meta)
        new._actor = None
        new._rng = np.random.default_rng()
        return new
