"""``openjmp data``: convert a source into a cache, check a source or cache, make the demo corpus.

* ``openjmp data convert SRC DEST [--format F] [--dataset NAME]``: read any supported source
  and write a memory-mapped record cache with its splits and statistics (atomic).
* ``openjmp data check PATH [--format F]``: summary and every problem; exit status 1 on errors.
* ``openjmp data make-demo OUT [--scale S] [--seed N]``: write the embedded demo corpus.

Reader options (``--option level=wb97x_tz``, ``--option split=train``, ...) and split options
(``--split-option train=50``) are ``key=value`` pairs; values are parsed as JSON when they can
be (numbers, true/false), else kept as strings.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from openjmp.cli.args import non_negative_int, positive_float, positive_int
from openjmp.errors import DataError


def _pairs(items: list[str] | None, flag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DataError(None, None, f"{flag} expects key=value, got {item!r}")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def add_parser(sub: argparse._SubParsersAction) -> None:
    from openjmp.io import FORMATS

    p = sub.add_parser("data", help="convert, check and generate datasets")
    dsub = p.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])
    formats = ", ".join(FORMATS)

    c = dsub.add_parser("convert", help="turn a source into a memory-mapped record cache")
    c.add_argument("src", type=Path, help="source file or directory")
    c.add_argument("dest", type=Path, help="cache directory to create")
    c.add_argument("--format", dest="fmt", help=f"source format (detected if omitted): {formats}")
    c.add_argument(
        "--dataset", help="dataset whose split protocol to use (default: from the records)"
    )
    c.add_argument("--seed", type=int, default=42, help="split seed (the authors': 42)")
    c.add_argument("--float32", action="store_true", help="store positions and forces as float32")
    c.add_argument("--overwrite", action="store_true", help="replace an existing cache")
    c.add_argument(
        "--skip-invalid",
        action="store_true",
        help="leave out invalid records (each listed in the manifest) instead of stopping",
    )
    c.add_argument("--option", action="append", metavar="KEY=VALUE", help="reader option")
    c.add_argument("--split-option", action="append", metavar="KEY=VALUE", help="split option")
    c.add_argument(
        "--no-progress", action="store_true", help="no progress bar (also off when CI is set)"
    )
    c.set_defaults(func=run_convert)

    k = dsub.add_parser("check", help="summarise a source or cache and list every problem")
    k.add_argument("path", type=Path)
    k.add_argument(
        "--format", dest="fmt", help=f"source format, or 'cache' (detected if omitted): {formats}"
    )
    k.add_argument("--option", action="append", metavar="KEY=VALUE", help="reader option")
    k.add_argument(
        "--limit", type=non_negative_int, default=None, help="print at most this many problems"
    )
    k.add_argument(
        "--cutoff",
        type=positive_float,
        default=None,
        help="graph cutoff (Å) of the graph checks (default: the dataset's JMP "
        "setting, 12 Å for your own data)",
    )
    k.add_argument(
        "--max-edges",
        type=positive_int,
        default=None,
        help="edge limit of the graph-size check (default: $OPENJMP_MAX_EDGES or 3,000,000)",
    )
    k.set_defaults(func=run_check)

    d = dsub.add_parser("make-demo", help="write the embedded demo corpus (native formats)")
    d.add_argument("out", type=Path)
    d.add_argument(
        "--scale", type=positive_float, default=1.0, help="corpus size factor (0.1 for CI)"
    )
    d.add_argument("--seed", type=int, default=0)
    d.add_argument(
        "--no-progress", action="store_true", help="no progress bar (also off when CI is set)"
    )
    d.set_defaults(func=run_make_demo)


def run_convert(args: argparse.Namespace) -> int:
    from openjmp.data.convert import convert

    store = convert(
        args.src,
        args.dest,
        fmt=args.fmt,
        dataset=args.dataset,
        reader_options=_pairs(args.option, "--option"),
        split_options=_pairs(args.split_option, "--split-option"),
        seed=args.seed,
        precision="float32" if args.float32 else "float64",
        overwrite=args.overwrite,
        skip_invalid=args.skip_invalid,
        progress=not args.no_progress,
    )
    m = store.manifest
    print(
        f"wrote {len(store)} records ({m['n_atoms']} atoms) of {m.get('dataset')} to {store.path}"
    )
    dups = m["metadata"].get("duplicates", {})
    if dups.get("groups"):
        from openjmp.data.duplicates import DuplicateReport

        print(f"duplicates: {DuplicateReport(**dups).describe()}")
    skipped = m["metadata"].get("skipped", [])
    if skipped:
        print(f"left out {len(skipped)} invalid records (listed in manifest.json):")
        for line in skipped[:20]:
            print(f"  {line}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from openjmp.data.check import check_path

    report = check_path(
        args.path,
        args.fmt,
        cutoff=args.cutoff,
        max_edges=args.max_edges,
        **_pairs(args.option, "--option"),
    )
    print(report.format(limit=args.limit))
    return 0 if report.ok else 1


def run_make_demo(args: argparse.Namespace) -> int:
    from openjmp import progress
    from openjmp.data.demo import make_demo

    show = not args.no_progress and progress.enabled()
    out = make_demo(args.out, scale=args.scale, seed=args.seed, progress=show)
    print(f"demo corpus written to {out}")
    return 0
