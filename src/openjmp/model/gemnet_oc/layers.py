"""GemNet-OC layer primitives: ScaledSiLU, Dense, ResidualLayer and ScaleFactor.

Attribute names (``linear``, ``dense_mlp``, ``scale_factor``) are the authors', because
checkpoint keys are built from them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from openjmp.errors import CheckpointError
from openjmp.model.gemnet_oc import checkpointing, fused
from openjmp.model.gemnet_oc.init import he_orthogonal_

INV_SQRT_2 = 1 / math.sqrt(2.0)
_SILU_SCALE = 1 / 0.6


class ScaledSiLU(nn.Module):
    """SiLU(x) / 0.6, which keeps unit variance for unit-variance Gaussian input."""

    def forward(self, x: Tensor) -> Tensor:
        return F.silu(x).mul_(_SILU_SCALE)  # silu keeps its input for backward, not its output


_UNFUSABLE = object()


def activation_scale(activation: nn.Module) -> float | None | object:
    """The fused kernels' form of an activation module: the factor of silu(x) * factor
    (`ScaledSiLU`, `nn.SiLU`), None for the identity, `_UNFUSABLE` for anything else."""
    if isinstance(activation, ScaledSiLU):
        return _SILU_SCALE
    if isinstance(activation, nn.SiLU):
        return 1.0
    if isinstance(activation, nn.Identity):
        return None
    return _UNFUSABLE


def make_activation(name: str | None) -> nn.Module:
    """The authors' activation names -> module (``None`` -> identity)."""
    if name is None:
        return nn.Identity()
    key = name.lower()
    if key in ("scaled_silu", "scaled_swish"):
        return ScaledSiLU()
    if key in ("silu", "swish"):
        return nn.SiLU()
    raise ValueError(f"unknown activation {name!r}")


class Dense(nn.Module):
    """Bias-free linear layer (he-orthogonal init) followed by an optional activation.

    (..., in_features) -> (..., out_features).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = False,
        activation: str | None = None,
    ) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        self.activation = make_activation(activation)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        he_orthogonal_(self.linear.weight)
        if self.linear.bias is not None:
            nn.init.zeros_(self.linear.bias)

    @property
    def weight(self) -> Tensor:
        return self.linear.weight

    def fused_scale(self) -> float | None | object:
        """`activation_scale` of this layer, `_UNFUSABLE` with a bias."""
        if self.linear.bias is not None:
            return _UNFUSABLE
        return activation_scale(self.activation)

    def forward(self, x: Tensor) -> Tensor:
        if fused.active() and x.dim() == 2:
            scale = self.fused_scale()
            if scale is not _UNFUSABLE:
                return fused.dense(x, self.linear.weight, scale)  # type: ignore[arg-type]
        return self.activation(self.linear(x))


class ResidualLayer(nn.Module):
    """x -> (x + Dense(Dense(x))) / sqrt(2), both Dense of size ``units`` with the activation."""

    def __init__(self, units: int, n_layers: int = 2, activation: str | None = None) -> None:
        super().__init__()
        self.dense_mlp = nn.Sequential(
            *[Dense(units, units, activation=activation) for _ in range(n_layers)]
        )

    def forward(self, x: Tensor) -> Tensor:
        if fused.active():
            stack = residual_weights([self])
            if stack is not None:
                return fused.residual_stack(x, *stack)
        y = x
        for layer in self.dense_mlp[:-1]:
            y = layer(y)
        # Under selective activation checkpointing only the inner products are kept: the last
        # one is recomputed in backward from them (one product per layer instead of one
        # (rows, units) tensor kept per layer; see `checkpointing.recompute_matmuls`).
        with checkpointing.recompute_matmuls():
            y = self.dense_mlp[-1](y)
        if isinstance(self.dense_mlp[-1].activation, nn.Identity):  # y would be a bare matmul
            return (y + x).mul_(INV_SQRT_2)
        return y.add_(x).mul_(INV_SQRT_2)  # y: fresh activation output, kept by no one


def residual_weights(layers: list[nn.Module]) -> tuple[list[Tensor], float] | None:
    """(weights w1, w2, w1, w2, ..., activation factor) of a chain of two-layer
    `ResidualLayer` with one scaled-SiLU activation, as `fused.residual_stack` takes them;
    None if the chain has another form."""
    weights: list[Tensor] = []
    scales = set()
    for layer in layers:
        if not isinstance(layer, ResidualLayer) or len(layer.dense_mlp) != 2:
            return None
        for d in layer.dense_mlp:
            scale = d.fused_scale()
            if scale is _UNFUSABLE or scale is None:
                return None
            scales.add(scale)
            weights.append(d.linear.weight)
    if len(scales) != 1:
        return None
    return weights, scales.pop()  # type: ignore[return-value]


RefLike = Tensor | Callable[[], Tensor] | None
_OBSERVING = [0]


def observing() -> bool:
    """Whether any `ScaleFactor` is collecting statistics (fused kernels skip its inputs)."""
    return _OBSERVING[0] > 0


class ScaleFactor(nn.Module):
    """Multiply by a fitted constant; ``scale_factor`` is a 0-d buffer, 0 meaning "not fitted"
    (identity), as in the authors' checkpoints.

    While `observe` is active the module accumulates the statistics of the authors' fitting
    procedure: the mean over features of the variance over rows of the (scaled) output, and of
    ``ref`` (a tensor, or a callable returning one so that large gathered tensors are built
    only while fitting), both weighted by the number of output rows.
    """

    scale_factor: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("scale_factor", torch.tensor(0.0))
        self._stats: dict[str, float] | None = None
        self._register_load_state_dict_pre_hook(self._check_consistency)

    @property
    def fitted(self) -> bool:
        return bool(self.scale_factor.item() != 0.0)

    def factor(self) -> Tensor | None:
        """The 0-d factor to multiply by, None when not fitted (identity)."""
        return self.scale_factor if (self.scale_factor.is_meta or self.fitted) else None

    def forward(self, x: Tensor, *, ref: RefLike = None, inplace: bool = False) -> Tensor:
        """x * scale_factor if fitted; ``inplace`` only for a fresh temporary nothing else holds."""
        if self.scale_factor.is_meta or self.fitted:
            x = x.mul_(self.scale_factor) if inplace else x * self.scale_factor
        if self._stats is not None:
            self._observe(x, ref)
        return x

    # ---------------------------------------------------------------- fitting
    def start_observing(self) -> None:
        if self._stats is None:
            _OBSERVING[0] += 1
        self._stats = {"variance_in": 0.0, "variance_out": 0.0, "n_samples": 0.0}

    def stop_observing(self) -> dict[str, float]:
        stats = self._stats
        self._stats = None
        if stats is not None:
            _OBSERVING[0] -= 1
        if stats is None:
            raise RuntimeError("ScaleFactor.stop_observing() without start_observing()")
        return stats

    @torch.no_grad()
    def _observe(self, x: Tensor, ref: RefLike) -> None:
        assert self._stats is not None
        n = x.shape[0]
        self._stats["variance_out"] += torch.var(x.detach(), dim=0).mean().item() * n
        if ref is None:
            self._stats["variance_in"] += n
        else:
            r = ref() if callable(ref) else ref
            self._stats["variance_in"] += torch.var(r.detach(), dim=0).mean().item() * n
        self._stats["n_samples"] += n

    # ------------------------------------------------------------- loading
    def _check_consistency(self, state_dict, prefix, *args) -> None:  # noqa: ANN001
        key = prefix + "scale_factor"
        if key not in state_dict or self.scale_factor.is_meta or not self.fitted:
            return
        new = state_dict[key]
        if not torch.allclose(self.scale_factor, new.to(self.scale_factor)):
            raise CheckpointError(
                f"scale factor {key}: the model was built with {self.scale_factor.item()!r} "
                f"but the state dict holds {float(new)!r}; build the model with the checkpoint's "
                f"own scale factors (or none) instead"
            )
