"""Walker2d with PEARL's randomized physical parameters."""

from __future__ import annotations

from typing import Any

from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv

from metarobot.envs.families._base import Family
from metarobot.envs.randomization import pearl_log_uniform


class Walker2dRandParams(Family):
    """Walker2d with PEARL's randomized physical parameters.

    ## Description
    Gymnasium's ``Walker2d-v5`` (planar biped, 6 motors) whose body masses, joint damping and
    friction change from task to task (PEARL's ``walker-rand-params``).

    ## Randomized parameters
    | parameter | distribution (scale on nominal) | elements |
    |---|---|---|
    | body mass and inertia | 1.5^u, u ~ U[-3, 3] | per body |
    | dof damping | 1.3^u, u ~ U[-3, 3] | per dof |
    | geom friction | 1.5^u, u ~ U[-3, 3] | per geom |

    ## Observation / Action
    17-dim ``(qpos[1:], clip(qvel, ±10))``; 6 torques in [-1, 1].

    ## Reward
    Walker2d-v5's: v_x + 1 (healthy) − 0.001·|a|².

    ## Episode end
    Terminated when the torso height leaves (0.8, 2) or its angle leaves (−1, 1); truncated
    after 200 steps or on divergence.

    ## Version history
    - v0: initial release (Gymnasium Walker2d-v5).
    """

    ID = "metarobot/Walker2dRandParams-v0"
    HORIZON = 200

    def __init__(self, resample_on_reset: bool = False, **kwargs: Any) -> None:
        super().__init__(
            Walker2dEnv(**kwargs),
            resample_on_reset=resample_on_reset,
            body_mass=pearl_log_uniform(1.5),
            dof_damping=pearl_log_uniform(1.3),
            geom_friction=pearl_log_uniform(1.5),
        )
