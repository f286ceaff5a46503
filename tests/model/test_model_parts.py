"""Heads, key mapping, memory-efficient training and the model's input checks.

* pooling and the direct-force formula against explicit loops;
* the authors' head MLP layout (Linear/act alternation, no bias on the scalar output);
* activation checkpointing must not change any gradient (bitwise equal here: the recomputed
  forward runs the same kernels in the same order) while keeping less in memory; the fused
  kernels (the default without checkpointing) keep less than plain autograd;
* atomic numbers outside 1..120 raise a DataError instead of an index error deep in torch.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from openjmp.errors import ConfigError, DataError
from openjmp.model.heads import (
    DirectForceHead,
    EnergyHead,
    GradientForceHead,
    ScalarHead,
    mlp,
    pool,
)
from openjmp.model.jmp_model import JMPModel, head_from_spec, head_spec
from openjmp.model.keymap import authors_to_ours, ours_to_authors

from helpers.tiny_models import make_batch, tiny_config, tiny_model


def test_pooling() -> None:
    x = torch.tensor([[1.0], [2.0], [3.0], [-4.0]])
    b = torch.tensor([0, 0, 1, 1])
    assert pool(x, b, 2, "sum")[:, 0].tolist() == [3.0, -1.0]
    assert pool(x, b, 2, "mean")[:, 0].tolist() == [1.5, -0.5]
    assert pool(x, b, 2, "max")[:, 0].tolist() == [2.0, 3.0]


def test_authors_mlp_layout() -> None:
    seq = mlp([8, 8, 8, 1], "scaled_silu")
    kinds = [type(m).__name__ for m in seq]
    assert kinds == ["Linear", "ScaledSiLU", "Linear", "ScaledSiLU", "Linear"]
    assert seq[0].bias is not None and seq[4].bias is None
    assert [k for k, _ in EnergyHead(8).state_dict().items()][-1] == "mlp.8.weight"


def test_direct_force_head_sums_edge_scalars_times_unit_vectors() -> None:
    head = DirectForceHead(4, num_mlps=2).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    v = torch.nn.functional.normalize(torch.randn(5, 3, dtype=torch.float64), dim=1)
    t = torch.tensor([0, 2, 2, 1, 0])
    f = head(x, v, t, 3)
    ref = torch.zeros(3, 3, dtype=torch.float64)
    for e in range(5):
        ref[t[e]] += head.mlp(x[e : e + 1])[0, 0] * v[e]
    torch.testing.assert_close(f, ref)


def test_head_specs_round_trip() -> None:
    for head in (
        EnergyHead(8, num_mlps=3, pooling="mean", bias=False),
        ScalarHead(8, num_outputs=2, pooling="max"),
        DirectForceHead(6),
        GradientForceHead("e"),
    ):
        again = head_from_spec(head_spec(head))
        assert type(again) is type(head) and head_spec(again) == head_spec(head)
    with pytest.raises(ConfigError):
        head_from_spec({"type": "nonsense"})


def test_keymap_round_trip() -> None:
    m = tiny_model(tasks=("oc20", "oc22"))
    authors = ours_to_authors(m.state_dict(), ("oc20", "oc22"))
    assert (
        "output.out_forces.1.8.weight" in authors
        and "heads.oc22_forces.mlp.8.weight" not in authors
    )
    back, ignored = authors_to_ours(
        {**authors, "task_steps.x.value": torch.zeros(())}, ("oc20", "oc22")
    )
    assert list(back) == list(m.state_dict()) and list(ignored) == ["task_steps.x.value"]


def test_gradient_head_must_refer_to_an_energy_head() -> None:
    with pytest.raises(ConfigError):
        JMPModel(tiny_config(), {"f": GradientForceHead("missing")})


def test_checkpointing_keeps_gradients_and_saves_memory(frames: dict, monkeypatch) -> None:
    m = tiny_model(seed=3).train()
    batch = make_batch([frames["bulk"], frames["molecule"]], "oc20")

    def run(efficient: bool | str, fused: bool = False) -> tuple[dict, int]:
        m.backbone.memory_efficient = efficient
        m.backbone.fused_kernels = fused
        m.zero_grad()
        saved = [0]

        def pack(t: torch.Tensor) -> torch.Tensor:
            saved[0] += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = m(batch)
        w = torch.linspace(-1, 1, out["oc20_forces"].numel(), dtype=torch.float64)
        loss = (
            out["oc20_energy"].sum()
            + out["ani1x_energy"].sum()
            + (out["oc20_forces"].flatten() * w).sum()
        )
        loss.backward()
        return {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}, saved[0]

    plain, mem_plain = run(False)
    efficient, mem_eff = run(True)
    assert plain.keys() == efficient.keys() and len(plain) > 100
    for k in plain:
        torch.testing.assert_close(efficient[k], plain[k], rtol=1e-12, atol=1e-14)
    assert mem_eff < mem_plain / 3
    # the default without checkpointing, the fused kernels, keep much less than plain autograd
    fast, mem_fast = run(False, fused=True)
    for k in plain:
        torch.testing.assert_close(fast[k], plain[k], rtol=1e-10, atol=1e-13)
    assert mem_fast < 0.85 * mem_plain  # (0.57 at JMP-S size, where edge activations dominate)
    # "residual": the residual layers keep one pre-activation each (not two) and recompute the
    # other product in backward: the same gradients, one (rows, units) tensor less per layer
    from openjmp.model.gemnet_oc import fused as fused_kernels

    first_products = [0]
    apply = fused_kernels._ResidualStack.apply

    def counting_apply(x: torch.Tensor, scale: float, lean: bool, act_in, *ws: torch.Tensor):  # noqa: ANN001, ANN202, E501
        assert lean
        first_products[0] += x.numel() * x.element_size() * (len(ws) // 2)
        return apply(x, scale, lean, act_in, *ws)

    monkeypatch.setattr(fused_kernels._ResidualStack, "apply", counting_apply)
    lean, mem_lean = run("residual", fused=True)
    for k in plain:
        torch.testing.assert_close(lean[k], plain[k], rtol=1e-10, atol=1e-13)
    assert first_products[0] > 0 and mem_lean == mem_fast - first_products[0]


def test_automatic_checkpointing_follows_batch_size(frames: dict, monkeypatch) -> None:
    """memory_efficient=None checkpoints only batches whose activations would take more than
    half the device's memory; an explicit True / False wins; no checkpointing without
    gradients or with gradient forces."""
    from openjmp.model.gemnet_oc import backbone as bb
    from openjmp.model.gemnet_oc.graph_inputs import gemnet_graph

    m = tiny_model(seed=3).train()
    assert m.backbone.memory_efficient is None
    batch = make_batch([frames["bulk"], frames["molecule"]], "oc20")
    graph = gemnet_graph(batch, batch.pos.to(m.dtype))
    need = m.backbone.activation_bytes(graph)
    assert need == graph.main.num_edges * m.config.emb_size_edge * 250 * 8  # float64 model
    monkeypatch.setattr(bb, "device_memory_bytes", lambda device: 2 * need)
    assert m.backbone.checkpoint_modes(graph) == ("off", "off")
    monkeypatch.setattr(bb, "device_memory_bytes", lambda device: 2 * need - 2)
    assert m.backbone.checkpoint_modes(graph) == ("selective", "full")
    with torch.no_grad():
        assert m.backbone.checkpoint_modes(graph) == ("off", "off")
    m.backbone.memory_efficient = False
    assert m.backbone.checkpoint_modes(graph) == ("off", "off")
    m.backbone.memory_efficient = True
    monkeypatch.setattr(bb, "device_memory_bytes", lambda device: 2 * need)
    assert m.backbone.checkpoint_modes(graph) == ("selective", "full")
    pos = batch.pos.to(m.dtype).requires_grad_(True)
    assert m.backbone.checkpoint_modes(gemnet_graph(batch, pos)) == ("off", "off")


def test_device_memory_is_this_machines() -> None:
    """The CPU's budget is its physical memory (what /proc/meminfo calls MemTotal, or less)."""
    import os
    from pathlib import Path

    from openjmp.model.gemnet_oc.backbone import device_memory_bytes

    total = device_memory_bytes(torch.device("cpu"))
    assert 0 < total <= os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    assert total <= int(meminfo["MemTotal"].split()[0]) * 1024 + 1


def test_atomic_numbers_out_of_range(frames: dict, model: JMPModel) -> None:
    b = make_batch([frames["molecule"]], "ani1x")
    bad = type(b)(
        **{
            **{f: getattr(b, f) for f in b.__dataclass_fields__},
            "atomic_numbers": b.atomic_numbers * 0,
        }
    )
    with pytest.raises(DataError, match="1..120"):
        model(bad)


def test_float32_model_runs_on_float64_batches(frames: dict) -> None:
    m = tiny_model().float()
    out = m(make_batch([frames["molecule"]], "ani1x"))
    assert out["oc20_energy"].dtype == torch.float32 and torch.isfinite(out["oc20_forces"]).all()


def test_module_tree_is_clean() -> None:
    m = tiny_model()
    assert set(dict(m.named_children())) == {"embedding", "backbone", "heads"}
    assert isinstance(m.heads, nn.ModuleDict) and "oc20_energy" in m.heads


@pytest.mark.parametrize("fused", [False, True])
def test_heads_on_their_structures_only(frames: dict, fused: bool) -> None:
    """`structures=` runs a head on some structures: the same predictions for them, 0 for the
    others, and the same gradients for a loss that reads each structure's own head (the
    multi-task pre-training loss)."""
    m = tiny_model(seed=5).train()
    m.backbone.fused_kernels = fused
    m.backbone.memory_efficient = False
    batch = make_batch([frames["bulk"], frames["molecule"], frames["bulk"]], "oc20")
    own = torch.tensor([0, 1, 0])  # task of each structure: oc20, ani1x, oc20
    masks = {}
    for t, name in enumerate(("oc20", "ani1x")):
        masks[f"{name}_energy"] = masks[f"{name}_forces"] = own == t
    atom_own = own[batch.batch]
    w = torch.linspace(-1, 1, batch.num_atoms * 3, dtype=torch.float64).view(-1, 3)

    def run(structures: dict | None) -> tuple[dict, dict]:
        m.zero_grad()
        out = m(batch, structures=structures)
        e = torch.stack([out["oc20_energy"], out["ani1x_energy"]], dim=1)
        f = torch.stack([out["oc20_forces"], out["ani1x_forces"]], dim=1)
        loss = (
            e[torch.arange(3), own].sum() + (f[torch.arange(batch.num_atoms), atom_own] * w).sum()
        )
        loss.backward()
        grads = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
        return {k: v.detach() for k, v in out.items()}, grads

    full, g_full = run(None)
    part, g_part = run(masks)
    for name, mask in masks.items():
        rows = mask if name.endswith("energy") else mask[batch.batch]
        torch.testing.assert_close(part[name][rows], full[name][rows], rtol=1e-12, atol=1e-13)
        assert bool((part[name][~rows] == 0).all())
        assert bool((full[name][~rows] != 0).any())  # the full run did predict them
    assert g_full.keys() == g_part.keys() and len(g_full) > 100
    for k in g_full:
        torch.testing.assert_close(g_part[k], g_full[k], rtol=1e-10, atol=1e-12)


def test_structures_must_name_energy_or_direct_force_heads(frames: dict, model: JMPModel) -> None:
    batch = make_batch([frames["molecule"]], "ani1x")
    with pytest.raises(ConfigError, match="nope"):
        model(batch, structures={"nope": torch.tensor([True])})
    with pytest.raises(ConfigError, match="oc20_energy"):
        model(batch, heads=["ani1x_energy"], structures={"oc20_energy": torch.tensor([True])})
    with pytest.raises(ConfigError, match="bool tensor"):
        model(batch, structures={"ani1x_energy": torch.tensor([True, False])})
    with pytest.raises(ConfigError, match="bool tensor"):
        model(batch, structures={"ani1x_forces": torch.tensor([1])})
