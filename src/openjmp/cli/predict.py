"""`openjmp predict CHECKPOINT STRUCTURES -o OUT`: energies and forces for any ASE-readable file.

The output format follows the suffix of OUT: ``.npz`` (energies (n,) eV; forces and positions
concatenated over atoms, (sum N_i, 3) eV/Å and Å, with ``natoms`` (n,) to split them) or any
ASE-writable format such as ``.extxyz`` (each structure with its energy and forces attached).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from openjmp.cli.args import positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="energies and forces of structures with a JMP checkpoint",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("checkpoint", type=Path, help="jmp-s.pt, jmp-l.pt or an openjmp model file")
    p.add_argument("structures", type=Path, help="any file ase.io.read can read (all frames)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output .npz or .extxyz")
    p.add_argument("--graph", default="oc20", help="graph setting (oc20, oc22, ani1x, rmd17, ...)")
    p.add_argument("--head", default=None, help="energy head or task name (default: the first)")
    p.add_argument(
        "--forces", choices=["auto", "direct", "gradient", "none"], default="auto",
        help="direct force head, -dE/dx, or auto (direct when the model has one)",
    )  # fmt: skip
    p.add_argument("--raw", action="store_true", help="use the raw weights instead of the EMA")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--max-atoms-per-batch", type=positive_int, default=2000)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import ase.io
    import numpy as np
    import torch

    from openjmp.api import load_model, predict
    from openjmp.errors import DataError

    try:
        frames = ase.io.read(str(args.structures), index=":")
    except FileNotFoundError:
        raise DataError(args.structures, None, "file not found") from None
    except Exception as exc:  # noqa: BLE001 - ASE raises many types for unreadable files
        raise DataError(args.structures, None, f"ASE cannot read it: {exc}") from None
    if not isinstance(frames, list):
        frames = [frames]
    if not frames:
        raise DataError(args.structures, None, "no structures in the file")
    model = load_model(args.checkpoint, ema=not args.raw, dtype=getattr(torch, args.dtype))
    pred = predict(
        model, frames, graph=args.graph, head=args.head, forces=args.forces,
        max_atoms_per_batch=args.max_atoms_per_batch, progress=True,
    )  # fmt: skip
    out: Path = args.output
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=out.name + ".", suffix=out.suffix, dir=out.parent)
    os.close(fd)
    try:
        if out.suffix == ".npz":
            arrays = {
                "energies": pred.energies,
                "natoms": np.array([len(a) for a in frames]),
                "positions": np.concatenate([a.get_positions() for a in frames]),
                "atomic_numbers": np.concatenate([a.get_atomic_numbers() for a in frames]),
            }
            if pred.forces is not None:
                arrays["forces"] = np.concatenate(pred.forces)
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
        else:
            from ase.calculators.singlepoint import SinglePointCalculator

            written = []
            for i, atoms in enumerate(frames):
                a = atoms.copy()
                results = {"energy": float(pred.energies[i])}
                if pred.forces is not None:
                    results["forces"] = pred.forces[i]
                a.calc = SinglePointCalculator(a, **results)
                written.append(a)
            fmt = "extxyz" if out.suffix in (".xyz", ".extxyz") else None
            ase.io.write(tmp, written, format=fmt)
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    print(
        f"wrote {len(frames)} structures to {out} (head {pred.energy_head}, forces {pred.force_head})"
    )
    return 0
