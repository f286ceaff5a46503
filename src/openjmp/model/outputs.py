"""What a head's raw output means: its `OutputTransform` and `HeadInfo`, saved with the model.

A head predicts a raw number y; training makes y a *normalised* target (jmp-reference §2.3,
§3.3). The transform turns it back into the quantity in physical units:

    per-structure quantities (energy, scalar):  value = Σ_atoms references[Z] + shift + scale · y
    forces (per atom, direct head):              value = scale · y

Derivatives of an energy head (gradient forces −∂E/∂r, stress (1/V) ∂E/∂ε) take the energy
head's ``scale`` only: the references and the shift depend on neither positions nor strain.
That is why a head can give physical forces while its energies are not yet physical (the
published JMP checkpoints, whose per-dataset linear references are not in the file): such a
transform has ``missing`` set, saying what the energies still need.

`HeadInfo` bundles what a head was trained with: its transform, its graph setting and the
elements of its training data. All of it is plain JSON in the model file (``heads`` entries),
so nothing here is a tensor in the state dict and every checkpoint keeps its keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch
from torch import Tensor

from openjmp.errors import ConfigError
from openjmp.graph.scatter import segment_sum
from openjmp.graph.spec import GraphSpec

Quantity = Literal["energy", "forces", "scalar"]

UNITS: dict[str, str] = {"energy": "eV", "forces": "eV/Å", "stress": "eV/Å^3"}
"""openjmp's units for energies, forces and stress (inside and on the way out)."""


def _floats(x: float | Sequence[float]) -> float | tuple[float, ...]:
    if isinstance(x, (int, float)):
        return float(x)
    return tuple(float(v) for v in x)


@dataclass(frozen=True)
class OutputTransform:
    """raw head output -> physical value (module docstring).

    Attributes:
        quantity: ``energy`` (per structure, differentiable to forces and stress), ``forces``
            (per atom, (N, 3)) or ``scalar`` (per structure, (B,) or (B, k)).
        unit: the unit of the physical value ("eV", "eV/Å", a scalar target's unit, or "" when
            the target's unit is whatever its labels were in).
        scale, shift: float, or (k,) per output of a k-output scalar head.
        references: (K,) per-element values indexed by Z (K > max Z), or None.
        missing: None when the values are physical; else what they still need (e.g. the
            published checkpoints' linear references). Derivatives are physical regardless.
    """

    quantity: Quantity
    unit: str
    scale: float | tuple[float, ...] = 1.0
    shift: float | tuple[float, ...] = 0.0
    references: tuple[float, ...] | None = None
    missing: str | None = None
    _cache: dict[Any, tuple[Tensor, Tensor, Tensor | None]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.quantity not in ("energy", "forces", "scalar"):
            raise ConfigError(
                f"output quantity must be energy, forces or scalar: {self.quantity!r}"
            )
        object.__setattr__(self, "scale", _floats(self.scale))
        object.__setattr__(self, "shift", _floats(self.shift))
        if self.references is not None:
            refs = tuple(float(v) for v in self.references)
            if len(refs) < 2:
                raise ConfigError("output references must be a table indexed by Z (K >= 2 rows)")
            object.__setattr__(self, "references", refs)
        if self.quantity == "forces" and (self.references is not None or self.shift != 0.0):
            raise ConfigError("a force transform is a scale only (no references, no shift)")

    # ------------------------------------------------------------------------- builders
    @classmethod
    def energy(
        cls,
        scale: float,
        shift: float = 0.0,
        references: Sequence[float] | None = None,
        *,
        missing: str | None = None,
    ) -> OutputTransform:
        """An energy head: E = Σ ref[Z] + shift + scale · y, eV."""
        refs = None if references is None or not any(references) else tuple(references)
        return cls("energy", UNITS["energy"], scale, shift, refs, missing)

    @classmethod
    def forces(cls, scale: float) -> OutputTransform:
        """A direct-force head: F = scale · y, eV/Å."""
        return cls("forces", UNITS["forces"], scale)

    @classmethod
    def scalar(
        cls,
        scale: float | Sequence[float] = 1.0,
        shift: float | Sequence[float] = 0.0,
        references: Sequence[float] | None = None,
        unit: str = "",
    ) -> OutputTransform:
        """A per-structure property in ``unit`` ("" = the unit of its labels)."""
        refs = None if references is None or not any(references) else tuple(references)
        return cls("scalar", unit, scale, shift, refs)

    # ---------------------------------------------------------------------- serialising
    def to_dict(self) -> dict[str, Any]:
        return {
            "quantity": self.quantity,
            "unit": self.unit,
            "scale": self.scale,
            "shift": self.shift,
            "references": None if self.references is None else list(self.references),
            "missing": self.missing,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OutputTransform:
        try:
            return cls(
                quantity=data["quantity"],
                unit=str(data["unit"]),
                scale=data.get("scale", 1.0),
                shift=data.get("shift", 0.0),
                references=data.get("references"),
                missing=data.get("missing"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"bad output transform {dict(data)}: {exc}") from None

    def with_references(
        self, references: Sequence[float], shift: float | None = None
    ) -> OutputTransform:
        """This energy transform completed with per-element ``references`` (eV, by Z)."""
        if self.quantity != "energy":
            raise ConfigError("references apply to energy heads only")
        return replace(
            self,
            references=tuple(float(v) for v in references),
            shift=self.shift if shift is None else float(shift),
            missing=None,
            _cache={},
        )

    # -------------------------------------------------------------------------- applying
    @property
    def physical(self) -> bool:
        """Whether values (not only derivatives) come out in physical units."""
        return self.missing is None

    def _tensors(self, device: torch.device) -> tuple[Tensor, Tensor, Tensor | None]:
        hit = self._cache.get(device)
        if hit is None:
            f64 = torch.float64
            scale = torch.as_tensor(self.scale, dtype=f64, device=device)
            shift = torch.as_tensor(self.shift, dtype=f64, device=device)
            refs = (
                None
                if self.references is None
                else torch.as_tensor(self.references, dtype=f64, device=device)
            )
            hit = self._cache[device] = (scale, shift, refs)
        return hit

    def derivative_scale(self) -> float:
        """The factor of ∂(value)/∂(anything geometric) over ∂y: the scale (one output)."""
        if not isinstance(self.scale, float):
            raise ConfigError("derivatives are defined for single-output energy heads only")
        return self.scale

    def apply(self, y: Tensor, atomic_numbers: Tensor, batch: Tensor) -> Tensor:
        """Physical values: (B,) / (B, k) float64 for per-structure heads, (N, 3) for forces.

        ``atomic_numbers`` (N,) and ``batch`` (N,) structure index of every atom locate the
        per-element references. Raises `ConfigError` when the values are not physical.
        """
        if self.missing is not None:
            raise ConfigError(f"these {self.quantity} values are not physical: {self.missing}")
        scale, shift, refs = self._tensors(y.device)
        if self.quantity == "forces":
            return y * scale.to(y.dtype)
        value = y.to(torch.float64) * scale + shift
        if refs is not None:
            z = atomic_numbers.long()
            if z.numel() and int(z.max()) >= refs.shape[0]:
                raise ConfigError(
                    f"atomic number {int(z.max())} has no per-element reference (the table covers "
                    f"Z < {refs.shape[0]}): the head never saw that element in training"
                )
            per_structure = segment_sum(refs[z], batch, value.shape[0])
            value = value + (per_structure if value.ndim == 1 else per_structure[:, None])
        return value


def voigt(stress: Tensor) -> Tensor:
    """(..., 3, 3) -> (..., 6) in Voigt order xx, yy, zz, yz, xz, xy (ASE's, the records')."""
    i = torch.tensor([0, 1, 2, 1, 0, 0], device=stress.device)
    j = torch.tensor([0, 1, 2, 2, 2, 1], device=stress.device)
    return stress[..., i, j]


@dataclass(frozen=True)
class HeadInfo:
    """What a head was trained with (all optional: a hand-built head knows nothing).

    Attributes:
        output: how its raw output becomes physical units (None: unknown; values are raw).
        graph: the graph setting its training data were built with (cutoff, caps, periodicity,
            qint tags, the atom-count rule), used by default at prediction.
        elements: atomic numbers present in its training data (None: unknown).
    """

    output: OutputTransform | None = None
    graph: GraphSpec | None = None
    elements: tuple[int, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.output is not None:
            out["output"] = self.output.to_dict()
        if self.graph is not None:
            out["graph"] = self.graph.to_dict()
        if self.elements is not None:
            out["elements"] = list(self.elements)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HeadInfo:
        out = data.get("output")
        graph = data.get("graph")
        elements = data.get("elements")
        return cls(
            output=None if out is None else OutputTransform.from_dict(out),
            graph=None if graph is None else GraphSpec.from_dict(graph),
            elements=None if elements is None else tuple(sorted(int(z) for z in elements)),
        )


INFO_KEYS = ("output", "graph", "elements")
"""Keys of a saved head entry that are `HeadInfo`, not the head's architecture."""
