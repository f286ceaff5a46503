"""Keep large CPU tensors in reused memory instead of fresh page mappings (Linux, glibc).

A GemNet-OC pass allocates and frees hundreds of (edges x emb_edge) temporaries: 32-38 MB
each at JMP-S size on the benchmark batches. glibc serves every allocation above its mmap
threshold (at most 32 MiB) with a fresh anonymous mapping and unmaps it on free, so each such
temporary is faulted in again, 4 KiB page by page, by whichever operation first writes it;
those faults cost more than the writing itself. On the JMP-S slab benchmark
(benchmarks/bench_model.py, slabs_forward_backward, 2 threads, no activation checkpointing)
a pass took 38.6 s with glibc's defaults and 19.5 s with the settings below, at peak resident
memory 7.9 GB and 8.5 GB; the 0.7 M-parameter demo model's training step gained ~10 %.

`tune_malloc` (called once per process when a `JMPModel` is built) sets, with ``mallopt``:

* ``M_MMAP_MAX`` = 0: no allocation is served by its own mapping; all come from the heap;
* ``M_TRIM_THRESHOLD`` = unlimited: freed heap memory stays mapped for the next pass (as
  PyTorch's CUDA caching allocator keeps device memory), so a process holds on to its peak;
* ``M_ARENA_MAX`` = 1: intra-op worker threads share the main heap instead of each growing
  its own.

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
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_UNLIMITED = -1  # mallopt takes an int; glibc reads the trim threshold as size_t (-1: never)
_USER_SETTINGS = (
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_MMAP_MAX_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_ARENA_MAX",
)
_state = {"done": False, "ok": False}


def tune_malloc() -> bool:
    """Serve every allocation from one never-trimmed heap (once per process, see the module
    docstring); True when malloc is glibc's and took the settings (now or before)."""
    if _state["done"]:
        return _state["ok"]
    _state["done"] = True
    if (
        not sys.platform.startswith("linux")
        or os.environ.get("OPENJMP_MALLOC_TUNING", "1") == "0"
        or any(name in os.environ for name in _USER_SETTINGS)
    ):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        ok = bool(libc.mallopt(_M_MMAP_MAX, 0))
        ok = ok and bool(libc.mallopt(_M_TRIM_THRESHOLD, _UNLIMITED))
        ok = ok and bool(libc.mallopt(_M_ARENA_MAX, 1))
    except (OSError, AttributeError):  # not glibc
        return False
    _state["ok"] = ok
    return ok
