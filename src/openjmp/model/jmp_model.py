"""`JMPModel`: atom embedding + GemNet-OC backbone + a dictionary of named heads.

``forward(batch)`` returns a dict of *raw* head outputs: one entry per head (energies (B,),
forces (N, 3), scalars (B,) or (B, k)), requested derivatives (gradient forces (N, 3), stress
(B, 3, 3)) and ``"embedding"``, the backbone's per-atom features (N, emb_atom). Raw outputs are
what training compares with normalised targets; `JMPModel.to_physical` is the one place they
become eV, eV/Å, eV/Å³ and the scalar targets' units, with each head's `HeadInfo` (its output
transform, graph setting and training elements, saved with the weights).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any, Literal

import torch
from torch import Tensor, nn

from openjmp.errors import ConfigError
from openjmp.graph.batch import Batch
from openjmp.graph.scatter import segment_sum
from openjmp.model import allocator
from openjmp.model.embedding import AtomEmbedding
from openjmp.model.gemnet_oc import checkpointing, fused
from openjmp.model.gemnet_oc.backbone import GemNetOCBackbone
from openjmp.model.gemnet_oc.config import GemNetOCConfig
from openjmp.model.gemnet_oc.graph_inputs import gemnet_graph
from openjmp.model.heads import (
    DirectForceHead,
    EnergyHead,
    GradientForceHead,
    PooledHead,
    ScalarHead,
)
from openjmp.model.outputs import INFO_KEYS, HeadInfo, OutputTransform

PRETRAIN_TASKS: tuple[str, ...] = ("oc20", "oc22", "ani1x", "transition1x")
"""The authors' pre-training tasks, in head order (task index t of ``output.out_*.{t}``)."""

EMBEDDING_KEY = "embedding"

_HEAD_TYPES: dict[str, type[nn.Module]] = {
    "energy": EnergyHead,
    "scalar": ScalarHead,
    "direct_forces": DirectForceHead,
    "gradient_forces": GradientForceHead,
    "pooled": PooledHead,
}


def head_spec(head: nn.Module) -> dict[str, Any]:
    """A JSON-able description of a head, enough to rebuild it (`head_from_spec`)."""
    if isinstance(head, GradientForceHead):
        return {"type": "gradient_forces", "energy": head.energy}
    if isinstance(head, PooledHead):
        return {
            "type": "pooled",
            "emb_size": int(head.feature_mean.shape[0]),
            "pooling": head.pooling,
            "hidden": head.hidden,
            "num_outputs": head.num_outputs,
            "scalar": head.is_scalar,
        }
    if isinstance(head, EnergyHead):
        lin = [m for m in head.mlp if isinstance(m, nn.Linear)]
        return {
            "type": "scalar" if isinstance(head, ScalarHead) else "energy",
            "emb_size": lin[0].in_features,
            "num_mlps": len(lin),
            "num_outputs": head.num_outputs,
            "pooling": head.pooling,
            "bias": lin[0].bias is not None,
            "activation": _activation_name(head.mlp),
        }
    if isinstance(head, DirectForceHead):
        lin = [m for m in head.mlp if isinstance(m, nn.Linear)]
        return {
            "type": "direct_forces",
            "emb_size": lin[0].in_features,
            "num_mlps": len(lin),
            "bias": lin[0].bias is not None,
            "activation": _activation_name(head.mlp),
        }
    raise ConfigError(f"cannot describe head of type {type(head).__name__}")


def _activation_name(seq: nn.Sequential) -> str | None:
    from openjmp.model.gemnet_oc.layers import ScaledSiLU

    for m in seq:
        if isinstance(m, ScaledSiLU):
            return "scaled_silu"
        if isinstance(m, nn.SiLU):
            return "silu"
    return None


def head_from_spec(spec: Mapping[str, Any]) -> nn.Module:
    """Inverse of `head_spec` (the `HeadInfo` keys of a saved entry are ignored here)."""
    spec = {k: v for k, v in spec.items() if k not in INFO_KEYS}
    kind = spec.pop("type", None)
    cls = _HEAD_TYPES.get(str(kind))
    if cls is None:
        raise ConfigError(f"unknown head type {kind!r}; known: {sorted(_HEAD_TYPES)}")
    if cls is GradientForceHead:
        return GradientForceHead(spec["energy"])
    emb = spec.pop("emb_size")
    try:
        return cls(emb, **spec)
    except TypeError as exc:
        raise ConfigError(f"bad {kind} head spec {spec}: {exc}") from None


def _direct_forces(head: DirectForceHead, x: Tensor, v_st: Tensor, idx_t: Tensor, n: int) -> Tensor:
    """``head(x, v_st, idx_t, n)`` with the head's MLP as one fused node (`fused.sequential`:
    the same numbers, only pre-activations kept for backward)."""
    f_st = fused.sequential(head.mlp, x)
    if f_st is None:
        return head(x, v_st, idx_t, n)
    return segment_sum(f_st * v_st, idx_t, n)


def _energy_subset(head: EnergyHead, h: Tensor, batch: Tensor, mask: Tensor) -> Tensor:
    """``head(h, batch, B)`` for the structures of ``mask`` (B,) only; 0 for the others."""
    mask = mask.to(device=h.device, dtype=torch.bool)
    atoms = torch.nonzero(mask[batch])[:, 0]
    y = head(h[atoms], batch[atoms], int(mask.shape[0]))
    keep = mask if y.dim() == 1 else mask[:, None]
    return torch.where(keep, y, torch.zeros((), dtype=y.dtype, device=y.device))


class JMPModel(nn.Module):
    """Embedding (Z - 1) + `GemNetOCBackbone` + ``heads`` (name -> head module)."""

    def __init__(self, config: GemNetOCConfig, heads: Mapping[str, nn.Module]) -> None:
        super().__init__()
        allocator.tune_malloc()  # see openjmp.model.allocator: CPU time of large temporaries
        self.config = config
        self.embedding = AtomEmbedding(config.num_elements, config.emb_size_atom)
        self.backbone = GemNetOCBackbone(config)
        if EMBEDDING_KEY in heads:
            raise ConfigError(f"head name {EMBEDDING_KEY!r} is reserved for the atom features")
        self.heads = nn.ModuleDict(dict(heads))
        self.head_info: dict[str, HeadInfo] = {name: HeadInfo() for name in self.heads}
        """What each head was trained with (`openjmp.model.outputs`); saved with the model."""
        self.default_head: str | None = None
        """The energy head predict and the calculator use when none is named, for models with
        several (a replay fine-tuning keeps the pre-training heads beside its own); saved."""
        for name, head in self.heads.items():
            if isinstance(head, DirectForceHead) and not config.direct_forces:
                raise ConfigError(f"head {name!r} needs a backbone with direct_forces=True")
            if isinstance(head, GradientForceHead):
                target = self.heads[head.energy] if head.energy in self.heads else None
                if not isinstance(target, EnergyHead):
                    raise ConfigError(
                        f"gradient-force head {name!r} refers to {head.energy!r}, "
                        "which is not an energy head of this model"
                    )

    # ----------------------------------------------------------------- builders
    @classmethod
    def pretraining(
        cls, config: GemNetOCConfig, tasks: Iterable[str] = PRETRAIN_TASKS, num_mlps: int = 5
    ) -> JMPModel:
        """The authors' pre-training model: per task an energy head (sum over atoms) and a
        direct-force head, named ``{task}_energy`` and ``{task}_forces``."""
        heads: dict[str, nn.Module] = {}
        for t in tasks:
            heads[f"{t}_energy"] = EnergyHead(
                config.emb_size_atom, num_mlps=num_mlps, activation=config.activation
            )
        for t in tasks:
            heads[f"{t}_forces"] = DirectForceHead(
                config.emb_size_edge, num_mlps=num_mlps, activation=config.activation
            )
        return cls(config, heads)

    def set_activation_checkpointing(self, enabled: bool | Literal["residual"] | None) -> None:
        """Recompute activations of the interaction and output blocks in backward (less memory,
        more compute): the backbone's own checkpointing regions (`openjmp.model.gemnet_oc.
        checkpointing`), switched by its ``memory_efficient`` flag. None: automatic, by batch
        size; "residual": only the residual layers' first products (a little memory for a
        little time). Parameters and their names do not change, so checkpoints are unaffected."""
        if enabled is not None and not isinstance(enabled, bool) and enabled != "residual":
            raise ConfigError(
                f"activation checkpointing: {enabled!r}; expected true, false, null or 'residual'"
            )
        self.backbone.memory_efficient = enabled

    def head_specs(self) -> dict[str, dict[str, Any]]:
        """Per head: its architecture (`head_spec`) and its `HeadInfo`, JSON-able."""
        return {
            name: {**head_spec(h), **self.head_info.get(name, HeadInfo()).to_dict()}
            for name, h in self.heads.items()
        }

    def set_head_info(self, name: str, info: HeadInfo | None = None, **fields: Any) -> None:
        """Set head ``name``'s `HeadInfo` (whole, or some of its fields)."""
        if name not in self.heads:
            raise ConfigError(f"unknown head {name!r}; heads: {list(self.heads)}")
        base = info if info is not None else self.head_info.get(name, HeadInfo())
        self.head_info[name] = replace(base, **fields) if fields else base

    def output_transform(self, name: str) -> OutputTransform | None:
        """The transform of head ``name``; a gradient-force head takes its energy head's."""
        head = self.heads[name] if name in self.heads else None
        if isinstance(head, GradientForceHead):
            name = head.energy
        info = self.head_info.get(name)
        return None if info is None else info.output

    def to_physical(
        self,
        outputs: Mapping[str, Tensor],
        batch: Batch,
        *,
        derived: Mapping[str, str] | None = None,
    ) -> dict[str, Tensor]:
        """Raw outputs of `forward` -> physical units (the only place this happens).

        Energies (B,) float64 eV; direct and gradient forces (N, 3) eV/Å; stress (B, 3, 3)
        eV/Å³; scalars in their targets' units. ``derived`` names the extra outputs asked of
        `forward` (``gradient_forces`` / ``stress``: output name -> energy head); their factor
        is the energy head's scale. The embedding passes through. Raises `ConfigError` for a
        head without a transform, or whose values are not physical (the message says why).
        """
        derived = dict(derived or {})
        result: dict[str, Tensor] = {}
        for name, value in outputs.items():
            if name == EMBEDDING_KEY:
                result[name] = value
                continue
            source = derived.get(name, name)
            head = self.heads[source] if source in self.heads else None
            if head is None:
                raise ConfigError(f"output {name!r} is neither a head nor a derived output")
            transform = self.output_transform(source)
            if transform is None:
                raise ConfigError(
                    f"head {source!r} has no output transform: this model does not say what its "
                    "raw outputs mean (ask for units='raw' to get them as they are)"
                )
            if name in derived or isinstance(head, GradientForceHead):
                result[name] = value * transform.derivative_scale()
            else:
                result[name] = transform.apply(value, batch.atomic_numbers, batch.batch)
        return result

    @property
    def dtype(self) -> torch.dtype:
        return self.embedding.atom_embedding.weight.dtype

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        batch: Batch,
        *,
        heads: Iterable[str] | None = None,
        gradient_forces: Mapping[str, str] | None = None,
        stress: Mapping[str, str] | None = None,
        create_graph: bool | None = None,
        structures: Mapping[str, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """Run the heads on a collated batch (positions Å; cast to the model's dtype); raw
        outputs (`to_physical` converts them).

        heads: names of the heads to run (default: all).
        structures: ``{head: (B,) bool}`` for energy and direct-force heads that need only some
            structures' predictions (multi-task training: each structure's own task's heads):
            the head runs on those structures' atoms or edges only, and its outputs for the
            others are 0. The predictions it makes are the ones it makes on the whole batch.
        gradient_forces: extra outputs ``{name: energy head}``, -d(energy)/d(positions) (N, 3).
        stress: extra outputs ``{name: energy head}``, (1/V) d(energy)/d(strain) (B, 3, 3): the
            derivative with respect to a symmetric strain ε of the cell, positions strained with
            it (r -> r (1 + ε)), over the cell volume V (ASE's sign convention). Every structure
            of the batch needs a cell of non-zero volume (`stress_volumes`).
        create_graph: keep derivatives differentiable (default: ``self.training``).
        """
        selected = dict(self.heads.items()) if heads is None else {n: self.heads[n] for n in heads}
        masks = dict(structures or {})
        for name in masks:
            if not isinstance(selected.get(name), EnergyHead | DirectForceHead):
                raise ConfigError(
                    f"structures given for {name!r}, which is not a selected energy or "
                    "direct-force head of this model"
                )
            if tuple(masks[name].shape) != (batch.num_graphs,) or masks[name].dtype != torch.bool:
                raise ConfigError(
                    f"structures[{name!r}] must be a ({batch.num_graphs},) bool tensor (one entry "
                    f"per structure of the batch), got {tuple(masks[name].shape)} "
                    f"{masks[name].dtype}"
                )
        grad_heads = {n: h.energy for n, h in selected.items() if isinstance(h, GradientForceHead)}
        for kind, extra in (("gradient forces", gradient_forces), ("stress", stress)):
            for energy in (extra or {}).values():
                if not isinstance(self.heads[energy] if energy in self.heads else None, EnergyHead):
                    raise ConfigError(f"{kind} of {energy!r}: not an energy head of this model")
        grad_heads.update(gradient_forces or {})
        stress_heads = dict(stress or {})
        for energy in [*grad_heads.values(), *stress_heads.values()]:
            selected.setdefault(energy, self.heads[energy])
        dtype = self.dtype
        pos = batch.pos.to(dtype)
        cell = batch.cell.to(dtype)
        derivatives = bool(grad_heads or stress_heads)
        if derivatives and not pos.requires_grad:
            pos = pos.detach().requires_grad_(True)
        strain = None
        if stress_heads:
            volume = stress_volumes(batch).to(dtype)
            strain = torch.zeros(batch.num_graphs, 3, 3, dtype=dtype, device=pos.device)
            strain.requires_grad_(True)
        with torch.set_grad_enabled(torch.is_grad_enabled() or derivatives):
            if strain is not None:
                sym = 0.5 * (strain + strain.transpose(1, 2))
                # element-wise products (not einsum / bmm, which autocast would run in float16 /
                # bfloat16): positions and cells keep their precision under mixed precision
                pos = pos + (pos[:, :, None] * sym[batch.batch]).sum(dim=1)
                cell = cell + (cell[:, :, :, None] * sym[:, None, :, :]).sum(dim=2)
            graph = gemnet_graph(batch, pos, cell=cell)
            h = self.embedding(batch.atomic_numbers)
            out = self.backbone(h, graph)
            mode_e, mode_f = self.backbone.checkpoint_modes(graph)
            fast = self.backbone.use_fused(graph, mode_e)
            results: dict[str, Tensor] = {}
            for name, head in selected.items():
                mask = masks.get(name)
                if isinstance(head, EnergyHead):
                    if out.energy is None:
                        raise ConfigError(f"head {name!r} needs regress_energy=True")
                    if mask is None:
                        results[name] = head(out.energy, graph.batch, graph.num_graphs)
                    else:
                        results[name] = _energy_subset(head, out.energy, graph.batch, mask)
                elif isinstance(head, DirectForceHead):
                    assert out.forces is not None
                    x, v_st, idx_t = out.forces, out.V_st, out.idx_t
                    if mask is not None:
                        edges = torch.nonzero(mask.to(idx_t.device)[graph.batch][idx_t])[:, 0]
                        x, v_st, idx_t = x[edges], v_st[edges], idx_t[edges]
                    results[name] = checkpointing.run(
                        mode_f,
                        _direct_forces if fast else head,
                        *((head,) if fast else ()),
                        x,
                        v_st,
                        idx_t,
                        graph.num_atoms,
                    )
            if create_graph is None:
                create_graph = self.training
            # one backward pass per energy head, for its forces and stress together
            energies = list(dict.fromkeys([*grad_heads.values(), *stress_heads.values()]))
            for i, energy in enumerate(energies):
                wants_stress = energy in stress_heads.values()
                inputs = [pos, strain] if wants_stress else [pos]
                grads = torch.autograd.grad(
                    results[energy].sum(),
                    inputs,
                    create_graph=create_graph,
                    retain_graph=create_graph or i < len(energies) - 1,
                )
                for name, e in grad_heads.items():
                    if e == energy:
                        results[name] = -grads[0]
                for name, e in stress_heads.items():
                    if e == energy:
                        results[name] = grads[1] / volume[:, None, None]
        if out.energy is not None:
            results[EMBEDDING_KEY] = out.energy
        return results


def stress_volumes(batch: Batch) -> Tensor:
    """(B,) |det(cell)| Å³ of every structure, for the stress; `ConfigError` when a structure
    has no cell of non-zero volume (a molecule: stress is not defined)."""
    volume = torch.linalg.det(batch.cell.to(torch.float64)).abs()
    bad = torch.nonzero(volume < 1e-6).flatten().tolist()
    if bad:
        raise ConfigError(
            f"stress needs a cell of non-zero volume; structure(s) {bad[:5]} of the batch have "
            "none (a molecule has no stress)"
        )
    return volume
