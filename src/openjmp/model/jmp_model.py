"""`JMPModel`: atom embedding + GemNet-OC backbone + a dictionary of named heads.

``forward(batch)`` returns a dict: one entry per head (energies (B,) eV, forces (N, 3) eV/Å,
scalars (B,) or (B, k)) and ``"embedding"``, the backbone's per-atom features (N, emb_atom).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from openjmp.errors import ConfigError
from openjmp.graph.batch import Batch
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
    ScalarHead,
)
from openjmp.model.heads import (
    gradient_forces as neg_gradient,
)

PRETRAIN_TASKS: tuple[str, ...] = ("oc20", "oc22", "ani1x", "transition1x")
"""The authors' pre-training tasks, in head order (task index t of ``output.out_*.{t}``)."""

EMBEDDING_KEY = "embedding"

_HEAD_TYPES: dict[str, type[nn.Module]] = {
    "energy": EnergyHead,
    "scalar": ScalarHead,
    "direct_forces": DirectForceHead,
    "gradient_forces": GradientForceHead,
}


def head_spec(head: nn.Module) -> dict[str, Any]:
    """A JSON-able description of a head, enough to rebuild it (`head_from_spec`)."""
    if isinstance(head, GradientForceHead):
        return {"type": "gradient_forces", "energy": head.energy}
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
    """Inverse of `head_spec`."""
    spec = dict(spec)
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
    f_st = f_st * v_st
    return f_st.new_zeros(n, 3).index_add_(0, idx_t, f_st)


class JMPModel(nn.Module):
    """Embedding (Z - 1) + `GemNetOCBackbone` + ``heads`` (name -> head module)."""

    def __init__(self, config: GemNetOCConfig, heads: Mapping[str, nn.Module]) -> None:
        super().__init__()
        if allocator.wants_tuning(config.emb_size_edge):
            allocator.tune_malloc()  # see openjmp.model.allocator: memory and speed on CPU
        self.config = config
        self.embedding = AtomEmbedding(config.num_elements, config.emb_size_atom)
        self.backbone = GemNetOCBackbone(config)
        if EMBEDDING_KEY in heads:
            raise ConfigError(f"head name {EMBEDDING_KEY!r} is reserved for the atom features")
        self.heads = nn.ModuleDict(dict(heads))
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

    def set_activation_checkpointing(self, enabled: bool | None) -> None:
        """Recompute activations of the interaction and output blocks in backward (less memory,
        more compute): the backbone's own checkpointing regions (`openjmp.model.gemnet_oc.
        checkpointing`), switched by its ``memory_efficient`` flag. None: automatic, by batch
        size. Parameters and their names do not change, so checkpoints are unaffected."""
        self.backbone.memory_efficient = None if enabled is None else bool(enabled)

    def head_specs(self) -> dict[str, dict[str, Any]]:
        return {name: head_spec(h) for name, h in self.heads.items()}

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
        create_graph: bool | None = None,
    ) -> dict[str, Tensor]:
        """Run the heads on a collated batch (positions Å; cast to the model's dtype).

        heads: names of the heads to run (default: all).
        gradient_forces: extra outputs ``{name: energy head}``, -d(energy)/d(positions).
        create_graph: keep gradient forces differentiable (default: ``self.training``).
        """
        selected = dict(self.heads.items()) if heads is None else {n: self.heads[n] for n in heads}
        grad_heads = {n: h.energy for n, h in selected.items() if isinstance(h, GradientForceHead)}
        for name, energy in (gradient_forces or {}).items():
            if not isinstance(self.heads[energy] if energy in self.heads else None, EnergyHead):
                raise ConfigError(
                    f"gradient forces of {energy!r}: not an energy head of this model"
                )
            grad_heads[name] = energy
        for energy in grad_heads.values():
            selected.setdefault(energy, self.heads[energy])
        dtype = self.dtype
        pos = batch.pos.to(dtype)
        if grad_heads and not pos.requires_grad:
            pos = pos.detach().requires_grad_(True)
        with torch.set_grad_enabled(torch.is_grad_enabled() or bool(grad_heads)):
            graph = gemnet_graph(batch, pos)
            h = self.embedding(batch.atomic_numbers)
            out = self.backbone(h, graph)
            mode_e, mode_f = self.backbone.checkpoint_modes(graph)
            fast = self.backbone.use_fused(graph, mode_e)
            results: dict[str, Tensor] = {}
            for name, head in selected.items():
                if isinstance(head, EnergyHead):
                    if out.energy is None:
                        raise ConfigError(f"head {name!r} needs regress_energy=True")
                    results[name] = head(out.energy, graph.batch, graph.num_graphs)
                elif isinstance(head, DirectForceHead):
                    assert out.forces is not None
                    results[name] = checkpointing.run(
                        mode_f,
                        _direct_forces if fast else head,
                        *((head,) if fast else ()),
                        out.forces,
                        out.V_st,
                        out.idx_t,
                        graph.num_atoms,
                    )
            if create_graph is None:
                create_graph = self.training
            names = list(grad_heads)
            for i, name in enumerate(names):
                energy = results[grad_heads[name]]
                results[name] = neg_gradient(
                    energy,
                    pos,
                    create_graph=create_graph,
                    retain_graph=create_graph or i < len(names) - 1,
                )
        if out.energy is not None:
            results[EMBEDDING_KEY] = out.energy
        return results
