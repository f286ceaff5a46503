"""Coverage-guided reader fuzzing with atheris (libFuzzer), where atheris installs.

    .venv/bin/pip install -c constraints.txt -e ".[fuzz]"
    nice -n 19 .venv/bin/python tests/fuzz/atheris_readers.py --reader qm9 --seconds 600 \\
        --out fuzz-atheris

One reader per process. A template input is written by the reader's maker in `fuzzlib` (the
first of its first 40 seed-0 inputs that reads without error, else input 0); atheris then
mutates the bytes of the template's largest file (the data file: the LMDB data.mdb, the HDF5 file, the npz, the
xyz tarball, the JSON, ...), guided by the line coverage of openjmp's readers and checks. Each
input is read strictly and as ``openjmp data check`` does (`fuzzlib.run_input`); an outcome
other than success or a `DataError` naming the file (an other exception, an unnamed DataError,
a read past ``--limit`` seconds) stops the run with the input saved by libFuzzer
(``crash-*`` under ``--out``). ``OUT/READER.json`` holds the inputs tried and the outcome
counts; the template directory lives in a temporary folder (removed by the system).

Complements `fuzz_readers.py`, whose structured mutations (wrong dtypes, missing and extra keys,
shape and length mismatches) reach deeper than byte flips but are not coverage-guided.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the shared helpers package

import atheris  # noqa: E402

from helpers import fuzzlib  # noqa: E402


def _template(reader: str, root: Path) -> tuple[Path, str, Path]:
    """(path to read, format, the file atheris mutates), relative to ``root/template``: the
    first of the maker's inputs (seed 0) that reads without error, so that the mutations start
    from a valid file."""
    d = root / "template"
    for k in [*range(40), 0]:  # else input 0, damaged as the maker made it
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        path, fmt = fuzzlib.TARGETS[reader].make(fuzzlib.input_rng(0, k), d)
        if fuzzlib.run_input(path, fmt, d)["read"].kind == "ok":
            break
    files = [p for p in d.rglob("*") if p.is_file() and not p.name.endswith("-lock")]
    target = max(files, key=lambda p: p.stat().st_size)
    return path.relative_to(d) if path != d else Path("."), fmt, target.relative_to(d)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reader", required=True, choices=sorted(fuzzlib.TARGETS))
    p.add_argument("--seconds", type=int, default=600)
    p.add_argument("--limit", type=float, default=30.0, help="seconds before a read is a hang")
    p.add_argument("--out", default="fuzz-atheris", help="findings and summary JSON")
    args, rest = p.parse_known_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="openjmp-atheris-"))
    counts: Counter = Counter()

    with atheris.instrument_imports(include=["openjmp"]):
        import openjmp.data.check  # noqa: F401
        import openjmp.io  # noqa: F401
    fuzzlib._warm_up()
    rel_path, fmt, rel_target = _template(args.reader, root)
    seed = root / "seed"
    seed.mkdir()
    (seed / "template").write_bytes((root / "template" / rel_target).read_bytes())

    def one_input(data: bytes) -> None:
        work = root / "work"
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(root / "template", work)
        (work / rel_target).write_bytes(data)
        outcomes = fuzzlib.run_input(work / rel_path, fmt, work, args.limit)
        counts["inputs"] += 1
        for way, o in outcomes.items():
            counts[f"{way}:{o.kind}"] += 1
        _summary(out, args.reader, counts)  # libFuzzer ends the process without returning
        for way, o in outcomes.items():
            if o.kind in fuzzlib.FINDINGS:
                raise RuntimeError(f"{args.reader} {way}: {o.kind}\n{o.detail}")

    atheris.Setup(
        [sys.argv[0], *rest, f"-max_total_time={args.seconds}", f"-artifact_prefix={out}/",
         str(seed)],
        one_input,
    )  # fmt: skip
    atheris.Fuzz()  # does not return: libFuzzer exits at -max_total_time or at a finding
    return 0


def _summary(out: Path, reader: str, counts: Counter) -> None:
    """Counts so far, in ``OUT/READER.json`` (rewritten after every input)."""
    text = json.dumps({"reader": reader, **dict(sorted(counts.items()))})
    tmp = out / f"{reader}.json.tmp"
    tmp.write_text(text)
    tmp.replace(out / f"{reader}.json")


if __name__ == "__main__":
    sys.exit(main())
