"""The GRU layer used in training equals ``nn.GRU``: outputs, states and every gradient."""

from __future__ import annotations

import pytest
import torch

from metarobot.gru import gru_sequence


def _run(fn, gru, x, h0, w_out, w_last):
    gru.zero_grad()
    x.grad = None
    if h0 is not None:
        h0.grad = None
    out, last = fn(x, h0)
    loss = torch.zeros((), dtype=x.dtype)
    if w_out is not None:
        loss = loss + (out * w_out).sum()
    if w_last is not None:
        loss = loss + (last * w_last).sum()
    loss.backward()
    grads = [x.grad] + ([h0.grad] if h0 is not None else []) + [p.grad for p in gru.parameters()]
    return [out.detach(), last.detach(), *[g.clone() for g in grads]]


@pytest.mark.parametrize("with_h0", [True, False])
@pytest.mark.parametrize("loss_on", ["outputs", "last state", "both"])
def test_equals_nn_gru_in_double_precision(with_h0, loss_on):
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)  # nn.GRU's own initialization
    gru = torch.nn.GRU(7, 5, batch_first=True).double()
    x = torch.randn(3, 11, 7, dtype=torch.float64, generator=gen, requires_grad=True)
    h0 = torch.randn(1, 3, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    h0 = h0 if with_h0 else None
    w_out = torch.randn(3, 11, 5, dtype=torch.float64, generator=gen)
    w_last = torch.randn(1, 3, 5, dtype=torch.float64, generator=gen)
    w_out = None if loss_on == "last state" else w_out
    w_last = None if loss_on == "outputs" else w_last
    ref = _run(gru, gru, x, h0, w_out, w_last)
    fast = _run(lambda a, b: gru_sequence(gru, a, b), gru, x, h0, w_out, w_last)
    for a, b in zip(ref, fast, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_float32_matches_to_rounding_and_falls_back_without_gradients():
    torch.manual_seed(1)
    gru = torch.nn.GRU(16, 8, batch_first=True)
    x = torch.randn(4, 25, 16, requires_grad=True)
    ref = _run(gru, gru, x, None, torch.ones(4, 25, 8), None)
    fast = _run(lambda a, b: gru_sequence(gru, a, b), gru, x, None, torch.ones(4, 25, 8), None)
    for a, b in zip(ref, fast, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # no gradient: the module itself runs (bit for bit)
        assert torch.equal(gru_sequence(gru, x)[0], gru(x)[0])
