"""Read a GemNet-OC architecture off a state dict in the authors' key naming.

Checkpoints do not always carry a complete config (the tiny fixture's ``hyper_parameters``
name only a few fields), but every size is fixed by some weight's shape. `infer_backbone_sizes`
returns those sizes under the authors' config names; `merge_config` combines them with the
checkpoint's own config values, and a disagreement is a wrong-architecture error, never a guess.
Settings no weight reveals (activation, envelope exponent, the 12 Å basis cutoff) come from
the checkpoint's config when it has them, else from the JMP presets.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from openjmp.errors import CheckpointError, ConfigError
from openjmp.model.gemnet_oc.config import GemNetOCConfig

_B = "backbone."


def _count(sd: Mapping[str, Tensor], pattern: str) -> int:
    """Number of distinct integers matched by the ``(\\d+)`` group of ``pattern``."""
    rx = re.compile(pattern)
    return len({m.group(1) for k in sd if (m := rx.match(k))})


def _shape(sd: Mapping[str, Tensor], key: str, source: str) -> tuple[int, ...]:
    if key not in sd:
        raise CheckpointError(f"{source}: missing key {key!r}; not a GemNet-OC (JMP) state dict")
    return tuple(sd[key].shape)


def infer_backbone_sizes(sd: Mapping[str, Tensor], source: str = "state dict") -> dict[str, Any]:
    """Sizes and counts of the backbone + embedding, under the authors' config names."""
    b = _B
    num_elements, a = _shape(sd, "embedding.atom_embedding.weight", source)
    (r,) = _shape(sd, b + "bases.radial_basis.rbf.offset", source)
    rbf, _ = _shape(sd, b + "bases.mlp_rbf_h.linear.weight", source)
    e, _ = _shape(sd, b + "bases.edge_emb.dense.linear.weight", source)
    _, s, cbf = _shape(sd, b + "bases.mlp_cbf_tint.weight", source)
    _, _, sbf = _shape(sd, b + "bases.mlp_sbf_qint.weight", source)
    i0 = b + "int_blocks.0."
    trip_in, _ = _shape(sd, i0 + "trip_interaction.down_projection.linear.weight", source)
    _, trip_out = _shape(sd, i0 + "trip_interaction.up_projection_ca.linear.weight", source)
    quad_in, _ = _shape(sd, i0 + "quad_interaction.down_projection.linear.weight", source)
    _, quad_out = _shape(sd, i0 + "quad_interaction.up_projection_ca.linear.weight", source)
    aint_in, _ = _shape(sd, i0 + "atom_interaction.down_projection.linear.weight", source)
    _, aint_out = _shape(sd, i0 + "atom_interaction.up_projection.linear.weight", source)
    ib = re.escape(i0)
    ob = re.escape(b + "out_blocks.0.")
    direct = any(k.startswith(b + "out_mlp_F.") for k in sd)
    return {
        "num_elements": num_elements,
        "emb_size_atom": a,
        "num_radial": r,
        "emb_size_rbf": rbf,
        "emb_size_edge": e,
        "num_spherical": s,
        "emb_size_cbf": cbf,
        "emb_size_sbf": sbf,
        "emb_size_trip_in": trip_in,
        "emb_size_trip_out": trip_out,
        "emb_size_quad_in": quad_in,
        "emb_size_quad_out": quad_out,
        "emb_size_aint_in": aint_in,
        "emb_size_aint_out": aint_out,
        "num_blocks": _count(sd, re.escape(b) + r"int_blocks\.(\d+)\."),
        "num_before_skip": _count(sd, ib + r"layers_before_skip\.(\d+)\."),
        "num_after_skip": _count(sd, ib + r"layers_after_skip\.(\d+)\."),
        "num_atom_emb_layers": _count(sd, ib + r"atom_emb_layers\.(\d+)\."),
        "num_concat": _count(sd, ib + r"residual_m\.(\d+)\."),
        "num_atom": _count(sd, ob + r"layers\.(\d+)\.dense_mlp\."),
        "num_output_afteratom": _count(sd, ob + r"seq_energy2\.(\d+)\."),
        "num_global_out_layers": _count(sd, re.escape(b) + r"out_mlp_E\.out_mlp\.(\d+)\.") - 1,
        "direct_forces": direct,
        "regress_forces": direct,
    }


def infer_pretrain_heads(sd: Mapping[str, Tensor]) -> tuple[int, int]:
    """(number of tasks, Linear layers per head) of the authors' ``output.out_energy.*`` heads."""
    n_tasks = _count(sd, r"output\.out_energy\.(\d+)\.")
    n_lin = _count(sd, r"output\.out_energy\.0\.(\d+)\.weight")
    return n_tasks, n_lin


def merge_config(
    sizes: Mapping[str, Any], declared: Mapping[str, Any] | None, source: str
) -> GemNetOCConfig:
    """`GemNetOCConfig` from the checkpoint's declared config (may be partial or None) and the
    sizes read off its weights; a declared value contradicting a weight shape raises."""
    declared = dict(declared or {})
    for key, value in sizes.items():
        if key in declared and declared[key] != value:
            raise CheckpointError(
                f"{source}: wrong architecture: the config says {key}={declared[key]!r} "
                f"but the weights have {key}={value!r}"
            )
    merged = {**declared, **sizes}
    if merged.get("absolute_rbf_cutoff") is None:
        merged["absolute_rbf_cutoff"] = 12.0  # JMP's basis cutoff (the authors' class has None)
    try:
        return GemNetOCConfig.from_dict(merged, source=source)
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None
