"""`openjmp demo`: the README's main job on data openjmp makes itself (placeholder until the study lands)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the main job on embedded data (no downloads)")
    p.add_argument("--out", default="openjmp-demo", help="output directory")
    p.add_argument("--scale", type=float, default=1.0, help="size of the embedded corpus")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ase.build import fcc111, molecule

    from openjmp.records import AtomsRecord
    from openjmp.validate import validate_record

    structures = {"H2O": molecule("H2O"), "Cu(111) slab": fcc111("Cu", (2, 2, 3), vacuum=6.0)}
    print(f"{'structure':<16}{'atoms':>6}")
    for name, atoms in structures.items():
        rec = validate_record(AtomsRecord.from_ase(atoms, source=name))
        print(f"{name:<16}{rec.natoms:>6}")
    return 0
