"""Batch-invariant inference: a world's outputs do not depend on how many worlds share the batch.

torch's CPU matrix multiply is not row-invariant: the same input row, multiplied by the same
weights, comes back with different low bits in a batch of 2 than in a batch of 1, and two equal
rows of one batch can differ from each other (measured with torch 2.13.0 on an AVX-512 AMD EPYC:
every ``Linear`` from 6 to 401 inputs, float32 and float64, at every batch size ≥ 2). In a
closed loop with chaotic physics such a difference grows until two worlds that should behave
alike do not, and a task's evaluation changes with the other tasks evaluated beside it.

The functions here compute every row as its own ``1 × d`` product through a batched matrix
multiply (``torch.bmm`` with the weights expanded over the batch): each batch item is a separate
product of one shape, so a row's bits depend on its inputs and the weights only, not on the
batch size or the row's position. They are meant for inference (rollouts, evaluation,
adaptation); training keeps the fast fused kernels.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["rowwise_gru_cell", "rowwise_linear", "rowwise_sequential"]


def rowwise_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """``x @ weight.T + bias`` computed row by row (batch-invariant).

    Args:
        x: Inputs ``[N, in]``.
        weight: ``[out, in]`` as in :class:`torch.nn.Linear`.
        bias: ``[out]`` or None.

    Returns:
        ``[N, out]``; row i equals ``rowwise_linear(x[i:i+1], …)`` bit for bit.
    """
    n = x.shape[0]
    w = weight.t()[None].expand(n, *weight.t().shape)
    y = torch.bmm(x[:, None, :], w)[:, 0]
    return y if bias is None else y + bias


def rowwise_sequential(net: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Run an ``nn.Sequential`` of ``Linear`` layers and element-wise activations row by row.

    Args:
        net: The network; every module is a :class:`torch.nn.Linear` or acts element-wise
            (``Tanh``, ``ReLU``, ...), which is row-invariant already.
        x: Inputs ``[N, in]``.

    Returns:
        The network's outputs ``[N, out]``, batch-invariant.
    """
    for module in net:
        x = (
            rowwise_linear(x, module.weight, module.bias)
            if isinstance(module, nn.Linear)
            else module(x)
        )
    return x


def rowwise_gru_cell(x: torch.Tensor, h: torch.Tensor, gru: nn.GRU) -> torch.Tensor:
    """One step of a single-layer :class:`torch.nn.GRU`, row by row (batch-invariant).

    The gates follow torch's definition: ``r = σ(W_ir x + b_ir + W_hr h + b_hr)``,
    ``z = σ(W_iz x + b_iz + W_hz h + b_hz)``, ``n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))``,
    ``h' = (1 − z) ⊙ n + z ⊙ h``.

    Args:
        x: Inputs ``[N, in]``.
        h: States ``[N, hidden]``.
        gru: A one-layer, unidirectional GRU with biases.

    Returns:
        The next states ``[N, hidden]``.

    Raises:
        ValueError: For a GRU with more than one layer, bidirectional or without biases.
    """
    if gru.num_layers != 1 or gru.bidirectional or not gru.bias:
        raise ValueError("rowwise_gru_cell needs a one-layer, unidirectional GRU with biases")
    gi = rowwise_linear(x, gru.weight_ih_l0, gru.bias_ih_l0)
    gh = rowwise_linear(h, gru.weight_hh_l0, gru.bias_hh_l0)
    i_r, i_z, i_n = gi.chunk(3, dim=1)
    h_r, h_z, h_n = gh.chunk(3, dim=1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return (1.0 - z) * n + z * h
