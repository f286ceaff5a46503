"""Named sets of the JMP model's parameters, in the authors' backbone naming.

``embedding.…``, ``backbone.bases.…``, ``backbone.int_blocks.{i}.…``, ``backbone.out_blocks.{j}.…``
(see ``jmp_l_state_dict.tsv``): the names that freezing and layer-wise LR decay
(`openjmp.tasks.param_groups`) and the config's ``llrd`` and ``freeze`` fields refer to.
"""

from __future__ import annotations

from collections.abc import Mapping


def named_patterns(num_blocks: int) -> dict[str, list[str]]:
    """Named sets of parameter globs (the authors' PARAMETER_PATTERNS, fixed where they were broken).

    ``embedding``, ``bases``, ``backbone``, ``int_blocks_i``, ``out_blocks_j``, ``blocks_i``
    (int_blocks.i + out_blocks.(i+1), blocks_0 also out_blocks.0), ``out_mlp`` (final MLPs).
    """
    sets: dict[str, list[str]] = {
        "embedding": ["embedding.*"],
        "bases": ["backbone.bases.*"],
        "backbone": ["backbone.*"],
        "out_mlp": ["backbone.out_mlp_E.*", "backbone.out_mlp_F.*"],
    }
    for i in range(num_blocks):
        sets[f"int_blocks_{i}"] = [f"backbone.int_blocks.{i}.*"]
        sets[f"blocks_{i}"] = [f"backbone.int_blocks.{i}.*", f"backbone.out_blocks.{i + 1}.*"]
    sets["blocks_0"].append("backbone.out_blocks.0.*")
    for j in range(num_blocks + 1):
        sets[f"out_blocks_{j}"] = [f"backbone.out_blocks.{j}.*"]
    return sets


def check_llrd_multipliers(multipliers: Mapping[str, float], num_blocks: int) -> None:
    """Raise ValueError for group names other than embedding / blocks_0..blocks_{n-1}, or
    multipliers that are not positive."""
    allowed = {"embedding", *(f"blocks_{i}" for i in range(num_blocks))}
    unknown = sorted(set(multipliers) - allowed)
    if unknown:
        raise ValueError(
            f"unknown layer-wise LR group(s) {unknown} for a {num_blocks}-block backbone; "
            f"allowed: embedding, blocks_0..blocks_{num_blocks - 1}"
        )
    bad = {k: v for k, v in multipliers.items() if not v > 0}
    if bad:
        raise ValueError(f"layer-wise LR multipliers must be positive: {bad}")
