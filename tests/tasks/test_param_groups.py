"""Shared-gradient scaling, layer-wise LR groups and freezing on the authors' parameter names.

The module trees are dummies built from ../shared/reference/jmp_{s,l}_state_dict.tsv (the key
list of the published checkpoints), with one-element parameters: only the names matter. Expected
group contents are recomputed from the names with plain string prefixes, independently of the
fnmatch patterns under test.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from openjmp.tasks.param_groups import (
    JMP_L_LLRD,
    freeze,
    llrd_multipliers_for_depth,
    llrd_param_groups,
    scale_shared_gradients,
)
from openjmp.tasks.schedules import WarmupCosineRLP, llrd_min_lr_factor

BUFFERS = ("rbf.offset", "rbf.temps", "scale_factor")


def parameter_names(reference_dir: Path, size: str) -> list[str]:
    lines = (reference_dir / f"jmp_{size}_state_dict.tsv").read_text().splitlines()[1:]
    names = [line.split("\t")[0] for line in lines]
    return [
        n
        for n in names
        if not n.endswith(BUFFERS)
        and not n.startswith("task_steps")
        and ".seq_energy_pre." not in n
    ]


def dummy_model(names: list[str]) -> nn.Module:
    root = nn.Module()
    for name in names:
        *path, leaf = name.split(".")
        mod = root
        for part in path:
            if not hasattr(mod, part):
                mod.add_module(part, nn.Module())
            mod = getattr(mod, part)
        mod.register_parameter(leaf, nn.Parameter(torch.zeros(1)))
    return root


@pytest.fixture(scope="module")
def l_names(reference_dir: Path) -> list[str]:
    names = parameter_names(reference_dir, "l")
    assert len(names) == 585  # param_counts.json: num_parameter_tensors for JMP-L
    return names


@pytest.mark.parametrize("size,num_blocks", [("s", 4), ("l", 6)])
def test_shared_gradient_scaling(reference_dir: Path, size: str, num_blocks: int) -> None:
    model = dummy_model(parameter_names(reference_dir, size))
    for p in model.parameters():
        p.grad = torch.full_like(p, 12.0)
    scaled = scale_shared_gradients(model, num_blocks)
    expected = {
        f"backbone.bases.{layer}.{'' if layer.startswith(('mlp_cbf', 'mlp_sbf')) or layer == 'mlp_rbf_aint' else 'linear.'}weight": num_blocks
        for layer in (
            "mlp_rbf_tint mlp_cbf_tint mlp_rbf_h mlp_rbf_qint mlp_cbf_qint mlp_sbf_qint "
            "mlp_rbf_aeint mlp_cbf_aeint mlp_rbf_eaint mlp_cbf_eaint mlp_rbf_aint"
        ).split()
    }
    expected["backbone.bases.mlp_rbf_out.linear.weight"] = num_blocks + 1
    assert scaled == expected
    for name, p in model.named_parameters():
        assert p.grad.item() == pytest.approx(12.0 / expected.get(name, 1))


def test_shared_scaling_any_prefix_and_frozen(l_names: list[str]) -> None:
    model = dummy_model(l_names)
    for p in model.backbone.parameters():
        p.grad = torch.ones_like(p)
    model.backbone.bases.mlp_rbf_h.linear.weight.grad = None  # frozen: no gradient
    scaled = scale_shared_gradients(model.backbone, 6)  # names start at "bases."
    assert len(scaled) == 11 and "bases.mlp_rbf_h.linear.weight" not in scaled
    with pytest.raises(ValueError, match="authors' GemNet-OC naming"):
        scale_shared_gradients(nn.Linear(2, 2), 6)


def _prefixes(names: list[str], *prefixes: str) -> set[str]:
    return {n for n in names if n.startswith(prefixes)}


def test_jmp_l_llrd_groups(l_names: list[str]) -> None:
    model = dummy_model(l_names)
    groups = llrd_param_groups(model, 8e-5, JMP_L_LLRD, num_blocks=6, weight_decay=0.1)
    by_name = {g["name"]: g for g in groups}
    assert list(by_name) == [*JMP_L_LLRD, "rest"]
    assert set(by_name["embedding"]["param_names"]) == {"embedding.atom_embedding.weight"}
    assert set(by_name["blocks_0"]["param_names"]) == _prefixes(
        l_names, "backbone.int_blocks.0.", "backbone.out_blocks.0.", "backbone.out_blocks.1."
    )
    for i in range(1, 6):
        assert set(by_name[f"blocks_{i}"]["param_names"]) == _prefixes(
            l_names, f"backbone.int_blocks.{i}.", f"backbone.out_blocks.{i + 1}."
        )
    assert set(by_name["rest"]["param_names"]) == _prefixes(
        l_names, "backbone.bases.", "backbone.out_mlp_E.", "backbone.out_mlp_F.", "output."
    )
    all_names = [n for g in groups for n in g["param_names"]]
    assert sorted(all_names) == sorted(l_names)  # each parameter in exactly one group
    for g in groups:
        assert g["lr"] == pytest.approx(8e-5 * JMP_L_LLRD.get(g["name"], 1.0))
        assert g["weight_decay"] == 0.1 and len(g["params"]) == len(g["param_names"])


def test_llrd_groups_drive_the_finetune_schedule(l_names: list[str]) -> None:
    groups = llrd_param_groups(dummy_model(l_names), 8e-5, JMP_L_LLRD, num_blocks=6)
    opt = torch.optim.AdamW(groups, betas=(0.9, 0.95), weight_decay=0.1)
    factors = [llrd_min_lr_factor(g["lr_scale"]) for g in opt.param_groups]
    sched = WarmupCosineRLP(opt, warmup_steps=2, max_steps=4, min_lr_factors=factors)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx(
        [0.8e-5 * s for s in (*JMP_L_LLRD.values(), 1.0)]
    )
    for _ in range(4):
        opt.step()
        sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([8e-6] * 8)  # all at 0.1 x base


def test_llrd_multipliers_for_other_depths() -> None:
    assert llrd_multipliers_for_depth(6) == JMP_L_LLRD
    assert llrd_multipliers_for_depth(4) == {
        "embedding": 0.3,
        "blocks_0": 0.55,
        "blocks_1": 0.333,
        "blocks_2": 0.45,
        "blocks_3": 0.625,
    }


def test_llrd_rejects_groups_the_backbone_lacks(reference_dir: Path) -> None:
    model = dummy_model(parameter_names(reference_dir, "s"))
    with pytest.raises(
        ValueError, match=r"unknown layer-wise LR group\(s\) \['blocks_4', 'blocks_5'\]"
    ):
        llrd_param_groups(model, 1e-4, JMP_L_LLRD, num_blocks=4)
    with pytest.raises(ValueError, match="matches no parameter"):
        llrd_param_groups(nn.Linear(2, 2), 1e-4, {"embedding": 0.3}, num_blocks=4)


def test_freezing(l_names: list[str]) -> None:
    model = dummy_model(l_names)
    frozen = freeze(model, ["embedding", "blocks_0", "backbone.bases.mlp_rbf_h.*"], num_blocks=6)
    expected = _prefixes(
        l_names,
        "embedding.",
        "backbone.int_blocks.0.",
        "backbone.out_blocks.0.",
        "backbone.out_blocks.1.",
        "backbone.bases.mlp_rbf_h.",
    )
    assert set(frozen) == expected
    assert {n for n, p in model.named_parameters() if not p.requires_grad} == expected
    groups = llrd_param_groups(model, 1e-4, JMP_L_LLRD, num_blocks=6)
    assert [g["name"] for g in groups] == [
        "blocks_1",
        "blocks_2",
        "blocks_3",
        "blocks_4",
        "blocks_5",
        "rest",
    ]
    assert not expected & {n for g in groups for n in g["param_names"]}


def test_freeze_whole_backbone_and_typos(l_names: list[str]) -> None:
    model = dummy_model(l_names)
    frozen = freeze(model, ["backbone"], num_blocks=6)
    assert set(frozen) == _prefixes(l_names, "backbone.")
    with pytest.raises(ValueError, match="'embeding' matches no parameter"):
        freeze(model, ["embeding"], num_blocks=6)
