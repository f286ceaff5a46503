"""ElementReferences and Normalizer (openjmp.model.normalization): hand values, round trips,
saving with a model, and named errors. Exact comparisons: the buffers are float64 and the
numbers below are representable."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from openjmp.model.normalization import ElementReferences, Normalizer


def test_references_per_structure_by_hand() -> None:
    refs = ElementReferences.from_mapping({1: -0.5, 8: -75.0})  # H, O
    z = torch.tensor([8, 1, 1, 1, 1])  # H2O then H2
    batch = torch.tensor([0, 0, 0, 1, 1])
    assert refs.per_structure(z, batch, 2).tolist() == [-76.0, -1.0]
    e = torch.tensor([-80.0, -2.0])
    assert refs.subtract(e, z, batch).tolist() == [-4.0, -1.0]
    assert refs.subtract(e, z, batch).dtype == torch.float32


def test_references_unknown_element_is_named() -> None:
    refs = ElementReferences([0.0] * 10)  # the authors' H..F table size
    with pytest.raises(ValueError, match="atomic number 29 has no linear reference"):
        refs.per_structure(torch.tensor([1, 29]), torch.tensor([0, 0]), 1)
    with pytest.raises(ValueError, match="not finite"):
        ElementReferences([0.0, float("nan")])


def test_normalizer_round_trip_and_grad() -> None:
    norm = Normalizer(mean=2.0, std=4.0)
    x = torch.tensor([6.0, -2.0])
    assert norm.normalize(x).tolist() == [1.0, -1.0]
    y = torch.tensor([0.5], requires_grad=True)
    out = norm.denormalize(y)
    assert out.item() == 4.0
    out.backward()
    assert y.grad.item() == 4.0
    per_target = Normalizer(mean=torch.tensor([0.0, 1.0]), std=torch.tensor([1.0, 2.0]))
    assert per_target.normalize(torch.tensor([[1.0, 5.0]])).tolist() == [[1.0, 2.0]]
    with pytest.raises(ValueError, match="std must be positive"):
        Normalizer(0.0, 0.0)


def test_buffers_save_and_load_with_a_model() -> None:
    model = nn.Module()
    model.refs = ElementReferences.from_mapping({6: -1036.0})
    model.energy_norm = Normalizer(-0.75, 2.94)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    state = torch.load(io.BytesIO(buf.getvalue()))
    assert set(state) == {"refs.references", "energy_norm.mean", "energy_norm.std"}
    other = nn.Module()
    other.refs = ElementReferences.zeros()
    other.energy_norm = Normalizer()
    other.load_state_dict(state)
    assert other.refs.references[6].item() == -1036.0
    assert other.energy_norm.std.item() == 2.94
