"""Privileged task features: a task's randomized parameters as a fixed-size normalized vector.

RMA's teacher (Kumar et al., 2021) sees the environment's true dynamics parameters; here they
are read off a :class:`~metarobot.envs.Task` and the family's parameter specs. Each randomized
quantity maps to roughly ``[-1, 1]`` over its *training* range (log scale for log-uniform
ranges), so an out-of-distribution test task simply lands outside that interval:

- a shared scale gives one entry, a per-element scale one entry per element (bodies, dofs, ...);
- a ``Choice`` (motor polarity, running direction) gives the value centered and scaled to ±1;
- ``disabled_actuators`` gives a 0/1 mask over the actuators;
- goals (target velocity, direction) are scaled like scales.

Only training-time code (the teacher, the student's regression targets) reads these features;
a deployed context policy never does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import gymnasium as gym
import numpy as np

from metarobot.envs import Choice, LogUniform, ParamSpec, Task, find_randomized
from metarobot.envs.randomization import n_elements

__all__ = ["TaskFeatures"]


def _normalize(spec: ParamSpec | Choice, values: np.ndarray) -> np.ndarray:
    if isinstance(spec, Choice):
        lo, hi = min(spec.values), max(spec.values)
        x, lo_t, hi_t = values, lo, hi
    elif isinstance(spec, LogUniform):
        x, lo_t, hi_t = np.log(values), math.log(spec.low), math.log(spec.high)
    else:
        x, lo_t, hi_t = values, spec.low, spec.high
    half = (hi_t - lo_t) / 2.0
    if half <= 0:
        return np.zeros_like(values)
    return (x - (hi_t + lo_t) / 2.0) / half


class TaskFeatures:
    """Maps the tasks of one family to privileged feature vectors.

    Args:
        env_id: A family id (any registered id whose env wraps a ``RandomizedDynamics``).

    Attributes:
        dim: Length of every feature vector (at least 1).
        names: One label per entry, e.g. ``actuator_direction[0]``.
    """

    def __init__(self, env_id: str) -> None:
        env = gym.make(env_id, disable_env_checker=True)
        try:
            rd = find_randomized(env)
            model = rd.unwrapped.model
            self._scales: list[tuple[str, ParamSpec | Choice, int]] = []
            for name, spec in sorted(rd.specs.items()):
                per = bool(getattr(spec, "per_element", False))
                self._scales.append((name, spec, n_elements(model, name) if per else 1))
            self._nu = int(model.nu) if rd.disabled_spec is not None else 0
            self._goals = sorted(rd.goal_specs.items())
        finally:
            env.close()
        self.env_id = env_id
        self.names: list[str] = []
        for name, _, n in self._scales:
            self.names += [f"{name}[{i}]" for i in range(n)]
        self.names += [f"disabled_actuators[{i}]" for i in range(self._nu)]
        self.names += [f"goal.{name}" for name, _ in self._goals]
        # A family with nothing randomized still gets one constant entry, so shapes stay valid.
        self.dim = max(1, len(self.names))

    @property
    def has_goals(self) -> bool:
        """Whether the family's tasks differ in their reward (a goal), not only in dynamics."""
        return bool(self._goals)

    def __call__(self, task: Task) -> np.ndarray:
        """The feature vector of one task (float32, shape ``(dim,)``)."""
        parts: list[np.ndarray] = []
        for name, spec, n in self._scales:
            vals = np.asarray(task.scale(name) or (1.0,), dtype=np.float64)
            if vals.size != n:
                vals = np.broadcast_to(vals[:1], (n,))
            parts.append(_normalize(spec, vals))
        if self._nu:
            mask = np.zeros(self._nu)
            mask[list(task.disabled_actuators)] = 1.0
            parts.append(mask)
        for name, spec in self._goals:
            vals = np.asarray(task.goal_value(name) or (0.0,), dtype=np.float64)[:1]
            parts.append(_normalize(spec, vals))
        out = np.concatenate(parts) if parts else np.zeros(1)
        return out.astype(np.float32)

    def batch(self, tasks: Sequence[Task]) -> np.ndarray:
        """Feature vectors of several tasks, shape ``(len(tasks), dim)``."""
        return np.stack([self(t) for t in tasks]) if tasks else np.zeros((0, self.dim), np.float32)
