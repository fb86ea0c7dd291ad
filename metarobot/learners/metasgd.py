"""MetaSGD: MAML whose per-parameter inner step sizes α are meta-learned.

The adaptation rule is θ' = θ − α ⊙ ∇L(θ) with α a tensor shaped like θ, trained by the same
outer objective as θ (Li et al., 2017). The learned α is saved with the policy and used by
``metarobot.adapt(..., lr=None)``.
"""

from __future__ import annotations

from typing import ClassVar

from metarobot.learners.maml import GradientMetaLearner

__all__ = ["MetaSGD"]


class MetaSGD(GradientMetaLearner):
    """Meta-SGD: learn the initialization *and* the per-parameter step sizes.

    Args:
        env_id: Family to meta-train on.
        policy: Initial policy (optional).
        first_order: Drop second-order terms of the meta-gradient (with one inner step α's
            gradient needs only first derivatives and is exact either way; with more steps the
            first-order α gradient is an approximation too).
        **config: :class:`metarobot.learners.base.MetaConfig` fields.
    """

    learn_lr: ClassVar[bool] = True
    name: ClassVar[str] = "metasgd"
