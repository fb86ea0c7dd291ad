"""metarobot: adapt robot control policies to new dynamics.

Public API::

    import metarobot
    policy = metarobot.MAML("metarobot/HalfCheetahVel-v0").train(100)
    adapted = metarobot.adapt(policy, env, episodes=2)
    policy.save("cheetah.pt"); policy = metarobot.load("cheetah.pt")
"""

__version__ = "0.1.0"

from metarobot.adaptation import adapt, adapt_many
from metarobot.checkpoint import load
from metarobot.learners import MAML, MetaConfig, MetaLearner, MetaSGD, Reptile, make_policy
from metarobot.policies import Policy

__all__ = [
    "MAML",
    "MetaConfig",
    "MetaLearner",
    "MetaSGD",
    "Policy",
    "Reptile",
    "__version__",
    "adapt",
    "adapt_many",
    "load",
    "make_policy",
]
