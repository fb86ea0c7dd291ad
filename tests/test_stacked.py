"""StackedAdam: N stacked parameter sets move exactly as N separate Adam optimizers would."""

from __future__ import annotations

import torch

from metarobot.stacked import StackedAdam


def test_each_stacked_set_follows_torchs_adam():
    gen = torch.Generator().manual_seed(0)
    shapes = {"w": (4, 3), "b": (4,)}
    n, steps = 3, 20
    start = {k: torch.randn(n, *s, generator=gen, dtype=torch.float64) for k, s in shapes.items()}
    grads = [
        {k: torch.randn(n, *s, generator=gen, dtype=torch.float64) * 10.0 ** (t % 4 - 2)
         for k, s in shapes.items()}
        for t in range(steps)
    ]  # fmt: skip
    stacked, params = StackedAdam(1e-2), dict(start)
    for g in grads:
        params = stacked.step(params, g)
    for i in range(n):
        own = {k: start[k][i].clone().requires_grad_(True) for k in shapes}
        opt = torch.optim.Adam(list(own.values()), lr=1e-2, foreach=False)
        for g in grads:
            for k, p in own.items():
                p.grad = g[k][i].clone()
            opt.step()
        for k in shapes:
            torch.testing.assert_close(params[k][i], own[k].detach(), rtol=1e-12, atol=1e-12)


def test_inputs_are_not_modified():
    params = {"w": torch.ones(2, 3)}
    before = params["w"].clone()
    out = StackedAdam(0.1).step(params, {"w": torch.ones(2, 3)})
    assert torch.equal(params["w"], before)
    assert not torch.equal(out["w"], before)
