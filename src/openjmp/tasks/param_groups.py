"""Parameter-name rules of the JMP recipe: shared-gradient scaling, layer-wise LR decay, freezing.

All three work on parameter *names* in the authors' backbone naming (``backbone.bases.…``,
``backbone.int_blocks.{i}.…``, ``backbone.out_blocks.{j}.…``, ``embedding.…``; see
``jmp_l_state_dict.tsv``), so they apply to any module tree that uses those names.

1. Shared-parameter gradient scaling (jmp-reference §1.4): the basis projections in
   ``backbone.bases`` are used by every block, so their gradients are divided by num_blocks
   (``mlp_rbf_out``: num_blocks + 1) after backward and before clipping, in pre-training and
   fine-tuning alike. In the LightningModule::

       def on_after_backward(self):
           # changes numbers: the authors divide shared-basis gradients by their use count
           scale_shared_gradients(self, num_blocks=self.backbone_config.num_blocks)

2. Layer-wise LR decay (§3.1): ``llrd_param_groups(model.named_parameters(), base_lr,
   JMP_L_LLRD, num_blocks=6)`` returns optimizer groups ``blocks_i`` = int_blocks.i +
   out_blocks.(i+1) (+ out_blocks.0 for i = 0), ``embedding`` and everything else in ``rest``
   (base lr), each with its ``lr_scale``; `openjmp.tasks.schedules.llrd_min_lr_factor` turns
   the scales into per-group cosine floors.

3. Freezing: ``freeze(model, ["embedding", "blocks_0", "backbone.bases.*"])`` sets
   ``requires_grad = False`` on every match of a named set or an fnmatch glob.

The named sets (`openjmp.model.parameter_sets.named_patterns`) and the check of LLRD group
names belong to the model's parameter tree and live there.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from openjmp.model.parameter_sets import check_llrd_multipliers, named_patterns

SHARED_BASIS_LAYERS: tuple[str, ...] = (
    "mlp_rbf_tint",
    "mlp_cbf_tint",
    "mlp_rbf_h",
    "mlp_rbf_qint",
    "mlp_cbf_qint",
    "mlp_sbf_qint",
    "mlp_rbf_aeint",
    "mlp_cbf_aeint",
    "mlp_rbf_eaint",
    "mlp_cbf_eaint",
    "mlp_rbf_aint",
)
"""Shared projections whose gradients are divided by num_blocks (``mlp_rbf_out``: + 1)."""

JMP_L_LLRD: dict[str, float] = {
    "embedding": 0.3,
    "blocks_0": 0.55,
    "blocks_1": 0.40,
    "blocks_2": 0.30,
    "blocks_3": 0.40,
    "blocks_4": 0.55,
    "blocks_5": 0.625,
}
"""The authors' JMP-L layer-wise LR multipliers (6 blocks); unlisted parameters use 1.0."""

NamedParams = Iterable[tuple[str, nn.Parameter]]

_SHARED_RE = re.compile(r"(?:^|\.)bases\.(mlp_\w+?)\.(?:linear\.)?weight$")


def _named(model_or_named_params: nn.Module | NamedParams) -> list[tuple[str, nn.Parameter]]:
    if isinstance(model_or_named_params, nn.Module):
        return list(model_or_named_params.named_parameters())
    return list(model_or_named_params)


def shared_parameter_factors(num_blocks: int) -> dict[str, int]:
    """{shared layer name: gradient divisor} for a backbone with ``num_blocks`` blocks."""
    if num_blocks < 1:
        raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
    factors = dict.fromkeys(SHARED_BASIS_LAYERS, num_blocks)
    factors["mlp_rbf_out"] = num_blocks + 1
    return factors


def scale_shared_gradients(
    model_or_named_params: nn.Module | NamedParams, num_blocks: int
) -> dict[str, int]:
    """Divide the gradients of the shared basis projections in place; returns {name: divisor}.

    Matches ``…bases.<layer>.weight`` and ``…bases.<layer>.linear.weight`` under any prefix
    (``backbone.``, DDP's ``module.``, …). Parameters without a gradient (frozen, unused) are
    left alone and not listed. Raises if the model has none of the shared layers at all, which
    means the names do not follow the authors' backbone naming.
    """
    factors = shared_parameter_factors(num_blocks)
    scaled: dict[str, int] = {}
    found = False
    for name, p in _named(model_or_named_params):
        m = _SHARED_RE.search(name)
        if m is None or m.group(1) not in factors:
            continue
        found = True
        if p.grad is not None:
            p.grad.div_(factors[m.group(1)])
            scaled[name] = factors[m.group(1)]
    if not found:
        raise ValueError(
            "no shared basis parameters (…bases.mlp_rbf_tint.linear.weight, …) found: the "
            "model's parameter names do not follow the authors' GemNet-OC naming"
        )
    return scaled


# ------------------------------------------------------------------------ named parameter sets


def matching_names(names: Iterable[str], patterns: Sequence[str]) -> list[str]:
    """Names matching any fnmatch glob, in the given order."""
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]


def _expand(entry: str, sets: Mapping[str, list[str]]) -> list[str]:
    return sets[entry] if entry in sets else [entry]


def llrd_multipliers_for_depth(
    num_blocks: int, reference: Mapping[str, float] = JMP_L_LLRD
) -> dict[str, float]:
    """Resample a block profile (default JMP-L's) to another depth, linearly in relative depth.

    blocks_i of the new model takes the reference profile at position i/(n − 1) of its depth;
    the embedding keeps its multiplier. The U shape and both end values are preserved. Values
    are rounded to 3 decimals so presets read cleanly.
    """
    ref = [reference[f"blocks_{i}"] for i in range(sum(k.startswith("blocks_") for k in reference))]
    out = {"embedding": reference["embedding"]} if "embedding" in reference else {}
    for i in range(num_blocks):
        if len(ref) == 1:
            out[f"blocks_{i}"] = ref[0]
            continue
        x = i * (len(ref) - 1) / max(num_blocks - 1, 1)
        lo = min(int(x), len(ref) - 2)
        out[f"blocks_{i}"] = round(ref[lo] + (x - lo) * (ref[lo + 1] - ref[lo]), 3)
    return out


def llrd_param_groups(
    model_or_named_params: nn.Module | NamedParams,
    base_lr: float,
    multipliers: Mapping[str, float],
    num_blocks: int,
    **group_options: Any,
) -> list[dict[str, Any]]:
    """Optimizer parameter groups for layer-wise LR decay.

    One group per multiplier (in the given order), then ``rest`` at the base lr. Each group is
    ``{"params", "lr": base_lr × scale, "lr_scale", "name", "param_names", **group_options}``.
    Frozen parameters (requires_grad False) are left out, and so are groups left empty by
    freezing; a group whose names match no parameter at all raises (a naming mismatch).
    """
    check_llrd_multipliers(multipliers, num_blocks)
    named = _named(model_or_named_params)
    sets = named_patterns(num_blocks)
    taken: set[str] = set()
    groups: list[dict[str, Any]] = []
    for group, scale in [*multipliers.items(), ("rest", 1.0)]:
        if group == "rest":
            members = [(n, p) for n, p in named if n not in taken]
        else:
            names = set(matching_names([n for n, _ in named], sets[group])) - taken
            if not names:
                raise ValueError(
                    f"layer-wise LR group {group!r} ({sets[group]}) matches no parameter"
                )
            members = [(n, p) for n, p in named if n in names]
        taken.update(n for n, _ in members)
        members = [(n, p) for n, p in members if p.requires_grad]
        if members:
            groups.append(
                {
                    "params": [p for _, p in members],
                    "lr": base_lr * scale,
                    "lr_scale": scale,
                    "name": group,
                    "param_names": [n for n, _ in members],
                    **group_options,
                }
            )
    return groups


def freeze(
    model_or_named_params: nn.Module | NamedParams, entries: Sequence[str], num_blocks: int
) -> list[str]:
    """Set requires_grad = False on parameters matching named sets (see `named_patterns`) or
    fnmatch globs; returns the frozen names. Raises if an entry matches nothing (a typo)."""
    named = _named(model_or_named_params)
    sets = named_patterns(num_blocks)
    frozen: list[str] = []
    for entry in entries:
        names = matching_names([n for n, _ in named], _expand(entry, sets))
        if not names:
            raise ValueError(
                f"freeze entry {entry!r} matches no parameter (named sets: "
                f"{', '.join(sorted(sets))}; or a glob like 'backbone.bases.*')"
            )
        frozen.extend(n for n in names if n not in frozen)
    chosen = set(frozen)
    with torch.no_grad():
        for n, p in named:
            if n in chosen:
                p.requires_grad_(False)
    return frozen
