"""Target referencing and normalisation as modules with buffers, so they are saved with a model.

JMP trains on *referenced, normalised* targets (jmp-reference §2.3, §3.3): a structure's energy
E (eV) first loses its per-element linear reference Σ_i ref[Z_i], then is scaled,
ŷ = (E − Σ ref − mean) / std. Forces are scaled by their own std (mean 0). A model predicts
ŷ; turning a prediction back into eV reverses the two steps. Keeping both as buffers of the
model means a saved checkpoint can always report physical units.

Use::

    refs = ElementReferences(coeff)                 # (K,), indexed by Z, eV per atom
    norm = Normalizer(mean=0.0, std=24.9)           # eV
    y = norm.normalize(refs.subtract(energy, batch.atomic_numbers, batch.batch))

Turning a prediction back into eV is the model's job (`openjmp.model.outputs.OutputTransform`,
built from these numbers and saved with every head).

The buffers are float64 so that large total energies (−10⁵ eV for MD22) keep their digits;
every method returns the dtype of its input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from openjmp.graph.scatter import segment_sum
from openjmp.records import N_ELEMENTS


class ElementReferences(nn.Module):
    """Per-element linear energy references: E_ref(structure) = Σ_atoms ref[Z].

    Buffer ``references``: (K,) float64, eV, indexed by atomic number Z (K > max Z; a table
    fitted on H, C, N, O, F has K = 10, the authors' size).
    """

    references: Tensor

    def __init__(self, references: Tensor | Sequence[float]) -> None:
        super().__init__()
        ref = torch.as_tensor(references, dtype=torch.float64).detach().clone()
        if ref.ndim != 1 or ref.numel() < 2:
            raise ValueError(
                f"references must be a (K,) table indexed by Z, got shape {tuple(ref.shape)}"
            )
        if not torch.isfinite(ref).all():
            bad = torch.nonzero(~torch.isfinite(ref)).flatten().tolist()
            raise ValueError(f"references are not finite for Z = {bad}")
        self.register_buffer("references", ref)

    @classmethod
    def zeros(cls, num_elements: int = N_ELEMENTS) -> ElementReferences:
        """No referencing (all zeros)."""
        return cls(torch.zeros(num_elements, dtype=torch.float64))

    @classmethod
    def from_mapping(
        cls, values: Mapping[int, float], num_elements: int = N_ELEMENTS
    ) -> ElementReferences:
        """From {Z: eV}; elements not listed get 0."""
        ref = torch.zeros(num_elements, dtype=torch.float64)
        for z, v in values.items():
            if not 0 < int(z) < num_elements:
                raise ValueError(f"atomic number {z} outside 1..{num_elements - 1}")
            ref[int(z)] = float(v)
        return cls(ref)

    @property
    def num_elements(self) -> int:
        return int(self.references.shape[0])

    def per_structure(self, atomic_numbers: Tensor, batch: Tensor, num_structures: int) -> Tensor:
        """(B,) float64 eV: Σ ref[Z] over each structure's atoms.

        ``atomic_numbers``: (N,) int; ``batch``: (N,) int64 structure index of every atom.
        """
        if atomic_numbers.numel():
            z_max = int(atomic_numbers.max())
            if z_max >= self.num_elements or int(atomic_numbers.min()) < 0:
                raise ValueError(
                    f"atomic number {z_max} has no linear reference (table covers Z < "
                    f"{self.num_elements}); refit the references on data that contains it"
                )
        per_atom = self.references[atomic_numbers.long()].to(torch.float64)
        return segment_sum(per_atom, batch, num_structures)

    def subtract(self, energy: Tensor, atomic_numbers: Tensor, batch: Tensor) -> Tensor:
        """(B,) energy − Σ ref, in ``energy``'s dtype (eV)."""
        ref = self.per_structure(atomic_numbers, batch, energy.shape[0])
        return (energy.to(torch.float64) - ref).to(energy.dtype)

    def extra_repr(self) -> str:
        return f"num_elements={self.num_elements}"


class Normalizer(nn.Module):
    """x̂ = (x − mean) / std and back. Buffers ``mean`` and ``std``: float64, the target's units,
    scalars or any shape that broadcasts against the target (e.g. (k,) for k targets)."""

    mean: Tensor
    std: Tensor

    def __init__(self, mean: float | Tensor = 0.0, std: float | Tensor = 1.0) -> None:
        super().__init__()
        m = torch.as_tensor(mean, dtype=torch.float64).detach().clone()
        s = torch.as_tensor(std, dtype=torch.float64).detach().clone()
        if not torch.isfinite(m).all():
            raise ValueError(f"normalisation mean must be finite, got {m.tolist()}")
        if not (torch.isfinite(s).all() and (s > 0).all()):
            raise ValueError(f"normalisation std must be positive and finite, got {s.tolist()}")
        self.register_buffer("mean", m)
        self.register_buffer("std", s)

    def normalize(self, x: Tensor) -> Tensor:
        """(x − mean) / std, in x's dtype."""
        return ((x.to(torch.float64) - self.mean) / self.std).to(x.dtype)

    def denormalize(self, x: Tensor) -> Tensor:
        """x · std + mean, in x's dtype (keeps the autograd graph, for predictions)."""
        return x * self.std.to(x.dtype) + self.mean.to(x.dtype)

    def extra_repr(self) -> str:
        return f"mean={self.mean.tolist()}, std={self.std.tolist()}"
