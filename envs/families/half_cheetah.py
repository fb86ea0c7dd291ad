"""HalfCheetah families: PEARL-range rand-params, crippled joints, MAML's velocity and direction.

Every family compiles Gymnasium's HalfCheetah-v5 model through
:class:`~metarobot.envs.families._base.FixedMassHalfCheetahEnv` (same model bit for bit, without
MuJoCo 4's ``settotalmass`` deprecation warning).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from metarobot.envs.families._base import Family, FixedMassHalfCheetahEnv
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
        super().__init__(
            FixedMassHalfCheetahEnv(**kwargs),
            resample_on_reset=resample_on_reset,
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
        super().__init__(
            FixedMassHalfCheetahEnv(**kwargs),
            resample_on_reset=resample_on_reset,
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
        super().__init__(
            FixedMassHalfCheetahEnv(**kwargs),
            resample_on_reset=resample_on_reset,
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
        super().__init__(
            FixedMassHalfCheetahEnv(**kwargs),
            resample_on_reset=resample_on_reset,
            goal={"direction": Choice((-1.0, 1.0))},
        )

    @staticmethod
    def goal_reward(  # noqa: D102
        terms: Mapping[str, np.ndarray], goal: Mapping[str, np.ndarray]
    ) -> np.ndarray:
        return goal["direction"][:, 0] * terms["x_velocity"] - _MAML_CTRL * terms["ctrl_sq"]
