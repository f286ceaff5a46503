"""Keep glibc's malloc from hoarding freed activation memory (Linux only).

A GemNet-OC pass allocates and frees many temporaries of 1-32 MB. glibc raises its mmap
threshold dynamically up to 32 MB after the first such free, so later temporaries land on the
heap, where long-lived tensors fragment it and freed memory stays resident: on the JMP-S
molecule benchmark the peak resident memory doubles. Fixing the threshold at 1 MB (allocations
above it are mmapped and returned to the system when freed) removes that, at the cost of a
page fault per fresh page of large temporaries.

`tune_malloc` is called once per process when a `JMPModel` is built. Set the environment
variable ``OPENJMP_MALLOC_TUNING=0`` to leave malloc alone; it is also skipped when the
process was started with ``MALLOC_MMAP_THRESHOLD_`` set, and on non-glibc platforms.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

MMAP_THRESHOLD_BYTES = 1 << 20
_M_MMAP_THRESHOLD = -3  # mallopt parameter number (glibc malloc.h)
_done = False


def tune_malloc() -> bool:
    """Fix glibc's mmap threshold at 1 MB (once per process); True if it was set now or before."""
    global _done
    if _done:
        return True
    if (
        not sys.platform.startswith("linux")
        or os.environ.get("OPENJMP_MALLOC_TUNING", "1") == "0"
        or "MALLOC_MMAP_THRESHOLD_" in os.environ
    ):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    except (OSError, AttributeError):  # not glibc
        return False
    _done = ok
    return ok
