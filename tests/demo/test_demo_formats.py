"""Format-level checks of every demo set, read with lmdb/h5py/numpy/json only (no openjmp.io).

What each native format must hold (datasets.md sections 1-6, 9, 11): key names, dtypes,
shapes, units and split layout. Units are checked by recomputing a stored label from scratch
(EMT or GFN2-xTB on the stored geometry) and converting it the way the format demands, so a
wrong unit factor fails. Tolerances: EMT is deterministic to ~1e-12 eV, stored in float32 or
float64 as the format says; xTB SCF energies reproduce to ~1e-6 eV from a fresh start.
"""

from __future__ import annotations

import gzip
import io
import json
import pickle
import tarfile
from pathlib import Path

import h5py
import lmdb
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.emt import EMT
from ase.units import Hartree, kcal, mol

from openjmp.data.demo.xtb import xtb_single_point

from helpers.demo_unpickle import loads_pyg


def read_lmdb_dir(directory: Path) -> tuple[list[dict], np.ndarray]:
    entries = []
    for path in sorted(directory.glob("data.*.lmdb")):
        env = lmdb.open(str(path), subdir=False, readonly=True, lock=False)
        with env.begin() as txn:
            n = pickle.loads(txn.get(b"length"))
            assert env.stat()["entries"] == n + 1
            entries += [loads_pyg(txn.get(str(i).encode())) for i in range(n)]
        env.close()
    natoms = np.load(directory / "metadata.npz")["natoms"]
    return entries, natoms


def emt_energy(entry: dict, pos: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    atoms = Atoms(
        numbers=entry["atomic_numbers"].astype(int),
        positions=entry["pos"] if pos is None else pos,
        cell=entry["cell"][0],
        pbc=True,
    )
    atoms.calc = EMT()
    return atoms.get_potential_energy(), atoms.get_forces()


@pytest.mark.parametrize("split", ["train", "val_id"])
def test_oc20_lmdb_layout_and_labels(demo_corpus: Path, split: str) -> None:
    root = demo_corpus / "oc20_like"
    entries, natoms = read_lmdb_dir(root / "s2ef" / split)
    assert len(entries) > 0 and len(natoms) == len(entries)
    refs = pickle.loads((root / "oc20_ref.pkl").read_bytes())
    for e, n in zip(entries, natoms, strict=True):
        assert set(e) == {
            "pos",
            "cell",
            "atomic_numbers",
            "natoms",
            "tags",
            "fixed",
            "force",
            "y",
            "sid",
            "fid",
        }
        assert e["natoms"] == n == len(e["atomic_numbers"])
        assert e["pos"].dtype == np.float32 and e["pos"].shape == (n, 3)
        assert e["cell"].dtype == np.float32 and e["cell"].shape == (1, 3, 3)
        assert e["atomic_numbers"].dtype == np.float32  # as the 2020 OCP writer stored it
        assert e["tags"].dtype == np.int64 and set(e["tags"].tolist()) == {0, 1, 2}
        assert e["force"].dtype == np.float32 and e["force"].shape == (n, 3)
        assert isinstance(e["y"], float) and isinstance(e["sid"], int) and isinstance(e["fid"], int)
        # subsurface atoms (tag 0) are exactly the fixed ones
        np.testing.assert_array_equal(e["fixed"] == 1, e["tags"] == 0)
    # y is the adsorption energy: y + ref = total EMT energy of the stored geometry
    for e in entries[:: max(1, len(entries) // 4)]:
        total, forces = emt_energy(e)
        assert e["y"] + refs[f"random{e['sid']}"] == pytest.approx(total, abs=1e-6)
        np.testing.assert_allclose(e["force"], forces, atol=1e-5)


def test_oc20_and_oc22_splits_are_by_system(demo_corpus: Path) -> None:
    for rel in ("oc20_like/s2ef", "oc22_like/s2ef-total"):
        train, _ = read_lmdb_dir(demo_corpus / rel / "train")
        val, _ = read_lmdb_dir(demo_corpus / rel / "val_id")
        assert {e["sid"] for e in train}.isdisjoint({e["sid"] for e in val})


def test_oc22_lmdb_total_energy_and_flag(demo_corpus: Path) -> None:
    entries, _ = read_lmdb_dir(demo_corpus / "oc22_like" / "s2ef-total" / "train")
    assert all(e["oc22"] == 1 for e in entries)
    bulk = [e for e in entries if set(e["tags"].tolist()) == {2}]
    slabs = [e for e in entries if 0 in e["tags"]]
    assert bulk and slabs, "OC22-like set must hold both bulk cells and surfaces"
    for e in bulk[:3] + slabs[:3]:
        total, forces = emt_energy(e)
        assert e["y"] == pytest.approx(total, abs=1e-6)  # total energy, not referenced
        np.testing.assert_allclose(e["force"], forces, atol=1e-5)


def test_lmdb_loads_in_real_torch(demo_corpus: Path) -> None:
    """The tensors decode with torch's own rebuild functions (only PyG's class is stubbed)."""
    torch = pytest.importorskip("torch")  # torch is a core dependency; the skip never hides a bug

    class Stub:
        def __setstate__(self, state: dict) -> None:
            self.__dict__.update(state)

    class U(pickle.Unpickler):
        def find_class(self, module: str, name: str):
            return (
                Stub if module.startswith("torch_geometric") else super().find_class(module, name)
            )

    path = demo_corpus / "oc22_like" / "s2ef-total" / "val_id" / "data.0000.lmdb"
    env = lmdb.open(str(path), subdir=False, readonly=True, lock=False)
    with env.begin() as txn:
        raw = txn.get(b"0")
    env.close()
    obj = U(io.BytesIO(raw)).load()
    ours = loads_pyg(raw)
    for key, value in ours.items():
        theirs = getattr(obj, key)
        if isinstance(value, np.ndarray):
            assert isinstance(theirs, torch.Tensor)
            np.testing.assert_array_equal(theirs.numpy(), value)
        else:
            assert theirs == value


def test_ani1x_hdf5_layout_and_units(demo_corpus: Path) -> None:
    with h5py.File(demo_corpus / "ani1x_like" / "ani1x-release.h5", "r") as f:
        assert "GFN2-xTB" in f.attrs["level_of_theory"]
        total = 0
        for formula, g in f.items():
            z = g["atomic_numbers"][:]
            c = g["coordinates"].shape[0]
            total += c
            assert z.dtype == np.uint8 and np.all(np.diff(z) >= 0)
            assert g["coordinates"].dtype == np.float32 and g["coordinates"].shape == (c, len(z), 3)
            assert g["wb97x_dz.energy"].dtype == np.float64 and g["wb97x_dz.energy"].shape == (c,)
            assert g["wb97x_dz.forces"].dtype == np.float32
            assert Atoms(numbers=z).get_chemical_formula(mode="hill") == formula
        # Hartree: recompute one conformer with xTB (eV) and convert
        g = f[sorted(f)[0]]
        atoms = Atoms(numbers=g["atomic_numbers"][:], positions=g["coordinates"][0])
        p = xtb_single_point(atoms)
        assert g["wb97x_dz.energy"][0] * Hartree == pytest.approx(p.energy, abs=1e-5)
        np.testing.assert_allclose(g["wb97x_dz.forces"][0] * Hartree, p.forces, atol=1e-4)
    assert total > 0


def test_ani1x_excludes_the_rmd17_molecule(demo_corpus: Path) -> None:
    """No ANI-1x-like C2H6O conformer is ethanol (its C-O-C vs C-C-O bonding differs)."""
    with h5py.File(demo_corpus / "ani1x_like" / "ani1x-release.h5", "r") as f:
        if "C2H6O" not in f:
            return
        for pos in f["C2H6O"]["coordinates"][:]:
            atoms = Atoms("H6C2O", positions=pos)
            d = atoms.get_all_distances()
            c1, c2, o = 6, 7, 8
            assert d[c1, c2] > 2.0, "a C-C bond in C2H6O means ethanol, reserved for fine-tuning"
            assert d[c1, o] < 1.7 and d[c2, o] < 1.7


def test_transition1x_hdf5_layout_links_and_units(demo_corpus: Path) -> None:
    with h5py.File(demo_corpus / "transition1x_like" / "transition1x.h5", "r") as f:
        assert set(f) == {"data", "train", "val", "test"}
        formulas = {s: set(f[s]) for s in ("train", "val", "test")}
        assert formulas["train"] and formulas["val"] and formulas["test"]
        assert not (formulas["train"] & formulas["val"] or formulas["train"] & formulas["test"])
        assert formulas["train"] | formulas["val"] | formulas["test"] == set(f["data"])
        for split, names in formulas.items():
            for formula in names:
                assert f[split][formula] == f["data"][formula]  # hard link, same object
        formula = sorted(f["data"])[0]
        rxn_name = sorted(f["data"][formula])[0]
        rxn = f["data"][formula][rxn_name]
        assert rxn_name.startswith("rxn") and rxn_name[3:].isdigit()
        c = rxn["positions"].shape[0]
        z = rxn["atomic_numbers"][:]
        assert rxn["positions"].shape == (c, len(z), 3) and rxn["positions"].dtype == np.float32
        assert rxn["wB97x_6-31G(d).energy"].shape == (c,)
        assert rxn["wB97x_6-31G(d).forces"].shape == (c, len(z), 3)
        for sub in ("reactant", "product", "transition_state"):
            assert rxn[sub]["positions"].shape == (1, len(z), 3)
            assert rxn[sub]["wB97x_6-31G(d).energy"].shape == (1,)
        e = rxn["wB97x_6-31G(d).energy"][:]
        ts = rxn["transition_state"]["wB97x_6-31G(d).energy"][0]
        assert ts >= e[0] and ts >= e[1] and ts in e
        assert np.all(e <= min(e[0], e[1]) + 5.0 + 1e-9)  # the energy cap
        # eV, no Hartree factor: recompute the transition state
        atoms = Atoms(numbers=z, positions=rxn["transition_state"]["positions"][0])
        assert ts == pytest.approx(xtb_single_point(atoms).energy, abs=1e-5)


def _qm9_members(path: Path) -> dict[str, str]:
    with tarfile.open(path, "r:bz2") as tar:
        return {m.name: tar.extractfile(m).read().decode() for m in tar if m.isfile()}


def test_qm9_xyz_layout_and_units(demo_corpus: Path, demo_manifest: dict) -> None:
    root = demo_corpus / "qm9_like"
    members = _qm9_members(root / "dsgdb9nsd.xyz.tar.bz2")
    n = demo_manifest["sets"]["qm9_like"]["counts"]["structures"]
    assert sorted(members) == [f"dsgdb9nsd_{i:06d}.xyz" for i in range(1, n + 1)]
    text = members["dsgdb9nsd_000001.xyz"]
    lines = text.splitlines()
    na = int(lines[0])
    head = lines[1].split()
    assert head[:2] == ["gdb", "1"] and len(head) == 17
    A, B, C, mu, alpha, homo, lumo, gap, r2, zpve, u0, u, h, g, cv = map(float, head[2:])
    assert A >= B >= C > 0 and mu >= 0 and alpha > 0 and r2 > 0
    assert gap == pytest.approx(lumo - homo, abs=1e-8) and 0.05 < gap < 1.0  # Hartree
    symbols, pos = [], []
    for line in lines[2 : 2 + na]:
        tok = line.split("\t")
        assert len(tok) == 5
        symbols.append(tok[0])
        pos.append([float(t) for t in tok[1:4]])
    assert len(lines) == na + 5  # + frequencies, SMILES, InChI lines
    p = xtb_single_point(Atoms(symbols, positions=pos))
    assert u0 * Hartree == pytest.approx(p.energy, abs=1e-4)
    assert gap == pytest.approx(p.gap, abs=1e-7)
    assert mu == pytest.approx(float(np.linalg.norm(p.dipole)), abs=1e-5)
    # free-atom references of the same level beside the tarball
    ref_rows = [ln.split() for ln in (root / "atomref.txt").read_text().splitlines()]
    assert {r[0] for r in ref_rows if r and r[0] in {"H", "C", "N", "O", "F"}} == {
        "H",
        "C",
        "N",
        "O",
        "F",
    }


def test_rmd17_npz_layout_and_units(demo_corpus: Path, demo_manifest: dict) -> None:
    root = demo_corpus / "rmd17_like" / "rmd17"
    data = np.load(root / "npz_data" / "rmd17_ethanol.npz", allow_pickle=False)
    f = demo_manifest["sets"]["rmd17_like"]["counts"]["structures"]
    z = data["nuclear_charges"]
    assert sorted(z.tolist()) == [1] * 6 + [6, 6, 8]
    assert data["coords"].shape == (f, 9, 3) and data["energies"].shape == (f,)
    assert data["forces"].shape == (f, 9, 3)
    assert np.all(np.diff(data["old_indices"]) == 10)  # one frame every 10 MD steps
    # kcal/mol: recompute frame 3
    p = xtb_single_point(Atoms(numbers=z, positions=data["coords"][3]))
    assert data["energies"][3] * (kcal / mol) == pytest.approx(p.energy, abs=1e-5)
    np.testing.assert_allclose(data["forces"][3] * (kcal / mol), p.forces, atol=1e-4)
    train = np.loadtxt(root / "splits" / "index_train_01.csv", dtype=int)
    test = np.loadtxt(root / "splits" / "index_test_01.csv", dtype=int)
    assert (
        len(train) and len(test) and not set(train) & set(test) and max(train.max(), test.max()) < f
    )


def test_matbench_json_and_folds(demo_corpus: Path, demo_manifest: dict) -> None:
    from sklearn.model_selection import KFold

    root = demo_corpus / "matbench_like"
    with gzip.open(root / "matbench_mp_e_form.json.gz", "rt") as fh:
        doc = json.load(fh)
    n = demo_manifest["sets"]["matbench_like"]["counts"]["structures"]
    assert doc["columns"] == ["structure", "e_form"] and doc["index"] == list(range(n))
    struct, e_form = doc["data"][0]
    assert struct["@class"] == "Structure" and struct["@module"] == "pymatgen.core.structure"
    cell = np.array(struct["lattice"]["matrix"])
    frac = np.array([s["abc"] for s in struct["sites"]])
    np.testing.assert_allclose(frac @ cell, [s["xyz"] for s in struct["sites"]], atol=1e-10)
    assert struct["lattice"]["volume"] == pytest.approx(abs(np.linalg.det(cell)))
    symbols = [s["species"][0]["element"] for s in struct["sites"]]
    assert all(s["species"][0]["occu"] == 1 for s in struct["sites"])
    # eV/atom against EMT references recomputed here
    from ase.build import bulk
    from ase.eos import EquationOfState

    atoms = Atoms(symbols, scaled_positions=frac, cell=cell, pbc=True)
    atoms.calc = EMT()
    ref = 0.0
    for sym in symbols:
        vols, ens = [], []
        for s in np.linspace(-0.06, 0.06, 7):
            b = bulk(sym, "fcc", cubic=True)
            b.set_cell(b.cell.array * (1 + s) ** (1 / 3), scale_atoms=True)
            b.calc = EMT()
            vols.append(b.get_volume())
            ens.append(b.get_potential_energy())
        v0, _, _ = EquationOfState(vols, ens).fit()
        b = bulk(sym, "fcc", cubic=True)
        b.set_cell(b.cell.array * (v0 / b.get_volume()) ** (1 / 3), scale_atoms=True)
        b.calc = EMT()
        ref += b.get_potential_energy() / 4
    assert e_form == pytest.approx((atoms.get_potential_energy() - ref) / len(atoms), abs=1e-6)
    # folds: MatBench ids, KFold(5, shuffle, 18012019), a partition
    width = int(np.floor(np.log10(n))) + 1
    ids = [f"mb-mp-e-form-{i + 1:0{width}d}" for i in range(n)]
    val = json.loads((root / "matbench_v0.1_validation.json").read_text())
    folds = val["splits"]["matbench_mp_e_form"]
    kf = KFold(n_splits=5, shuffle=True, random_state=18012019)
    seen = []
    for k, (tr, te) in enumerate(kf.split(ids)):
        assert folds[f"fold_{k}"]["test"] == [ids[i] for i in te]
        assert folds[f"fold_{k}"]["train"] == [ids[i] for i in tr]
        seen += folds[f"fold_{k}"]["test"]
    assert sorted(seen) == ids


@pytest.mark.parametrize(
    "array",
    [
        np.array(3.5, dtype=np.float64),  # 0-d tensor
        np.arange(12, dtype=np.int32).reshape(3, 4)[:, ::2],  # non-contiguous view
        np.array([True, False, True]),
        np.zeros((0, 3), dtype=np.float32),  # empty
        np.array([1, 6, 8], dtype=np.uint8),
    ],
)
def test_pyg_pickle_tensors_round_trip(array: np.ndarray) -> None:
    """Writer output decodes identically with the torch-free reader and with real torch."""
    from openjmp.data.demo.writers.pyg_pickle import dumps_pyg1_data

    raw = dumps_pyg1_data({"x": array, "n": 3, "y": -1.25, "name": "a"})
    fields = loads_pyg(raw)
    assert fields["n"] == 3 and fields["y"] == -1.25 and fields["name"] == "a"
    assert fields["x"].dtype == array.dtype and fields["x"].shape == array.shape
    np.testing.assert_array_equal(fields["x"], array)
    torch = pytest.importorskip("torch")  # a core dependency: present wherever openjmp runs

    class Stub:
        def __setstate__(self, state: dict) -> None:
            self.__dict__.update(state)

    class U(pickle.Unpickler):
        def find_class(self, module: str, name: str):
            if module.startswith("torch_geometric"):
                return Stub
            return super().find_class(module, name)

    t = U(io.BytesIO(raw)).load().x
    assert isinstance(t, torch.Tensor) and tuple(t.shape) == array.shape
    np.testing.assert_array_equal(t.numpy(), array)


def test_pyg_pickle_refuses_unsupported_values() -> None:
    from openjmp.data.demo.writers.pyg_pickle import dumps_pyg1_data

    with pytest.raises(TypeError, match="field 'bad'"):
        dumps_pyg1_data({"bad": [1, 2]})
    with pytest.raises(TypeError, match="no torch storage type"):
        dumps_pyg1_data({"c": np.array([1j])})
