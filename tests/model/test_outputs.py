"""`OutputTransform` / `HeadInfo` (openjmp.model.outputs): hand values, JSON round trips, the
named error for values that are not physical, and a head's info surviving `save_model`.

Exact comparisons: the numbers below are representable in float64."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from openjmp.errors import ConfigError
from openjmp.graph.spec import GraphSpec
from openjmp.model.checkpoint import load_checkpoint, save_model
from openjmp.model.heads import EnergyHead
from openjmp.model.jmp_model import JMPModel
from openjmp.model.outputs import HeadInfo, OutputTransform, voigt


def test_energy_transform_by_hand() -> None:
    refs = [0.0] * 10
    refs[1], refs[8] = -0.5, -75.0
    t = OutputTransform.energy(scale=2.0, shift=-1.0, references=refs)
    z = torch.tensor([8, 1, 1, 1, 1])  # H2O then H2
    batch = torch.tensor([0, 0, 0, 1, 1])
    y = torch.tensor([0.25, -0.5], dtype=torch.float32)
    out = t.apply(y, z, batch)
    assert out.dtype == torch.float64
    assert out.tolist() == [-76.0 - 1.0 + 0.5, -1.0 - 1.0 - 1.0]
    assert t.derivative_scale() == 2.0 and t.unit == "eV"
    with pytest.raises(ConfigError, match="atomic number 29 has no per-element reference"):
        t.apply(y[:1], torch.tensor([29]), torch.tensor([0]))


def test_forces_scalar_and_round_trip() -> None:
    f = OutputTransform.forces(0.5)
    assert (
        f.apply(torch.ones(2, 3), torch.tensor([1, 1]), torch.tensor([0, 0])).tolist()
        == [[0.5] * 3] * 2
    )
    with pytest.raises(ConfigError, match="scale only"):
        OutputTransform("forces", "eV/Å", 1.0, shift=1.0)
    s = OutputTransform.scalar([1.0, 2.0], [0.0, 10.0], unit="D")
    y = torch.tensor([[1.0, 1.0]])
    assert s.apply(y, torch.tensor([1]), torch.tensor([0])).tolist() == [[1.0, 12.0]]
    for t in (f, s, OutputTransform.energy(3.0, 1.0, [0.0, -13.6], missing="why")):
        assert OutputTransform.from_dict(t.to_dict()) == t


def test_missing_values_are_named_and_completed() -> None:
    t = OutputTransform.energy(2.0, missing="needs the per-dataset references")
    assert not t.physical and t.derivative_scale() == 2.0  # forces are fine
    with pytest.raises(ConfigError, match="not physical: needs the per-dataset references"):
        t.apply(torch.zeros(1), torch.tensor([1]), torch.tensor([0]))
    done = t.with_references([0.0, -13.6])
    assert done.physical
    assert done.apply(torch.tensor([1.0]), torch.tensor([1, 1]), torch.tensor([0, 0])).tolist() == [
        2.0 - 27.2
    ]


def test_voigt_order() -> None:
    m = torch.tensor([[1.0, 6.0, 5.0], [6.0, 2.0, 4.0], [5.0, 4.0, 3.0]])
    assert voigt(m).tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]  # xx yy zz yz xz xy


def test_head_info_survives_save_and_load(tmp_path: Path) -> None:
    from openjmp.model.gemnet_oc.config import GemNetOCConfig

    cfg = GemNetOCConfig.jmp_s(num_blocks=1, emb_size_atom=8, emb_size_edge=8, emb_size_trip_in=4,
                               emb_size_trip_out=4, emb_size_quad_in=4, emb_size_quad_out=4,
                               emb_size_aint_in=4, emb_size_aint_out=4, emb_size_rbf=4,
                               emb_size_cbf=4, emb_size_sbf=4, num_radial=8)  # fmt: skip
    cfg = cfg.replace(regress_forces=False, direct_forces=False)
    model = JMPModel(cfg, {"energy": EnergyHead(8, num_mlps=2)})
    info = HeadInfo(
        OutputTransform.energy(1.5, -3.0, [0.0, -13.6, 0.0, 0.0, 0.0, 0.0, -1029.4]),
        GraphSpec.from_base(5.0, 20, pbc=True),
        (1, 6),
    )
    model.set_head_info("energy", info)
    back = load_checkpoint(save_model(model, tmp_path / "m.pt"))
    assert back.head_info["energy"] == info
    with pytest.raises(ConfigError, match="unknown head"):
        model.set_head_info("nope", info)
