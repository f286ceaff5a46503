"""Keep large CPU tensors in reused memory instead of fresh page mappings (Linux, glibc).

A GemNet-OC pass allocates and frees hundreds of (edges x emb_edge) temporaries: 32-38 MB
each at JMP-S size on the benchmark batches. glibc serves every allocation above its mmap
threshold (at most 32 MiB) with a fresh anonymous mapping and unmaps it on free, so each such
temporary is faulted in again, 4 KiB page by page, by whichever operation first writes it;
those faults cost more than the writing itself. On the JMP-S slab benchmark
(benchmarks/bench_model.py, slabs_forward_backward, 2 threads, no activation checkpointing)
a pass took 38.6 s with glibc's defaults and 19.5 s with the settings below, at peak resident
memory 7.9 GB and 8.5 GB; the 0.7 M-parameter demo model's training step gained ~10 %.

`tune_malloc` (called when a `JMPModel` is built) sets, with ``mallopt`` (the "fast" mode):

* ``M_MMAP_MAX`` = 0: no allocation is served by its own mapping; all come from the heap;
* ``M_TRIM_THRESHOLD`` = unlimited: freed heap memory stays mapped for the next pass (as
  PyTorch's CUDA caching allocator keeps device memory), so a process holds on to its peak;
* ``M_ARENA_MAX`` = 1: intra-op worker threads share the main heap instead of each growing
  its own.

Activation checkpointing switches to the "lean" mode of `set_mode` (1 MB mmap threshold: what
it saves would otherwise stay in the heap as fragments), and a training pass without it back.

Set the environment variable ``OPENJMP_MALLOC_TUNING=0`` to leave malloc alone; it is also
left alone when the process was started with any ``MALLOC_*_`` setting of glibc's (the user's
choice wins), and on non-glibc platforms.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers (glibc malloc.h)
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_UNLIMITED = -1  # mallopt takes an int; glibc reads the trim threshold as size_t (-1: never)
_GLIBC_MMAP_MAX = 65536  # glibc's default M_MMAP_MAX
_LEAN_MMAP_THRESHOLD = 1 << 20
_LEAN_TRIM_THRESHOLD = 128 << 10  # glibc's default
_USER_SETTINGS = (
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_MMAP_MAX_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_ARENA_MAX",
)
_state: dict = {"done": False, "libc": None, "mode": None}


def _libc():  # noqa: ANN202
    """glibc, when this process may tune it (see the module docstring), else None."""
    if _state["done"]:
        return _state["libc"]
    _state["done"] = True
    if (
        not sys.platform.startswith("linux")
        or os.environ.get("OPENJMP_MALLOC_TUNING", "1") == "0"
        or any(name in os.environ for name in _USER_SETTINGS)
    ):
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        if not (libc.mallopt(_M_ARENA_MAX, 1) and hasattr(libc, "malloc_trim")):
            return None
    except (OSError, AttributeError):  # not glibc
        return None
    _state["libc"] = libc
    return libc


def set_mode(mode: str) -> bool:
    """ "fast" (the default, see the module docstring) or "lean": allocations above 1 MB get
    their own mappings, returned to the system when freed, and the heap kept by "fast" is
    released now. Lean is what activation checkpointing needs to save memory: the fast heap
    keeps recomputed regions' freed memory as fragments (a checkpointed JMP-S slab pass held
    10.8 GB in it against 4.1-4.3 GB lean). True when glibc took the settings (now or before)."""
    if mode not in ("fast", "lean"):
        raise ValueError(f"malloc mode must be 'fast' or 'lean', not {mode!r}")
    libc = _libc()
    if libc is None:
        return False
    if _state["mode"] == mode:
        return True
    if mode == "fast":
        ok = libc.mallopt(_M_MMAP_MAX, 0) and libc.mallopt(_M_TRIM_THRESHOLD, _UNLIMITED)
    else:
        ok = (
            libc.mallopt(_M_MMAP_THRESHOLD, _LEAN_MMAP_THRESHOLD)
            and libc.mallopt(_M_MMAP_MAX, _GLIBC_MMAP_MAX)
            and libc.mallopt(_M_TRIM_THRESHOLD, _LEAN_TRIM_THRESHOLD)
        )
        libc.malloc_trim(0)
    _state["mode"] = mode if ok else None
    return bool(ok)


def tune_malloc() -> bool:
    """The fast mode, unless a mode was set before (once per process: models call it when
    built); True when malloc is glibc's and took settings."""
    if _state["mode"] is not None:
        return True
    return set_mode("fast")
