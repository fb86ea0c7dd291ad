"""A GRU layer for training on a CPU: the same network as ``nn.GRU``, a faster backward.

The recurrent policy's PPO update back-propagates through chunks of 50 steps. On a CPU, torch
runs ``nn.GRU``'s backward through autograd one time step at a time, a few dozen small kernels
per step: the GRU's forward and backward were the largest part of the recurrent trainer's time
(``experiments/results/bench_train_ceiling.md``). Here the input projections of every step are
one matrix product, the forward loop keeps only what the backward needs, and the backward loop
does one matrix product and a few element-wise products per step (the factors that do not
depend on the incoming gradient are computed for all steps at once); the weight gradients are
one matrix product each after the loop. Measured (one thread, idle Intel Xeon, 16 sequences ×
50 steps × 64 units, forward and backward): 4.7 ms against ``nn.GRU``'s 7.0 ms; the recurrent
trainer runs 15–25 % more env steps per second (``bench_train_gru.md``,
``train_curve_recurrent.md``).

:func:`gru_sequence` takes an ``nn.GRU``'s own parameters, so checkpoints and every other use of
the layer (rollouts, GPUs, where cuDNN's kernel is fast) are unchanged; it falls back to the
module where the fast path does not apply.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["gru_sequence"]


class _GRUFunction(torch.autograd.Function):
    """One GRU layer over a time-major sequence, with a hand-written backward (BPTT).

    PyTorch's GRU equations: ``r = σ(Wir x + bir + Whr h + bhr)``, ``z = σ(Wiz x + biz + Whz h
    + bhz)``, ``n = tanh(Win x + bin + r ⊙ (Whn h + bhn))``, ``h' = (1 − z) ⊙ n + z ⊙ h``.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        h0: torch.Tensor,
        w_ih: torch.Tensor,
        w_hh: torch.Tensor,
        b_ih: torch.Tensor,
        b_hh: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        t_len, b, _ = x.shape
        hid = h0.shape[-1]
        gi = torch.addmm(b_ih, x.reshape(t_len * b, -1), w_ih.t()).view(t_len, b, 3 * hid)
        rz = x.new_empty(t_len, b, 2 * hid)
        n_all = x.new_empty(t_len, b, hid)
        hn_all = x.new_empty(t_len, b, hid)
        hs = x.new_empty(t_len + 1, b, hid)
        hs[0] = h0
        h = h0
        w_hh_t = w_hh.t()
        # Per-step views made once (indexing inside the loop costs more than the arithmetic).
        gi_rz, gi_n = gi[..., : 2 * hid].unbind(0), gi[..., 2 * hid :].unbind(0)
        rz_t, n_t, hn_t, h_t = rz.unbind(0), n_all.unbind(0), hn_all.unbind(0), hs.unbind(0)
        r_t, z_t = rz[..., :hid].unbind(0), rz[..., hid:].unbind(0)
        for t in range(t_len):
            gh = torch.addmm(b_hh, h, w_hh_t)
            torch.sigmoid(gi_rz[t] + gh[:, : 2 * hid], out=rz_t[t])
            hn = hn_t[t]
            hn.copy_(gh[:, 2 * hid :])
            n = torch.tanh(torch.addcmul(gi_n[t], r_t[t], hn), out=n_t[t])
            h = torch.addcmul(n, z_t[t], h - n, out=h_t[t + 1])
        ctx.save_for_backward(x, hs, rz, n_all, hn_all, w_ih, w_hh)
        return hs[1:], hs[t_len].clone()

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad_out: torch.Tensor | None, grad_last: torch.Tensor | None
    ) -> tuple[torch.Tensor, ...]:
        x, hs, rz, n_all, hn_all, w_ih, w_hh = ctx.saved_tensors
        t_len, b, hid = n_all.shape
        r, z = rz[..., :hid], rz[..., hid:]
        # Factors of the step's local derivatives, for all steps at once.
        dn_fac = (1 - z) * (1 - n_all * n_all)  # ∂h'/∂(n's pre-activation)
        dz_fac = (hs[:-1] - n_all) * z * (1 - z)  # ∂h'/∂(z's pre-activation)
        dr_fac = hn_all * r * (1 - r)  # ∂(n's pre-activation)/∂(r's pre-activation)
        d_gh = x.new_empty(t_len, b, 3 * hid)  # gradients of Whh h + bhh
        d_an = x.new_empty(t_len, b, hid)  # gradient of n's pre-activation
        dh = torch.zeros_like(hs[0]) if grad_last is None else grad_last.clone()
        go = grad_out.unbind(0) if grad_out is not None else None
        an_t, gh_t = d_an.unbind(0), d_gh.unbind(0)
        ghr_t, ghz_t = d_gh[..., :hid].unbind(0), d_gh[..., hid : 2 * hid].unbind(0)
        ghn_t = d_gh[..., 2 * hid :].unbind(0)
        dn_t, dz_t, dr_t = dn_fac.unbind(0), dz_fac.unbind(0), dr_fac.unbind(0)
        r_t, z_t = r.unbind(0), z.unbind(0)
        for t in range(t_len - 1, -1, -1):
            if go is not None:
                dh = dh + go[t]
            torch.mul(dh, dn_t[t], out=an_t[t])
            torch.mul(dh, dz_t[t], out=ghz_t[t])
            torch.mul(an_t[t], dr_t[t], out=ghr_t[t])
            torch.mul(an_t[t], r_t[t], out=ghn_t[t])
            dh = torch.addmm(dh * z_t[t], gh_t[t], w_hh)
        d_gi = d_gh.clone()
        d_gi[..., 2 * hid :] = d_an
        d_gi = d_gi.view(t_len * b, 3 * hid)
        d_gh2 = d_gh.view(t_len * b, 3 * hid)
        grad_x = (d_gi @ w_ih).view(t_len, b, -1)
        grad_w_ih = d_gi.t() @ x.reshape(t_len * b, -1)
        grad_w_hh = d_gh2.t() @ hs[:-1].reshape(t_len * b, hid)
        return grad_x, dh, grad_w_ih, grad_w_hh, d_gi.sum(0), d_gh2.sum(0)


def gru_sequence(
    gru: nn.GRU, x: torch.Tensor, h0: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``gru(x, h0)`` for a one-layer, batch-first, unidirectional ``nn.GRU``.

    On CPU tensors with gradients enabled the hand-written backward above runs; otherwise (no
    gradient, a GPU, another layout) the module itself does.

    Args:
        gru: The layer (its parameters are used; the module is not changed).
        x: Inputs ``[N, T, in]``.
        h0: Initial state ``[1, N, H]`` (None: zeros).

    Returns:
        Outputs ``[N, T, H]`` and the last state ``[1, N, H]``, as ``nn.GRU`` returns them.
    """
    fast = (
        torch.is_grad_enabled()
        and x.device.type == "cpu"
        and gru.num_layers == 1
        and gru.batch_first
        and not gru.bidirectional
        and gru.bias
        and x.dim() == 3
    )
    if not fast:
        return gru(x, h0)
    if h0 is None:
        h0 = x.new_zeros(1, x.shape[0], gru.hidden_size)
    out, last = _GRUFunction.apply(
        x.transpose(0, 1).contiguous(),
        h0[0],
        gru.weight_ih_l0,
        gru.weight_hh_l0,
        gru.bias_ih_l0,
        gru.bias_hh_l0,
    )
    return out.transpose(0, 1), last.unsqueeze(0)
