"""Vectorized observation, reward and termination of Gymnasium's MuJoCo robots.

Each kernel reproduces one ``gymnasium.envs.mujoco.*_v5`` env's ``_get_obs``, reward and
``terminated`` for a batch of worlds, from batched ``qpos``/``qvel`` arrays, so the batched
simulator needs no per-world Python. The parity tests check every kernel against the real env.
"""

from __future__ import annotations

from collections.abc import Callable

import mujoco
import numpy as np
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
from gymnasium.envs.mujoco.inverted_pendulum_v5 import InvertedPendulumEnv
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
from gymnasium.envs.mujoco.swimmer_v5 import SwimmerEnv
from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv

from metarobot.envs.families._base import FixedMassHalfCheetahEnv, FreshAntEnv, FreshReacherEnv

__all__ = ["Kernel", "find_kernel", "make_kernel", "supported_robots"]

Terms = dict[str, np.ndarray]


class Kernel:
    """Base kernel: batched ``observation`` and ``step_terms`` for one robot.

    Args:
        env: An instance of the robot's env, read for its constants (weights, ranges, dt).
    """

    #: Forward stage the batch computes at the new state after stepping (``mjtStage``); the
    #: default computes nothing beyond the state.
    stage: int = int(mujoco.mjtStage.mjSTAGE_NONE)
    #: Derived ``MjData`` fields the kernel reads (bound from the batch, current at ``stage``).
    derived: tuple[str, ...] = ()

    def __init__(self, env: MujocoEnv) -> None:
        self.dt = float(env.dt)
        self.nq = env.model.nq
        self.nv = env.model.nv

    def observation(self, qpos: np.ndarray, qvel: np.ndarray, **derived: np.ndarray) -> np.ndarray:
        """Observations of shape ``(N, obs_dim)`` from ``(N, nq)``, ``(N, nv)`` and ``derived``."""
        raise NotImplementedError

    def step_terms(
        self,
        qpos0: np.ndarray,
        qpos1: np.ndarray,
        qvel1: np.ndarray,
        action: np.ndarray,
        **derived: np.ndarray,
    ) -> Terms:
        """Reward terms of a step from ``qpos0`` to (``qpos1``, ``qvel1``) under ``action``.

        Returns:
            ``reward`` and ``terminated`` (the env's own), plus ``x_velocity``, ``y_velocity``,
            ``ctrl_sq`` and ``healthy`` for reward-varying families.
        """
        raise NotImplementedError

    @staticmethod
    def _ctrl_sq(action: np.ndarray) -> np.ndarray:
        # The envs' np.sum(np.square(action)), kept in the action's dtype: with float32 actions
        # the envs' control cost is a float32 (weight * float32 sum), and so it is here.
        return np.sum(np.square(action), axis=1)


class _ForwardKernel(Kernel):
    """Robots rewarded for forward x velocity of ``qpos[0]``."""

    skip = 1

    def __init__(self, env: MujocoEnv) -> None:
        super().__init__(env)
        if not getattr(env, "_exclude_current_positions_from_observation", True):
            self.skip = 0
        self.fw = float(env._forward_reward_weight)
        self.ctrl_w = float(env._ctrl_cost_weight)

    def observation(self, qpos: np.ndarray, qvel: np.ndarray, **derived: np.ndarray) -> np.ndarray:
        return np.concatenate([qpos[:, self.skip :], qvel], axis=1)

    def _basic(self, qpos0: np.ndarray, qpos1: np.ndarray, action: np.ndarray) -> Terms:
        xv = (qpos1[:, 0] - qpos0[:, 0]) / self.dt
        n = qpos1.shape[0]
        return {"x_velocity": xv, "y_velocity": np.zeros(n), "ctrl_sq": self._ctrl_sq(action)}


class HalfCheetahKernel(_ForwardKernel):
    """HalfCheetah-v5: ``x_vel − 0.1·|a|²``, never terminates."""

    def step_terms(
        self,
        qpos0: np.ndarray,
        qpos1: np.ndarray,
        qvel1: np.ndarray,
        action: np.ndarray,
        **derived: np.ndarray,
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

    def observation(self, qpos: np.ndarray, qvel: np.ndarray, **derived: np.ndarray) -> np.ndarray:
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
        self,
        qpos0: np.ndarray,
        qpos1: np.ndarray,
        qvel1: np.ndarray,
        action: np.ndarray,
        **derived: np.ndarray,
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


class AntKernel(Kernel):
    """Ant-v5 without contact forces.

    Needs ``include_cfrc_ext_in_observation=False`` and ``contact_cost_weight=0`` (``cfrc_ext``
    is not part of the simulator state) and kinematics refreshed after each step
    (``FreshAntEnv``); other Ants take the generic path.
    """

    def __init__(self, env: MujocoEnv) -> None:
        super().__init__(env)
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

    def observation(self, qpos: np.ndarray, qvel: np.ndarray, **derived: np.ndarray) -> np.ndarray:
        return np.concatenate([qpos[:, self.skip :], qvel], axis=1)

    def step_terms(
        self,
        qpos0: np.ndarray,
        qpos1: np.ndarray,
        qvel1: np.ndarray,
        action: np.ndarray,
        **derived: np.ndarray,
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

    def observation(self, qpos: np.ndarray, qvel: np.ndarray, **derived: np.ndarray) -> np.ndarray:
        return np.concatenate([qpos, qvel], axis=1)

    def step_terms(
        self,
        qpos0: np.ndarray,
        qpos1: np.ndarray,
        qvel1: np.ndarray,
        action: np.ndarray,
        **derived: np.ndarray,
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
    """Reacher-v5 (``FreshReacherEnv``): fingertip and target positions from the batch's ``xpos``.

    The batch computes kinematics at the final state (``stage``), as ``FreshKinematics`` does
    after each step, so the positions are the env's own, bit for bit.
    """

    stage = int(mujoco.mjtStage.mjSTAGE_POS)
    derived = ("xpos",)

    def __init__(self, env: MujocoEnv) -> None:
        super().__init__(env)
        self.tip = int(env.model.body("fingertip").id)
        self.target = int(env.model.body("target").id)
        self.w_dist = float(env._reward_dist_weight)
        self.w_ctrl = float(env._reward_control_weight)

    def _vec(self, xpos: np.ndarray) -> np.ndarray:
        return xpos[:, self.tip] - xpos[:, self.target]

    def observation(self, qpos: np.ndarray, qvel: np.ndarray, **derived: np.ndarray) -> np.ndarray:
        theta = qpos[:, :2]
        return np.concatenate(
            [
                np.cos(theta),
                np.sin(theta),
                qpos[:, 2:],
                qvel[:, :2],
                self._vec(derived["xpos"])[:, :2],
            ],
            axis=1,
        )

    def step_terms(
        self,
        qpos0: np.ndarray,
        qpos1: np.ndarray,
        qvel1: np.ndarray,
        action: np.ndarray,
        **derived: np.ndarray,
    ) -> Terms:
        n = qpos1.shape[0]
        ctrl_sq = self._ctrl_sq(action)
        # Same reductions as the env, bit for bit: Reacher-v5 takes np.linalg.norm of one 3-vector,
        # which is sqrt(v.dot(v)) (a BLAS dot, FMA on some CPUs); norm(axis=1) sums
        # differently and differed by one ulp on an AVX-512 machine. One dot per world it is.
        vec = self._vec(derived["xpos"])
        reward_dist = -np.sqrt([v.dot(v) for v in vec]) * self.w_dist
        reward_ctrl = -ctrl_sq * self.w_ctrl
        return {
            "x_velocity": np.zeros(n),
            "y_velocity": np.zeros(n),
            "ctrl_sq": ctrl_sq,
            "healthy": np.ones(n),
            "terminated": np.zeros(n, dtype=bool),
            "reward": reward_dist + reward_ctrl,
        }


# Exact classes: a subclass may change observation or reward, so it takes the generic path.
# Ant and Reacher only in their FreshKinematics form: plain Ant-v5 / Reacher-v5 read body
# positions left over from inside the last physics step, which only their own code reproduces.
_KERNELS: dict[type, Callable[[MujocoEnv], Kernel]] = {
    HalfCheetahEnv: HalfCheetahKernel,
    FixedMassHalfCheetahEnv: HalfCheetahKernel,
    HopperEnv: _HealthyKernel,
    Walker2dEnv: _HealthyKernel,
    FreshAntEnv: AntKernel,
    InvertedPendulumEnv: InvertedPendulumKernel,
    FreshReacherEnv: ReacherKernel,
    SwimmerEnv: SwimmerKernel,
}


def supported_robots() -> list[str]:
    """Names of the robot env classes with a vectorized kernel."""
    return sorted(cls.__name__ for cls in _KERNELS)


def make_kernel(env: MujocoEnv) -> Kernel:
    """The kernel for ``env``'s robot.

    Raises:
        ValueError: If the robot (its exact class, with these settings) has no kernel.
    """
    factory = _KERNELS.get(type(env))
    if factory is None:
        raise ValueError(
            f"no vectorized kernel for {type(env).__name__}; robots with one are "
            f"{supported_robots()} (every other robot takes the batched simulator's generic path)"
        )
    return factory(env)


def find_kernel(env: MujocoEnv) -> Kernel | None:
    """The kernel for ``env``'s robot, or None when it has none (or not with these settings)."""
    try:
        return make_kernel(env)
    except ValueError:
        return None
