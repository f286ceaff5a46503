"""``openjmp validate MODEL [STRUCTURES] [--out DIR]``: is a trained model safe for MD?

Runs the physics checks of `openjmp.potential_check` (forces and stress against finite
differences, NVE energy drift, an equation of state, dimer curves) on the structures of an
ASE-readable file, or on structures built with ASE from the elements the model was trained on
(nothing is downloaded). Prints one line per check with pass / warn / skip and the threshold
used; writes ``report.json`` and the figures (``nve.png``, ``eos.png``, ``dimers.png``) into
``--out``. Exit status 0; with ``--strict``, 1 when any check warns.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from openjmp.cli.args import positive_int, read_structures


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="physics checks of a trained model (forces, stress, NVE, EOS, dimers)",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("model", type=Path, help="an openjmp checkpoint or model file")
    p.add_argument(
        "structures",
        type=Path,
        nargs="?",
        default=None,
        help="structures to check (any file ase.io.read reads); default: built with ASE",
    )
    p.add_argument(
        "--out", type=Path, default=None, help="report directory (default validate-<model>)"
    )
    p.add_argument("--head", default=None, help="energy head or task name")
    p.add_argument("--graph", default=None, help="graph setting name (default: the head's own)")
    p.add_argument("--forces", choices=["auto", "direct", "gradient"], default="auto")
    p.add_argument(
        "--nve-steps", type=positive_int, default=200, help="velocity Verlet steps of 0.5 fs"
    )
    p.add_argument(
        "--max-pairs", type=positive_int, default=6, help="dimer curves (element pairs) at most"
    )
    p.add_argument("--strict", action="store_true", help="exit 1 when a check warns")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from openjmp.api import load_model
    from openjmp.potential_check import run_checks

    structures = None if args.structures is None else read_structures(args.structures)
    model = load_model(args.model)
    out = args.out or Path(f"validate-{args.model.stem}")
    checks = run_checks(
        model,
        structures,
        head=args.head,
        graph=args.graph,
        forces=args.forces,
        nve_steps=args.nve_steps,
        max_pairs=args.max_pairs,
        out_dir=out,
    )
    print(f"{'check':<22} {'result':<5} {'value':>10} {'unit':<12} threshold")
    for c in checks:
        print(c.line())
    warned = [c.name for c in checks if c.status == "warn"]
    print(f"{len(checks) - len(warned)} of {len(checks)} pass or skip; report and figures in {out}")
    return 1 if (args.strict and warned) else 0
