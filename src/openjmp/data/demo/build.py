"""`make_demo`: generate every demo set in parallel, write each atomically, then the manifest.

Re-running with the same arguments on a complete corpus does nothing. A corpus directory made
with another scale or seed is refused with a `ConfigError` (never silently mixed or
overwritten): pick another directory or delete the old one. A corpus that is incomplete (no
manifest: an interrupted run) or damaged (a listed file missing or resized) is rebuilt.
``OUT`` may hold other files: make_demo owns only its set directories, ``manifest.json``,
``README.txt`` and its hidden ``.<set>.tmp-*``/``.<set>.old-*`` work directories.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from openjmp.data.demo import (
    ani1x_like,
    matbench_like,
    oc20_like,
    oc22_like,
    qm9_like,
    rmd17_like,
    transition1x_like,
)
from openjmp.data.demo.manifest import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_NAME,
    file_entries,
    generator_versions,
    read_manifest,
    verify_manifest,
    write_json_atomic,
    write_text_atomic,
)
from openjmp.data.demo.parallel import JobPool
from openjmp.data.demo.spec import DemoSet
from openjmp.errors import ConfigError, DataError
from openjmp.io.paths import check_writable_dir

SETS: dict[str, DemoSet] = {
    s.name: s
    for s in (
        oc20_like.SET,
        oc22_like.SET,
        ani1x_like.SET,
        transition1x_like.SET,
        qm9_like.SET,
        rmd17_like.SET,
        matbench_like.SET,
    )
}
"""Every demo set, pre-training sets first."""

README = """\
openjmp demo corpus: generated on this machine by `openjmp data make-demo` (make_demo).

Every set is written in the native file format of the dataset it stands in for, so the same
readers load it as the real data. The labels are NOT DFT: slabs and alloys are labelled with
ASE's EMT potential, molecules with GFN2-xTB (tblite); the files keep the official key names
(e.g. wb97x_dz.energy) but their level_of_theory attributes and manifest.json say what they
hold. Results obtained on this corpus are for demonstration and are not comparable to the
JMP paper. manifest.json lists every file with its SHA-256, the counts, seeds and versions.
"""


def _check_args(scale: float, seed: int, workers: int) -> None:
    if not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise ConfigError(f"make_demo: scale must be a positive finite number, got {scale!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"make_demo: seed must be a non-negative integer, got {seed!r}")
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
        raise ConfigError(f"make_demo: workers must be a non-negative integer, got {workers!r}")


def _existing_corpus(manifest: Path, scale: float, seed: int) -> bool:
    """True if ``manifest`` describes a complete corpus for these arguments; raise if others."""
    try:
        doc = read_manifest(manifest)
    except DataError:
        return False  # unreadable: treat the directory as an interrupted build
    if doc.get("scale") != scale or doc.get("seed") != seed:
        raise ConfigError(
            f"{manifest.parent} already holds a demo corpus made with scale={doc.get('scale')}, "
            f"seed={doc.get('seed')} (asked: scale={scale}, seed={seed}); choose another "
            "directory or delete this one"
        )
    if doc.get("format_version") != FORMAT_VERSION or set(doc.get("sets", {})) != set(SETS):
        return False
    return not verify_manifest(manifest, checksums=False)


def _replace_dir(tmp: Path, final: Path) -> None:
    """Move the finished ``tmp`` directory to ``final``, replacing an older one."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old)


def _remove_stale_work_dirs(out: Path) -> None:
    """Delete work directories an interrupted build left behind (``.<set>.tmp-*``, ``.old-*``)."""
    for name in SETS:
        for stale in [*out.glob(f".{name}.tmp-*"), *out.glob(f".{name}.old-*")]:
            if stale.is_dir():
                shutil.rmtree(stale)


def _write_set(spec: DemoSet, results: Sequence[Any], out: Path, seed: int) -> dict[str, Any]:
    tmp = out / f".{spec.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        written = spec.write(results, tmp, seed)
        files = file_entries(tmp, written.files)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _replace_dir(tmp, out / spec.name)
    return {
        "role": spec.role,
        "stands_in_for": spec.stands_in_for,
        "format": spec.file_format,
        "units_in_files": spec.units,
        "level_of_theory": spec.level_of_theory(),
        "path": spec.name,
        "jobs": len(results),
        "counts": written.counts,
        "notes": written.notes,
        "files": {f"{spec.name}/{rel}": info for rel, info in files.items()},
    }


def make_demo(
    out: Path | str,
    scale: float = 1.0,
    seed: int = 0,
    progress: bool = True,
    *,
    workers: int = 2,
    sets: Sequence[str] | None = None,
) -> Path:
    """Generate the multi-domain demo corpus into ``out``; return the path of its manifest.

    ``scale`` multiplies every set's size (1.0: ~500 slab frames, ~600 alloy frames, ~500
    molecule conformers and ~350 reaction-path frames for pre-training; 400 MD frames, 500
    alloys, 500 molecules for fine-tuning); ``seed`` fixes every structure and label (each
    job draws from its own seed, so results do not depend on ``workers``: worker processes run
    one OpenMP thread each; ``workers=0`` runs in this process, see `JobPool`). ``sets`` restricts
    the build to some sets (for tests); such a partial corpus gets a manifest listing only
    them and is rebuilt by a later full call.
    """
    _check_args(scale, seed, workers)
    names = list(SETS) if sets is None else list(sets)
    unknown = [n for n in names if n not in SETS]
    if unknown:
        raise ConfigError(f"make_demo: unknown sets {unknown}; known: {list(SETS)}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"make_demo: {out} exists and is not a directory")
    check_writable_dir(out, "demo corpus directory")
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / MANIFEST_NAME
    if manifest.exists():
        if sets is None and _existing_corpus(manifest, scale, seed):
            return manifest
        if sets is not None:
            _existing_corpus(manifest, scale, seed)  # raises on other scale/seed
        manifest.unlink()  # the corpus is being rebuilt: it is incomplete until the end
    _remove_stale_work_dirs(out)

    started = time.perf_counter()
    entries: dict[str, Any] = {}
    with JobPool(workers) as pool:
        plans = {n: SETS[n].plan(scale, seed) for n in names}
        # Queue every job now so that no worker idles between sets: single-job sets (the MD
        # trajectory, the longest job) first, then the others in set order.
        pending: dict[str, Callable[[], Any]] = {
            n: pool.submit(SETS[n].run, plans[n][0]) for n in names if len(plans[n]) == 1
        }
        streams: dict[str, Iterator[Any]] = {
            n: pool.imap(SETS[n].run, plans[n]) for n in names if n not in pending
        }
        for name in names:
            spec, jobs = SETS[name], plans[name]
            t0 = time.perf_counter()
            bar = tqdm(total=len(jobs), desc=f"{name:<18}", unit="job", disable=not progress)
            with bar:
                if name in pending:
                    results = [pending[name]()]
                    bar.update(1)
                else:
                    results = []
                    for r in streams[name]:
                        results.append(r)
                        bar.update(1)
            entries[name] = _write_set(spec, results, out, seed)
            entries[name]["seconds"] = round(time.perf_counter() - t0, 2)

    write_text_atomic(out / "README.txt", README)
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "scale": scale,
        "seed": seed,
        "workers": workers,
        "seconds": round(time.perf_counter() - started, 2),
        "generators": generator_versions(),
        "seeding": "job i of set S draws from numpy default_rng([seed, crc32(S), i])",
        "sets": entries,
    }
    write_json_atomic(manifest, doc)
    return manifest
