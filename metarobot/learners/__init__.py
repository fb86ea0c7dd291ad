"""Meta-learners sharing one training loop."""

from metarobot.learners.base import MetaConfig, MetaLearner, make_policy
from metarobot.learners.maml import MAML, GradientMetaLearner
from metarobot.learners.metasgd import MetaSGD
from metarobot.learners.reptile import Reptile, reptile_update

__all__ = [
    "MAML",
    "GradientMetaLearner",
    "MetaConfig",
    "MetaLearner",
    "MetaSGD",
    "Reptile",
    "make_policy",
    "reptile_update",
]
