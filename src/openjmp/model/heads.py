"""Output heads on the GemNet-OC backbone features.

* `EnergyHead` / `ScalarHead`: per-atom MLP on the backbone's atom features (N, emb_atom),
  pooled per structure (sum, mean or max). Energies in eV when trained on eV.
* `DirectForceHead`: per-edge MLP on the backbone's edge features (E, emb_edge) giving a scalar
  f_st, times the unit vector V_st (source -> target), summed onto the target atom: (N, 3) eV/Å.
* `GradientForceHead`: F = -dE/dpositions of a named energy head (conservative forces).
* `PooledHead`: pool first, then a linear map or a small MLP on standardised pooled features:
  the frozen-backbone heads (ridge, MLP) as modules, so a frozen run is a model like any other.

``is_scalar`` tells a per-structure property (`ScalarHead`, a scalar `PooledHead`) from an
energy: predictions report properties apart, and only energies have forces and stress.

The MLPs are the authors' ``Base.mlp``: ``nn.Sequential`` of Linear and activation layers,
[emb] * num_mlps -> num_outputs, the last Linear without bias when it has one output; PyTorch's
default Linear initialisation (as the authors' heads).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from openjmp.graph.scatter import segment_max, segment_mean, segment_sum
from openjmp.model.gemnet_oc.layers import make_activation

Pooling = Literal["sum", "mean", "max"]


def mlp(
    dims: list[int],
    activation: str | None = "scaled_silu",
    *,
    bias: bool = True,
    no_bias_scalar: bool = True,
) -> nn.Sequential:
    """Linear(d0, d1), act, Linear(d1, d2), act, ..., Linear(d_{n-1}, d_n) (authors' ``mlp``)."""
    if len(dims) < 2:
        raise ValueError("mlp needs at least an input and an output size")
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        out = dims[i + 1]
        layers.append(nn.Linear(dims[i], out, bias=bias and not (no_bias_scalar and out == 1)))
        if i < len(dims) - 2:
            layers.append(make_activation(activation))
    return nn.Sequential(*layers)


_REDUCED = (torch.float16, torch.bfloat16)


def at_least_float32(x: Tensor) -> Tensor:
    """``x`` in float32 when autocast made it float16 / bfloat16 (else unchanged): sums of
    per-atom energies keep 24 bits, not bfloat16's 8 (a 300 eV total would be off by 1 eV)."""
    return x.float() if x.dtype in _REDUCED else x


def pool(x: Tensor, batch: Tensor, num_graphs: int, reduction: Pooling) -> Tensor:
    """(N, k) per-atom values -> (B, k) per structure by sum, mean or max (in float32 at least,
    under mixed precision too)."""
    x = at_least_float32(x)
    if reduction == "sum":
        return segment_sum(x, batch, num_graphs)
    if reduction == "mean":
        return segment_mean(x, batch, num_graphs)
    if reduction == "max":
        return segment_max(x, batch, num_graphs)
    raise ValueError(f"unknown pooling {reduction!r}; use sum, mean or max")


class EnergyHead(nn.Module):
    """Per-atom MLP, pooled per structure: atom features (N, A) -> (B,) (or (B, k))."""

    input_kind = "atom"
    is_scalar = False

    def __init__(
        self,
        emb_size: int,
        *,
        num_mlps: int = 5,
        num_outputs: int = 1,
        pooling: Pooling = "sum",
        bias: bool = True,
        activation: str | None = "scaled_silu",
    ) -> None:
        super().__init__()
        if pooling not in ("sum", "mean", "max"):
            raise ValueError(f"unknown pooling {pooling!r}; use sum, mean or max")
        self.pooling: Pooling = pooling
        self.num_outputs = num_outputs
        self.mlp = mlp([emb_size] * num_mlps + [num_outputs], activation, bias=bias)

    def forward(self, x: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        y = pool(self.mlp(x), batch, num_graphs, self.pooling)
        return y[:, 0] if self.num_outputs == 1 else y


class ScalarHead(EnergyHead):
    """Graph-level scalar property (QM9, MatBench, QMOF): same computation as `EnergyHead`."""

    is_scalar = True


class PooledHead(EnergyHead):
    """Pooled features (B, A) -> standardised -> Linear (``hidden`` None: a ridge fit) or
    Linear-SiLU-Linear -> (B,) or (B, k). Buffers ``feature_mean`` / ``feature_std`` (A,) are
    the standardisation of the features it was fitted on. Differentiable in the positions, so
    an energy fitted this way has gradient forces too."""

    feature_mean: Tensor
    feature_std: Tensor

    def __init__(
        self,
        emb_size: int,
        *,
        pooling: Pooling = "sum",
        hidden: int | None = None,
        num_outputs: int = 1,
        scalar: bool = False,
    ) -> None:
        nn.Module.__init__(self)
        if pooling not in ("sum", "mean", "max"):
            raise ValueError(f"unknown pooling {pooling!r}; use sum, mean or max")
        self.pooling: Pooling = pooling
        self.num_outputs = num_outputs
        self.hidden = hidden
        self.is_scalar = scalar
        self.register_buffer("feature_mean", torch.zeros(emb_size))
        self.register_buffer("feature_std", torch.ones(emb_size))
        if hidden is None:
            self.mlp = nn.Sequential(nn.Linear(emb_size, num_outputs))
        else:
            self.mlp = nn.Sequential(
                nn.Linear(emb_size, hidden), nn.SiLU(), nn.Linear(hidden, num_outputs)
            )

    def forward(self, x: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        pooled = pool(x, batch, num_graphs, self.pooling)
        y = self.mlp((pooled - self.feature_mean) / self.feature_std)
        return y[:, 0] if self.num_outputs == 1 else y


class DirectForceHead(nn.Module):
    """F_t = sum_{s->t} MLP(x_st) * V_st: edge features (E, F) -> forces (N, 3)."""

    input_kind = "edge"

    def __init__(
        self,
        emb_size: int,
        *,
        num_mlps: int = 5,
        bias: bool = True,
        activation: str | None = "scaled_silu",
    ) -> None:
        super().__init__()
        self.mlp = mlp([emb_size] * num_mlps + [1], activation, bias=bias)

    def forward(self, x: Tensor, v_st: Tensor, idx_t: Tensor, num_atoms: int) -> Tensor:
        f_st = self.mlp(x) * v_st  # (E, 3)
        return segment_sum(f_st, idx_t, num_atoms)


class GradientForceHead(nn.Module):
    """F = -d(sum of energy head ``energy``)/d positions (eV/Å); no parameters."""

    input_kind = "gradient"

    def __init__(self, energy: str) -> None:
        super().__init__()
        self.energy = energy

    def extra_repr(self) -> str:
        return f"energy={self.energy!r}"
