"""Speed and memory of the GemNet-OC model (JMP-S size, float32, 2 threads by default).

Cases ``{molecules,slabs}_{graph,forward,forward_backward,train_step}`` on
``../shared/reference/bench_structures.extxyz`` (32 molecules, graph setting ani1x; 8 slabs,
setting oc20), the same workloads as the authors' ``../shared/authors-bench/make_bench.py``;
and ``demo_*``: the embedded study's small model (``demo`` preset) on a batch of its size, 16
structures like the demo corpus's (`demo_structures`: 8 molecules, 8 small slabs, at the
preset's 6 Å / 16-neighbour graph), whose
``steps_per_s`` in ``demo_train_step`` is the model's part of the study's training step
(`bench_pretrain_step.py` times the whole step as the run takes it):

* graph: per-structure graphs + collate + the batch's GemNet-OC indices;
* forward: ``model(batch)`` under ``torch.no_grad()`` (indices built inside, as the authors');
* forward_backward: energies and forces of the 4-task pre-training model, then
  ``energies.sum().backward()`` (parameter gradients; the force branch takes no gradient);
* train_step: the same forward, then ``(E**2).sum() + (F**2).sum()`` backward, E the four
  energy heads and F the four direct-force heads: the workload of a pre-training step.

Reported per case (one JSON line each, every case in a fresh process): median seconds of
``--repeats`` runs after 1 warm-up (1 run if the warm-up took > ``--warmup-limit``, 60 s),
structures/s, peak resident memory (``ru_maxrss`` of the case's process; on CUDA also the peak allocated device
memory), the peak of malloc's in-use bytes during the timed passes (glibc's ``mallinfo2``,
sampled every 20 ms: the part of the resident peak the computation held at once; the rest
is free heap kept in pieces), and unless ``--no-flops`` the FLOPs of one pass counted by
``torch.utils.flop_counter.FlopCounterMode`` (matrix products) over the median time.

A speed-up over the authors' code is only meaningful from one run on one machine: that is
``../shared/authors-bench/side_by_side.sh``, which calls ``--case CASE --repeats 3 --no-flops``
here; ``benchmarks/bench_flops.py`` counts both sides' arithmetic.

    .venv/bin/python benchmarks/bench_model.py [--cases slabs_forward ...] [--repeats 3]
    .venv/bin/python benchmarks/bench_model.py --device cuda          # the same cases on a GPU
    .venv/bin/python benchmarks/bench_model.py --activation-checkpointing on   # the memory setting
    .venv/bin/python benchmarks/bench_model.py --precision bf16-mixed   # under autocast

``--precision bf16-mixed`` (or ``16-mixed``, float16, GPUs) runs each pass under
``torch.autocast`` as training with that Lightning precision does (the model stays float32).
``--case CASE --authors`` runs one case with the authors' code instead (``authors_pass``; run it
with the authors' environment's python and JMP_SRC set, ../shared/authors-bench/README.md), and
``--case CASE --accuracy`` prints how far one forward pass under ``--precision`` lands from the
float32 one (either side, on CPU); `bench_precision.py` puts both sides at both precisions in one table.

``run(...) -> list[dict]`` does the same from Python.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("OPENJMP_SHARED", REPO.parent / "shared")) / "reference"
SYSTEMS = ("molecules", "slabs", "demo")
KINDS = ("graph", "forward", "forward_backward", "train_step")
CASES = [f"{s}_{k}" for s in SYSTEMS for k in KINDS]
THREADS = 2
CHECKPOINTING = {"auto": None, "on": True, "off": False, "residual": "residual"}
"""``--activation-checkpointing`` values -> `JMPModel.set_activation_checkpointing`'s argument."""
PRECISIONS = {"32-true": None, "bf16-mixed": "bfloat16", "16-mixed": "float16"}
"""``--precision`` values (Lightning's names) -> the autocast dtype (None: no autocast)."""


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class HeapSampler:
    """Peak bytes that glibc's malloc has handed out and not yet freed (``mallinfo2``: in-use
    heap chunks + mapped chunks), sampled every ``interval`` s by a thread while active: the
    memory the computation itself holds, against which the peak resident memory adds what
    the heap keeps in free pieces. ``peak_mb`` is None off glibc (or glibc < 2.33)."""

    class _Info(ctypes.Structure):
        _fields_ = [  # noqa: RUF012 (ctypes layout)
            (name, ctypes.c_size_t)
            for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                         "fsmblks", "uordblks", "fordblks", "keepcost")
        ]  # fmt: skip

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak_mb: float | None = None
        self._stop = threading.Event()
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            self._mallinfo2 = libc.mallinfo2
            self._mallinfo2.restype = self._Info
        except (OSError, AttributeError):
            self._mallinfo2 = None

    def _in_use(self) -> int:
        info = self._mallinfo2()
        return info.uordblks + info.hblkhd

    def _run(self) -> None:
        peak = 0
        while not self._stop.wait(self.interval):
            peak = max(peak, self._in_use())
        self.peak_mb = max(peak, self._in_use()) / 2**20

    def __enter__(self) -> HeapSampler:
        if self._mallinfo2 is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._mallinfo2 is not None:
            self._stop.set()
            self._thread.join()


DEMO_BATCH = 16
"""The embedded study's batch size (presets/pretrain/demo.yaml ``loader.batch_size``)."""


def _structures(system: str) -> list:
    import ase.io

    frames = ase.io.read(REFERENCE / "bench_structures.extxyz", index=":")
    if system == "demo":
        return demo_structures()
    setting = "ani1x" if system == "molecules" else "oc20"
    return [a for a in frames if a.info.get("graph") == setting]


def demo_structures(n: int = DEMO_BATCH) -> list:
    """A batch like the embedded study's: half molecules of the demo corpus (ani1x_like,
    transition1x_like), half its 16-atom 2x2x4 metal slabs with an adsorbate (oc20_like,
    oc22_like); fixed seed."""
    import numpy as np
    from ase.build import fcc100, fcc111

    from openjmp.data.demo.molecules import load_molecule, pretraining_molecules
    from openjmp.data.demo.surfaces import add_adsorbate, tag_and_fix

    rng = np.random.default_rng(0)
    frames = [load_molecule(m) for m in pretraining_molecules()[: n // 2]]
    for i in range(n - n // 2):
        build = (fcc111, fcc100)[i % 2]
        slab = build(("Cu", "Pt", "Ni", "Pd")[i % 4], size=(2, 2, 4), vacuum=7.0, periodic=True)
        slab = add_adsorbate(tag_and_fix(slab, slab.get_tags(), 4), "O", rng)
        slab.info["graph"] = "oc20"
        frames.append(slab)
    for a in frames[: n // 2]:
        a.info["graph"] = "ani1x"
    return frames


def build_demo_model():  # noqa: ANN201
    """The embedded study's model: the ``demo`` pre-training preset's backbone (2 blocks,
    ~0.7 M parameters, edge-dropout boost on) with its 4 tasks' heads, float32, seed 0."""
    import torch

    from openjmp.config.load import load_pretrain_config
    from openjmp.model.jmp_model import JMPModel
    from openjmp.train.backbone import build_backbone

    config = load_pretrain_config("demo")
    arch, _ = build_backbone(config.model, direct_forces=True, edge_dropout=config.edge_dropout)
    torch.manual_seed(0)
    return JMPModel.pretraining(arch, [d.name for d in config.datasets]).float()


def build_model(scale_file: Path | None = REFERENCE / "scale_factors_small.json"):  # noqa: ANN201
    """The 4-task JMP-S pre-training model, float32, seed 0, the authors' small scale factors."""
    import torch

    from openjmp.model.gemnet_oc.config import GemNetOCConfig
    from openjmp.model.jmp_model import JMPModel

    torch.manual_seed(0)
    model = JMPModel.pretraining(GemNetOCConfig.jmp_s()).float()
    if scale_file is not None and scale_file.is_file():
        model.backbone.set_scale_factors(json.loads(scale_file.read_text()))
    return model


def build_batch(frames: list, demo: bool = False):  # noqa: ANN201
    """Collated graphs of ``frames`` (each at its own graph setting; ``demo``: at the demo
    preset's, cutoff 6 Å and 16 neighbours, periodic for slabs)."""
    import torch

    from openjmp.graph.collate import collate
    from openjmp.graph.gemnet import build_graph_sample
    from openjmp.graph.spec import graph_spec
    from openjmp.records import AtomsRecord

    samples = [
        build_graph_sample(
            AtomsRecord.from_ase(a),
            _demo_spec(a) if demo else graph_spec(a.info["graph"]),
            dtype=torch.float32,
        )
        for a in frames
    ]
    return collate(samples)


def _demo_spec(atoms):  # noqa: ANN001, ANN202
    from openjmp.graph.spec import GraphSpec

    periodic = atoms.info.get("graph") != "ani1x"
    return GraphSpec.from_base(6.0, 16, pbc=periodic, dummy_cell=not periodic)


def pass_fn(model, batch, kind: str):  # noqa: ANN001, ANN201
    """The callable one case times: ``kind`` in forward / forward_backward / train_step."""
    import torch

    heads_e = [n for n in model.heads if n.endswith("_energy")]
    heads_f = [n for n in model.heads if n.endswith("_forces")]
    if kind == "forward":
        model.eval()

        def fn() -> None:
            with torch.no_grad():
                model(batch)

        return fn
    model.train()

    def fn() -> None:
        model.zero_grad(set_to_none=True)
        out = model(batch)
        energies = torch.stack([out[n] for n in heads_e])
        if kind == "forward_backward":
            energies.sum().backward()
        elif kind == "train_step":
            forces = torch.stack([out[n] for n in heads_f])
            (energies.float().pow(2).sum() + forces.float().pow(2).sum()).backward()
        else:
            raise ValueError(f"unknown case kind {kind!r}")

    return fn


def _authors_model_batch(system: str):  # noqa: ANN202
    """The authors' JMP-S pre-training model (float32, seed 0, their small scale factors) and
    their collated batch of ``system`` (JMP_SRC set, the authors' environment)."""
    import torch

    if system not in ("molecules", "slabs"):
        raise SystemExit(f"the authors' side has the molecules and slabs batches, not {system!r}")
    bench = REFERENCE.parent / "authors-bench"
    if not (bench / "jmpref.py").is_file():
        raise SystemExit(f"--authors needs {bench}/jmpref.py (OPENJMP_SHARED sets it)")
    sys.path.insert(0, str(bench))
    import jmpref  # the authors' code, imported from JMP_SRC (../shared/authors-bench)
    from ase.io import read

    jmpref.setup()
    frames = read(REFERENCE / "bench_structures.extxyz", ":")
    atoms = [a for a in frames if (a.info["graph"] == "oc20") == (system == "slabs")]
    torch.manual_seed(0)
    config = jmpref.backbone_config("base", scale_file=str(jmpref.scale_file_path("small")))
    model = jmpref.build_pretrain_model(config, edge_dropout=None).float().eval()
    graphs = [jmpref.make_graph_data(model, a, a.info["graph"], torch.float32) for a in atoms]
    return model, jmpref.collate(model, graphs)


def authors_pass(system: str, kind: str):  # noqa: ANN201
    """The authors' JMP-S model and batch of ``system`` as ``../shared/authors-bench/
    make_bench.py case`` builds them, and the callable of pass ``kind`` (JMP_SRC set, the
    authors' environment; nothing of openjmp is imported)."""
    import torch

    model, batch = _authors_model_batch(system)

    def fn() -> None:  # as make_bench.py's cases
        if kind == "forward":
            with torch.no_grad():
                model(batch)
            return
        e, f = model(batch)
        if kind == "forward_backward":
            e.sum().backward()
        else:
            (e.float().pow(2).sum() + f.float().pow(2).sum()).backward()
        model.zero_grad(set_to_none=True)

    return fn


def autocast(device: str, precision: str):  # noqa: ANN201
    """The autocast context of ``precision`` (`PRECISIONS`) on ``device``'s type."""
    import contextlib

    import torch

    if precision not in PRECISIONS:
        raise SystemExit(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=getattr(torch, dtype))


def forward_outputs(system: str, authors: bool = False):  # noqa: ANN201
    """A callable giving (energies, forces) of one no-grad forward pass of ``system``'s
    benchmark model and batch (ours, or with ``authors`` the authors'), as float64."""
    import torch

    if authors:
        model, batch = _authors_model_batch(system)
    else:
        model = (build_demo_model() if system == "demo" else build_model()).eval()
        batch = build_batch(_structures(system), demo=system == "demo")

    def fn():  # noqa: ANN202
        with torch.no_grad():
            out = model(batch)
        if authors:
            e, f = out
        else:
            e = torch.stack([out[n] for n in model.heads if n.endswith("_energy")])
            f = torch.stack([out[n] for n in model.heads if n.endswith("_forces")])
        return e.double(), f.double()

    return fn


def accuracy(system: str, precision: str, authors: bool = False) -> dict[str, Any]:
    """Relative errors (norm of the difference over the float32 norm) of the energies and
    forces of one forward pass under ``precision`` against the same pass in float32."""
    import torch

    torch.set_num_threads(THREADS)
    fn = forward_outputs(system, authors)
    e32, f32 = fn()
    with autocast("cpu", precision):
        e, f = fn()
    return {
        "case": f"{system}_accuracy",
        "side": "authors" if authors else "openjmp",
        "precision": precision,
        "rel_energy": float((e - e32).norm() / e32.norm()),
        "rel_forces": float((f - f32).norm() / f32.norm()),
    }


def saved_for_backward(system: str) -> dict[str, Any]:
    """What autograd keeps for backward in a training pass of ``system``'s batch (our model of
    that case, CPU, default settings): the bytes of the unique storages packed by
    `torch.autograd.graph.saved_tensors_hooks` during the forward pass (parameters
    included, counted once), and how many."""
    import torch

    torch.set_num_threads(THREADS)
    demo = system == "demo"
    model = (build_demo_model() if demo else build_model()).train()
    batch = build_batch(_structures(system), demo=demo)
    kept: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        kept[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(batch)
    return {"system": system, "saved_mb": sum(kept.values()) / 2**20, "storages": len(kept)}


def _timed(  # noqa: ANN001
    fn, repeats: int, sync, warmup_limit: float = 60.0
) -> tuple[float, list[float], float]:
    def once() -> float:
        t0 = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - t0

    warm = once()
    if warm > warmup_limit:
        return warm, [warm], warm
    times = [once() for _ in range(repeats)]
    return statistics.median(times), times, warm


def run_case(
    case: str,
    repeats: int = 3,
    flops: bool = True,
    device: str = "cpu",
    checkpointing: str = "auto",
    precision: str = "32-true",
    authors: bool = False,
    warmup_limit: float = 60.0,
) -> dict[str, Any]:
    """Run one case in this process (call it in a fresh process for a clean peak RSS).

    checkpointing: "auto" (the model's default), "on", "off" or "residual" (activation
    checkpointing, see `JMPModel.set_activation_checkpointing`).
    precision: a `PRECISIONS` name; the pass runs under that autocast.
    authors: the authors' code instead of ours (`authors_pass`; forward, forward_backward and
    train_step of the molecules and slabs batches, CPU, no FLOP count, default checkpointing).
    warmup_limit: a warm-up longer than this (s) is the one timed run.
    """
    import torch

    torch.set_num_threads(THREADS)
    system, kind = case.split("_", 1)
    if system not in SYSTEMS or kind not in KINDS:
        raise SystemExit(f"unknown case {case!r}; cases: {', '.join(CASES)}")
    dev = torch.device(device)
    cuda = dev.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(dev)

    frames = _structures(system)
    rss_before = _peak_rss_mb()
    if authors and (kind == "graph" or cuda or checkpointing != "auto"):
        raise SystemExit("--authors runs the forward, forward_backward and train_step cases on "
                         "CPU with default settings")  # fmt: skip
    result: dict[str, Any] = {
        "case": case,
        "side": "authors" if authors else "openjmp",
        "device": str(dev) + (f" ({torch.cuda.get_device_name(dev)})" if cuda else ""),
        "threads": torch.get_num_threads(),
        "precision": precision,
        "activation_checkpointing": checkpointing,
        "malloc_tuning": os.environ.get("OPENJMP_MALLOC_TUNING", "default"),
        "n_structures": len(frames),
        "natoms": sum(len(a) for a in frames),
    }

    if authors:
        fn = authors_pass(system, kind)
    elif kind == "graph":
        from openjmp.graph.indices import build_indices

        def fn() -> None:
            build_indices(build_batch(frames, demo=system == "demo").to(dev))

    else:
        from openjmp.graph.indices import build_indices

        model = (build_demo_model() if system == "demo" else build_model()).to(dev)
        model.set_activation_checkpointing(CHECKPOINTING[checkpointing])
        batch = build_batch(frames, demo=system == "demo").to(dev)
        fn = pass_fn(model, batch, kind)
        result.update({f"n_{k}": v for k, v in build_indices(batch).counts().items()})

    rss_ready = _peak_rss_mb()
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    plain = fn

    def fn() -> None:
        with autocast(device, precision):
            plain()

    with HeapSampler() as heap:
        median, times, warm = _timed(fn, repeats, sync, warmup_limit)
    result.update(
        seconds_median=median,
        seconds_all=times,
        warmup_seconds=warm,
        structures_per_s=len(frames) / median,
        steps_per_s=1.0 / median,
        peak_rss_mb=_peak_rss_mb(),
        rss_peak_before_case_mb=rss_before,
        rss_peak_ready_mb=rss_ready,
        peak_heap_in_use_mb=heap.peak_mb,
    )
    if cuda:
        result["peak_device_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    if flops and kind != "graph" and not authors:
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            fn()
        result["flops"] = counter.get_total_flops()
        result["gflops_per_s"] = result["flops"] / median / 1e9
    return result


def matmul_rate(
    n: int = 2048, repeats: int = 5, device: str = "cpu", dtype: str = "float32"
) -> float:
    """GFLOP/s of an n x n matrix product in ``dtype`` (2 threads on CPU)."""
    import torch

    torch.set_num_threads(THREADS)
    dev = torch.device(device)
    kw = {"device": dev, "dtype": getattr(torch, dtype)}
    a, b = torch.randn(n, n, **kw), torch.randn(n, n, **kw)
    a @ b
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e9


def _subprocess(args: list[str], python: str = sys.executable) -> Any:
    """This script with ``args`` in a fresh process of ``python``, 2 threads: its JSON line."""
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS)}
    proc = subprocess.run(
        [python, str(Path(__file__).resolve()), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark case {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(
    cases: list[str] | None = None,
    repeats: int = 3,
    flops: bool = True,
    device: str = "cpu",
    checkpointing: str = "auto",
    precision: str = "32-true",
) -> list[dict]:
    """Every case in a fresh subprocess, plus the machine's float32 matmul rate."""
    common = ["--device", device, "--activation-checkpointing", checkpointing]
    common += ["--precision", precision]
    rate = _subprocess(["--matmul-rate", *common])
    rows = []
    for case in cases or CASES:
        args = ["--case", case, "--repeats", str(repeats), *common]
        row = _subprocess(args + ([] if flops else ["--no-flops"]))
        row["matmul_gflops_per_s"] = rate
        rows.append(row)
    return rows


def print_table(rows: list[dict]) -> None:
    head = (
        f"{'case':<28}{'s':>8}{'struct/s':>10}{'peak MB':>9}{'in use':>8}{'GFLOP':>8}{'GFLOP/s':>9}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        gf = r.get("flops")
        rate = r.get("gflops_per_s")
        peak = r.get("peak_device_mb", r["peak_rss_mb"])
        in_use = None if "peak_device_mb" in r else r.get("peak_heap_in_use_mb")
        print(
            f"{r['case']:<28}{r['seconds_median']:>8.2f}{r['structures_per_s']:>10.2f}"
            f"{peak:>9.0f}{(f'{in_use:.0f}' if in_use else '-'):>8}"
            f"{(f'{gf / 1e9:.0f}' if gf else '-'):>8}"
            f"{(f'{rate:.1f}' if rate else '-'):>9}"
        )
    if rows:
        r = rows[0]
        print(
            f"\n{r['device']}, {r['threads']} threads, precision {r['precision']}, activation "
            f"checkpointing {r['activation_checkpointing']}; float32 matmul rate (2048^2): "
            f"{r['matmul_gflops_per_s']:.1f} GFLOP/s. Peak MB: "
            + (
                "device memory."
                if "peak_device_mb" in r
                else "resident memory of the process; in use: the most of it malloc had handed "
                "out at once during the timed passes (the rest is free heap it keeps)."
            )
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", nargs="*", default=None, choices=CASES)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-flops", action="store_true")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:i]")
    p.add_argument(
        "--activation-checkpointing",
        choices=tuple(CHECKPOINTING),
        default="auto",
        help="the model's activation checkpointing (default: auto, as the model is built; "
        "residual: only the residual layers' first products)",
    )
    p.add_argument(
        "--precision",
        choices=tuple(PRECISIONS),
        default="32-true",
        help="run the passes under this autocast (default 32-true: none)",
    )
    p.add_argument(
        "--authors",
        action="store_true",
        help="with --case: the authors' code (their environment's python, JMP_SRC set)",
    )
    p.add_argument(
        "--accuracy",
        action="store_true",
        help="with --case: relative errors of one forward pass under --precision vs float32",
    )
    p.add_argument(
        "--warmup-limit",
        type=float,
        default=60.0,
        help="seconds: a longer warm-up is the case's one timed run (default 60)",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the rows to this file")
    p.add_argument("--case", default=None, help="run this one case here and print its JSON line")
    p.add_argument(
        "--saved",
        action="store_true",
        help="with --case: the memory autograd keeps for backward in a training pass of the "
        "case's batch (ours), instead of timing it",
    )
    p.add_argument("--matmul-rate", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.matmul_rate:
        print(json.dumps(matmul_rate(device=args.device)))
        return 0
    if (args.authors or args.accuracy or args.saved) and not args.case:
        p.error("--authors, --accuracy and --saved go with --case")
    if args.saved:
        print(json.dumps(saved_for_backward(args.case.split("_", 1)[0])))
        return 0
    if args.accuracy:
        print(json.dumps(accuracy(args.case.split("_", 1)[0], args.precision, args.authors)))
        return 0
    if args.case:
        row = run_case(
            args.case,
            args.repeats,
            flops=not args.no_flops,
            device=args.device,
            checkpointing=args.activation_checkpointing,
            precision=args.precision,
            authors=args.authors,
            warmup_limit=args.warmup_limit,
        )
        print(json.dumps(row))
        return 0
    rows = run(
        args.cases,
        args.repeats,
        flops=not args.no_flops,
        device=args.device,
        checkpointing=args.activation_checkpointing,
        precision=args.precision,
    )
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
