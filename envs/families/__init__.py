"""One module per robot family; each class is a registered ``metarobot/<Name>-v0`` env."""

from metarobot.envs.families._base import Family
from metarobot.envs.families.ant import AntCrippled, AntDir, AntPhysical, AntRandParams
from metarobot.envs.families.half_cheetah import (
    HalfCheetahCrippled,
    HalfCheetahDir,
    HalfCheetahPhysical,
    HalfCheetahRandParams,
    HalfCheetahVel,
)
from metarobot.envs.families.half_cheetah_reversed import (
    HalfCheetahReversed,
    HalfCheetahReversedIID,
)
from metarobot.envs.families.hopper import HopperRandParams
from metarobot.envs.families.inverted_double_pendulum import InvertedDoublePendulumRandParams
from metarobot.envs.families.inverted_pendulum import InvertedPendulumRandParams
from metarobot.envs.families.reacher import ReacherRandParams
from metarobot.envs.families.walker2d import Walker2dPhysical, Walker2dRandParams

ALL_FAMILIES: tuple[type[Family], ...] = (
    HalfCheetahRandParams,
    HalfCheetahCrippled,
    HalfCheetahVel,
    HalfCheetahDir,
    HalfCheetahReversed,
    HalfCheetahReversedIID,
    HopperRandParams,
    Walker2dRandParams,
    AntRandParams,
    AntCrippled,
    AntDir,
    InvertedPendulumRandParams,
    InvertedDoublePendulumRandParams,
    ReacherRandParams,
    AntPhysical,
    HalfCheetahPhysical,
    Walker2dPhysical,
)

__all__ = [
    "ALL_FAMILIES",
    "AntCrippled",
    "AntDir",
    "AntPhysical",
    "AntRandParams",
    "Family",
    "HalfCheetahCrippled",
    "HalfCheetahDir",
    "HalfCheetahPhysical",
    "HalfCheetahRandParams",
    "HalfCheetahReversed",
    "HalfCheetahReversedIID",
    "HalfCheetahVel",
    "HopperRandParams",
    "InvertedDoublePendulumRandParams",
    "InvertedPendulumRandParams",
    "ReacherRandParams",
    "Walker2dPhysical",
    "Walker2dRandParams",
]
