"""MAML (second and first order) with a clipped, on-policy outer surrogate.

Per iteration: every task is adapted from its pre-adaptation episodes with S steps
``θ'_i = θ − α ⊙ ∇L_in(θ)``; fresh episodes are collected with θ'_i; the outer objective is PPO's
clipped surrogate of those episodes as a function of θ (through θ'_i), optimized with Adam for a
few epochs. Re-using a batch for several epochs is what the clipping makes safe (ProMP's choice;
the original MAML used TRPO — a trust region for the same reason); one epoch with no clipping is
plain MAML.

- ``first_order=False``: the meta-gradient goes through the inner step (Hessian-vector terms),
  computed with ``torch.func.grad`` nested over ``vmap(grad(...))``.
- ``first_order=True`` (FOMAML): the inner gradients are constants; the meta-gradient is the outer
  gradient evaluated at θ'_i.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch.func import grad, vmap

from metarobot.adaptation import inner_update, surrogate_loss
from metarobot.envs import Task
from metarobot.learners.base import MetaLearner
from metarobot.policies import Params
from metarobot.rollout import EpisodeBatch

__all__ = ["MAML", "GradientMetaLearner"]


class GradientMetaLearner(MetaLearner):
    """Shared outer step of MAML, FOMAML and MetaSGD.

    Args:
        env_id: Family to meta-train on.
        policy: Initial policy (optional).
        first_order: Drop second-order terms.
        learn_lr: Meta-learn the per-parameter inner step sizes (MetaSGD).
        **config: :class:`metarobot.learners.base.MetaConfig` fields.
    """

    learn_lr: ClassVar[bool] = False

    def __init__(
        self, env_id: str, policy: Any = None, *, first_order: bool = False, **config: Any
    ) -> None:
        self.first_order = bool(first_order)
        super().__init__(env_id, policy, **config)

    def setup(self) -> None:  # noqa: D102
        self.policy.meta["first_order"] = self.first_order
        for v in self.policy.params.values():
            v.requires_grad_(True)
        groups = [{"params": list(self.policy.params.values())}]
        if self.learn_lr:
            for v in self.policy.inner_lr.values():
                v.requires_grad_(True)
            groups.append({"params": list(self.policy.inner_lr.values())})
        self.optimizer = torch.optim.Adam(groups, lr=self.config.outer_lr)

    # ------------------------------------------------------------------ maths
    def adapted_params(self, theta: Params, alpha: Params, data: dict[str, torch.Tensor]) -> Params:
        """θ'_i for every task (stacked), without gradient tracking."""
        pol, clip, s = self.policy, self.config.clip, self.config.inner_steps

        def per_task(d: dict[str, torch.Tensor]) -> Params:
            p = theta
            for _ in range(s):
                p = inner_update(pol, p, alpha, d, clip)
            return p

        with torch.no_grad():
            theta = {k: v.detach() for k, v in theta.items()}
            alpha = {k: v.detach() for k, v in alpha.items()}
            return vmap(per_task)(data)

    def meta_loss(
        self,
        theta: Params,
        alpha: Params,
        pre: dict[str, torch.Tensor],
        post: dict[str, torch.Tensor],
        inner_grads: Params | None = None,
    ) -> torch.Tensor:
        """Mean over tasks of the outer surrogate at θ'_i(θ, α).

        With ``inner_grads`` (first order), θ'_i = θ − α ⊙ Σ_s g_s with the g_s constants.
        """
        pol, clip, s = self.policy, self.config.clip, self.config.inner_steps

        def per_task(
            d_pre: dict[str, torch.Tensor], d_post: dict[str, torch.Tensor], g: Params | None
        ) -> torch.Tensor:
            if g is not None:
                p = {k: theta[k] - alpha[k] * g[k] for k in theta}
            else:
                p = theta
                for _ in range(s):
                    p = inner_update(pol, p, alpha, d_pre, clip)
            return surrogate_loss(pol, p, d_post, clip)

        if inner_grads is not None:
            losses = vmap(per_task)(pre, post, inner_grads)
        else:
            losses = vmap(lambda a, b: per_task(a, b, None))(pre, post)
        return losses.mean()

    def first_order_grads(
        self, theta: Params, alpha: Params, pre: dict[str, torch.Tensor]
    ) -> Params:
        """Σ_s g_s per task: the inner gradients along the adaptation path (constants)."""
        pol, clip, s = self.policy, self.config.clip, self.config.inner_steps

        def per_task(d: dict[str, torch.Tensor]) -> Params:
            p = theta
            total = {k: torch.zeros_like(v) for k, v in theta.items()}
            for _ in range(s):
                g = grad(lambda q: surrogate_loss(pol, q, d, clip))(p)
                total = {k: total[k] + g[k] for k in total}
                p = {k: p[k] - alpha[k] * g[k] for k in p}
            return total

        with torch.no_grad():
            theta = {k: v.detach() for k, v in theta.items()}
            alpha = {k: v.detach() for k, v in alpha.items()}
            return vmap(per_task)(pre)

    def meta_gradient(
        self, pre: dict[str, torch.Tensor], post: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, Params, Params]:
        """Outer loss and its gradients with respect to θ and α."""
        theta = {k: v.detach() for k, v in self.policy.params.items()}
        alpha = {k: v.detach() for k, v in self.policy.inner_lr.items()}
        inner = self.first_order_grads(theta, alpha, pre) if self.first_order else None

        def f(th: Params, al: Params) -> tuple[torch.Tensor, torch.Tensor]:
            loss = self.meta_loss(th, al, pre, post, inner)
            return loss, loss.detach()

        (g_theta, g_alpha), loss = grad(f, argnums=(0, 1), has_aux=True)(theta, alpha)
        return loss, g_theta, g_alpha

    # ------------------------------------------------------------------ step
    def outer_step(  # noqa: D102
        self, tasks: list[Task], pre: EpisodeBatch, seeds: list[int]
    ) -> dict[str, float]:
        cfg = self.config
        d_pre = pre.loss_inputs()
        adapted = self.adapted_params(self.policy.params, self.policy.inner_lr, d_pre)
        post_seeds = [s + 1 for s in seeds]
        post = self.collect(tasks, adapted, post_seeds, cfg.post_episodes, stacked=True)
        d_post = post.loss_inputs()
        first_loss = None
        for _ in range(cfg.outer_epochs):
            loss, g_theta, g_alpha = self.meta_gradient(d_pre, d_post)
            if first_loss is None:
                first_loss = float(loss)
            self.optimizer.zero_grad()
            for k, v in self.policy.params.items():
                v.grad = g_theta[k]
            if self.learn_lr:
                for k, v in self.policy.inner_lr.items():
                    v.grad = g_alpha[k]
            self.optimizer.step()
        return {
            "post_return": float(post.returns.mean()),
            "outer_loss": float(first_loss),
            "final_outer_loss": float(loss),
            "diverged_post": float(post.diverged),
        }


class MAML(GradientMetaLearner):
    """Model-Agnostic Meta-Learning (Finn et al., 2017) for policies.

    Args:
        env_id: Family to meta-train on.
        policy: Initial policy (optional).
        first_order: FOMAML when True; second-order through the inner step when False.
        **config: :class:`metarobot.learners.base.MetaConfig` fields.
    """

    @property
    def name(self) -> str:  # type: ignore[override]  # noqa: D102
        return "fomaml" if self.first_order else "maml"
