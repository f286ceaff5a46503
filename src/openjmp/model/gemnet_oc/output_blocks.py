"""Atom update, output blocks and the final MLPs of GemNet-OC (authors' parameter names).

``OutputBlock.seq_energy_pre`` is the same module object as ``OutputBlock.layers``, so both key
sets appear in state dicts, as in the authors' checkpoints.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from openjmp.graph.scatter import segment_sum
from openjmp.model.gemnet_oc import fused
from openjmp.model.gemnet_oc.layers import (
    _UNFUSABLE,
    INV_SQRT_2,
    Dense,
    ResidualLayer,
    ScaleFactor,
    activation_scale,
    residual_weights,
)


def residual_mlp(units_in: int, units: int, n_hidden: int, activation: str | None) -> nn.ModuleList:
    """[Dense(units_in -> units) if the sizes differ] + n_hidden residual layers of size units."""
    mlp: list[nn.Module] = []
    if units_in != units:
        mlp.append(Dense(units_in, units, activation=activation))
    mlp += [ResidualLayer(units, activation=activation) for _ in range(n_hidden)]
    return nn.ModuleList(mlp)


def run_sequence(
    layers: nn.ModuleList | list[nn.Module], x: Tensor, *, activation: nn.Module | None = None
) -> Tensor:
    """``activation(x)`` (x if None) through the layers in order.

    With fused kernels active, a chain of residual layers (after an optional Dense) runs as
    one `fused.residual_stack`, which keeps the pre-activation of its input (``x`` with
    ``activation``, or the leading Dense's product) instead of the activation's output."""
    layers = list(layers)
    if fused.active() and layers:
        start = 1 if isinstance(layers[0], Dense) else 0
        stack = residual_weights(layers[start:]) if len(layers) > start else None
        if stack is not None:
            act_in = None  # the activation the stack applies to x itself
            if start:  # the leading Dense's bare product; the stack applies its activation
                x = x if activation is None else activation(x)
                act_in = layers[0].fused_scale() if x.dim() == 2 else _UNFUSABLE
                if act_in is None or act_in is _UNFUSABLE:  # no activation, or a bias
                    x, act_in = layers[0](x), None
                else:
                    x = fused.dense(x, layers[0].linear.weight, None)
            elif activation is not None:
                act_in = activation_scale(activation)
                if act_in is None or act_in is _UNFUSABLE:
                    x, act_in = activation(x), None
            return fused.residual_stack(x, *stack, act_in=act_in)  # type: ignore[arg-type]
    if activation is not None:
        x = activation(x)
    for layer in layers:
        x = layer(x)
    return x


def aggregate_edges(m: Tensor, rbf_emb: Tensor, idx_atom: Tensor, num_atoms: int) -> Tensor:
    """sum over edges s->t of m_st * rbf_emb_st onto atom t: (E, F), (E, F), (E,) -> (N, F)."""
    return segment_sum(m * rbf_emb, idx_atom, num_atoms)


class AtomUpdateBlock(nn.Module):
    """h_t = MLP(scale(sum_{s->t} m_st * Dense(rbf_st))): edges (E, emb_edge) -> atoms (N, emb_atom)."""

    def __init__(
        self,
        emb_size_atom: int,
        emb_size_edge: int,
        emb_size_rbf: int,
        n_hidden: int,
        activation: str | None = None,
    ) -> None:
        super().__init__()
        self.dense_rbf = Dense(emb_size_rbf, emb_size_edge)
        self.scale_sum = ScaleFactor()
        self.layers = residual_mlp(emb_size_edge, emb_size_atom, n_hidden, activation)

    def forward(self, h: Tensor, m: Tensor, rbf: Tensor, idx_atom: Tensor) -> Tensor:
        if fused.active():
            w = self.dense_rbf.linear.weight
            x = fused.edge_to_atom(m, rbf, w, idx_atom, h.shape[0], self.scale_sum.factor())
        else:
            x = aggregate_edges(m, self.dense_rbf(rbf), idx_atom, h.shape[0])
            x = self.scale_sum(x, ref=m, inplace=True)
        return run_sequence(self.layers, x)


class OutputBlock(AtomUpdateBlock):
    """Per-block output: atom features x_E (N, emb_atom) and, with direct forces, edge
    features x_F (E, emb_edge)."""

    def __init__(
        self,
        emb_size_atom: int,
        emb_size_edge: int,
        emb_size_rbf: int,
        n_hidden: int,
        n_hidden_afteratom: int,
        activation: str | None = None,
        direct_forces: bool = True,
        edge_dropout: float | None = None,
    ) -> None:
        super().__init__(emb_size_atom, emb_size_edge, emb_size_rbf, n_hidden, activation)
        self.direct_forces = direct_forces
        self.edge_dropout = edge_dropout
        self.seq_energy_pre = self.layers  # alias, as in the authors' checkpoints
        self.seq_energy2 = (
            residual_mlp(emb_size_atom, emb_size_atom, n_hidden_afteratom, activation)
            if n_hidden_afteratom >= 1
            else None
        )
        if direct_forces:
            self.scale_rbf_F = ScaleFactor()
            self.seq_forces = residual_mlp(emb_size_edge, emb_size_edge, n_hidden, activation)
            self.dense_rbf_F = Dense(emb_size_rbf, emb_size_edge)

    def forward_energy(self, h: Tensor, m: Tensor, rbf: Tensor, idx_atom: Tensor) -> Tensor:
        """(N, emb_atom) atom output of this block."""
        # the authors' compensation for edges removed by edge dropout (training only)
        keep = 1 - self.edge_dropout if self.training and self.edge_dropout else 1.0
        if fused.active():
            w = self.dense_rbf.linear.weight
            x_e = fused.edge_to_atom(m, rbf, w, idx_atom, h.shape[0], self.scale_sum.factor(), keep)
        else:
            x_e = aggregate_edges(m, self.dense_rbf(rbf), idx_atom, h.shape[0])
            if keep != 1.0:
                x_e = x_e / keep
            x_e = self.scale_sum(x_e, ref=m, inplace=True)
        x_e = run_sequence(self.layers, x_e)
        if self.seq_energy2 is not None:
            x_e = run_sequence(self.seq_energy2, x_e.add_(h).mul_(INV_SQRT_2))
        return x_e

    def forward_forces(self, m: Tensor, rbf: Tensor) -> Tensor:
        """(E, emb_edge) edge output of this block (direct forces only)."""
        x_f = run_sequence(self.seq_forces, m)
        return self.scale_rbf_F(x_f * self.dense_rbf_F(rbf), ref=x_f, inplace=True)

    def forward_forces_raw(self, m: Tensor) -> Tensor:
        """The force MLP's output before the radial factor (for `FinalMLP.forward_forces`)."""
        return run_sequence(self.seq_forces, m)


class FinalMLP(nn.Module):
    """Dense(emb * (num_blocks + 1) -> emb) and residual layers, on the concatenated block outputs.

    The first layer is applied block by block (its weight split into num_blocks + 1 column
    blocks), so the (rows, emb * (num_blocks + 1)) concatenation is never formed.
    """

    def __init__(
        self, emb_size: int, num_blocks: int, num_global_out_layers: int, activation: str | None
    ) -> None:
        super().__init__()
        self.out_mlp = nn.Sequential(
            Dense(emb_size * (num_blocks + 1), emb_size, activation=activation),
            *[ResidualLayer(emb_size, activation=activation) for _ in range(num_global_out_layers)],
        )

    def forward(self, *xs: Tensor) -> Tensor:
        """num_blocks + 1 tensors (rows, emb) -> (rows, emb)."""
        first: Dense = self.out_mlp[0]  # type: ignore[assignment]
        w = first.linear.weight
        width = xs[0].shape[1]
        z = xs[0] @ w[:, :width].T
        for k, x in enumerate(xs[1:], start=1):
            z = torch.addmm(z, x, w[:, k * width : (k + 1) * width].T)
        return self._rest(z)

    def _rest(self, z: Tensor) -> Tensor:
        """The first layer's activation and the residual layers, on its product z."""
        first: Dense = self.out_mlp[0]  # type: ignore[assignment]
        return run_sequence(list(self.out_mlp)[1:], z, activation=first.activation)

    def forward_forces(self, raw: list[Tensor], blocks: list[OutputBlock], rbf: Tensor) -> Tensor:
        """The force branch from the blocks' raw outputs (`OutputBlock.forward_forces_raw`):
        the same as ``forward(*(b.forward_forces(m, rbf) ...))``, with the radial factors
        and the first layer as one `fused.force_merge`."""
        first: Dense = self.out_mlp[0]  # type: ignore[assignment]
        w = first.linear.weight
        width = raw[0].shape[1]
        heads = [w[:, k * width : (k + 1) * width] for k in range(len(raw))]
        z = fused.force_merge(
            raw,
            rbf,
            [b.dense_rbf_F.linear.weight for b in blocks],
            [b.scale_rbf_F.factor() for b in blocks],
            heads,
        )
        return self._rest(z)
