"""Where a run's backbone comes from: its architecture and its starting weights (pre-training
and fine-tuning alike).

* `build_backbone(model, direct_forces=..., edge_dropout=...)`: the one place a run's
  GemNet-OC config is made: the ``model.backbone`` preset with the fields it sets
  (`preset_architecture`), with the force branch the heads need (direct forces on, or off for
  gradient forces and scalars, as the authors) and the edge-dropout boost; and, when
  ``model.checkpoint`` is set, that checkpoint's embedding and backbone weights (the authors'
  jmp-s.pt / jmp-l.pt, an openjmp pre-training ``last.ckpt`` or ``model.pt``, or an openjmp
  fine-tuned checkpoint), EMA weights by default (``model.ema_weights``), checked to be the
  architecture the config names: a mismatch is a `ConfigError` listing the fields, never a
  silent partial load. Scale factors come with the weights (buffers).
* `load_pretrained`: copy them into a fresh model; only the new heads stay random.
* `resolve_architecture`: for ``model.architecture: checkpoint`` (the ``user-*`` presets), the
  config with the checkpoint's architecture written into ``model.backbone`` and the layer-wise
  LR profile resampled to its depth, before anything else reads the config (and before the
  run's ``config.yaml`` is written, so the run reproduces from its own files).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from openjmp.config.common import BackboneConfig, ModelConfig
from openjmp.config.finetune import EnergyForcesHead, FinetuneConfig, ForcesHead
from openjmp.errors import CheckpointError, ConfigError
from openjmp.model.gemnet_oc.config import GemNetOCConfig
from openjmp.model.jmp_model import JMPModel

ARCHITECTURE_FIELDS: tuple[str, ...] = tuple(
    f.name
    for f in dataclasses.fields(GemNetOCConfig)
    if f.name.startswith(("num_", "emb_size_")) and f.name != "num_targets"
) + ("absolute_rbf_cutoff", "activation")
"""Config fields that fix the weights' shapes or meaning (compared with a checkpoint's)."""

FORCE_BRANCH = ("backbone.out_mlp_F.", ".seq_forces.", ".dense_rbf_F.", ".scale_rbf_F.")
"""Backbone keys of the direct-force branch (dropped when the heads do not use it)."""


def preset_architecture(backbone: BackboneConfig) -> GemNetOCConfig:
    """``model.backbone``: the JMP-S or JMP-L preset with the fields the config sets."""
    base = GemNetOCConfig.jmp_s() if backbone.preset == "jmp-s" else GemNetOCConfig.jmp_l()
    try:
        return base.replace(**backbone.overrides())
    except ConfigError as exc:
        raise ConfigError(f"model.backbone: {exc}") from None


def build_backbone(
    model: ModelConfig,
    *,
    direct_forces: bool,
    edge_dropout: float = 0.0,
    dtype: torch.dtype = torch.float32,
) -> tuple[GemNetOCConfig, dict[str, Tensor] | None]:
    """(the run's GemNet-OC config, the checkpoint's embedding + backbone weights or None).

    ``direct_forces``: the backbone's force branch (direct-force heads need it); the
    ``edge_dropout`` probability switches on the 1/(1 − p) output boost in train mode (the
    edges themselves are dropped in the data pipeline).
    """
    base, state = preset_architecture(model.backbone), None
    if model.checkpoint is not None:  # the checkpoint's own settings, its architecture checked
        base, state = _pretrained_state(model, base, dtype)
    config = base.replace(
        regress_forces=direct_forces,
        direct_forces=direct_forces,
        edge_dropout=edge_dropout if edge_dropout > 0 else None,
        scale_file=None,
    )
    return config, state


def checkpoint_architecture(path: Path) -> GemNetOCConfig:
    """The backbone config of a checkpoint (any file `openjmp.model.checkpoint` reads)."""
    from openjmp.model.checkpoint import load_checkpoint

    return load_checkpoint(path, device="meta").config


def resolve_architecture(config: FinetuneConfig) -> FinetuneConfig:
    """``config`` with the checkpoint's architecture when ``model.architecture`` is
    "checkpoint" (module docstring); unchanged otherwise. Fields the config sets in
    ``model.backbone`` must agree with the checkpoint (a `ConfigError` lists those that do not).
    """
    import warnings

    from openjmp.model.parameter_sets import check_llrd_multipliers
    from openjmp.tasks.param_groups import llrd_multipliers_for_depth

    model = config.model
    if model.architecture != "checkpoint" or model.checkpoint is None:
        return config
    ck = checkpoint_architecture(Path(model.checkpoint))
    fields = [f for f in type(model.backbone).model_fields if f != "preset"]
    explicit = model.backbone.overrides()
    wrong = {k: (getattr(ck, k), v) for k, v in explicit.items() if getattr(ck, k) != v}
    if wrong:
        listing = ", ".join(f"{k}: checkpoint {a!r}, config {b!r}" for k, (a, b) in wrong.items())
        raise ConfigError(
            f"model.checkpoint {model.checkpoint}: model.backbone sets fields the checkpoint does "
            f"not have ({listing}); with model.architecture 'checkpoint' leave them out"
        )
    data = config.model_dump(mode="json")
    data["model"]["backbone"].update({f: getattr(ck, f) for f in fields})
    llrd = config.llrd
    if llrd is not None:
        depth = sum(k.startswith("blocks_") for k in llrd)
        if depth and depth != ck.num_blocks:
            data["llrd"] = llrd_multipliers_for_depth(ck.num_blocks, reference=llrd)
        try:
            check_llrd_multipliers(data["llrd"], ck.num_blocks)
        except ValueError as exc:
            raise ConfigError(f"llrd: {exc}") from None
    if config.data.graph.cutoff > ck.absolute_rbf_cutoff:
        warnings.warn(
            f"data.graph.cutoff {config.data.graph.cutoff} Å is beyond the checkpoint's radial "
            f"basis cutoff {ck.absolute_rbf_cutoff} Å: edges longer than that carry no signal "
            f"and only cost time (set data.graph.cutoff={ck.absolute_rbf_cutoff:g})",
            stacklevel=2,
        )
    return type(config).model_validate(data)


def uses_direct_forces(config: FinetuneConfig) -> bool:
    """Whether a fine-tuning config's heads need the backbone's direct-force branch."""
    return any(
        isinstance(h, EnergyForcesHead | ForcesHead) and h.forces == "direct" for h in config.heads
    )


def _differences(a: GemNetOCConfig, b: GemNetOCConfig) -> dict[str, tuple[object, object]]:
    return {
        f: (getattr(a, f), getattr(b, f))
        for f in ARCHITECTURE_FIELDS
        if getattr(a, f) != getattr(b, f)
    }


def _pretrained_state(
    model_cfg: ModelConfig, wanted: GemNetOCConfig, dtype: torch.dtype
) -> tuple[GemNetOCConfig, dict[str, Tensor]]:
    """(checkpoint's backbone config, its ``embedding.*`` + ``backbone.*`` weights in ``dtype``),
    checked against the ``wanted`` architecture."""
    from openjmp.model.checkpoint import load_checkpoint

    path = Path(model_cfg.checkpoint)  # type: ignore[arg-type]
    model = load_checkpoint(path, ema=model_cfg.ema_weights, dtype=dtype)
    diff = _differences(model.config, wanted)
    if diff:
        listing = ", ".join(f"{k}: checkpoint {v[0]!r}, config {v[1]!r}" for k, v in diff.items())
        raise ConfigError(
            f"model.checkpoint {path} does not match model.backbone (preset "
            f"{model_cfg.backbone.preset!r} + overrides): {listing}. Use the preset of the "
            "checkpoint (jmp-s-<name> presets for jmp-s.pt) or set model.backbone to match"
        )
    state = {
        k: v.detach().clone()
        for k, v in model.state_dict().items()
        if k.startswith(("embedding.", "backbone."))
    }
    return model.config, state


def load_pretrained(model: JMPModel, state: Mapping[str, Tensor], source: object) -> list[str]:
    """Copy ``state`` into ``model``; returns the parameter names left at their initial values
    (the new heads, and the force branch when the checkpoint has none)."""
    direct = model.config.direct_forces
    state = {k: v for k, v in state.items() if direct or not any(p in k for p in FORCE_BRANCH)}
    try:
        missing, unexpected = model.load_state_dict(dict(state), strict=False)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{source}: weights do not fit the fine-tuning model: {exc}"
        ) from None
    bad = [k for k in missing if not (k.startswith("heads.") or any(p in k for p in FORCE_BRANCH))]
    if unexpected or bad:
        raise CheckpointError(
            f"{source}: weights do not fit the fine-tuning model: missing {bad[:5]}, "
            f"unexpected {list(unexpected)[:5]}"
        )
    return list(missing)


def read_scale_factors(path: Path) -> dict[str, float]:
    """Scale factors by module path from a ``.json`` dict or a torch-saved dict of scalars."""
    try:
        if path.suffix == ".json":
            data = json.loads(path.read_text())
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
        return {str(k): float(v) for k, v in dict(data).items()}
    except (OSError, ValueError, TypeError, RuntimeError) as exc:
        raise ConfigError(f"model.scale_file {path}: cannot read scale factors ({exc})") from None


def apply_scale_file(model: JMPModel, scale_file: str | None, *, from_checkpoint: bool) -> None:
    """Fill the backbone's scale factors from ``scale_file`` (from scratch), or check that the
    file agrees with the checkpoint's (errata 5: a different file is an error)."""
    if scale_file is None:
        return
    path = Path(scale_file)
    if not path.is_file():
        raise ConfigError(
            f"model.scale_file {scale_file!r}: no such file (give a .json or .pt dict of "
            "scale factors by module path; the published checkpoints carry theirs already)"
        )
    values = read_scale_factors(path)
    factors = model.backbone.scale_factors()
    if from_checkpoint:
        for name, v in values.items():
            if name in factors and not torch.isclose(
                factors[name].scale_factor, torch.tensor(v, dtype=factors[name].scale_factor.dtype)
            ):
                raise ConfigError(
                    f"model.scale_file {path}: {name} = {v} but the checkpoint holds "
                    f"{float(factors[name].scale_factor)}; use the checkpoint's own factors (null)"
                )
        return
    try:
        model.backbone.set_scale_factors(values)
    except KeyError as exc:
        raise ConfigError(f"model.scale_file {path}: {exc}") from None
