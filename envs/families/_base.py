"""Shared helpers for family modules."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

import mujoco
import numpy as np
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
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


_TOTALMASS = re.compile(r'\s+settotalmass="([^"]*)"')


def compile_with_masses_written_out(path: str | Path) -> mujoco.MjModel:
    """Compile an MJCF file whose ``<compiler settotalmass=...>`` MuJoCo 4 deprecates.

    MuJoCo 4 warns at every compile of such a file (and appends the warning to
    ``MUJOCO_LOG.TXT`` in the working directory). This compiles the model without the attribute
    and then does what the attribute did, as MuJoCo's warning recommends: ``mj_setTotalmass``
    (masses and inertias scaled by one factor), ``mj_setConst``, and the compiler's mean body
    mass and mean diagonal inertia (the solver scales its tolerance by the latter), summed in
    the compiler's order. The result equals the deprecated compile bit for bit in every array
    field and statistic (tested on Gymnasium's half_cheetah.xml).

    Args:
        path: The MJCF file; files without ``settotalmass`` are compiled as they are.

    Returns:
        The compiled model.
    """
    text = Path(path).read_text()
    match = _TOTALMASS.search(text)
    if match is None:
        return mujoco.MjModel.from_xml_path(str(path))
    model = mujoco.MjModel.from_xml_string(_TOTALMASS.sub("", text, count=1))
    mujoco.mj_setTotalmass(model, float(match.group(1)))
    data = mujoco.MjData(model)
    mujoco.mj_setConst(model, data)
    total = 0.0
    for i in range(1, model.nbody):
        total += float(model.body_mass[i])
    model.stat.meanmass = total / max(1, model.nbody - 1)
    mujoco.mj_forward(model, data)
    full = np.zeros((model.nv, model.nv))
    mujoco.mj_fullM(model, data, full)
    diag = 0.0
    for i in range(model.nv):
        diag += float(full[i, i])
    model.stat.meaninertia = diag / max(1, model.nv)
    return model


class FixedMassHalfCheetahEnv(HalfCheetahEnv):
    """Gymnasium's HalfCheetah-v5, compiled without MuJoCo 4's ``settotalmass`` warning.

    Same model, bit for bit (see :func:`compile_with_masses_written_out`), same dynamics,
    observations and rewards; only the deprecation warning and the ``MUJOCO_LOG.TXT`` it
    writes are gone.
    """

    def _initialize_simulation(self) -> tuple[mujoco.MjModel, mujoco.MjData]:
        model = compile_with_masses_written_out(self.fullpath)
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, self.width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, self.height)
        return model, mujoco.MjData(model)


#: Constructor keywords of every family that set its within-episode change schedule (see
#: ``RandomizedDynamics``); a family passes them to the wrapper, the rest to its robot.
CHANGE_OPTIONS: tuple[str, ...] = ("change_step", "hazard", "change_to")


def change_options(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a family's keywords into the change schedule's and the robot env's."""
    change = {k: v for k, v in kwargs.items() if k in CHANGE_OPTIONS}
    rest = {k: v for k, v in kwargs.items() if k not in CHANGE_OPTIONS}
    return change, rest


class Family(RandomizedDynamics):
    """A registered task distribution: a robot plus the specs of what is randomized.

    Subclasses set ``ID`` (the Gymnasium id), ``HORIZON`` (episode length) and build their base
    env and specs in ``__init__``. Every family takes the change-schedule keywords
    (:data:`CHANGE_OPTIONS`: ``change_step``, ``hazard``, ``change_to``) through ``gym.make``.
    """

    ID: ClassVar[str]
    HORIZON: ClassVar[int]
    #: Whether ``task_split`` can make disjoint train/test sets (False for two-task families).
    DISJOINT_SPLIT: ClassVar[bool] = True

    def __init__(self, env: Any, *, resample_on_reset: bool = False, **specs: Any) -> None:
        super().__init__(env, family=self.ID, resample_on_reset=resample_on_reset, **specs)
