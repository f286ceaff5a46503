"""The GemNet-OC backbone: bases, interaction blocks, output blocks and the final MLPs.

Attribute names and registration order follow the authors' ``GemNetOCBackbone`` so that state
dicts match theirs key for key and in order. The atom embedding lives outside the backbone
(as in JMP): ``forward`` takes the initial atom features ``h``.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from openjmp.model import allocator
from openjmp.model.gemnet_oc import checkpointing, fused
from openjmp.model.gemnet_oc.bases import Bases
from openjmp.model.gemnet_oc.config import GemNetOCConfig
from openjmp.model.gemnet_oc.graph_inputs import GemNetGraph
from openjmp.model.gemnet_oc.interaction_block import InteractionBlock
from openjmp.model.gemnet_oc.layers import ScaleFactor, observing
from openjmp.model.gemnet_oc.output_blocks import FinalMLP, OutputBlock

ACTIVATION_VALUES_PER_EDGE_FEATURE = 250
"""Values a training pass without activation checkpointing keeps per (edge x emb_size_edge)
element of its batch, all activations included: measured at JMP-S size on the benchmark
batches (benchmarks/bench_model.py, float32, peak less the model: ~970 bytes per element for
molecules' train_step, ~840 for slabs' forward_backward)."""
AUTO_CHECKPOINT_MEMORY_FRACTION = 0.5
"""Automatic activation checkpointing starts when a batch's estimated activations
(`activation_bytes`) exceed this fraction of the device's memory (`device_memory_bytes`)."""


@functools.lru_cache(maxsize=8)
def device_memory_bytes(device: torch.device) -> int:
    """Memory of ``device``: a GPU's total, or the CPU's physical memory (the cgroup's limit
    where it is lower); ``sys.maxsize`` where it cannot be read."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    if device.type != "cpu":
        return sys.maxsize
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return sys.maxsize
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            total = min(total, int(limit))
    except OSError:
        pass
    return int(total)


@dataclass(frozen=True, slots=True)
class BackboneOutput:
    """energy: (N, emb_atom) per-atom features; forces: (E, emb_edge) per-edge features of the
    symmetrised main graph, or None; V_st (E, 3) unit vectors s -> t; D_st (E,) Å; idx_s, idx_t
    (E,) main-graph source and target atoms."""

    energy: Tensor | None
    forces: Tensor | None
    V_st: Tensor
    D_st: Tensor
    idx_s: Tensor
    idx_t: Tensor


class GemNetOCBackbone(nn.Module):
    """GemNet-OC (Gasteiger et al. 2022) as configured by JMP."""

    def __init__(self, config: GemNetOCConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.num_blocks = c.num_blocks
        self.regress_energy = c.regress_energy
        self.regress_forces = c.regress_forces
        self.direct_forces = c.direct_forces

        self.bases = Bases(c)
        self.int_blocks = nn.ModuleList([InteractionBlock(c) for _ in range(c.num_blocks)])
        self.out_blocks = nn.ModuleList(
            [
                OutputBlock(
                    c.emb_size_atom,
                    c.emb_size_edge,
                    c.emb_size_rbf,
                    c.num_atom,
                    c.num_output_afteratom,
                    activation=c.activation,
                    direct_forces=c.direct_forces,
                    edge_dropout=c.edge_dropout,
                )
                for _ in range(c.num_blocks + 1)
            ]
        )
        self.out_mlp_E = FinalMLP(
            c.emb_size_atom, c.num_blocks, c.num_global_out_layers, c.activation
        )
        if c.direct_forces:
            self.out_mlp_F = FinalMLP(
                c.emb_size_edge, c.num_blocks, c.num_global_out_layers, c.activation
            )
        self.fused_kernels = True
        """Use the fused kernels of `fused` where they apply (see `use_fused`); False: plain
        autograd everywhere (same numbers, more memory; for comparisons)."""
        self.memory_efficient: bool | Literal["residual"] | None = None
        """Checkpoint activations while training without gradient forces (see `checkpointing`):
        True always, False never, None (auto) when the batch's activations would take more than
        `AUTO_CHECKPOINT_MEMORY_FRACTION` of the device's memory (`is_large`): recomputation
        costs time (2.2-3.1x a pass on the JMP-S benchmark batches on CPU, with the lean malloc
        mode it needs), worth paying only where memory runs short. "residual": no checkpointing,
        but the residual layers keep one of their two pre-activations and recompute the other
        product in backward (on the fused kernels, see `fused.enabled`): on the JMP-S benchmark
        slab batch 18 % less live memory at the end of the forward pass (7.8 -> 6.4 GB), for
        0-8 % more time on the benchmark batches."""

    def activation_bytes(self, graph: GemNetGraph) -> int:
        """Estimated memory a training pass without checkpointing keeps for this batch."""
        d = graph.main.distance
        values = graph.main.num_edges * self.config.emb_size_edge
        return values * ACTIVATION_VALUES_PER_EDGE_FEATURE * d.element_size()

    def is_large(self, graph: GemNetGraph) -> bool:
        """Whether this batch's activations (`activation_bytes`) would exceed
        `AUTO_CHECKPOINT_MEMORY_FRACTION` of its device's memory."""
        budget = AUTO_CHECKPOINT_MEMORY_FRACTION * device_memory_bytes(graph.main.distance.device)
        return self.activation_bytes(graph) > budget

    def checkpoint_modes(self, graph: GemNetGraph) -> tuple[checkpointing.Mode, checkpointing.Mode]:
        """(mode of the energy path, mode of the force branch) for this forward pass."""
        efficient = self.memory_efficient
        if efficient == "residual":
            return "off", "off"
        if efficient is None:
            efficient = self.is_large(graph)
        if (
            not efficient
            or not torch.is_grad_enabled()
            or graph.main.distance.requires_grad  # gradient forces need double backward
        ):
            return "off", "off"
        return "selective", "full"

    # ------------------------------------------------------------ scale factors
    def scale_factors(self) -> dict[str, ScaleFactor]:
        """Every `ScaleFactor`, by module path relative to the backbone, in module order."""
        return {n: m for n, m in self.named_modules() if isinstance(m, ScaleFactor)}

    @torch.no_grad()
    def set_scale_factors(
        self, values: Mapping[str, float | Tensor], *, strict: bool = True
    ) -> None:
        """Fill scale factors by module path (the authors' scale-file names).

        strict: every factor of the model must be given and every given name must exist.
        """
        factors = self.scale_factors()
        unknown = sorted(set(values) - set(factors))
        missing = sorted(set(factors) - set(values))
        if unknown or (strict and missing):
            raise KeyError(f"scale factors: unknown {unknown}, missing {missing}")
        for name, value in values.items():
            factors[name].scale_factor.fill_(float(value))

    def shared_parameters(self) -> list[tuple[str, nn.Parameter, int]]:
        """(name relative to the backbone, parameter, gradient divisor) of the shared basis
        projections (see `Bases.shared_parameters`)."""
        return [(f"bases.{n}", p, f) for n, p, f in self.bases.shared_parameters()]

    def use_fused(self, graph: GemNetGraph, mode: checkpointing.Mode) -> bool:
        """Whether this pass runs on the fused kernels (`fused`): everywhere except under
        activation checkpointing, with position gradients (gradient forces need the second
        derivative) and while scale factors are being fitted. Under autocast they run in its
        dtype (`fused.autocast_aware`)."""
        return (
            self.fused_kernels
            and mode == "off"
            and not graph.main.distance.requires_grad
            and not observing()
        )

    # ------------------------------------------------------------------ forward
    def _force_branch(self, rbf_out: Tensor, *ms: Tensor) -> Tensor:
        """Per-edge force features from the edge states of the num_blocks + 1 stages."""
        xs = [out.forward_forces(m, rbf_out) for out, m in zip(self.out_blocks, ms)]
        return self.out_mlp_F(*xs)

    def forward(self, h: Tensor, graph: GemNetGraph) -> BackboneOutput:
        """h (N, emb_atom) initial atom features, ``graph`` the batch's graphs -> `BackboneOutput`."""
        mode_e, mode_f = self.checkpoint_modes(graph)
        if torch.is_grad_enabled() and graph.main.distance.device.type == "cpu":
            # checkpointing saves memory only if malloc returns it (`allocator.set_mode`)
            allocator.set_mode("fast" if mode_e == "off" else "lean")
        if self.use_fused(graph, mode_e):
            with fused.enabled(recompute_residual=self.memory_efficient == "residual"):
                return self._forward(h, graph, mode_e, mode_f, fast=True)
        return self._forward(h, graph, mode_e, mode_f, fast=False)

    def _forward(
        self,
        h: Tensor,
        graph: GemNetGraph,
        mode_e: checkpointing.Mode,
        mode_f: checkpointing.Mode,
        fast: bool,
    ) -> BackboneOutput:
        idx_t = graph.main.edge_index[1]
        run = checkpointing.run
        bases = self.bases(h, graph, mode_e)
        m = bases.m

        want_f = self.regress_forces
        # With checkpointing the whole force branch is one region run after the blocks: only
        # the blocks' edge states (kept anyway as the next blocks' inputs) are held for it.
        defer_f = want_f and mode_f != "off"
        xs_e: list[Tensor] = []
        xs_f: list[Tensor] = []
        ms: list[Tensor] = []
        for i in range(self.num_blocks + 1):
            if i > 0:  # one interaction block, in three separately checkpointed stages
                block = self.int_blocks[i - 1]
                x, h2 = run(mode_e, block.interactions, h, m, bases, graph)
                m = run(mode_e, block.edge_update, m, x)
                h, m = run(mode_e, block.atom_edge_update, h2, m, bases, graph)
            out = self.out_blocks[i]
            xs_e.append(run(mode_e, out.forward_energy, h, m, bases.rbf_out, idx_t))
            if defer_f:
                ms.append(m)
            elif want_f and fast:
                xs_f.append(out.forward_forces_raw(m))
            elif want_f:
                xs_f.append(out.forward_forces(m, bases.rbf_out))

        x_f = None
        if want_f and fast:
            x_f = self.out_mlp_F.forward_forces(xs_f, list(self.out_blocks), bases.rbf_out)
        elif defer_f:
            x_f = run(mode_f, self._force_branch, bases.rbf_out, *ms)
        elif want_f:
            x_f = self.out_mlp_F(*xs_f)
        x_e = self.out_mlp_E(*xs_e) if self.regress_energy else None
        return BackboneOutput(
            energy=x_e,
            forces=x_f,
            V_st=graph.main.vector,
            D_st=graph.main.distance,
            idx_s=graph.main.edge_index[0],
            idx_t=idx_t,
        )
