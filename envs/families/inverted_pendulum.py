"""InvertedPendulum with randomized masses, damping and motor strength (a cheap family)."""

from __future__ import annotations

from typing import Any

from gymnasium.envs.mujoco.inverted_pendulum_v5 import InvertedPendulumEnv
from metarobot.envs.families._base import Family
from metarobot.envs.randomization import LogUniform, pearl_log_uniform


class InvertedPendulumRandParams(Family):
    """Cart-pole with randomized masses, damping and motor strength; cheap enough for tests.

    ## Description
    Gymnasium's ``InvertedPendulum-v5`` whose cart and pole masses, joint damping and motor gear
    change from task to task. Ranges are wide on purpose: a nominal policy copes with mild
    changes, so only wide ranges leave something to adapt to.

    ## Randomized parameters
    | parameter | distribution (scale on nominal) | elements |
    |---|---|---|
    | body mass and inertia | U_log[1/4, 4] | per body |
    | dof damping | 1.3^u, u ~ U[-3, 3] | per dof |
    | actuator gear | U_log[1/4, 4] | shared |

    ## Observation / Action
    4-dim ``(qpos, qvel)``; 1 force in [-3, 3].

    ## Reward
    +1 per step while the pole is within ±0.2 rad.

    ## Episode end
    Terminated when the pole falls past 0.2 rad; truncated after 200 steps or on divergence.

    ## Version history
    - v0: initial release (Gymnasium InvertedPendulum-v5).
    """

    ID = "metarobot/InvertedPendulumRandParams-v0"
    HORIZON = 200

    def __init__(self, resample_on_reset: bool = False, **kwargs: Any) -> None:
        super().__init__(
            InvertedPendulumEnv(**kwargs),
            resample_on_reset=resample_on_reset,
            body_mass=LogUniform(0.25, 4.0, per_element=True),
            dof_damping=pearl_log_uniform(1.3),
            actuator_gear=LogUniform(0.25, 4.0),
        )
