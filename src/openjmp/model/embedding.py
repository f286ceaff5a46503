"""Atom embedding indexed by Z - 1 (row 0 is hydrogen), as in the JMP checkpoints."""

from __future__ import annotations

from torch import Tensor, nn

from openjmp.errors import DataError
from openjmp.records import N_ELEMENTS


class AtomEmbedding(nn.Module):
    """Z (N,) int64 in 1..num_elements -> (N, emb_size); weight key ``atom_embedding.weight``."""

    def __init__(self, num_elements: int = N_ELEMENTS, emb_size: int = 256) -> None:
        super().__init__()
        self.num_elements = num_elements
        self.atom_embedding = nn.Embedding(num_elements, emb_size)

    def forward(self, atomic_numbers: Tensor) -> Tensor:
        if atomic_numbers.numel() and (
            int(atomic_numbers.min()) < 1 or int(atomic_numbers.max()) > self.num_elements
        ):
            bad = atomic_numbers[(atomic_numbers < 1) | (atomic_numbers > self.num_elements)]
            raise DataError(
                None,
                None,
                f"atomic numbers must be in 1..{self.num_elements}, got {sorted(set(bad.tolist()))}",
            )
        return self.atom_embedding(atomic_numbers - 1)
