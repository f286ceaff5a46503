"""Helpers of the physics suite: a tiny random GemNet-OC with its force outputs, and geometry
checks that make a structure safe for comparisons (no neighbour-cap ties, no distance near the
graph cutoff)."""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms
from ase.neighborlist import neighbor_list

from openjmp.graph.collate import collate
from openjmp.graph.gemnet import build_graph_sample
from openjmp.graph.spec import graph_spec
from openjmp.model.gemnet_oc.config import GemNetOCConfig
from openjmp.model.heads import GradientForceHead
from openjmp.model.jmp_model import JMPModel
from openjmp.records import AtomsRecord

TINY = dict(
    num_blocks=2, num_radial=16, emb_size_atom=16, emb_size_edge=24, emb_size_trip_in=8,
    emb_size_trip_out=12, emb_size_quad_in=6, emb_size_quad_out=10, emb_size_aint_in=8,
    emb_size_aint_out=12, emb_size_rbf=6, emb_size_cbf=5, emb_size_sbf=7,
)  # fmt: skip
FORCE_KINDS = ("direct", "gradient")


def physics_model(seed: int = 11) -> JMPModel:
    """float64 tiny model, random weights and scale factors, heads: energy, direct, gradient."""
    torch.manual_seed(seed)
    m = JMPModel.pretraining(GemNetOCConfig.jmp_s(**TINY), ("t",)).double()
    g = torch.Generator().manual_seed(seed)
    for f in m.backbone.scale_factors().values():
        f.scale_factor.fill_(float(torch.rand((), generator=g, dtype=torch.float64) + 0.5))
    m.heads["t_gradient"] = GradientForceHead("t_energy")
    return m.eval()


def run(model: JMPModel, frames: list[Atoms], setting: str) -> dict[str, torch.Tensor]:
    """Energies (B,), and forces (N, 3) of both kinds under keys "direct" / "gradient"."""
    b = collate([build_graph_sample(AtomsRecord.from_ase(a), graph_spec(setting)) for a in frames])
    out = model(b)
    return {
        "energy": out["t_energy"].detach(),
        "direct": out["t_forces"].detach(),
        "gradient": out["t_gradient"].detach(),
    }


def cap_gap_and_margin(atoms: Atoms, setting: str) -> tuple[float, float]:
    """(smallest distance gap at any neighbour cap of ``setting``, closest distance to its
    cutoff), Å: both must be well above any displacement a test makes."""
    spec = graph_spec(setting)
    i, d = neighbor_list("id", atoms, spec.cutoff)
    gap, margin = np.inf, np.inf
    if len(d):
        margin = float(np.min(spec.cutoff - d))
    for a in range(len(atoms)):
        ds = np.sort(d[i == a])
        for k in spec.max_neighbors:
            if len(ds) > k:
                gap = min(gap, float(ds[k] - ds[k - 1]))
    return gap, margin
