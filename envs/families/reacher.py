"""Reacher with randomized masses, damping and motor strength (a cheap family)."""

from __future__ import annotations

from typing import Any

from metarobot.envs.families._base import Family, FreshReacherEnv, change_options
from metarobot.envs.randomization import LogUniform


class ReacherRandParams(Family):
    """Two-link reacher with randomized link masses, joint damping and motor gear.

    ## Description
    Gymnasium's ``Reacher-v5`` (with positions read at the final state, ``FreshKinematics``):
    move the fingertip to a random target. Link masses, joint
    damping and motor gear change from task to task.

    ## Randomized parameters
    | parameter | distribution (scale on nominal) | elements |
    |---|---|---|
    | body mass and inertia | U_log[1/3, 3] | per body |
    | dof damping | U_log[1/3, 3] | per dof |
    | actuator gear | U_log[1/3, 3] | per actuator |

    ## Observation / Action
    10-dim (cos, sin of the joint angles, target position, joint velocities, fingertip − target);
    2 torques in [-1, 1].

    ## Reward
    Reacher-v5's: −|fingertip − target| − |a|².

    ## Episode end
    Truncated after 50 steps or on divergence.

    ## Version history
    - v0: initial release (Gymnasium Reacher-v5).
    """

    ID = "metarobot/ReacherRandParams-v0"
    HORIZON = 50

    def __init__(self, resample_on_reset: bool = False, **kwargs: Any) -> None:
        change, env_kwargs = change_options(kwargs)
        super().__init__(
            FreshReacherEnv(**env_kwargs),
            resample_on_reset=resample_on_reset,
            **change,
            body_mass=LogUniform(1 / 3, 3.0, per_element=True),
            dof_damping=LogUniform(1 / 3, 3.0, per_element=True),
            actuator_gear=LogUniform(1 / 3, 3.0, per_element=True),
        )
