"""Shared helpers for family modules."""

from __future__ import annotations

from typing import Any, ClassVar

import mujoco
import numpy as np
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.envs.mujoco.reacher_v5 import ReacherEnv

from metarobot.envs.randomized import RandomizedDynamics


class FreshKinematics:
    """Mixin for MuJoCo envs that read ``xpos`` (body positions) after stepping.

    ``mj_step`` computes kinematics *before* integrating, so after a step Gymnasium's Ant-v5 and
    Reacher-v5 read body positions from the last RK4 stage, not from the final state (off by
    ~1e-5 m). This mixin recomputes kinematics at the final state after each step, so
    observations and rewards describe the state the robot is actually in, and the batched
    simulator (which only has states) reproduces them exactly. The dynamics are unchanged.
    """

    def _step_mujoco_simulation(self, ctrl: np.ndarray, n_frames: int) -> None:
        super()._step_mujoco_simulation(ctrl, n_frames)  # type: ignore[misc]
        mujoco.mj_kinematics(self.model, self.data)  # type: ignore[attr-defined]


class FreshAntEnv(FreshKinematics, AntEnv):
    """Gymnasium's Ant-v5 with kinematics refreshed after each step."""


class FreshReacherEnv(FreshKinematics, ReacherEnv):
    """Gymnasium's Reacher-v5 with kinematics refreshed after each step."""


class Family(RandomizedDynamics):
    """A registered task distribution: a robot plus the specs of what is randomized.

    Subclasses set ``ID`` (the Gymnasium id), ``HORIZON`` (episode length) and build their base
    env and specs in ``__init__``.
    """

    ID: ClassVar[str]
    HORIZON: ClassVar[int]
    #: Whether ``task_split`` can make disjoint train/test sets (False for two-task families).
    DISJOINT_SPLIT: ClassVar[bool] = True

    def __init__(self, env: Any, *, resample_on_reset: bool = False, **specs: Any) -> None:
        super().__init__(env, family=self.ID, resample_on_reset=resample_on_reset, **specs)
