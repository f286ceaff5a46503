"""Keep glibc's malloc from hoarding freed activation memory, without paying for it in page faults.

A GemNet-OC pass allocates and frees many large temporaries. Two glibc behaviours hurt:

* on the heap, long-lived tensors (activations kept for backward) fragment it, freed memory stays
  resident, and the peak resident memory of a training step doubles;
* mmapped chunks (glibc's choice above its mmap threshold) are returned when freed, but every new
  one is page-faulted and zeroed by the kernel again, which costs ~30% of a CPU training step.

So allocations switch by phase (`forward_phase` / `backward_phase`, called by `JMPModel`):
the forward pass, which creates the long-lived activations, uses mmapped chunks for anything
above 1 MB; backward, whose allocations are short-lived gradients and recomputed activations of
the same few shapes, uses the heap (threshold 1 GB), where freed chunks are reused without
faults; and the next forward first gives the free heap memory back (``malloc_trim``).

Linux/glibc only; set the environment variable ``OPENJMP_MALLOC_TUNING=0`` to leave malloc
alone. Skipped when the process was started with ``MALLOC_MMAP_THRESHOLD_`` set.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from typing import Any

FORWARD_THRESHOLD = 1 << 20
BACKWARD_THRESHOLD = 1 << 30
_M_MMAP_THRESHOLD = -3  # mallopt parameter number (glibc malloc.h)
_libc: Any = None
_state = {"checked": False, "phase": ""}


def _lib() -> Any:
    global _libc
    if _state["checked"]:
        return _libc
    _state["checked"] = True
    if (
        not sys.platform.startswith("linux")
        or os.environ.get("OPENJMP_MALLOC_TUNING", "1") == "0"
        or "MALLOC_MMAP_THRESHOLD_" in os.environ
    ):
        return None
    name = ctypes.util.find_library("c")
    try:
        lib = ctypes.CDLL(name) if name else None
        if lib is not None and lib.mallopt(_M_MMAP_THRESHOLD, FORWARD_THRESHOLD):
            _libc = lib
    except (OSError, AttributeError):  # not glibc
        _libc = None
    return _libc


def tune_malloc() -> bool:
    """Enable the phase switching (once per process); True when malloc is glibc's and tunable."""
    return _lib() is not None


def forward_phase() -> None:
    """Before a forward pass: return free heap memory, mmap large allocations."""
    lib = _lib()
    if lib is None or _state["phase"] == "forward":
        return
    if _state["phase"] == "backward":
        lib.malloc_trim(0)
    lib.mallopt(_M_MMAP_THRESHOLD, FORWARD_THRESHOLD)
    _state["phase"] = "forward"


def backward_phase(*_: Any) -> None:
    """When backward starts (a tensor hook): serve allocations from the reusable heap."""
    lib = _lib()
    if lib is None or _state["phase"] == "backward":
        return
    lib.mallopt(_M_MMAP_THRESHOLD, BACKWARD_THRESHOLD)
    _state["phase"] = "backward"
