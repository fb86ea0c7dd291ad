"""HalfCheetah families: PEARL rand-params, crippled joints, MAML's velocity/direction, physical.

Every family compiles Gymnasium's HalfCheetah-v5 model through
:class:`~metarobot.envs.families._base.FixedMassHalfCheetahEnv` (same model bit for bit, without
MuJoCo 4's ``settotalmass`` deprecation warning).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from metarobot.envs.families._base import Family, FixedMassHalfCheetahEnv, change_options
from metarobot.envs.families._physical import physical_specs
from metarobot.envs.randomization import (
    Choice,
    DisabledActuators,
    LogUniform,
    Uniform,
    pearl_log_uniform,
)

#: MAML's control cost for the reward-varying cheetah tasks: 0.5 · 0.1 · |a|².
_MAML_CTRL = 0.05


class HalfCheetahRandParams(Family):
    """HalfCheetah with randomized physical parameters in PEARL's ranges.

    ## Description
    Gymnasium's ``HalfCheetah-v5`` (planar cheetah, 6 motors) whose body masses, joint damping
    and friction change from task to task: PEARL's rand_param_envs ranges, applied to
    HalfCheetah (PEARL's code ships rand-params for walker and hopper only).

    ## Randomized parameters
    | parameter | distribution (scale on nominal) | elements |
    |---|---|---|
    | body mass and inertia | 1.5^u, u ~ U[-3, 3] | per body |
    | dof damping | 1.3^u, u ~ U[-3, 3] | per dof |
    | geom friction | 1.5^u, u ~ U[-3, 3] | per geom |

    ## Observation / Action
    As HalfCheetah-v5: 17-dim ``(qpos[1:], qvel)``; 6 torques in [-1, 1].

    ## Reward
    HalfCheetah-v5's: forward velocity − 0.1·|a|².

    ## Episode end
    Truncated after 200 steps (PEARL's horizon), or on divergence (``info["diverged"]``).

    ## Version history
    - v0: initial release (Gymnasium HalfCheetah-v5, MuJoCo ≥ 3).
    """

    ID = "metarobot/HalfCheetahRandParams-v0"
    HORIZON = 200

    def __init__(self, resample_on_reset: bool = False, **kwargs: Any) -> None:
        change, env_kwargs = change_options(kwargs)
        super().__init__(
            FixedMassHalfCheetahEnv(**env_kwargs),
            resample_on_reset=resample_on_reset,
            **change,
            body_mass=pearl_log_uniform(1.5),
            dof_damping=pearl_log_uniform(1.3),
            geom_friction=pearl_log_uniform(1.5),
        )


class HalfCheetahCrippled(Family):
    """HalfCheetah with one disabled joint motor (a crippled limb).

    ## Description
    One of the six motors produces no force (its gear and gain are zero). Training tasks cripple
    one of the back thigh, back shin, back foot or front thigh motors (actuators 0–3); test tasks
    cripple the front shin or front foot (actuators 4–5), so test failures are never seen in
    training. Body masses get a mild shared scale so that tasks are distinct.

    ## Randomized parameters
    | parameter | train | test |
    |---|---|---|
    | disabled actuator | one of 0, 1, 2, 3 | one of 4, 5 |
    | body mass and inertia | U_log[0.8, 1.25], shared | same |

    ## Observation / Action
    As HalfCheetah-v5 (17-dim observation, 6 actions; the disabled one has no effect).

    ## Reward
    HalfCheetah-v5's: forward velocity − 0.1·|a|².

    ## Episode end
    Truncated after 200 steps, or on divergence.

    ## Version history
    - v0: initial release.
    """

    ID = "metarobot/HalfCheetahCrippled-v0"
    HORIZON = 200

    def __init__(self, resample_on_reset: bool = False, **kwargs: Any) -> None:
        change, env_kwargs = change_options(kwargs)
        super().__init__(
            FixedMassHalfCheetahEnv(**env_kwargs),
            resample_on_reset=resample_on_reset,
            **change,
            body_mass=LogUniform(0.8, 1.25),
            disabled_actuators=DisabledActuators(((0,), (1,), (2,), (3,)), 1),
            test_overrides={"disabled_actuators": DisabledActuators(((4,), (5,)), 1)},
        )


class HalfCheetahVel(Family):
    """HalfCheetah that must run at a target velocity (MAML's ``HalfCheetahVel``).

    ## Description
    Dynamics are nominal; the reward varies: each task has a target forward velocity.

    ## Randomized parameters
    | parameter | distribution |
    |---|---|
    | goal ``velocity`` | U[0, 2] m/s |

    ## Observation / Action
    As HalfCheetah-v5 (the target is not observed: it must be inferred from reward).

    ## Reward
    −|v_x − v_target| − 0.05·|a|² (MAML's definition).

    ## Episode end
    Truncated after 200 steps, or on divergence.

    ## Version history
    - v0: initial release.
    """

    ID = "metarobot/HalfCheetahVel-v0"
    HORIZON = 200

    def __init__(self, resample_on_reset: bool = False, **kwargs: Any) -> None:
        change, env_kwargs = change_options(kwargs)
        super().__init__(
            FixedMassHalfCheetahEnv(**env_kwargs),
            resample_on_reset=resample_on_reset,
            **change,
            goal={"velocity": Uniform(0.0, 2.0)},
        )

    @staticmethod
    def goal_reward(  # noqa: D102
        terms: Mapping[str, np.ndarray], goal: Mapping[str, np.ndarray]
    ) -> np.ndarray:
        return -np.abs(terms["x_velocity"] - goal["velocity"][:, 0]) - _MAML_CTRL * terms["ctrl_sq"]


class HalfCheetahDir(Family):
    """HalfCheetah that must run forward or backward (MAML's ``HalfCheetahDir``).

    ## Description
    Dynamics are nominal; each task has a running direction of +1 (forward) or −1 (backward).
    There are only these two tasks, so ``task_split`` returns both directions in both splits
    (as in MAML); this is the one family whose splits are not disjoint.

    ## Randomized parameters
    | parameter | distribution |
    |---|---|
    | goal ``direction`` | uniform over {−1, +1} |

    ## Observation / Action
    As HalfCheetah-v5 (the direction is not observed).

    ## Reward
    direction · v_x − 0.05·|a|² (MAML's definition).

    ## Episode end
    Truncated after 200 steps, or on divergence.

    ## Version history
    - v0: initial release.
    """

    ID = "metarobot/HalfCheetahDir-v0"
    HORIZON = 200
    DISJOINT_SPLIT = False

    def __init__(self, resample_on_reset: bool = False, **kwargs: Any) -> None:
        change, env_kwargs = change_options(kwargs)
        super().__init__(
            FixedMassHalfCheetahEnv(**env_kwargs),
            resample_on_reset=resample_on_reset,
            **change,
            goal={"direction": Choice((-1.0, 1.0))},
        )

    @staticmethod
    def goal_reward(  # noqa: D102
        terms: Mapping[str, np.ndarray], goal: Mapping[str, np.ndarray]
    ) -> np.ndarray:
        return goal["direction"][:, 0] * terms["x_velocity"] - _MAML_CTRL * terms["ctrl_sq"]


class HalfCheetahPhysical(Family):
    """HalfCheetah under physical change: payload, friction, weak or failed motors.

    ## Description
    Gymnasium's ``HalfCheetah-v5`` carrying a payload on its torso — a point mass at an offset
    from the torso's centre of mass, so the torso's mass, centre of mass and inertia all change
    (an offset along y, out of the plane, changes nothing the planar robot can feel) — on a
    floor of varying friction, with motors of varying strength and, in half of the training
    tasks, one failed motor. As in ``HalfCheetahCrippled``, the back leg and front thigh
    (actuators 0–3) may fail in training; the front shin or foot (4, 5) fail out of
    distribution.

    ## Randomized parameters
    | parameter | train / test | ood |
    |---|---|---|
    | payload on the torso (× the robot's nominal total mass, 14 kg) | U[0, 0.5] | U[0.5, 1] |
    | payload position (m, torso frame, x, y, z each) | U[−0.15, 0.15] | same |
    | friction of every geom (shared scale) | U_log[0.2, 2.0] | U_log[0.05, 0.2] |
    | motor strength (gear scale, per motor) | U[0.3, 1.2] | same |
    | failed motor (gear 0) | none (p = ½) or one of 0–3 | one of 4, 5 |

    ``task_split(id)`` gives 40 training and 10 test tasks from the train/test column;
    ``ood_split(id)`` gives 10 tasks from the ood column.

    ## Observation / Action
    As HalfCheetah-v5: 17-dim ``(qpos[1:], qvel)``; 6 torques in [-1, 1].

    ## Reward
    HalfCheetah-v5's: forward velocity − 0.1·|a|².

    ## Episode end
    Truncated after 200 steps, or on divergence. ``change_step`` / ``hazard`` change the task
    within an episode.

    ## Version history
    - v0: initial release.
    """

    ID = "metarobot/HalfCheetahPhysical-v0"
    HORIZON = 200

    def __init__(self, resample_on_reset: bool = False, **kwargs: Any) -> None:
        change, env_kwargs = change_options(kwargs)
        super().__init__(
            FixedMassHalfCheetahEnv(**env_kwargs),
            resample_on_reset=resample_on_reset,
            **change,
            **physical_specs(train_motors=[0, 1, 2, 3], ood_motors=[4, 5]),
        )
