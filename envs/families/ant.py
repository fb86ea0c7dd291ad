"""Ant families: PEARL-range rand-params, GrBAL's crippled leg, direction, physical change."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from metarobot.envs.families._base import Family, FreshAntEnv, change_options
from metarobot.envs.families._physical import physical_specs
from metarobot.envs.randomization import (
    DisabledActuators,
    LogUniform,
    Uniform,
    pearl_log_uniform,
)

#: Ant-v5 settings shared by every Ant family: contact forces are neither observed nor
#: penalized (they are not part of the simulator state; with MuJoCo >= 2.0 they were zero in
#: gym's Ant-v2/v3 as well, so published Ant results were obtained without them).
ANT_KWARGS: dict[str, Any] = {"include_cfrc_ext_in_observation": False, "contact_cost_weight": 0.0}

#: Actuator indices of each leg, in actuator order (hip, ankle).
LEGS: tuple[tuple[int, int], ...] = ((0, 1), (2, 3), (4, 5), (6, 7))


def _ant(kwargs: dict[str, Any]) -> FreshAntEnv:
    return FreshAntEnv(**{**ANT_KWARGS, **kwargs})


class AntRandParams(Family):
    """Ant with randomized physical parameters in PEARL's ranges.

    ## Description
    Gymnasium's ``Ant-v5`` (quadruped, 8 motors) without contact forces and with positions read
    at the final state (``FreshKinematics``), with body masses,
    joint damping and friction that change from task to task: PEARL's rand_param_envs ranges,
    applied to Ant (PEARL's code ships rand-params for walker and hopper only).

    ## Randomized parameters
    | parameter | distribution (scale on nominal) | elements |
    |---|---|---|
    | body mass and inertia | 1.5^u, u ~ U[-3, 3] | per body |
    | dof damping | 1.3^u, u ~ U[-3, 3] | per dof |
    | geom friction | 1.5^u, u ~ U[-3, 3] | per geom |

    ## Observation / Action
    27-dim ``(qpos[2:], qvel)``; 8 torques in [-1, 1].

    ## Reward
    Ant-v5's without the contact cost: v_x + 1 (healthy) − 0.5·|a|².

    ## Episode end
    Terminated when the torso height leaves [0.2, 1.0]; truncated after 200 steps or on
    divergence.

    ## Version history
    - v0: initial release (Gymnasium Ant-v5).
    """

    ID = "metarobot/AntRandParams-v0"
    HORIZON = 200

    def __init__(self, resample_on_reset: bool = False, **kwargs: Any) -> None:
        change, env_kwargs = change_options(kwargs)
        super().__init__(
            _ant(env_kwargs),
            resample_on_reset=resample_on_reset,
            **change,
            body_mass=pearl_log_uniform(1.5),
            dof_damping=pearl_log_uniform(1.3),
            geom_friction=pearl_log_uniform(1.5),
        )


class AntCrippled(Family):
    """Ant with one crippled leg (GrBAL's split: train on legs 0–2, test on leg 3).

    ## Description
    Both motors (hip and ankle) of one leg produce no force. Legs are numbered by actuator
    order: leg k drives actuators 2k and 2k+1 (leg 0 = ``hip_4``/``ankle_4``, leg 1 =
    ``hip_1``/``ankle_1``, leg 2 = ``hip_2``/``ankle_2``, leg 3 = ``hip_3``/``ankle_3``).
    Body masses get a mild shared scale so that tasks are distinct.

    ## Randomized parameters
    | parameter | train | test |
    |---|---|---|
    | crippled leg | one of 0, 1, 2 | 3 |
    | body mass and inertia | U_log[0.8, 1.25], shared | same |

    ## Observation / Action
    27-dim ``(qpos[2:], qvel)``; 8 torques (the crippled leg's two have no effect).

    ## Reward
    v_x + 1 (healthy) − 0.5·|a|².

    ## Episode end
    Terminated when the torso height leaves [0.2, 1.0]; truncated after 200 steps or on
    divergence.

    ## Version history
    - v0: initial release.
    """

    ID = "metarobot/AntCrippled-v0"
    HORIZON = 200

    def __init__(self, resample_on_reset: bool = False, **kwargs: Any) -> None:
        change, env_kwargs = change_options(kwargs)
        super().__init__(
            _ant(env_kwargs),
            resample_on_reset=resample_on_reset,
            **change,
            body_mass=LogUniform(0.8, 1.25),
            disabled_actuators=DisabledActuators(LEGS[:3], 1),
            test_overrides={"disabled_actuators": DisabledActuators(LEGS[3:], 1)},
        )


class AntDir(Family):
    """Ant that must run in a given planar direction.

    ## Description
    Dynamics are nominal; each task has a direction angle θ on the plane, and the ant is
    rewarded for its velocity along (cos θ, sin θ) — the 2-D generalization of MAML's
    forward/backward ``AntDir`` used by PEARL, which allows disjoint train/test splits.

    ## Randomized parameters
    | parameter | distribution |
    |---|---|
    | goal ``angle`` | U[0, 2π) |

    ## Observation / Action
    27-dim ``(qpos[2:], qvel)`` (the direction is not observed); 8 torques.

    ## Reward
    v · (cos θ, sin θ) + 1 (healthy) − 0.5·|a|².

    ## Episode end
    Terminated when the torso height leaves [0.2, 1.0]; truncated after 200 steps or on
    divergence.

    ## Version history
    - v0: initial release.
    """

    ID = "metarobot/AntDir-v0"
    HORIZON = 200

    def __init__(self, resample_on_reset: bool = False, **kwargs: Any) -> None:
        change, env_kwargs = change_options(kwargs)
        super().__init__(
            _ant(env_kwargs),
            resample_on_reset=resample_on_reset,
            **change,
            goal={"angle": Uniform(0.0, 2.0 * np.pi)},
        )

    @staticmethod
    def goal_reward(  # noqa: D102
        terms: Mapping[str, np.ndarray], goal: Mapping[str, np.ndarray]
    ) -> np.ndarray:
        ang = goal["angle"][:, 0]
        along = np.cos(ang) * terms["x_velocity"] + np.sin(ang) * terms["y_velocity"]
        return along + 1.0 * terms["healthy"] - 0.5 * terms["ctrl_sq"]


class AntPhysical(Family):
    """Ant under the physical changes legged robots meet: payload, friction, weak or failed motors.

    ## Description
    Gymnasium's ``Ant-v5`` (as in the other Ant families) carrying a payload on its torso — a
    point mass at an offset from the torso's centre of mass, so the torso's mass, centre of mass
    and inertia all change — on a floor of varying friction, with motors of varying strength
    and, in half of the training tasks, one failed motor (RMA's and GrBAL's changes). Motors are
    numbered as in ``AntCrippled``: leg k drives actuators 2k (hip) and 2k+1 (ankle).

    ## Randomized parameters
    | parameter | train / test | ood |
    |---|---|---|
    | payload on the torso (× the robot's nominal total mass, 0.91 kg) | U[0, 0.5] | U[0.5, 1] |
    | payload position (m, torso frame, x, y, z each) | U[−0.15, 0.15] | same |
    | friction of every geom (shared scale) | U_log[0.2, 2.0] | U_log[0.05, 0.2] |
    | motor strength (gear scale, per motor) | U[0.3, 1.2] | same |
    | failed motor (gear 0) | none (p = ½) or one of 0–5 (legs 0–2) | one of 6, 7 (leg 3) |

    ``task_split(id)`` gives 40 training and 10 test tasks from the train/test column;
    ``ood_split(id)`` gives 10 tasks from the ood column (outside the training ranges in
    payload, friction and failed motor at once).

    ## Observation / Action
    27-dim ``(qpos[2:], qvel)`` (nothing of the task is observed); 8 torques in [-1, 1].

    ## Reward
    v_x + 1 (healthy) − 0.5·|a|².

    ## Episode end
    Terminated when the torso height leaves [0.2, 1.0]; truncated after 200 steps or on
    divergence. ``change_step`` / ``hazard`` change the task within an episode.

    ## Version history
    - v0: initial release.
    """

    ID = "metarobot/AntPhysical-v0"
    HORIZON = 200

    def __init__(self, resample_on_reset: bool = False, **kwargs: Any) -> None:
        change, env_kwargs = change_options(kwargs)
        super().__init__(
            _ant(env_kwargs),
            resample_on_reset=resample_on_reset,
            **change,
            **physical_specs(
                train_motors=[i for leg in LEGS[:3] for i in leg],
                ood_motors=list(LEGS[3]),
            ),
        )
