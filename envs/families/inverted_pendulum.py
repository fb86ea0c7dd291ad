"""InvertedPendulum with randomized masses, damping and motor strength (a cheap family)."""

from __future__ import annotations

from typing import Any

from gymnasium.envs.mujoco.inverted_pendulum_v5 import InvertedPendulumEnv

from metarobot.envs.families._base import Family, change_options
from metarobot.envs.randomization import Choice, LogUniform, pearl_log_uniform


class InvertedPendulumRandParams(Family):
    """Cart-pole with randomized masses, damping, motor strength and motor polarity.

    ## Description
    Gymnasium's ``InvertedPendulum-v5`` whose cart and pole masses, joint damping and motor gear
    change from task to task, and whose motor is wired in reverse in about half of the tasks.
    Masses, damping and gear alone leave nothing to adapt to (a PPO policy trained with domain
    randomization over them balances every test task for the full 200 steps); the reversed
    motor is what one reactive policy cannot serve, so adaptation has to find out the polarity
    from a few episodes. Cheap enough for tests and CPU quickstarts.

    ## Randomized parameters
    | parameter | distribution (scale on nominal) | elements |
    |---|---|---|
    | body mass and inertia | U_log[1/4, 4] | per body |
    | dof damping | 1.3^u, u ~ U[-3, 3] | per dof |
    | actuator gear | U_log[1/2, 2] | shared |
    | actuator direction | uniform over {−1, +1} | shared |

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
        change, env_kwargs = change_options(kwargs)
        super().__init__(
            InvertedPendulumEnv(**env_kwargs),
            resample_on_reset=resample_on_reset,
            **change,
            body_mass=LogUniform(0.25, 4.0, per_element=True),
            dof_damping=pearl_log_uniform(1.3),
            actuator_gear=LogUniform(0.5, 2.0),
            actuator_direction=Choice((-1.0, 1.0)),
        )
