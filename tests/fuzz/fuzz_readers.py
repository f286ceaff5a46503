"""Long reader fuzzing: ``python tests/fuzz/fuzz_readers.py --minutes 10 --reader NAME``.

Runs the mutations of :mod:`fuzzlib` against one reader (``--reader`` repeatable, or ``all``:
one after the other, ``--minutes`` each) and prints, per reader, the inputs tried and what each
way of reading gave: ``read:ok`` / ``read:data_error`` (fail-fast reading, as training) and
``check:ok`` / ``check:data_error`` (``openjmp data check``), plus findings: ``other`` (an
exception other than DataError), ``unnamed_data_error`` (a DataError naming no file of the
input), ``hang`` (a read past ``--limit`` seconds) and ``crash`` (the process killed, e.g. by
SIGBUS or SIGFPE inside a C library).

Each reader runs in child processes; when one dies, the input it was reading is recorded as a
``crash`` finding (its files kept under ``--out``) and a new child goes on with the next input.
Inputs are numbered per seed (default seed 1; the test suite uses seed 0), so a finding is
reproduced by ``--reader NAME --seed S --start K --inputs 1``. Run it niced on a shared machine:

    nice -n 19 .venv/bin/python tests/fuzz/fuzz_readers.py --minutes 10 --reader all \\
        --out fuzz-out
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

# A script outside pytest: put tests/ on the path for the shared helpers package, as
# pyproject.toml's pytest ``pythonpath`` does for the suite.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers import fuzzlib  # noqa: E402


def _child(args: argparse.Namespace) -> int:
    """Run one campaign slice; write the next input number before each input."""
    progress = Path(args.progress)

    def mark(k: int, camp: fuzzlib.Campaign) -> None:
        state = {"input": k, "counts": dict(camp.counts), "findings": camp.findings}
        tmp = progress.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, progress)

    camp = fuzzlib.run_campaign(
        args.reader[0],
        seed=args.seed,
        max_inputs=args.inputs,
        max_seconds=args.seconds,
        workdir=Path(args.workdir),
        keep_findings=Path(args.out) / "findings" if args.out else None,
        limit=args.limit,
        start=args.start,
        before_input=mark,
    )
    Path(args.result).write_text(
        json.dumps(
            {
                "inputs": camp.inputs,
                "counts": dict(camp.counts),
                "findings": camp.findings,
                "next": args.start + camp.inputs,
            }
        )  # fmt: skip
    )
    return 0


def _run_reader(name: str, args: argparse.Namespace, workdir: Path) -> dict:
    budget = args.minutes * 60.0
    t0 = time.perf_counter()
    start, inputs, counts, findings = args.start, 0, Counter(), []
    progress, result = workdir / f"{name}.progress", workdir / f"{name}.result"
    while time.perf_counter() - t0 < budget and (args.inputs is None or inputs < args.inputs):
        left = budget - (time.perf_counter() - t0)
        cmd = [sys.executable, __file__, "--child", "--reader", name, "--seed", str(args.seed),
               "--start", str(start), "--seconds", str(left), "--limit", str(args.limit),
               "--workdir", str(workdir), "--progress", str(progress), "--result", str(result)]  # fmt: skip
        if args.inputs is not None:
            cmd += ["--inputs", str(args.inputs - inputs)]
        if args.out:
            cmd += ["--out", str(args.out)]
        result.unlink(missing_ok=True)
        progress.unlink(missing_ok=True)
        try:  # the alarm cannot stop a loop inside a C library: the child gets a deadline too
            proc = subprocess.run(cmd, capture_output=True, text=True,
                                  timeout=left + 3 * args.limit + 60)  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            proc = subprocess.CompletedProcess(cmd, -9, "", str(exc.stderr or "")[-1500:])
            proc.stderr = f"killed after its deadline (a read hung inside C code) {proc.stderr}"
        if result.is_file():  # the slice finished (a crash while exiting is noted apart)
            r = json.loads(result.read_text())
            inputs += r["inputs"]
            counts.update(r["counts"])
            findings += r["findings"]
            start = r["next"]
            if proc.returncode != 0:
                counts["crash at exit"] += 1
                findings.append({"input": None, "way": "exit", "kind": "crash",
                                 "detail": f"child exit {proc.returncode} after its last input; "
                                 f"stderr: {proc.stderr[-1500:]}"})  # fmt: skip
            continue
        state = json.loads(progress.read_text()) if progress.is_file() else {}
        k = state.get("input", start)
        inputs += k - start + 1  # inputs start..k-1 read normally, k killed the child
        counts.update(state.get("counts", {}))
        findings += state.get("findings", [])
        counts["crash"] += 1
        detail = f"child exit {proc.returncode}; stderr: {proc.stderr[-1500:]}"
        findings.append({"input": k, "way": "both", "kind": "crash", "detail": detail})
        if args.out:
            src = workdir / f"{name}-{k}"
            dest = Path(args.out) / "findings" / f"{name}-seed{args.seed}-input{k}"
            if src.exists() and not dest.exists():
                import shutil

                shutil.copytree(src, dest)
        start = k + 1
    return {"reader": name, "seed": args.seed, "minutes": round((time.perf_counter() - t0) / 60, 2),
            "inputs": inputs, "counts": dict(sorted(counts.items())), "findings": findings}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reader", action="append", required=True,
                   help=f"reader to fuzz (repeatable) or 'all': {', '.join(fuzzlib.TARGETS)}")  # fmt: skip
    p.add_argument("--minutes", type=float, default=10.0, help="time per reader")
    p.add_argument("--inputs", type=int, default=None, help="stop after this many inputs")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--start", type=int, default=0, help="first input number")
    p.add_argument("--limit", type=float, default=30.0, help="seconds before a read is a hang")
    p.add_argument("--out", default=None, help="directory for findings and summary.json")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    p.add_argument("--progress", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return _child(args)
    names = list(fuzzlib.TARGETS) if "all" in args.reader else args.reader
    unknown = [n for n in names if n not in fuzzlib.TARGETS]
    if unknown:
        p.error(f"unknown reader(s) {unknown}; known: {', '.join(fuzzlib.TARGETS)}")
    summaries = []
    with tempfile.TemporaryDirectory(prefix="openjmp-fuzz-") as tmp:
        for name in names:
            s = _run_reader(name, args, Path(tmp))
            summaries.append(s)
            bad = sum(1 for f in s["findings"])
            print(f"{name}: {s['inputs']} inputs in {s['minutes']} min; {s['counts']}; "
                  f"findings: {bad}", flush=True)  # fmt: skip
            for f in s["findings"][:5]:
                print(f"  input {f['input']} {f['way']} {f['kind']}: "
                      f"{f['detail'].strip().splitlines()[-1][:200]}")  # fmt: skip
            if args.out:
                os.makedirs(args.out, exist_ok=True)
                Path(args.out, "summary.json").write_text(json.dumps(summaries, indent=1))
    return 1 if any(s["findings"] for s in summaries) else 0


if __name__ == "__main__":
    sys.exit(main())
