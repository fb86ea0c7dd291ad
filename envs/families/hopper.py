"""Hopper with PEARL's randomized physical parameters."""

from __future__ import annotations

from typing import Any

from gymnasium.envs.mujoco.hopper_v5 import HopperEnv

from metarobot.envs.families._base import Family, change_options
from metarobot.envs.randomization import pearl_log_uniform


class HopperRandParams(Family):
    """Hopper with PEARL's randomized physical parameters.

    ## Description
    Gymnasium's ``Hopper-v5`` (one-legged planar hopper, 3 motors) whose body masses, joint
    damping and friction change from task to task (PEARL's ``hopper-rand-params``).

    ## Randomized parameters
    | parameter | distribution (scale on nominal) | elements |
    |---|---|---|
    | body mass and inertia | 1.5^u, u ~ U[-3, 3] | per body |
    | dof damping | 1.3^u, u ~ U[-3, 3] | per dof |
    | geom friction | 1.5^u, u ~ U[-3, 3] | per geom |

    ## Observation / Action
    11-dim ``(qpos[1:], clip(qvel, ±10))``; 3 torques in [-1, 1].

    ## Reward
    Hopper-v5's: v_x + 1 (healthy) − 0.001·|a|².

    ## Episode end
    Terminated when unhealthy (height, angle or state out of range); truncated after 200 steps
    or on divergence.

    ## Version history
    - v0: initial release (Gymnasium Hopper-v5).
    """

    ID = "metarobot/HopperRandParams-v0"
    HORIZON = 200

    def __init__(self, resample_on_reset: bool = False, **kwargs: Any) -> None:
        change, env_kwargs = change_options(kwargs)
        super().__init__(
            HopperEnv(**env_kwargs),
            resample_on_reset=resample_on_reset,
            **change,
            body_mass=pearl_log_uniform(1.5),
            dof_damping=pearl_log_uniform(1.3),
            geom_friction=pearl_log_uniform(1.5),
        )
