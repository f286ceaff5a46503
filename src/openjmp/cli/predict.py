"""`openjmp predict CHECKPOINT STRUCTURES -o OUT`: energies, forces (and stress) for any ASE file.

The model predicts with the head and graph it was trained with (``--head`` and ``--graph`` /
``--cutoff`` / ``--max-neighbors`` override them) and in physical units: energies eV, forces
eV/Å, stress eV/Å³ (Voigt xx, yy, zz, yz, xz, xy), scalar properties in their targets' units.
The output format follows the suffix of OUT: ``.npz`` (energies (n,); forces and positions
concatenated over atoms, (sum N_i, 3), with ``natoms`` (n,) to split them; ``stress`` (n, 6);
one array per scalar property; ``units`` a JSON string) or any format ASE writes with
per-structure results, such as ``.extxyz`` (each structure with its energy, forces, stress).
The output format and the destination are checked before any work starts.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from openjmp.cli.args import positive_int, read_structures

if TYPE_CHECKING:  # imported when the command runs (a fast --help)
    from openjmp.graph.spec import GraphSpec
    from openjmp.model.jmp_model import JMPModel

ASE_OUTPUTS = {".extxyz": "extxyz", ".xyz": "extxyz", ".traj": "traj", ".db": "db", ".json": "json"}
"""Suffix -> ASE format for the structures-with-results outputs (besides .npz)."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="energies, forces and stress of structures with a JMP checkpoint",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument(
        "checkpoint", type=Path, help="an openjmp checkpoint or model file, jmp-s.pt, jmp-l.pt"
    )
    p.add_argument("structures", type=Path, help="any file ase.io.read can read (all frames)")
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help=f"output file: .npz or {', '.join(ASE_OUTPUTS)}",
    )
    p.add_argument(
        "--head", default=None, help="energy head or task name (default: the model's only one)"
    )
    p.add_argument(
        "--graph",
        default=None,
        help="graph setting name (oc20, ani1x, rmd17, ...); default: the graph the head was trained with",
    )
    p.add_argument(
        "--cutoff", type=float, default=None, help="graph cutoff in Å (overrides the setting's)"
    )
    p.add_argument(
        "--max-neighbors",
        type=int,
        default=None,
        help="base neighbour cap k (caps k, 2k/3, 4k/15, 100k/3; overrides the setting's)",
    )
    p.add_argument(
        "--forces",
        choices=["auto", "direct", "gradient", "none"],
        default="auto",
        help="direct force head, -dE/dx, or auto (direct when the model has one)",
    )
    p.add_argument("--stress", action="store_true", help="also the stress (periodic structures)")
    p.add_argument(
        "--references",
        action="append",
        default=[],
        metavar="TASK=FILE",
        help="per-element linear references of an energy head (the published "
        "checkpoints need them for energies): linref.npz (key coeff) or JSON",
    )
    p.add_argument(
        "--units",
        choices=["physical", "raw"],
        default="physical",
        help="raw: the heads' outputs as they are (labelled raw)",
    )
    p.add_argument(
        "--strict-elements",
        action="store_true",
        help="an element the head never saw in training is an error (default: a warning)",
    )
    p.add_argument(
        "--raw-weights",
        "--raw",
        dest="raw",
        action="store_true",
        help="use the raw weights instead of the EMA",
    )
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--max-atoms-per-batch", type=positive_int, default=2000)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _check_output(out: Path) -> str:
    """The output format of ``out``; a `ConfigError` (unknown suffix) or `DataError`
    (a destination that cannot be written) before any work."""
    from openjmp.errors import ConfigError
    from openjmp.io.paths import check_writable_dir

    suffix = out.suffix.lower()
    if suffix != ".npz" and suffix not in ASE_OUTPUTS:
        raise ConfigError(
            f"{out}: unknown output format {suffix or '(no suffix)'!r}; use .npz or "
            f"{', '.join(ASE_OUTPUTS)}"
        )
    check_writable_dir(out.parent, "output directory")
    return "npz" if suffix == ".npz" else ASE_OUTPUTS[suffix]


def _graph(args: argparse.Namespace, model: JMPModel, head: str | None) -> GraphSpec | None:
    """The graph setting: --graph (or the head's own), with --cutoff / --max-neighbors."""
    from dataclasses import replace

    from openjmp.api import resolve_heads
    from openjmp.errors import ConfigError
    from openjmp.graph.spec import graph_spec, max_neighbors_from_base

    if args.graph is not None:
        spec = graph_spec(args.graph)
    elif args.cutoff is None and args.max_neighbors is None:
        return None  # the model's own, resolved by predict
    else:
        name = resolve_heads(model, head, "none")[0] or next(iter(model.heads))
        info = model.head_info.get(name)
        if info is None or info.graph is None:
            raise ConfigError(
                "--cutoff / --max-neighbors: give --graph too (the model records no graph)"
            )
        spec = info.graph
    if args.cutoff is not None:
        spec = replace(spec, cutoff=args.cutoff)
    if args.max_neighbors is not None:
        spec = replace(spec, max_neighbors=max_neighbors_from_base(args.max_neighbors))
    return spec


def run(args: argparse.Namespace) -> int:
    import ase.io
    import numpy as np
    import torch

    from openjmp.api import Predictor, load_model
    from openjmp.errors import ConfigError

    out: Path = args.output
    fmt = _check_output(out)
    references = {}
    for item in args.references:
        task, sep, file = item.partition("=")
        if not sep or not task or not file:
            raise ConfigError(f"--references {item!r}: write TASK=FILE, e.g. oc20=oc20_linref.npz")
        references[task] = Path(file)
    frames = read_structures(args.structures)
    model = load_model(
        args.checkpoint,
        ema=not args.raw,
        dtype=getattr(torch, args.dtype),
        device=args.device,
        references=references,
    )
    predictor = Predictor(
        model,
        head=args.head,
        graph=_graph(args, model, args.head),
        forces=args.forces,
        stress=args.stress,
        units=args.units,
        unknown_elements="error" if args.strict_elements else "warn",
        max_atoms_per_batch=args.max_atoms_per_batch,
    )
    pred = predictor(frames, progress=not args.no_progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=out.name + ".", suffix=out.suffix, dir=out.parent)
    os.close(fd)
    try:
        if fmt == "npz":
            arrays = {
                "natoms": np.array([len(a) for a in frames]),
                "positions": np.concatenate([a.get_positions() for a in frames]),
                "atomic_numbers": np.concatenate([a.get_atomic_numbers() for a in frames]),
                "units": np.array(json.dumps(pred.units)),
                **{f"property_{k}": v for k, v in pred.properties.items()},
            }
            if pred.energies is not None:
                arrays["energies"] = pred.energies
            if pred.forces is not None:
                arrays["forces"] = np.concatenate(pred.forces)
            if pred.stress is not None:
                arrays["stress"] = pred.stress
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
        else:
            from ase.calculators.singlepoint import SinglePointCalculator

            Path(tmp).unlink()  # ASE's db/traj writers append to an existing file
            written = []
            for i, atoms in enumerate(frames):
                a = atoms.copy()
                results = {}
                if pred.energies is not None:
                    results["energy"] = float(pred.energies[i])
                if pred.forces is not None:
                    results["forces"] = pred.forces[i]
                if pred.stress is not None:
                    results["stress"] = pred.stress[i]
                for k, v in pred.properties.items():
                    a.info[k] = v[i].tolist() if np.ndim(v[i]) else float(v[i])
                a.calc = SinglePointCalculator(a, **results)
                written.append(a)
            ase.io.write(tmp, written, format=fmt)
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    spec = pred.graph
    print(
        f"wrote {len(frames)} structures to {out} (head {pred.energy_head}, forces "
        f"{pred.force_head}, graph cutoff {spec.cutoff} Å, caps {spec.max_neighbors}; units "
        f"{', '.join(f'{k} {v}' for k, v in pred.units.items() if v)})"
    )
    return 0
