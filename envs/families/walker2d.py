"""Walker2d families: PEARL's randomized physical parameters, and physical change."""

from __future__ import annotations

from typing import Any

from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv

from metarobot.envs.families._base import Family, change_options
from metarobot.envs.families._physical import physical_specs
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
        change, env_kwargs = change_options(kwargs)
        super().__init__(
            Walker2dEnv(**env_kwargs),
            resample_on_reset=resample_on_reset,
            **change,
            body_mass=pearl_log_uniform(1.5),
            dof_damping=pearl_log_uniform(1.3),
            geom_friction=pearl_log_uniform(1.5),
        )


class Walker2dPhysical(Family):
    """Walker2d under physical change: payload, friction, weak or failed motors.

    ## Description
    Gymnasium's ``Walker2d-v5`` carrying a payload on its torso — a point mass at an offset
    from the torso's centre of mass, so the torso's mass, centre of mass and inertia all change
    (an offset along y, out of the plane, changes nothing the planar robot can feel) — on a
    floor of varying friction, with motors of varying strength and, in half of the training
    tasks, one failed motor of the right leg (actuators 0–2: thigh, leg, foot); out of
    distribution a motor of the left leg (3–5) fails.

    ## Randomized parameters
    | parameter | train / test | ood |
    |---|---|---|
    | payload on the torso (× the robot's nominal total mass, 23.7 kg) | U[0, 0.5] | U[0.5, 1] |
    | payload position (m, torso frame, x, y, z each) | U[−0.15, 0.15] | same |
    | friction of every geom (shared scale) | U_log[0.2, 2.0] | U_log[0.05, 0.2] |
    | motor strength (gear scale, per motor) | U[0.3, 1.2] | same |
    | failed motor (gear 0) | none (p = ½) or one of 0–2 (right leg) | one of 3–5 (left leg) |

    ``task_split(id)`` gives 40 training and 10 test tasks from the train/test column;
    ``ood_split(id)`` gives 10 tasks from the ood column.

    ## Observation / Action
    17-dim ``(qpos[1:], clip(qvel, ±10))``; 6 torques in [-1, 1].

    ## Reward
    Walker2d-v5's: v_x + 1 (healthy) − 0.001·|a|².

    ## Episode end
    Terminated when the torso height leaves (0.8, 2) or its angle leaves (−1, 1); truncated
    after 200 steps or on divergence. ``change_step`` / ``hazard`` change the task within an
    episode.

    ## Version history
    - v0: initial release.
    """

    ID = "metarobot/Walker2dPhysical-v0"
    HORIZON = 200

    def __init__(self, resample_on_reset: bool = False, **kwargs: Any) -> None:
        change, env_kwargs = change_options(kwargs)
        super().__init__(
            Walker2dEnv(**env_kwargs),
            resample_on_reset=resample_on_reset,
            **change,
            **physical_specs(train_motors=[0, 1, 2], ood_motors=[3, 4, 5]),
        )
