"""Optimizers over N stacked parameter sets (one per environment), updated as N separate ones."""

from __future__ import annotations

import torch

from metarobot.policies import Params

__all__ = ["StackedAdam"]


class StackedAdam:
    """Adam (Kingma & Ba, 2015; torch's defaults) on N stacked parameter sets at once.

    Every operation is element-wise, so stacking the N environments' parameters along a leading
    dimension updates each set exactly as its own Adam would.
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
        out: Params = {}
        for key, p in params.items():
            g = grads[key]
            self.m[key] = b1 * self.m.get(key, torch.zeros_like(g)) + (1 - b1) * g
            self.v[key] = b2 * self.v.get(key, torch.zeros_like(g)) + (1 - b2) * g * g
            m_hat = self.m[key] / (1 - b1**self.t)
            v_hat = self.v[key] / (1 - b2**self.t)
            out[key] = p - self.lr * m_hat / (torch.sqrt(v_hat) + self.eps)
        return out
