"""The MD hot path: one `JMPCalculator` step against one bare forward+backward of the model.

Structures (built with ASE, nothing read from disk): a 9-atom molecule (ethanol, non-periodic),
a 32-atom fcc Cu cell (periodic) and a 200-atom Cu(111) slab (5x5x8, periodic in-plane), each
rattled. Models with random weights at two sizes: the embedded demo's (2 blocks, 64 features,
6 Å graph, caps of base 16) and JMP-S (6 blocks, 256/512 features, 12 Å graph for the periodic
structures and 8 Å for the molecule, caps of base 30, the authors' pre-training settings).

Per structure and model, median over ``--repeats`` steps after 2 warm-up steps (each step
moves the atoms by 1e-3 Å so ASE recomputes):

* ``step E+F``: ``atoms.get_forces()`` (energy and gradient forces) through the calculator:
  structure validation, graph construction, model, unit conversion;
* ``step E+F+S``: ``atoms.get_stress()`` + forces (periodic structures);
* ``bare fwd+bwd``: the model alone on a batch built beforehand: energy forward and the
  autograd pass for the forces (what the calculator cannot avoid);
* ``ratio``: step E+F over bare fwd+bwd (1.0 means the calculator adds nothing).

    .venv/bin/python benchmarks/bench_calculator.py [--models demo jmp-s] [--repeats 5]

float32, 2 threads (``--threads``). Measure with nothing else running on the machine.
``--device cuda`` runs the same cases on a GPU (timings synchronised with the device).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np
import torch

from openjmp.model.gemnet_oc.config import GemNetOCConfig

DEMO = dict(
    num_blocks=2, emb_size_atom=64, emb_size_edge=64, emb_size_trip_in=32, emb_size_trip_out=32,
    emb_size_aint_in=32, emb_size_aint_out=32, emb_size_quad_in=16, emb_size_quad_out=16,
    emb_size_rbf=16, emb_size_cbf=16, emb_size_sbf=32, num_radial=32, absolute_rbf_cutoff=6.0,
)  # fmt: skip
"""The demo preset's backbone (config/presets/pretrain/demo.yaml)."""


def structures() -> dict[str, Any]:
    from ase.build import bulk, fcc111, molecule

    mol = molecule("CH3CH2OH")
    cell = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    slab = fcc111("Cu", (5, 5, 8), vacuum=8.0)
    for i, a in enumerate((mol, cell, slab)):
        a.rattle(0.02, seed=i)
    return {"molecule (9)": mol, "bulk Cu (32)": cell, "slab Cu(111) (200)": slab}


def model(size: str) -> tuple[Any, dict[str, Any]]:
    """A random model with an energy head, identity transform, and its graph per structure."""
    from openjmp.graph.spec import GraphSpec, graph_spec
    from openjmp.model.heads import EnergyHead
    from openjmp.model.jmp_model import JMPModel
    from openjmp.model.outputs import OutputTransform

    torch.manual_seed(0)
    if size == "demo":
        config = GemNetOCConfig.jmp_s(**DEMO)
        graphs = {
            True: GraphSpec.from_base(6.0, 16, pbc=True),
            False: GraphSpec.from_base(6.0, 16, pbc=False),
        }
    else:
        config = GemNetOCConfig.jmp_s()
        graphs = {True: graph_spec("oc20"), False: GraphSpec.from_base(8.0, 30, pbc=False)}
    config = config.replace(regress_forces=False, direct_forces=False)
    m = JMPModel(config, {"energy": EnergyHead(config.emb_size_atom, activation=config.activation)})
    m.set_head_info("energy", output=OutputTransform.energy(1.0))
    return m.eval(), graphs


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def _median_ms(fn: Any, atoms: Any, repeats: int, device: str = "cpu") -> float:
    times = []
    for i in range(repeats + 2):
        atoms.positions[0, 0] += 1e-3 * (-1) ** i
        t = time.perf_counter()
        fn()
        _sync(device)
        if i >= 2:
            times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def bare_forward_backward_ms(
    m: Any, atoms: Any, spec: Any, repeats: int, device: str = "cpu"
) -> float:
    from openjmp.graph.collate import collate
    from openjmp.graph.gemnet import build_graph_sample
    from openjmp.records import AtomsRecord

    sample = build_graph_sample(AtomsRecord.from_ase(atoms), spec, dtype=torch.float32)
    batch = collate([sample]).to(device)
    times = []
    for i in range(repeats + 2):
        t = time.perf_counter()
        pos = batch.pos.detach().requires_grad_(True)
        out = m(batch.__class__(**{**{f: getattr(batch, f) for f in batch.__slots__}, "pos": pos}),
                heads=["energy"])  # fmt: skip
        torch.autograd.grad(out["energy"].sum(), pos)
        _sync(device)
        if i >= 2:
            times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def run(sizes: list[str], repeats: int, device: str = "cpu") -> list[dict[str, Any]]:
    import openjmp

    rows = []
    for size in sizes:
        m, graphs = model(size)
        m = m.to(device)
        for name, atoms in structures().items():
            spec = graphs[bool(atoms.pbc.any())]
            a = atoms.copy()
            a.calc = openjmp.JMPCalculator(m, graph=spec, forces="gradient", device=device)
            step = _median_ms(a.get_forces, a, repeats, device)
            stress = None
            if a.pbc.any():
                both = lambda a=a: (a.get_stress(), a.get_forces())  # noqa: E731
                stress = _median_ms(both, a, repeats, device)
            bare = bare_forward_backward_ms(m, atoms, spec, repeats, device)
            row = {"model": size, "structure": name, "step_ef_ms": step, "step_efs_ms": stress,
                   "bare_ms": bare, "ratio": step / bare}  # fmt: skip
            rows.append(row)
            print(_format(row), flush=True)
    return rows


def _format(r: dict[str, Any]) -> str:
    s = "-" if r["step_efs_ms"] is None else f"{r['step_efs_ms']:.1f}"
    return (f"| {r['model']} | {r['structure']} | {r['step_ef_ms']:.1f} | {s} | "
            f"{r['bare_ms']:.1f} | {r['ratio']:.2f} |")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", choices=["demo", "jmp-s"], default=["demo", "jmp-s"])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    np.random.seed(0)
    where = f"{args.threads} threads" if args.device == "cpu" else args.device
    print(f"float32, {where}, median of {args.repeats} steps (ms)")
    print("| model | structure | step E+F | step E+F+S | bare fwd+bwd | ratio |")
    print("|---|---|---|---|---|---|")
    run(args.models, args.repeats, args.device)


if __name__ == "__main__":
    main()
