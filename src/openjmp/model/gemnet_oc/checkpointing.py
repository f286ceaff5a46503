"""Activation-memory control for training: which intermediate tensors autograd keeps.

GemNet-OC's memory is dominated by (edges, emb_edge) activations of its many edge-wise Dense
layers. Two region kinds, both `torch.utils.checkpoint` (non-reentrant):

* ``selective``: inside the region only the outputs of large matrix products (reduction size
  >= `SAVE_MIN_K`) are kept; everything cheap (activations, products with the radial bases,
  gathers, the triplet/quadruplet aggregations, small up-projections) is recomputed in backward.
  No large product is ever computed twice.
* ``full``: nothing inside the region is kept; the region's forward is re-run in backward.
  Used for the direct-force branch: it costs nothing when only energies are differentiated,
  and one extra forward of that branch when forces enter the loss.

Both are bypassed when gradients are off, and when positions require grad (gradient forces,
where training needs double backward through the whole network).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterator
from typing import Any, Literal

import torch
from torch.utils.checkpoint import (
    CheckpointPolicy,
    checkpoint,
    create_selective_checkpoint_contexts,
)

SAVE_MIN_K = 128
"""Matrix products with at least this reduction size are saved, smaller ones recomputed."""

_MM = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default}

Mode = Literal["off", "selective", "full"]


_recompute_all = contextvars.ContextVar("openjmp_recompute_all", default=False)


@contextlib.contextmanager
def recompute_matmuls() -> Iterator[None]:
    """Inside a selective region: recompute even the large products of this code (traded for
    memory where one product's output would otherwise be kept)."""
    token = _recompute_all.set(True)
    try:
        yield
    finally:
        _recompute_all.reset(token)


def _policy(ctx: Any, op: Any, *args: Any, **kwargs: Any) -> CheckpointPolicy:
    if op in _MM and not _recompute_all.get():
        a = args[0] if op is torch.ops.aten.mm.default else args[1]
        if a.shape[-1] >= SAVE_MIN_K:
            return CheckpointPolicy.MUST_SAVE
    return CheckpointPolicy.PREFER_RECOMPUTE


_selective_context = functools.partial(create_selective_checkpoint_contexts, _policy)


def run(mode: Mode, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` inside a checkpoint region of the given mode ("off": a plain call)."""
    if mode == "off":
        return fn(*args)
    if mode == "selective":
        return checkpoint(fn, *args, use_reentrant=False, context_fn=_selective_context)
    return checkpoint(fn, *args, use_reentrant=False)
