"""Keep glibc's malloc from hoarding freed activation memory (Linux only).

A GemNet-OC training pass allocates and frees many large temporaries. glibc raises its mmap
threshold dynamically up to 32 MB after the first such free, so later temporaries land on the
heap, where long-lived tensors (activations kept for backward) fragment it and freed memory
stays resident; with one arena per thread the fragments multiply. On the JMP-S benchmark
(benchmarks/bench_model.py, slabs, forward + backward) the peak resident memory is 0.37 of the
authors' with glibc's defaults (or with a heap-backed backward) and 0.28 with:

* the mmap threshold fixed at 1 MB: allocations above it are mmapped and returned to the
  system when freed (at the cost of a page fault per fresh page of large temporaries);
* one malloc arena (``M_ARENA_MAX`` = 1): intra-op worker threads share the main heap instead
  of each growing its own.

Small models pay for the fixed threshold without needing it: their temporaries of a few MB
are mmapped and faulted in afresh on every pass, which made a training step of the
0.7 M-parameter demo model on OC20-like slabs 1.85x slower (683 ms vs 369 ms per batch of 16,
2 threads). `tune_malloc` is therefore called once per process when a `JMPModel` with edge
embeddings of at least `MIN_EDGE_EMBEDDING` (JMP-S: 512, JMP-L: 1024) is built, see
`wants_tuning`. Set the environment variable ``OPENJMP_MALLOC_TUNING=0`` to leave malloc
alone; it is also skipped when the process was started with ``MALLOC_MMAP_THRESHOLD_`` or
``MALLOC_ARENA_MAX`` set, and on non-glibc platforms.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

MMAP_THRESHOLD_BYTES = 1 << 20
MIN_EDGE_EMBEDDING = 256
"""Models with ``emb_size_edge`` below this leave malloc alone (see the module docstring)."""
_M_MMAP_THRESHOLD = -3  # mallopt parameter numbers (glibc malloc.h)
_M_ARENA_MAX = -8
_state = {"done": False, "ok": False}


def wants_tuning(emb_size_edge: int) -> bool:
    """Whether a model with this edge embedding size is large enough to gain from the tuning."""
    return int(emb_size_edge) >= MIN_EDGE_EMBEDDING


def tune_malloc() -> bool:
    """Fix glibc's mmap threshold at 1 MB and use one arena (once per process); True when
    malloc is glibc's and took the settings (now or before)."""
    if _state["done"]:
        return _state["ok"]
    _state["done"] = True
    if (
        not sys.platform.startswith("linux")
        or os.environ.get("OPENJMP_MALLOC_TUNING", "1") == "0"
        or "MALLOC_MMAP_THRESHOLD_" in os.environ
        or "MALLOC_ARENA_MAX" in os.environ
    ):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
        ok = ok and bool(libc.mallopt(_M_ARENA_MAX, 1))
    except (OSError, AttributeError):  # not glibc
        return False
    _state["ok"] = ok
    return ok
