"""Vectorized observation, reward and termination of Gymnasium's MuJoCo robots.

Each kernel reproduces one ``gymnasium.envs.mujoco.*_v5`` env's ``_get_obs``, reward and
``terminated`` for a batch of worlds, from batched ``qpos``/``qvel`` arrays, so the batched
simulator needs no per-world Python. The parity tests check every kernel against the real env.
"""

from __future__ import annotations

from collections.abc import Callable

import mujoco
import numpy as np
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
from gymnasium.envs.mujoco.inverted_pendulum_v5 import InvertedPendulumEnv
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
from gymnasium.envs.mujoco.reacher_v5 import ReacherEnv
from gymnasium.envs.mujoco.swimmer_v5 import SwimmerEnv
from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv

__all__ = ["Kernel", "make_kernel", "supported_robots"]

Terms = dict[str, np.ndarray]


class Kernel:
    """Base kernel: batched ``observation`` and ``step_terms`` for one robot.

    Args:
        env: An instance of the robot's env, read for its constants (weights, ranges, dt).
    """

    def __init__(self, env: MujocoEnv) -> None:
        self.dt = float(env.dt)
        self.nq = env.model.nq
        self.nv = env.model.nv

    def observation(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        """Observations of shape ``(N, obs_dim)`` from ``(N, nq)`` and ``(N, nv)``."""
        raise NotImplementedError

    def step_terms(
        self,
        qpos0: np.ndarray,
        qpos1: np.ndarray,
        qvel1: np.ndarray,
        action: np.ndarray,
    ) -> Terms:
        """Reward terms of a step from ``qpos0`` to (``qpos1``, ``qvel1``) under ``action``.

        Returns:
            ``reward`` and ``terminated`` (the env's own), plus ``x_velocity``, ``y_velocity``,
            ``ctrl_sq`` and ``healthy`` for reward-varying families.
        """
        raise NotImplementedError

    @staticmethod
    def _ctrl_sq(action: np.ndarray) -> np.ndarray:
        # Same dtype and reduction as the envs' np.sum(np.square(action)).
        return np.sum(np.square(action), axis=1).astype(np.float64)


class _ForwardKernel(Kernel):
    """Robots rewarded for forward x velocity of ``qpos[0]``."""

    skip = 1

    def __init__(self, env: MujocoEnv) -> None:
        super().__init__(env)
        if not getattr(env, "_exclude_current_positions_from_observation", True):
            self.skip = 0
        self.fw = float(env._forward_reward_weight)
        self.ctrl_w = float(env._ctrl_cost_weight)

    def observation(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        return np.concatenate([qpos[:, self.skip :], qvel], axis=1)

    def _basic(self, qpos0: np.ndarray, qpos1: np.ndarray, action: np.ndarray) -> Terms:
        xv = (qpos1[:, 0] - qpos0[:, 0]) / self.dt
        n = qpos1.shape[0]
        return {"x_velocity": xv, "y_velocity": np.zeros(n), "ctrl_sq": self._ctrl_sq(action)}


class HalfCheetahKernel(_ForwardKernel):
    """HalfCheetah-v5: ``x_vel − 0.1·|a|²``, never terminates."""

    def step_terms(
        self, qpos0: np.ndarray, qpos1: np.ndarray, qvel1: np.ndarray, action: np.ndarray
    ) -> Terms:
        t = self._basic(qpos0, qpos1, action)
        n = qpos1.shape[0]
        t["healthy"] = np.ones(n)
        t["terminated"] = np.zeros(n, dtype=bool)
        t["reward"] = self.fw * t["x_velocity"] - self.ctrl_w * t["ctrl_sq"]
        return t


class SwimmerKernel(_ForwardKernel):
    """Swimmer-v5: like HalfCheetah but observations skip the x and y positions."""

    skip = 2

    def __init__(self, env: MujocoEnv) -> None:
        super().__init__(env)
        self.skip = 2 if env._exclude_current_positions_from_observation else 0

    step_terms = HalfCheetahKernel.step_terms


class _HealthyKernel(_ForwardKernel):
    """Hopper and Walker2d: a healthy bonus and termination when unhealthy."""

    def __init__(self, env: MujocoEnv) -> None:
        super().__init__(env)
        self.healthy_reward = float(env._healthy_reward)
        self.terminate = bool(env._terminate_when_unhealthy)
        self.z_range = tuple(env._healthy_z_range)
        self.angle_range = tuple(env._healthy_angle_range)
        self.state_range = getattr(env, "_healthy_state_range", None)

    def observation(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        return np.concatenate([qpos[:, self.skip :], np.clip(qvel, -10, 10)], axis=1)

    def healthy(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        """Boolean healthy flag per world."""
        z, angle = qpos[:, 1], qpos[:, 2]
        ok = (self.z_range[0] < z) & (z < self.z_range[1])
        ok &= (self.angle_range[0] < angle) & (angle < self.angle_range[1])
        if self.state_range is not None:
            state = np.concatenate([qpos, qvel], axis=1)[:, 2:]
            lo, hi = self.state_range
            ok &= np.all((lo < state) & (state < hi), axis=1)
        return ok

    def step_terms(
        self, qpos0: np.ndarray, qpos1: np.ndarray, qvel1: np.ndarray, action: np.ndarray
    ) -> Terms:
        t = self._basic(qpos0, qpos1, action)
        h = self.healthy(qpos1, qvel1)
        t["healthy"] = h.astype(np.float64)
        t["terminated"] = ~h & self.terminate
        t["reward"] = (
            self.fw * t["x_velocity"]
            + self.healthy_reward * t["healthy"]
            - self.ctrl_w * t["ctrl_sq"]
        )
        return t


def _needs_fresh_kinematics(env: MujocoEnv) -> None:
    from metarobot.envs.families._base import FreshKinematics

    if not isinstance(env, FreshKinematics):
        raise ValueError(
            f"the batched simulator cannot reproduce plain {type(env).__name__}: it reads body "
            "positions left over from inside the last physics step; use the metarobot family "
            "(its env refreshes kinematics after each step)"
        )


class AntKernel(Kernel):
    """Ant-v5 without contact forces.

    Needs ``include_cfrc_ext_in_observation=False`` and ``contact_cost_weight=0`` (``cfrc_ext``
    is not part of the simulator state) and kinematics refreshed after each step (see
    :class:`metarobot.envs.families.FreshKinematics`).
    """

    def __init__(self, env: MujocoEnv) -> None:
        super().__init__(env)
        _needs_fresh_kinematics(env)
        if env._include_cfrc_ext_in_observation or env._contact_cost_weight != 0.0:
            raise ValueError(
                "the batched Ant needs include_cfrc_ext_in_observation=False and "
                "contact_cost_weight=0 (contact forces are not part of the simulator state)"
            )
        body = env.model.body(env._main_body)
        jnt = body.jntadr[0] if body.jntnum[0] > 0 else -1
        if (
            jnt < 0
            or env.model.jnt_type[jnt] != mujoco.mjtJoint.mjJNT_FREE
            or env.model.jnt_qposadr[jnt] != 0
        ):
            raise ValueError("the batched Ant needs a free-joint main body at qpos[0:3]")
        self.skip = 2 if env._exclude_current_positions_from_observation else 0
        self.fw = float(env._forward_reward_weight)
        self.ctrl_w = float(env._ctrl_cost_weight)
        self.healthy_reward = float(env._healthy_reward)
        self.terminate = bool(env._terminate_when_unhealthy)
        self.z_range = tuple(env._healthy_z_range)

    def observation(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        return np.concatenate([qpos[:, self.skip :], qvel], axis=1)

    def step_terms(
        self, qpos0: np.ndarray, qpos1: np.ndarray, qvel1: np.ndarray, action: np.ndarray
    ) -> Terms:
        vel = (qpos1[:, :2] - qpos0[:, :2]) / self.dt  # torso xpos == free-joint qpos
        finite = np.all(np.isfinite(qpos1), axis=1) & np.all(np.isfinite(qvel1), axis=1)
        z = qpos1[:, 2]
        h = finite & (self.z_range[0] <= z) & (z <= self.z_range[1])
        t = {
            "x_velocity": vel[:, 0],
            "y_velocity": vel[:, 1],
            "ctrl_sq": self._ctrl_sq(action),
            "healthy": h.astype(np.float64),
            "terminated": ~h & self.terminate,
        }
        t["reward"] = (
            self.fw * t["x_velocity"]
            + self.healthy_reward * t["healthy"]
            - self.ctrl_w * t["ctrl_sq"]
        )
        return t


class InvertedPendulumKernel(Kernel):
    """InvertedPendulum-v5: reward 1 while the pole is within ±0.2 rad."""

    def observation(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        return np.concatenate([qpos, qvel], axis=1)

    def step_terms(
        self, qpos0: np.ndarray, qpos1: np.ndarray, qvel1: np.ndarray, action: np.ndarray
    ) -> Terms:
        obs = self.observation(qpos1, qvel1)
        term = ~np.all(np.isfinite(obs), axis=1) | (np.abs(obs[:, 1]) > 0.2)
        n = qpos1.shape[0]
        return {
            "x_velocity": np.zeros(n),
            "y_velocity": np.zeros(n),
            "ctrl_sq": self._ctrl_sq(action),
            "healthy": (~term).astype(np.float64),
            "terminated": term,
            "reward": (~term).astype(np.float64),
        }


class ReacherKernel(Kernel):
    """Reacher-v5: planar two-link forward kinematics in numpy."""

    def __init__(self, env: MujocoEnv) -> None:
        super().__init__(env)
        _needs_fresh_kinematics(env)
        m = env.model
        self.p0 = m.body("body0").pos.copy()
        self.p1 = m.body("body1").pos.copy()
        self.p2 = m.body("fingertip").pos.copy()
        target = m.body("target")
        self.target_pos = target.pos.copy()
        self.target_joints = [
            (int(m.jnt_qposadr[j]), float(m.qpos0[m.jnt_qposadr[j]]), m.jnt_axis[j].copy())
            for j in range(target.jntadr[0], target.jntadr[0] + target.jntnum[0])
        ]
        self.w_dist = float(env._reward_dist_weight)
        self.w_ctrl = float(env._reward_control_weight)

    def _vec(self, qpos: np.ndarray) -> np.ndarray:
        a0, a01 = qpos[:, 0], qpos[:, 0] + qpos[:, 1]

        def rot(v: np.ndarray, ang: np.ndarray) -> np.ndarray:
            c, s = np.cos(ang), np.sin(ang)
            return np.stack([c * v[0] - s * v[1], s * v[0] + c * v[1], np.full_like(ang, v[2])], 1)

        tip = self.p0 + rot(self.p1, a0) + rot(self.p2, a01)
        target = np.tile(self.target_pos, (qpos.shape[0], 1))
        for adr, q0, axis in self.target_joints:
            target = target + (qpos[:, adr] - q0)[:, None] * axis
        return tip - target

    def observation(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        theta = qpos[:, :2]
        return np.concatenate(
            [np.cos(theta), np.sin(theta), qpos[:, 2:], qvel[:, :2], self._vec(qpos)[:, :2]],
            axis=1,
        )

    def step_terms(
        self, qpos0: np.ndarray, qpos1: np.ndarray, qvel1: np.ndarray, action: np.ndarray
    ) -> Terms:
        n = qpos1.shape[0]
        ctrl_sq = self._ctrl_sq(action)
        return {
            "x_velocity": np.zeros(n),
            "y_velocity": np.zeros(n),
            "ctrl_sq": ctrl_sq,
            "healthy": np.ones(n),
            "terminated": np.zeros(n, dtype=bool),
            "reward": -np.linalg.norm(self._vec(qpos1), axis=1) * self.w_dist
            - ctrl_sq * self.w_ctrl,
        }


_KERNELS: dict[type, Callable[[MujocoEnv], Kernel]] = {
    HalfCheetahEnv: HalfCheetahKernel,
    HopperEnv: _HealthyKernel,
    Walker2dEnv: _HealthyKernel,
    AntEnv: AntKernel,
    InvertedPendulumEnv: InvertedPendulumKernel,
    ReacherEnv: ReacherKernel,
    SwimmerEnv: SwimmerKernel,
}


def supported_robots() -> list[str]:
    """Names of the robot env classes the batched simulator can step."""
    return sorted(cls.__name__ for cls in _KERNELS)


def make_kernel(env: MujocoEnv) -> Kernel:
    """The kernel for ``env``'s robot.

    Raises:
        ValueError: If the robot has no kernel.
    """
    for cls, factory in _KERNELS.items():
        if isinstance(env, cls):
            return factory(env)
    raise ValueError(
        f"the batched simulator has no kernel for {type(env).__name__}; supported robots are "
        f"{supported_robots()}"
    )
