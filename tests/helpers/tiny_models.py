"""Helpers of the model tests: a tiny random GemNet-OC (float64) and batches built from ASE.

(A module of its own, not conftest, so tests can import it by a unique name.)
"""

from __future__ import annotations

import torch

from openjmp.graph.collate import collate
from openjmp.graph.gemnet import build_graph_sample
from openjmp.graph.spec import graph_spec
from openjmp.model.gemnet_oc.config import GemNetOCConfig
from openjmp.model.jmp_model import JMPModel
from openjmp.records import AtomsRecord

TINY = dict(
    num_blocks=2, num_radial=16, emb_size_atom=16, emb_size_edge=24, emb_size_trip_in=8,
    emb_size_trip_out=12, emb_size_quad_in=6, emb_size_quad_out=10, emb_size_aint_in=8,
    emb_size_aint_out=12, emb_size_rbf=6, emb_size_cbf=5, emb_size_sbf=7,
)  # fmt: skip


def tiny_config(**overrides: object) -> GemNetOCConfig:
    return GemNetOCConfig.jmp_s(**{**TINY, **overrides})


def tiny_model(
    seed: int = 0, tasks: tuple[str, ...] = ("oc20", "ani1x"), **cfg: object
) -> JMPModel:
    """Random tiny pre-training model in float64 with random scale factors in [0.5, 2]."""
    torch.manual_seed(seed)
    model = JMPModel.pretraining(tiny_config(**cfg), tasks).double()
    g = torch.Generator().manual_seed(seed)
    for f in model.backbone.scale_factors().values():
        f.scale_factor.fill_(float(torch.rand((), generator=g, dtype=torch.float64) * 1.5 + 0.5))
    return model.eval()


def make_batch(frames: list, setting: str):  # noqa: ANN201
    return collate(
        [build_graph_sample(AtomsRecord.from_ase(a), graph_spec(setting, len(a))) for a in frames]
    )
