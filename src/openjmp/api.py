"""The public calls: `load_model` (any supported checkpoint) and `predict` (ase.Atoms -> eV, eV/Å).

model = openjmp.load_model("jmp-s.pt")                    # EMA weights, float32, CPU
pred = openjmp.predict(model, atoms_list, graph="oc20", head="oc20")
pred.energies[i], pred.forces[i], pred.embeddings[i]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from openjmp.errors import ConfigError
from openjmp.graph.batch import Batch
from openjmp.graph.collate import collate
from openjmp.graph.gemnet import build_graph_sample
from openjmp.graph.spec import GraphSpec, graph_spec
from openjmp.model.checkpoint import load_checkpoint
from openjmp.model.heads import DirectForceHead, EnergyHead
from openjmp.model.jmp_model import EMBEDDING_KEY, JMPModel
from openjmp.records import AtomsRecord

ForceMode = Literal["auto", "direct", "gradient", "none"]


def load_model(
    path: str | Path,
    *,
    ema: bool = True,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> JMPModel:
    """Load a JMP checkpoint (the authors' jmp-s.pt / jmp-l.pt, a state dict in their naming,
    or a file written by openjmp) from a local path; nothing is downloaded.

    ema: the EMA weights when the file has them (the authors' fine-tuning start point), else the
    raw weights. Returns the model in eval mode on ``device`` with parameters in ``dtype``.
    Raises `CheckpointError` naming the file and the problem.
    """
    return load_checkpoint(path, ema=ema, device=device, dtype=dtype)


@dataclass(frozen=True)
class Prediction:
    """Per structure: energies (n,) eV; forces and embeddings lists of (N_i, 3) eV/Å and
    (N_i, emb_atom) arrays (forces None when not requested); the heads used."""

    energies: np.ndarray
    forces: list[np.ndarray] | None
    embeddings: list[np.ndarray]
    energy_head: str
    force_head: str | None
    extra: dict[str, Any] = field(default_factory=dict)


def resolve_heads(
    model: JMPModel, head: str | None, forces: ForceMode
) -> tuple[str, str | None, bool]:
    """(energy head name, direct force head name or None, use gradient forces) for a request.

    ``head`` is an energy head name or a task name (``"oc20"`` -> ``"oc20_energy"``); None takes
    the model's first energy head. ``forces="auto"``: the task's direct force head if the model
    has one, else -dE/dx of the energy head.
    """
    energy_heads = [n for n, h in model.heads.items() if isinstance(h, EnergyHead)]
    if not energy_heads:
        raise ConfigError("the model has no energy head")
    if head is None:
        name = energy_heads[0]
    elif head in energy_heads:
        name = head
    elif f"{head}_energy" in energy_heads:
        name = f"{head}_energy"
    else:
        raise ConfigError(f"unknown head {head!r}; energy heads: {energy_heads}")
    task = name.removesuffix("_energy")
    direct = f"{task}_forces"
    has_direct = isinstance(model.heads[direct] if direct in model.heads else None, DirectForceHead)
    if forces == "none":
        return name, None, False
    if forces == "direct" or (forces == "auto" and has_direct):
        if not has_direct:
            raise ConfigError(f"the model has no direct force head {direct!r}")
        return name, direct, False
    if forces in ("gradient", "auto"):
        return name, None, True
    raise ConfigError(f"forces must be auto, direct, gradient or none, got {forces!r}")


def _batches(sizes: Sequence[int], max_atoms: int) -> Iterator[list[int]]:
    group: list[int] = []
    total = 0
    for i, n in enumerate(sizes):
        if group and total + n > max_atoms:
            yield group
            group, total = [], 0
        group.append(i)
        total += n
    if group:
        yield group


def predict(
    model: JMPModel,
    atoms: Any,
    *,
    graph: str | GraphSpec = "oc20",
    head: str | None = None,
    forces: ForceMode = "auto",
    max_atoms_per_batch: int = 2000,
    progress: bool = False,
) -> Prediction:
    """Energies (eV), forces (eV/Å) and per-atom embeddings of ``atoms`` (an ase.Atoms or a list).

    graph: a graph setting name (``oc20``, ``ani1x``, ``rmd17``, ... see
    `openjmp.graph.spec.GRAPH_SETTINGS`) or a `GraphSpec`. Structures are batched greedily in
    input order, at most ``max_atoms_per_batch`` atoms per batch (a larger structure runs alone).
    """
    frames = [atoms] if not isinstance(atoms, (list, tuple)) else list(atoms)
    energy_name, direct_name, use_grad = resolve_heads(model, head, forces)
    grad_name = "_predict_gradient_forces"
    run_heads = {energy_name}
    if direct_name:
        run_heads.add(direct_name)
    dtype, device = model.dtype, next(model.parameters()).device
    energies = np.zeros(len(frames))
    out_forces: list[np.ndarray | None] = [None] * len(frames)
    embeddings: list[np.ndarray | None] = [None] * len(frames)

    groups = list(_batches([len(a) for a in frames], max_atoms_per_batch))
    iterator: Any = groups
    if progress:
        from tqdm import tqdm

        iterator = tqdm(groups, unit="batch", desc="predict")
    was_training = model.training
    model.eval()
    try:
        for group in iterator:
            samples = []
            for i in group:
                rec = AtomsRecord.from_ase(frames[i], source="<atoms>", index=i, read_labels=False)
                spec = graph if isinstance(graph, GraphSpec) else graph_spec(graph, rec.natoms)
                samples.append(build_graph_sample(rec, spec, dtype=dtype))
            batch: Batch = collate(samples).to(device)
            with torch.no_grad():
                out = model(
                    batch,
                    heads=sorted(run_heads),
                    gradient_forces={grad_name: energy_name} if use_grad else None,
                    create_graph=False,
                )
            f = out[direct_name] if direct_name else out.get(grad_name)
            start = 0
            for row, i in enumerate(group):
                n = len(frames[i])
                energies[i] = float(out[energy_name][row].detach())
                embeddings[i] = (
                    out[EMBEDDING_KEY][start : start + n].detach().cpu().double().numpy()
                )
                if f is not None:
                    out_forces[i] = f[start : start + n].detach().cpu().double().numpy()
                start += n
    finally:
        model.train(was_training)
    return Prediction(
        energies=energies,
        forces=None if not (direct_name or use_grad) else [f for f in out_forces if f is not None],
        embeddings=[e for e in embeddings if e is not None],
        energy_head=energy_name,
        force_head=direct_name or (f"-grad({energy_name})" if use_grad else None),
    )
