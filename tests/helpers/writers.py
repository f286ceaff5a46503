"""Writers of tiny files in each dataset's real on-disk layout (datasets.md), for reader tests.

Labels come from ASE's EMT so that energies and forces are consistent (F = -dE/dx) and each
file can be written in its dataset's own units and sign convention; a reader that converts
wrongly then fails a finite-difference test. Everything here is test code.
"""

from __future__ import annotations

import collections
import gzip
import io
import json
import lzma
import pickle
import struct
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import lmdb
import numpy as np
from ase import Atoms
from ase.build import add_adsorbate, bulk, fcc111, molecule
from ase.calculators.emt import EMT
from ase.constraints import FixAtoms

HARTREE = 27.211386024367243  # eV (ASE's value, as openjmp.units)
BOHR = 0.5291772105638411  # Å (ASE's value)
KCAL = 1.0 / 23.061  # eV per kcal/mol, JMP's factor
JMP_HARTREE = 1.0 / 0.0367493
JMP_BOHR = 0.529177
PYG_HARTREE = 27.211386246

# --------------------------------------------------------------------------------------------
# Structures labelled with EMT


def emt_label(atoms: Atoms) -> tuple[float, np.ndarray]:
    """(energy eV, unconstrained forces eV/Å) of ``atoms`` with EMT."""
    a = atoms.copy()
    a.calc = EMT()
    return float(a.get_potential_energy()), a.get_forces(apply_constraint=False)


def trajectory(atoms: Atoms, n: int, step: float = 0.01, seed: int = 0) -> list[Atoms]:
    """``n`` frames walking each atom by small random steps (consecutive frames are close)."""
    rng = np.random.default_rng(seed)
    frames, a = [], atoms.copy()
    for _ in range(n):
        frames.append(a.copy())
        a.positions += rng.normal(scale=step, size=a.positions.shape)
    return frames


def slab_frames(n: int = 3, seed: int = 0) -> list[Atoms]:
    """OC20-like frames: Cu(111) 2x2x3 + O, tags 0/1/2, bottom layer fixed, EMT labels."""
    slab = fcc111("Cu", size=(2, 2, 3), vacuum=6.0)
    add_adsorbate(slab, "O", 1.6, "fcc")
    slab.info.pop("adsorbate_info", None)  # not hashable for extxyz
    tags = np.array([0] * 4 + [1] * 8 + [2])
    slab.set_tags(tags)
    slab.set_constraint(FixAtoms(indices=range(4)))
    frames = trajectory(slab, n, seed=seed)
    for f in frames:
        f.set_tags(tags)
        f.set_constraint(FixAtoms(indices=range(4)))
    return frames


def molecule_frames(name: str = "CH3CH2OH", n: int = 4, seed: int = 0) -> list[Atoms]:
    """Molecular conformers along a small random walk (EMT knows H, C, N, O)."""
    return trajectory(molecule(name), n, step=0.01, seed=seed)


# --------------------------------------------------------------------------------------------
# Torch-free pickles of PyG-1.x ``Data`` (the published OC20/OC22 LMDBs), datasets.md §11 / D


class _Global:
    """Placeholder pickled as ``GLOBAL module name`` without importing the module."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args: Any) -> Any:  # pickle insists that a reduce function is callable
        raise TypeError("placeholder")


class _Reduce:
    def __init__(self, func: Any, args: tuple, state: Any = None) -> None:
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


class _Pickler(pickle._Pickler):  # the pure-python pickler lets save() be intercepted
    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, _Global):
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
            return
        super().save(obj, save_persistent_id)


_STORAGE_NAMES = {
    np.dtype(np.float64): "DoubleStorage",
    np.dtype(np.float32): "FloatStorage",
    np.dtype(np.int64): "LongStorage",
    np.dtype(np.int32): "IntStorage",
    np.dtype(np.uint8): "ByteStorage",
    np.dtype(np.bool_): "BoolStorage",
}


def legacy_storage_bytes(flat: np.ndarray) -> bytes:
    """A legacy ``torch.save`` stream of one storage holding ``flat``."""
    out = io.BytesIO()
    for item in (
        0x1950A86A20F9469CFC6C,
        1001,
        {
            "protocol_version": 1001,
            "little_endian": True,
            "type_sizes": {"short": 2, "int": 4, "long": 4},
        },
    ):
        pickle.dump(item, out, protocol=2)
    marker = object()
    stype = _Global("torch", _STORAGE_NAMES[flat.dtype])

    class P(_Pickler):
        def persistent_id(self, obj):
            if obj is marker:
                return ("storage", stype, "0", "cpu", int(flat.size), None)
            return None

    P(out, protocol=2).dump(marker)
    pickle.dump(["0"], out, protocol=2)
    out.write(struct.pack("<q", flat.size))
    out.write(flat.astype(flat.dtype.newbyteorder("<")).tobytes())
    return out.getvalue()


def _tensor(a: np.ndarray) -> _Reduce:
    a = np.ascontiguousarray(a)
    storage = _Reduce(
        _Global("torch.storage", "_load_from_bytes"), (legacy_storage_bytes(a.reshape(-1)),)
    )
    stride = tuple(s // a.itemsize for s in a.strides) if a.ndim else ()
    return _Reduce(
        _Global("torch._utils", "_rebuild_tensor_v2"),
        (storage, 0, tuple(a.shape), stride, False, collections.OrderedDict()),
    )


def dumps_pyg1(fields: dict[str, Any]) -> bytes:
    """Pickle ``fields`` as a PyG-1.x ``torch_geometric.data.data.Data`` (arrays become tensors)."""
    state = {k: _tensor(v) if isinstance(v, np.ndarray) else v for k, v in fields.items()}
    obj = _Reduce(
        _Global("copyreg", "_reconstructor"),
        (_Global("torch_geometric.data.data", "Data"), _Global("builtins", "object"), None),
        state,
    )
    out = io.BytesIO()
    _Pickler(out, protocol=4).dump(obj)
    return out.getvalue()


def ocp_fields(
    atoms: Atoms,
    *,
    sid: int = 0,
    fid: int = 0,
    naming: str = "y",
    oc22: bool = False,
    energy: float | None = None,
    z_dtype=np.float32,
) -> dict[str, Any]:
    """OCP S2EF attributes of an EMT-labelled frame (``naming`` "y" -> y/force, else energy/forces)."""
    e, f = emt_label(atoms)
    e = e if energy is None else energy
    fixed = np.zeros(len(atoms), np.float32)
    for c in atoms.constraints:
        fixed[c.get_indices()] = 1
    d = {
        "pos": atoms.positions.astype(np.float32),
        "cell": atoms.cell.array.astype(np.float32)[None],
        "atomic_numbers": atoms.numbers.astype(z_dtype),
        "natoms": len(atoms),
        "tags": atoms.get_tags().astype(np.int64),
        "fixed": fixed,
        "sid": sid,
        "fid": fid,
    }
    if naming == "y":
        d.update(y=e, force=f.astype(np.float32))
    else:
        d.update(energy=e, forces=f.astype(np.float32))
    if oc22:
        d["oc22"] = 1
    return d


def write_lmdb(path: Path, values: Sequence[bytes], *, length_key: bool = True) -> Path:
    """One ``subdir=False`` LMDB with keys "0".."n-1" (+ pickled ``length``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    env = lmdb.open(str(path), map_size=1 << 26, subdir=False, meminit=False)
    with env.begin(write=True) as txn:
        if length_key:
            txn.put(b"length", pickle.dumps(len(values)))
        for i, v in enumerate(values):
            txn.put(str(i).encode("ascii"), v)
    env.close()
    return path


def write_ocp_dir(
    directory: Path, entries: Sequence[dict[str, Any]], chunk: int = 2, length_key: bool = True
) -> list[Path]:
    """``data.%04d.lmdb`` chunks of PyG-1 pickles plus ``metadata.npz`` (natoms), as OCP writes."""
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for k in range(0, len(entries), chunk):
        part = [dumps_pyg1(e) for e in entries[k : k + chunk]]
        files.append(
            write_lmdb(directory / f"data.{k // chunk:04d}.lmdb", part, length_key=length_key)
        )
    natoms = np.array([len(e["atomic_numbers"]) for e in entries])
    np.savez(directory / "metadata.npz", natoms=natoms)
    return files


# --------------------------------------------------------------------------------------------
# OC20 raw extxyz shards


def write_oc20_shard(
    directory: Path, k: int, frames: Sequence[Atoms], refs: Sequence[float], sids: Sequence[int]
) -> Path:
    """``k.extxyz.xz`` + ``k.txt.xz`` with EMT energies/forces and ``random<sid>,frame<i>,ref``."""
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    out = []
    for a in frames:
        e, f = emt_label(a)
        b = a.copy()
        b.calc = SinglePointCalculator(b, energy=e, free_energy=e, forces=f)
        out.append(b)
    directory.mkdir(parents=True, exist_ok=True)
    with lzma.open(directory / f"{k}.extxyz.xz", "wt") as fh:
        ase.io.write(fh, out, format="extxyz")
    with lzma.open(directory / f"{k}.txt.xz", "wt") as fh:
        for i, (sid, ref) in enumerate(zip(sids, refs)):
            fh.write(f"random{sid},frame{i},{ref}\n")
    return directory / f"{k}.extxyz.xz"


# --------------------------------------------------------------------------------------------
# HDF5: ANI-1x, Transition-1x, SPICE


def write_ani1x(
    path: Path,
    groups: dict[str, list[Atoms]],
    *,
    nan: dict[str, list[int]] | None = None,
    level: str = "wb97x_dz",
) -> Path:
    """ANI-1x layout: per formula atomic_numbers, coordinates, <level>.energy/forces in Ha, Ha/Å.

    ``nan`` marks conformers whose energy is set to NaN at ``level``; every group also has a
    sparse ``ccsd(t)_cbs.energy`` that is NaN except for conformer 0.
    """
    with h5py.File(path, "w") as f:
        for formula, frames in groups.items():
            labels = [emt_label(a) for a in frames]
            g = f.create_group(formula)
            g["atomic_numbers"] = frames[0].numbers.astype(np.uint8)
            g["coordinates"] = np.stack([a.positions for a in frames]).astype(np.float32)
            e = np.array([x[0] for x in labels]) / HARTREE
            forces = np.stack([x[1] for x in labels]) / HARTREE
            for i in (nan or {}).get(formula, []):
                e[i] = np.nan
            g[f"{level}.energy"] = e.astype(np.float64)
            g[f"{level}.forces"] = forces.astype(np.float32)
            cc = np.full(len(frames), np.nan)
            cc[0] = e[0] - 0.01
            g["ccsd(t)_cbs.energy"] = cc
    return path


T1X = "wB97x_6-31G(d)"


def write_t1x(
    path: Path,
    reactions: dict[str, dict[str, list[Atoms]]],
    splits: dict[str, list[tuple[str, str]]],
) -> Path:
    """Transition-1x layout: /data/<formula>/<rxn>/{datasets, reactant, product,
    transition_state}, hard-linked into the split groups named in ``splits``; eV and eV/Å."""
    with h5py.File(path, "w") as f:
        for formula, rxns in reactions.items():
            for rxn, frames in rxns.items():
                g = f.create_group(f"data/{formula}/{rxn}")
                labels = [emt_label(a) for a in frames]
                _t1x_sets(g, frames, labels)
                for sub, k in (
                    ("reactant", 0),
                    ("product", -1),
                    ("transition_state", len(frames) // 2),
                ):
                    _t1x_sets(g.create_group(sub), [frames[k]], [labels[k]])
        for split, members in splits.items():
            for formula, rxn in members:
                f[f"{split}/{formula}/{rxn}"] = f[f"data/{formula}/{rxn}"]
    return path


def _t1x_sets(g, frames, labels) -> None:
    g["atomic_numbers"] = frames[0].numbers.astype(np.int64)
    g["positions"] = np.stack([a.positions for a in frames]).astype(np.float32)
    g[f"{T1X}.energy"] = np.array([x[0] for x in labels])
    g[f"{T1X}.forces"] = np.stack([x[1] for x in labels]).astype(np.float32)


def write_spice(path: Path, molecules: dict[str, list[Atoms]], *, units: bool = True) -> Path:
    """SPICE layout: bohr, Hartree and the energy *gradient* (Ha/bohr), with units attributes."""
    with h5py.File(path, "w") as f:
        for name, frames in molecules.items():
            labels = [emt_label(a) for a in frames]
            g = f.create_group(name)
            g.create_dataset(
                "subset",
                data=["SPICE Dipeptides Single Points Dataset v1.2"],
                dtype=h5py.string_dtype(),
            )
            g.create_dataset("smiles", data=["[H:1][C:2]"], dtype=h5py.string_dtype())
            g["atomic_numbers"] = frames[0].numbers.astype(np.int16)
            g["conformations"] = (np.stack([a.positions for a in frames]) / JMP_BOHR).astype(
                np.float32
            )
            e = np.array([x[0] for x in labels]) / JMP_HARTREE
            g["dft_total_energy"] = e
            grad = -np.stack([x[1] for x in labels]) / JMP_HARTREE * JMP_BOHR
            g["dft_total_gradient"] = grad.astype(np.float32)
            g["formation_energy"] = e - 1.0
            if units:
                for k, u in (
                    ("conformations", "bohr"),
                    ("dft_total_energy", "hartree"),
                    ("dft_total_gradient", "hartree/bohr"),
                    ("formation_energy", "hartree"),
                ):
                    g[k].attrs["units"] = u
    return path


# --------------------------------------------------------------------------------------------
# QM9 .xyz


def qm9_text(
    idx: int, atoms: Atoms, props: Sequence[float] | None = None, mathematica: bool = False
) -> str:
    """One ``dsgdb9nsd_NNNNNN.xyz`` text; ``props`` = A B C mu alpha homo lumo gap r2 zpve U0 U H G Cv."""
    props = (
        list(props)
        if props is not None
        else [
            157.7118,
            157.70997,
            157.70699,
            0.0,
            13.21,
            -0.3877,
            0.1171,
            0.5048,
            35.3641,
            0.044749,
            -40.47893,
            -40.476062,
            -40.475117,
            -40.498597,
            6.469,
        ]
    )
    fmt = [f"{p}" for p in props]
    if mathematica:
        fmt[3] = "2.1997*^-6"
    lines = [str(len(atoms)), "gdb " + str(idx) + "\t" + "\t".join(fmt)]
    for s, p in zip(atoms.get_chemical_symbols(), atoms.positions):
        coords = [f"{x:.10f}" for x in p]
        lines.append("\t".join([s, *coords, "-0.1*^-1"]))
    lines.append("\t".join(["1341.307"] * max(1, 3 * len(atoms) - 6)))
    lines.append("C\tC")
    lines.append("InChI=1S/CH4/h1H4\tInChI=1S/CH4/h1H4")
    return "\n".join(lines) + "\n"


def write_qm9_tar(path: Path, texts: dict[int, str], *, order: Sequence[int] | None = None) -> Path:
    """``dsgdb9nsd.xyz.tar.bz2`` holding the given files (member order ``order``)."""
    with tarfile.open(path, "w:bz2") as tar:
        for idx in order or sorted(texts):
            data = texts[idx].encode()
            info = tarfile.TarInfo(f"dsgdb9nsd_{idx:06d}.xyz")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def write_uncharacterized(path: Path, indices: Sequence[int]) -> Path:
    """``uncharacterized.txt``: 9 header lines, one row per index, 2 trailer lines."""
    header = (
        [" Uncharacterized molecules (fixture)"]
        + [" header line"] * 7
        + ["   Index    SMILES    SMILES"]
    )
    rows = [f"{i:8d}  C  C  0.1  0.2" for i in indices]
    path.write_text("\n".join(header + rows + [" ------", ""]) + "\n")
    return path


# --------------------------------------------------------------------------------------------
# rMD17 / MD22 npz


def write_rmd17(path: Path, frames: Sequence[Atoms]) -> Path:
    """``rmd17_<mol>.npz``: nuclear_charges, coords Å, energies kcal/mol, forces kcal/mol/Å."""
    labels = [emt_label(a) for a in frames]
    np.savez(
        path,
        nuclear_charges=frames[0].numbers.astype(np.int64),
        coords=np.stack([a.positions for a in frames]),
        energies=np.array([x[0] for x in labels]) / KCAL,
        forces=np.stack([x[1] for x in labels]) / KCAL,
        old_indices=np.arange(len(frames)),
        old_energies=np.zeros(len(frames)),
        old_forces=np.zeros((len(frames), len(frames[0]), 3)),
    )
    return path


def write_md22(
    path: Path, frames: Sequence[Atoms], *, e_unit: str = "kcal/mol", r_unit: str = "Ang"
) -> Path:
    """sGDML ``md22_<name>.npz``: R, z, E (F, 1), F and 0-d string metadata."""
    labels = [emt_label(a) for a in frames]
    e_f = {"kcal/mol": KCAL, "eV": 1.0}[e_unit]
    r_f = {"Ang": 1.0, "Bohr": BOHR}[r_unit]
    np.savez(
        path,
        R=np.stack([a.positions for a in frames]) / r_f,
        z=frames[0].numbers.astype(np.int64),
        E=(np.array([x[0] for x in labels]) / e_f)[:, None],
        F=np.stack([x[1] for x in labels]) / e_f * r_f,
        name=np.array(path.stem.removeprefix("md22_")),
        theory=np.array("PBE+MBD, 500K"),
        r_unit=np.array(r_unit),
        e_unit=np.array(e_unit),
        type=np.array(b"d"),
        md5=np.array(b"0" * 32),
        code_version=np.array("0.4.18.dev1"),
        perms=np.arange(len(frames[0]))[None],
    )
    return path


# --------------------------------------------------------------------------------------------
# MatBench and QMOF (pymatgen Structure dicts)


def structure_dict(atoms: Atoms, *, label_suffix: str = "", oxidation: bool = False) -> dict:
    """A pymatgen ``Structure.as_dict()`` of ``atoms`` (written by hand, no pymatgen)."""
    cell = atoms.cell.array
    frac = atoms.get_scaled_positions(wrap=False)
    lat = atoms.cell.cellpar()
    sites = []
    for s, abc, xyz in zip(atoms.get_chemical_symbols(), frac, atoms.positions):
        el = f"{s}2+" if oxidation else s
        sites.append(
            {
                "species": [{"element": el, "occu": 1}],
                "abc": abc.tolist(),
                "xyz": xyz.tolist(),
                "label": s + label_suffix,
                "properties": {"pbe_ddec_charge": 0.1},
            }
        )
    return {
        "@module": "pymatgen.core.structure",
        "@class": "Structure",
        "charge": 0,
        "lattice": {
            "matrix": cell.tolist(),
            "pbc": [True, True, True],
            "a": lat[0],
            "b": lat[1],
            "c": lat[2],
            "alpha": lat[3],
            "beta": lat[4],
            "gamma": lat[5],
            "volume": atoms.get_volume(),
        },
        "properties": {},
        "sites": sites,
    }


def bulk_structures(n: int = 5, seed: int = 0) -> list[Atoms]:
    """Small rattled bulk crystals (Cu, Al, Ni, Pd, Ag cycling)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        el = ["Cu", "Al", "Ni", "Pd", "Ag"][i % 5]
        a = bulk(el, "fcc", cubic=True)
        a.positions += rng.normal(scale=0.02, size=a.positions.shape)
        out.append(a)
    return out


def write_matbench(
    path: Path, structures: Sequence[Atoms], targets: Sequence[Any], column: str
) -> Path:
    """matminer ``orient='split'`` JSON (gzipped when the name ends in .gz)."""
    doc = {
        "index": list(range(len(structures))),
        "columns": ["structure", column],
        "data": [[structure_dict(a), t] for a, t in zip(structures, targets)],
    }
    raw = json.dumps(doc).encode()
    path.write_bytes(gzip.compress(raw) if path.name.endswith(".gz") else raw)
    return path


def write_matbench_folds(path: Path, task: str, ids: Sequence[str], seed: int = 18012019) -> Path:
    """``matbench_v0.1_validation.json`` with KFold(5, shuffle, 18012019) folds over ``ids``."""
    from sklearn.model_selection import KFold

    folds = {}
    for k, (tr, te) in enumerate(KFold(5, shuffle=True, random_state=seed).split(ids)):
        folds[f"fold_{k}"] = {"train": [ids[i] for i in tr], "test": [ids[i] for i in te]}
    path.write_text(json.dumps({"metadata": {}, "splits": {task: folds}}))
    return path


def write_qmof(directory: Path, structures: Sequence[Atoms], gaps: Sequence[float]) -> Path:
    """``qmof.json`` + ``qmof_structure_data.json`` (parallel lists), site labels like ``Cu1``."""
    directory.mkdir(parents=True, exist_ok=True)
    props, structs = [], []
    for i, (a, gap) in enumerate(zip(structures, gaps)):
        qid = f"qmof-{i:05x}"
        props.append(
            {
                "qmof_id": qid,
                "name": f"MOF{i}",
                "info": {"natoms": len(a)},
                "outputs": {"pbe": {"energy_total": -10.0 * len(a), "bandgap": gap}},
            }
        )
        structs.append(
            {"qmof_id": qid, "name": f"MOF{i}", "structure": structure_dict(a, label_suffix="1")}
        )
    (directory / "qmof.json").write_text(json.dumps(props))
    (directory / "qmof_structure_data.json").write_text(json.dumps(structs, indent=1))
    return directory


# --------------------------------------------------------------------------------------------
# Physics check shared by the reader tests


def work_ratio(records) -> float:
    """Slope of ΔE against −½(F₁+F₂)·Δx over consecutive records (1 when F = −dE/dx in the
    same units as E per Å; −1 for a flipped sign, 27.2 for forces left in Hartree, ...)."""
    de, w = [], []
    for a, b in zip(records[:-1], records[1:]):
        dx = b.positions - a.positions
        de.append(b.energy - a.energy)
        w.append(-0.5 * np.sum((a.forces + b.forces) * dx))
    de, w = np.asarray(de), np.asarray(w)
    return float(np.sum(de * w) / np.sum(w * w))
