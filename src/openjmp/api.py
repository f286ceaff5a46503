"""The public calls: `load_model` (any supported checkpoint) and `predict` (ase.Atoms -> eV, eV/Å).

    model = openjmp.load_model("run/checkpoints/best.ckpt")   # EMA weights, float32, CPU
    pred = openjmp.predict(model, atoms_list)                  # the head's own graph and units
    pred.energies[i], pred.forces[i], pred.stress[i], pred.embeddings[i]

Everything a user receives is in physical units (energies eV, forces eV/Å, stress eV/Å³ in
Voigt order, scalars in their targets' units), converted by the one conversion of the model
(`JMPModel.to_physical`) with what the checkpoint says its heads were trained with. Raw head
outputs come only on request (``units="raw"``) and are labelled so. `Predictor` is the
prepared form that the ASE calculator keeps between MD steps.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from openjmp.errors import ConfigError, DataError
from openjmp.graph.batch import Batch
from openjmp.graph.collate import collate
from openjmp.graph.gemnet import build_graph_sample
from openjmp.graph.spec import GraphSpec, graph_spec
from openjmp.model.checkpoint import load_checkpoint
from openjmp.model.heads import DirectForceHead, EnergyHead
from openjmp.model.jmp_model import EMBEDDING_KEY, JMPModel
from openjmp.model.outputs import UNITS, voigt
from openjmp.records import AtomsRecord
from openjmp.validate import check_distances

ForceMode = Literal["auto", "direct", "gradient", "none"]
Units = Literal["physical", "raw"]
UnknownElements = Literal["warn", "error", "ignore"]

_GRAD = "_predict_gradient_forces"
_STRESS = "_predict_stress"


def load_model(
    path: str | Path,
    *,
    ema: bool = True,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    references: Mapping[str, Any] | None = None,
) -> JMPModel:
    """Load a JMP checkpoint (the authors' jmp-s.pt / jmp-l.pt, a state dict in their naming,
    or any file openjmp writes) from a local path; nothing is downloaded.

    ema: the EMA weights when the file has them (the authors' fine-tuning start point), else the
    raw weights. references: per-element linear references of energy heads, ``{task or head:
    file or (K,) table}`` (the authors' ``linref.npz``, key ``coeff``, or a JSON {element: eV});
    the published checkpoints need them for energies in eV (their forces need nothing).
    Returns the model in eval mode on ``device`` with parameters in ``dtype``. Raises
    `CheckpointError` naming the file and the problem.
    """
    return load_checkpoint(path, ema=ema, device=device, dtype=dtype, references=references)


@dataclass(frozen=True)
class Prediction:
    """Per structure: ``energies`` (n,) float64 (None for a model without an energy head);
    ``forces`` list of (N_i, 3) (None when not requested); ``stress`` (n, 6) Voigt xx, yy, zz,
    yz, xz, xy (None when not requested); ``properties`` {scalar head: (n,) or (n, k)} for every
    scalar head of the model; ``embeddings`` list of (N_i, emb_atom) backbone features.
    ``units`` names the unit of each ("eV", "eV/Å", "eV/Å^3", a property's unit, or "raw" for
    raw head outputs); the heads and graph used."""

    energies: np.ndarray | None
    forces: list[np.ndarray] | None
    embeddings: list[np.ndarray]
    energy_head: str | None
    force_head: str | None
    stress: np.ndarray | None = None
    properties: dict[str, np.ndarray] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    graph: GraphSpec | None = None


def resolve_heads(
    model: JMPModel, head: str | None, forces: ForceMode
) -> tuple[str | None, str | None, bool]:
    """(energy head name, direct force head name or None, use gradient forces) for a request.

    ``head`` is an energy head name or a task name (``"oc20"`` -> ``"oc20_energy"``); None takes
    the model's energy head when it has one, and is an error when it has several. A model of
    scalar heads only (QM9, MatBench) has no energy: (None, None, False), forces "auto"/"none".
    ``forces="auto"``: the task's direct force head if the model has one, else -dE/dx.
    """
    energy_heads = [
        n for n, h in model.heads.items() if isinstance(h, EnergyHead) and not h.is_scalar
    ]
    if not energy_heads:
        if head is not None and head in model.heads:
            raise ConfigError(f"head {head!r} is a scalar head: its values are in .properties")
        if forces not in ("auto", "none"):
            raise ConfigError("the model has no energy head: it predicts no forces")
        return None, None, False
    if head is None:
        if len(energy_heads) > 1:
            raise ConfigError(
                f"the model has {len(energy_heads)} energy heads {energy_heads}: say which one "
                "(head=..., or --head); each predicts in its own dataset's reference"
            )
        name = energy_heads[0]
    elif head in energy_heads:
        name = head
    elif f"{head}_energy" in energy_heads:
        name = f"{head}_energy"
    else:
        raise ConfigError(f"unknown head {head!r}; energy heads: {energy_heads}")
    task = name.removesuffix("_energy")
    direct = f"{task}_forces" if name.endswith("_energy") else "forces"
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


def _symbols(numbers: Sequence[int]) -> str:
    from ase.data import chemical_symbols

    return ", ".join(chemical_symbols[int(z)] for z in numbers)


class Predictor:
    """A model prepared for one kind of request (heads, graph, units), reused call after call.

    Everything that does not depend on the structures is settled once here (heads, graph
    setting, output transforms, device); `__call__` then only validates each structure, builds
    its graph and runs the model. `JMPCalculator` keeps one between MD steps.

    Args:
        model: a `JMPModel`, e.g. from `load_model`.
        head: energy head or task name; None for a model with one energy head.
        graph: a setting name (``"oc20"``, ``"rmd17"``, ... `openjmp.graph.spec.GRAPH_SETTINGS`)
            or a `GraphSpec`; None: the graph the head was trained with (saved in the model).
        forces: ``auto`` (direct head if the model has one for the task, else -dE/dx),
            ``direct``, ``gradient`` (conservative) or ``none``.
        stress: also compute the stress (periodic structures only; from the energy head).
        units: ``physical`` (default) or ``raw`` (the heads' outputs as they are).
        unknown_elements: elements the head never saw in training: ``warn`` (default, naming
            the element and the structure), ``error`` (a `DataError`) or ``ignore``.
        max_atoms_per_batch: structures are batched greedily up to this many atoms (a larger
            structure runs alone); must be >= 1.
        device: where to run; None: the model's device.
    """

    def __init__(
        self,
        model: JMPModel,
        *,
        head: str | None = None,
        graph: str | GraphSpec | None = None,
        forces: ForceMode = "auto",
        stress: bool = False,
        units: Units = "physical",
        unknown_elements: UnknownElements = "warn",
        max_atoms_per_batch: int = 2000,
        device: str | torch.device | None = None,
    ) -> None:
        if int(max_atoms_per_batch) < 1:
            raise ConfigError(f"max_atoms_per_batch must be >= 1, got {max_atoms_per_batch}")
        if units not in ("physical", "raw"):
            raise ConfigError(f"units must be 'physical' or 'raw', got {units!r}")
        if unknown_elements not in ("warn", "error", "ignore"):
            raise ConfigError(
                f"unknown_elements must be warn, error or ignore, got {unknown_elements!r}"
            )
        if device is not None:
            model = model.to(device)
        self.model = model
        self.energy_head, self.direct_head, self.gradient = resolve_heads(model, head, forces)
        self.properties = [
            n for n, h in model.heads.items() if isinstance(h, EnergyHead) and h.is_scalar
        ]
        if stress and self.energy_head is None:
            raise ConfigError("the model has no energy head: it predicts no stress")
        self.stress = bool(stress)
        self.units = units
        self.unknown_elements = unknown_elements
        self.max_atoms = int(max_atoms_per_batch)
        main = self.energy_head or self.properties[0]
        info = model.head_info.get(main)
        if graph is None:
            if info is None or info.graph is None:
                raise ConfigError(
                    f"head {main!r} does not say which graph it was trained with (a model "
                    "built by hand, or an old checkpoint): pass graph= (a setting name such as "
                    "'oc20', 'ani1x', 'rmd17', or a GraphSpec)"
                )
            graph = info.graph
        self.graph = graph if isinstance(graph, GraphSpec) else graph_spec(graph)
        self.main_head = main
        self.elements = None if info is None else info.elements
        self.heads = [h for h in (self.energy_head, self.direct_head) if h] + self.properties
        self.energy_values = self.energy_head is not None
        self.derived: dict[str, str] = {}
        if self.gradient:
            self.derived[_GRAD] = self.energy_head
        if self.stress:
            self.derived[_STRESS] = self.energy_head
        if units == "physical":
            self._check_physical()

    def _check_physical(self) -> None:
        """Fail now, not after the model ran, when a requested output cannot be physical.

        An energy head whose values miss their references (the published checkpoints) still
        gives physical forces and stress: its energies are then left out (None), with a warning
        that says what they need."""
        for name in self.heads:
            transform = self.model.output_transform(name)
            if transform is None:
                raise ConfigError(
                    f"head {name!r} has no output transform: the model does not say what its "
                    "raw outputs mean (units='raw' gives them as they are, labelled raw)"
                )
            if transform.physical:
                continue
            if name != self.energy_head or not (self.gradient or self.direct_head or self.stress):
                raise ConfigError(f"values of head {name!r}: {transform.missing}")
            self.energy_values = False
            warnings.warn(
                f"energies of head {name!r} are left out (only forces/stress are physical): "
                f"{transform.missing}",
                stacklevel=4,
            )

    @property
    def unit_labels(self) -> dict[str, str]:
        """The unit of each output this predictor gives ("raw" for raw outputs)."""
        names = ["energy"] if self.energy_values else []
        names += ["forces"] if (self.direct_head or self.gradient) else []
        names += ["stress"] if self.stress else []
        if self.units == "raw":
            return {k: "raw" for k in (*names, *self.properties)}
        units = {k: UNITS[k] for k in names}
        for name in self.properties:
            transform = self.model.output_transform(name)
            units[name] = transform.unit if transform is not None else ""
        return units

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _record(self, atoms: Any, i: int) -> AtomsRecord:
        rec = AtomsRecord.from_ase(atoms, source="<atoms>", index=i, read_labels=False)
        check_distances(rec)  # two atoms on one spot give huge forces without a word otherwise
        if self.stress and not (rec.pbc.any() and abs(np.linalg.det(rec.cell)) > 1e-6):
            raise DataError(
                "<atoms>",
                i,
                "stress needs a periodic cell of non-zero volume (a molecule has none)",
            )
        if self.elements is not None and self.unknown_elements != "ignore":
            unseen = sorted(set(rec.atomic_numbers.tolist()) - set(self.elements))
            if unseen:
                msg = (
                    f"element(s) {_symbols(unseen)} never seen in training by head "
                    f"{self.main_head!r} (trained on {_symbols(self.elements)}): its "
                    "predictions there are extrapolation"
                )
                if self.unknown_elements == "error":
                    raise DataError("<atoms>", i, msg)
                warnings.warn(f"structure {i}: {msg}", stacklevel=4)
        return rec

    def batch(self, frames: Sequence[Any], indices: Sequence[int]) -> Batch:
        """The collated graphs of ``frames[i]`` for i in ``indices`` on the model's device."""
        dtype = self.model.dtype
        samples = []
        for i in indices:
            rec = self._record(frames[i], i)
            samples.append(build_graph_sample(rec, self.graph.for_natoms(rec.natoms), dtype=dtype))
        return collate(samples).to(self.device)

    def run(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Model outputs of one batch (physical unless ``units="raw"``), keyed by head name
        and the derived names ``_predict_gradient_forces`` / ``_predict_stress``."""
        was_training = self.model.training
        if was_training:  # walking every module costs ~5 ms: only when it changes anything
            self.model.eval()
        try:
            with torch.no_grad():
                out = self.model(
                    batch,
                    heads=self.heads,
                    gradient_forces={_GRAD: self.energy_head} if self.gradient else None,
                    stress={_STRESS: self.energy_head} if self.stress else None,
                    create_graph=False,
                )
        finally:
            if was_training:
                self.model.train()
        if self.units == "physical":
            if not self.energy_values and self.energy_head is not None:
                out.pop(self.energy_head)
            out = self.model.to_physical(out, batch, derived=self.derived)
        return out

    def __call__(self, atoms: Any, *, progress: bool = False) -> Prediction:
        frames = [atoms] if not isinstance(atoms, (list, tuple)) else list(atoms)
        n = len(frames)
        energies = np.zeros(n)
        properties: dict[str, list[np.ndarray]] = {p: [] for p in self.properties}
        forces: list[np.ndarray | None] = [None] * n
        embeddings: list[np.ndarray | None] = [None] * n
        stress = np.zeros((n, 6)) if self.stress else None
        groups = list(_batches([len(a) for a in frames], self.max_atoms))
        iterator: Any = groups
        if progress:
            from tqdm import tqdm

            iterator = tqdm(groups, unit="batch", desc="predict")
        force_key = self.direct_head or (_GRAD if self.gradient else None)
        for group in iterator:
            batch = self.batch(frames, group)
            out = self.run(batch)
            for p in self.properties:
                properties[p].append(out[p].detach().cpu().double().numpy())
            e = None
            if self.energy_values:
                e = out[self.energy_head].detach().cpu().double().numpy()
            emb = out[EMBEDDING_KEY].detach().cpu().double().numpy()
            f = None if force_key is None else out[force_key].detach().cpu().double().numpy()
            if stress is not None:
                stress[group] = voigt(out[_STRESS]).detach().cpu().double().numpy()
            start = 0
            for row, i in enumerate(group):
                k = len(frames[i])
                if e is not None:
                    energies[i] = e[row]
                embeddings[i] = emb[start : start + k]
                if f is not None:
                    forces[i] = f[start : start + k]
                start += k
        return Prediction(
            energies=energies if self.energy_values else None,
            forces=None if force_key is None else [x for x in forces if x is not None],
            embeddings=[x for x in embeddings if x is not None],
            energy_head=self.energy_head,
            force_head=self.direct_head
            or (f"-grad({self.energy_head})" if self.gradient else None),
            stress=stress,
            properties={p: np.concatenate(v) for p, v in properties.items()},
            units=self.unit_labels,
            graph=self.graph,
        )


def predict(
    model: JMPModel,
    atoms: Any,
    *,
    head: str | None = None,
    graph: str | GraphSpec | None = None,
    forces: ForceMode = "auto",
    stress: bool = False,
    units: Units = "physical",
    unknown_elements: UnknownElements = "warn",
    max_atoms_per_batch: int = 2000,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> Prediction:
    """Energies (eV), forces (eV/Å), stress (eV/Å³, on request) and per-atom embeddings of
    ``atoms`` (an ase.Atoms or a list); the arguments are `Predictor`'s.

    With no ``graph`` and no ``head``, a single-head model predicts with the graph it was
    trained with. Structures are batched greedily in input order, at most
    ``max_atoms_per_batch`` atoms per batch (a larger structure runs alone); results do not
    depend on the batching.
    """
    predictor = Predictor(
        model,
        head=head,
        graph=graph,
        forces=forces,
        stress=stress,
        units=units,
        unknown_elements=unknown_elements,
        max_atoms_per_batch=max_atoms_per_batch,
        device=device,
    )
    return predictor(atoms, progress=progress)
