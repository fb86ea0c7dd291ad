"""Batch-invariant inference: a row's bits depend on that row only, on every CPU."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from metarobot.invariant import rowwise_gru_cell, rowwise_linear, rowwise_sequential


def _randomize(module: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) / max(1, p.shape[-1]) ** 0.5)
    return module


def _mlp(sizes: list[int], dtype: torch.dtype) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return _randomize(nn.Sequential(*layers[:-1]), 0).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sizes", [[4, 64, 64, 1], [30, 64, 64, 6], [401, 64, 8]])
def test_rows_do_not_depend_on_the_batch(sizes, dtype):
    # Bit equality is the contract here: each row is its own bmm item of one shape.
    net = _mlp(sizes, dtype)
    x = torch.as_tensor(np.random.default_rng(0).normal(size=(65, sizes[0])), dtype=dtype)
    with torch.no_grad():
        alone = torch.cat([rowwise_sequential(net, x[i : i + 1]) for i in range(len(x))])
        for n in (2, 3, 16, 65):
            torch.testing.assert_close(rowwise_sequential(net, x[:n]), alone[:n], rtol=0, atol=0)
        same = rowwise_sequential(net, x[:1].expand(8, -1).contiguous())
    assert torch.equal(same, same[:1].expand(8, -1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rowwise_forward_matches_torch_within_rounding(dtype):
    # Against torch's own layers only closeness holds: another kernel, another summation order.
    net = _mlp([17, 64, 6], dtype)
    x = torch.as_tensor(np.random.default_rng(1).normal(size=(9, 17)), dtype=dtype)
    with torch.no_grad():
        torch.testing.assert_close(rowwise_sequential(net, x), net(x))
        lin = net[0]
        torch.testing.assert_close(rowwise_linear(x, lin.weight, None), x @ lin.weight.t())


def test_gru_cell_matches_torch_and_is_row_invariant():
    gru = _randomize(nn.GRU(8, 16, batch_first=True), 3).double()
    rng = np.random.default_rng(3)
    x = torch.as_tensor(rng.normal(size=(5, 8)))
    h = torch.as_tensor(rng.normal(size=(5, 16)))
    with torch.no_grad():
        _, ref = gru(x[:, None], h[None])
        out = rowwise_gru_cell(x, h, gru)
        alone = torch.cat([rowwise_gru_cell(x[i : i + 1], h[i : i + 1], gru) for i in range(5)])
    torch.testing.assert_close(out, ref[0])
    assert torch.equal(out, alone)


def test_gru_cell_refuses_what_it_does_not_compute():
    with pytest.raises(ValueError, match="one-layer"):
        rowwise_gru_cell(torch.zeros(1, 2), torch.zeros(1, 3), nn.GRU(2, 3, num_layers=2))
