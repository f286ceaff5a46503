"""Graph settings: cutoff, max-neighbour caps and periodicity per dataset, as the JMP authors set them.

A `GraphSpec` says how the four GemNet-OC graphs of one structure are built (see
:mod:`openjmp.graph.gemnet`). All four graphs share one cutoff in JMP; the caps are
``(main, a2ee2a, qint, a2a)`` neighbours per target atom, derived from one base ``k`` by the
authors' GemNet-OC proportions 30 : 20 : 8 : 1000 (`max_neighbors_from_base`).

Sources (authors' code, facebookresearch/JMP): ``tasks/pretrain/module.py`` (oc20, oc22, ani1x,
transition1x transforms), ``tasks/finetune/{qm9,rmd17,md22,spice,matbench,qmof}.py``.
MatBench and QMOF cap the neighbours by atom count (> 300 atoms: k=5, > 200 atoms: k=10);
`graph_spec` applies that rule when given ``natoms``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from openjmp.errors import ConfigError

MaxNeighbors = tuple[int, int, int, int]
"""Caps ``(main, a2ee2a, qint, a2a)``: neighbours kept per target atom in each graph."""

DUMMY_CELL_LENGTH = 1000.0
"""Å: edge of the cubic cell the authors give molecules so that they collate with crystals."""


def max_neighbors_from_base(k: int) -> MaxNeighbors:
    """The authors' ``MaxNeighbors.from_goc_base_proportions``: ``(k, int(k*20/30), int(k*8/30), int(k*1000/30))``.

    30 -> (30, 20, 8, 1000); 100 -> (100, 66, 26, 3333); 10 -> (10, 6, 2, 333); 5 -> (5, 3, 1, 166).
    """
    if k < 1:
        raise ConfigError(f"max_neighbors base must be >= 1, got {k}")
    return (k, int(k * 20 / 30), int(k * 8 / 30), int(k * 1000 / 30))


@dataclass(frozen=True, slots=True)
class GraphSpec:
    """How to build the four GemNet-OC graphs of a structure.

    Attributes:
        cutoff: Å, radius of every graph (an edge has 0.01 Å < distance <= cutoff).
        max_neighbors: ``(main, a2ee2a, qint, a2a)`` caps per target atom, nearest first.
        pbc: use the record's periodicity (its cell and ``pbc`` flags, per axis). False: the
            structure is treated as a molecule (no images) whatever its cell says.
        dummy_cell: only with ``pbc=False``; the sample carries a 1000 Å cubic cell (no
            periodicity) so that it collates with periodic data, as the authors' ANI-1x,
            Transition-1x, MD22 and SPICE transforms do. False: the sample's cell is zero for
            molecules (QM9, rMD17) or the record's cell.
        qint_tags: the quadruplet graph keeps edges whose source or target has one of these tags.
        atom_count_caps: the MatBench/QMOF rule (`atom_count_base`): structures of more than
            200 (300) atoms get the caps of base k = 10 (5) when those are smaller; applied by
            `for_natoms`.
        max_edges: refuse a structure whose estimated neighbour pairs exceed this
            (:mod:`openjmp.graph.size`); None: the process default (``$OPENJMP_MAX_EDGES`` or
            3 million). A resource limit, not a property of the graph: not saved with models.
    """

    cutoff: float
    max_neighbors: MaxNeighbors
    pbc: bool
    dummy_cell: bool = False
    qint_tags: tuple[int, ...] = (1, 2)
    atom_count_caps: bool = False
    max_edges: int | None = None

    def __post_init__(self) -> None:
        if not self.cutoff > 0:
            raise ConfigError(f"GraphSpec.cutoff must be > 0 Å, got {self.cutoff}")
        mn = tuple(int(k) for k in self.max_neighbors)
        if len(mn) != 4:
            raise ConfigError(
                f"GraphSpec.max_neighbors must be (main, a2ee2a, qint, a2a), got {self.max_neighbors}"
            )
        if min(mn) < 1:
            raise ConfigError(f"GraphSpec.max_neighbors must all be >= 1, got {mn}")
        if max(mn[:3]) > mn[3]:
            raise ConfigError(
                f"GraphSpec.max_neighbors: the a2a cap {mn[3]} must be >= the main, a2ee2a "
                f"and qint caps {mn[:3]} (they are sub-selected from a2a)"
            )
        if self.dummy_cell and self.pbc:
            raise ConfigError("GraphSpec: dummy_cell is only for non-periodic graphs (pbc=False)")
        if self.max_edges is not None and int(self.max_edges) < 1:
            raise ConfigError(f"GraphSpec.max_edges must be >= 1, got {self.max_edges}")
        object.__setattr__(self, "max_neighbors", mn)
        object.__setattr__(self, "qint_tags", tuple(int(t) for t in self.qint_tags))

    @classmethod
    def from_base(cls, cutoff: float, k: int, *, pbc: bool, dummy_cell: bool = False) -> GraphSpec:
        """Spec with caps `max_neighbors_from_base(k)`."""
        return cls(
            cutoff=cutoff, max_neighbors=max_neighbors_from_base(k), pbc=pbc, dummy_cell=dummy_cell
        )

    def for_natoms(self, natoms: int) -> GraphSpec:
        """The setting for a structure of ``natoms`` atoms: with ``atom_count_caps``, the caps
        of base `atom_count_base(natoms)` where they are below this spec's (the flag is kept)."""
        if not self.atom_count_caps:
            return self
        k = atom_count_base(natoms)
        if k >= self.max_neighbors[0]:
            return self
        return replace(self, max_neighbors=max_neighbors_from_base(k))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields (saved with a model: the graph its heads were trained with)."""
        return {
            "cutoff": float(self.cutoff),
            "max_neighbors": list(self.max_neighbors),
            "pbc": bool(self.pbc),
            "dummy_cell": bool(self.dummy_cell),
            "qint_tags": list(self.qint_tags),
            "atom_count_caps": bool(self.atom_count_caps),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GraphSpec:
        """Inverse of `to_dict`; raises `ConfigError` for a malformed entry."""
        try:
            return cls(
                cutoff=float(data["cutoff"]),
                max_neighbors=_caps(data["max_neighbors"]),
                pbc=bool(data["pbc"]),
                dummy_cell=bool(data.get("dummy_cell", False)),
                qint_tags=tuple(int(t) for t in data.get("qint_tags", (1, 2))),
                atom_count_caps=bool(data.get("atom_count_caps", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"bad graph setting {dict(data)}: {exc}") from None


GRAPH_SETTINGS: dict[str, GraphSpec] = {
    # pre-training
    "oc20": GraphSpec.from_base(12.0, 30, pbc=True),
    "oc22": GraphSpec.from_base(12.0, 30, pbc=True),
    "ani1x": GraphSpec.from_base(8.0, 30, pbc=False, dummy_cell=True),
    "transition1x": GraphSpec.from_base(8.0, 30, pbc=False, dummy_cell=True),
    # fine-tuning
    "rmd17": GraphSpec.from_base(7.0, 100, pbc=False),
    "qm9": GraphSpec.from_base(8.0, 30, pbc=False),
    "md22": GraphSpec.from_base(12.0, 30, pbc=False, dummy_cell=True),
    "spice": GraphSpec.from_base(12.0, 30, pbc=False, dummy_cell=True),
    "matbench": replace(GraphSpec.from_base(12.0, 30, pbc=True), atom_count_caps=True),
    "qmof": replace(GraphSpec.from_base(19.0, 30, pbc=True), atom_count_caps=True),
}
"""The reference's graph setting per dataset (before the MatBench/QMOF atom-count caps)."""


def _caps(values: Any) -> MaxNeighbors:
    """Four caps from a JSON list; ValueError for another count."""
    main, a2ee2a, qint, a2a = (int(k) for k in values)
    return main, a2ee2a, qint, a2a


def atom_count_base(natoms: int) -> int:
    """The authors' MatBench/QMOF base k by atom count: > 300 atoms: 5, > 200 atoms: 10, else 30."""
    if natoms > 300:
        return 5
    if natoms > 200:
        return 10
    return 30


def graph_spec(name: str, natoms: int | None = None) -> GraphSpec:
    """The `GraphSpec` of dataset ``name``; for matbench and qmof, capped by ``natoms`` if given.

    MatBench uses the caps only with the authors' ``conditional_max_neighbors=True``, which the
    released configs (``config/all-jmp-l-configs.py``) set; QMOF always uses them.
    """
    try:
        spec = GRAPH_SETTINGS[name]
    except KeyError:
        raise ConfigError(
            f"unknown graph setting {name!r}; known: {', '.join(sorted(GRAPH_SETTINGS))}"
        ) from None
    return spec if natoms is None else spec.for_natoms(natoms)
