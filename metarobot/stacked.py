"""Optimizers over N stacked parameter sets (one per environment), updated as N separate ones."""

from __future__ import annotations

import torch

from metarobot.policies import Params

__all__ = ["StackedAdam"]


class StackedAdam:
    """Adam (Kingma & Ba, 2015; torch's defaults) on N stacked parameter sets at once.

    Every operation is element-wise, so stacking the N environments' parameters along a leading
    dimension updates each set exactly as its own Adam would. The step runs as torch's
    ``_foreach`` operations over all tensors at once (one Python call per operation instead of
    one per tensor and operation; a SAC update steps 13 tensors in three optimizers), in the
    same order of floating-point operations as the per-tensor formula, so the result is
    bit-identical to it.
    """

    def __init__(
        self, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
    ) -> None:
        self.lr, self.betas, self.eps = lr, betas, eps
        self.t = 0
        self.m: Params = {}
        self.v: Params = {}

    def step(self, params: Params, grads: Params) -> Params:
        """One Adam step; returns the new parameters (the inputs are not modified)."""
        b1, b2 = self.betas
        self.t += 1
        keys = list(params)
        g = [grads[k] for k in keys]
        m_old = [self.m.get(k, torch.zeros_like(x)) for k, x in zip(keys, g, strict=True)]
        v_old = [self.v.get(k, torch.zeros_like(x)) for k, x in zip(keys, g, strict=True)]
        # The same operations, in the same order, as m = b1·m + (1 − b1)·g,
        # v = b2·v + ((1 − b2)·g)·g etc. per tensor: bit-identical to the per-tensor loop.
        m = torch._foreach_add(torch._foreach_mul(m_old, b1), torch._foreach_mul(g, 1 - b1))
        v = torch._foreach_add(
            torch._foreach_mul(v_old, b2), torch._foreach_mul(torch._foreach_mul(g, 1 - b2), g)
        )
        m_hat = torch._foreach_div(m, 1 - b1**self.t)
        v_hat = torch._foreach_div(v, 1 - b2**self.t)
        den = torch._foreach_add(torch._foreach_sqrt(v_hat), self.eps)
        upd = torch._foreach_div(torch._foreach_mul(m_hat, self.lr), den)
        new = torch._foreach_sub([params[k] for k in keys], upd)
        self.m.update(zip(keys, m, strict=True))
        self.v.update(zip(keys, v, strict=True))
        return dict(zip(keys, new, strict=True))
