"""metarobot: adapt robot control policies to new dynamics.

Public API::

    import metarobot
    policy = metarobot.MAML("metarobot/HalfCheetahVel-v0").train(100)
    adapted = metarobot.adapt(policy, env, episodes=2)
    metarobot.save(policy, "cheetah.pt"); policy = metarobot.load("cheetah.pt")
"""

__version__ = "0.2.0"

from metarobot.adaptation import adapt_many
from metarobot.api import adapt
from metarobot.checkpoint import load, save
from metarobot.learners import MAML, MetaConfig, MetaLearner, MetaSGD, Reptile, make_policy
from metarobot.policies import Policy
from metarobot.recurrent import RecurrentPolicy, train_recurrent
from metarobot.rma import RMAPolicy, train_rma
from metarobot.sac import SACSettings
from metarobot.stateful import StatefulPolicy

__all__ = [
    "MAML",
    "MetaConfig",
    "MetaLearner",
    "MetaSGD",
    "Policy",
    "RMAPolicy",
    "RecurrentPolicy",
    "Reptile",
    "SACSettings",
    "StatefulPolicy",
    "__version__",
    "adapt",
    "adapt_many",
    "load",
    "make_policy",
    "save",
    "train_recurrent",
    "train_rma",
]
