"""InvertedDoublePendulum with randomized masses, damping, motor strength and motor polarity."""

from __future__ import annotations

from typing import Any

from gymnasium.envs.mujoco.inverted_double_pendulum_v5 import InvertedDoublePendulumEnv

from metarobot.envs.families._base import Family, change_options
from metarobot.envs.randomization import Choice, LogUniform, pearl_log_uniform


class InvertedDoublePendulumRandParams(Family):
    """Cart with a two-link pole: randomized masses, damping, motor strength and polarity.

    ## Description
    Gymnasium's ``InvertedDoublePendulum-v5`` whose cart and link masses, joint damping and motor
    gear change from task to task, and whose motor is wired in reverse in about half of the
    tasks. It is :class:`InvertedPendulumRandParams`'s harder sibling. The double pole falls
    within about 10 steps unless the cart is driven the right way (8–9 with no force), so
    the polarity has to be found within the first steps of an episode, from how the cart
    answers the first pushes. A reactive policy cannot balance both wirings: the push that
    catches the pole under one wiring knocks it over under the other.

    ## Randomized parameters
    | parameter | distribution (scale on nominal) | elements |
    |---|---|---|
    | body mass and inertia | U_log[1/2, 2] | per body |
    | dof damping | 1.3^u, u ~ U[-3, 3] | per dof |
    | actuator gear | U_log[1/2, 2] | shared |
    | actuator direction | uniform over {−1, +1} | shared |

    ## Observation / Action
    9-dim, as InvertedDoublePendulum-v5: cart position, sin and cos of both pole angles, the
    three velocities (clipped to ±10) and the cart's constraint force (clipped to ±10); one
    force in [-1, 1] (the polarity is not observed).

    ## Reward
    InvertedDoublePendulum-v5's: 10 per step while the tip is above y = 1, minus a distance
    penalty ``0.01·x_tip² + (y_tip − 2)²`` and a velocity penalty
    ``0.001·ω₁² + 0.005·ω₂²``; about 9.3 per step while balanced upright.

    ## Episode end
    Terminated when the tip falls to y ≤ 1; truncated after 200 steps or on divergence.

    ## Version history
    - v0: initial release (Gymnasium InvertedDoublePendulum-v5).
    """

    ID = "metarobot/InvertedDoublePendulumRandParams-v0"
    HORIZON = 200

    def __init__(self, resample_on_reset: bool = False, **kwargs: Any) -> None:
        change, env_kwargs = change_options(kwargs)
        super().__init__(
            InvertedDoublePendulumEnv(**env_kwargs),
            resample_on_reset=resample_on_reset,
            **change,
            body_mass=LogUniform(0.5, 2.0, per_element=True),
            dof_damping=pearl_log_uniform(1.3),
            actuator_gear=LogUniform(0.5, 2.0),
            actuator_direction=Choice((-1.0, 1.0)),
        )
