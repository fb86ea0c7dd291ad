"""The physical changes legged robots meet, shared by the ``<Robot>Physical`` families.

In the spirit of RMA (Kumar et al., 2021: payload, centre of mass, friction, motor strength) and
GrBAL's crippled legs (Nagabandi et al., 2019: a motor that fails). One set of ranges serves
every robot: masses are in multiples of the robot's own nominal total mass, so a payload of 0.5
is half the robot whatever it weighs (RMA: up to 6 kg on a ≈12 kg robot).

| parameter | train / test | ood |
|---|---|---|
| payload mass on the torso (× robot mass) | U[0, 0.5] | U[0.5, 1.0] |
| payload position (m, torso frame, x, y, z) | U[−0.15, 0.15] each | same |
| friction of every geom (shared scale) | U_log[0.2, 2.0] | U_log[0.05, 0.2] |
| motor strength (gear scale, per motor) | U[0.3, 1.2] each | same |
| failed motor (gear 0) | p = ½: one of the training motors | always one of the others |

The ``ood`` split lies outside the training ranges in three ways at once: a heavier payload, a
more slippery floor and a failed motor on a limb that never fails in training.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from metarobot.envs.randomization import (
    DisabledActuators,
    LogUniform,
    SignedUniform,
    Uniform,
)

#: Payload mass in training (and test) tasks, in multiples of the robot's nominal total mass.
PAYLOAD_TRAIN = (0.0, 0.5)
#: Payload mass of out-of-distribution tasks.
PAYLOAD_OOD = (0.5, 1.0)
#: Half-width of the payload position box (metres, each axis of the torso frame).
PAYLOAD_COM = 0.15
#: Friction scale (shared by every geom: ground contact friction scales alike).
FRICTION_TRAIN = (0.2, 2.0)
#: Friction scale of out-of-distribution tasks.
FRICTION_OOD = (0.05, 0.2)
#: Motor strength: scale of each actuator's gear.
STRENGTH = (0.3, 1.2)
#: Probability that a training task has a failed motor.
FAILURE_PROBABILITY = 0.5


def physical_specs(train_motors: Sequence[int], ood_motors: Sequence[int]) -> dict[str, Any]:
    """The ``RandomizedDynamics`` keywords of a ``<Robot>Physical`` family.

    Args:
        train_motors: Actuators that may fail in training and test tasks (one at a time).
        ood_motors: Actuators one of which fails in every ``ood`` task (never in training).

    Returns:
        Keyword arguments for ``Family.__init__`` (specs, ``ood_overrides``).
    """
    return {
        "payload_mass": Uniform(*PAYLOAD_TRAIN),
        "payload_com": SignedUniform(-PAYLOAD_COM, PAYLOAD_COM, per_element=True),
        "geom_friction": LogUniform(*FRICTION_TRAIN),
        "actuator_gear": Uniform(*STRENGTH, per_element=True),
        "disabled_actuators": DisabledActuators(
            tuple((i,) for i in train_motors), 1, probability=FAILURE_PROBABILITY
        ),
        "ood_overrides": {
            "payload_mass": Uniform(*PAYLOAD_OOD),
            "geom_friction": LogUniform(*FRICTION_OOD),
            "disabled_actuators": DisabledActuators(tuple((i,) for i in ood_motors), 1),
        },
    }
