"""Gather-multiply-aggregate, the one sparse primitive of the GemNet-OC interactions.

    out[o, s, d] = sum over pairs p with idx_out[p] == o of  y[p, s] * x[idx_x[p], d]

The authors scatter every pair into one zero-padded (outputs, max pairs per output, ·) tensor
and multiply it with an equally padded basis. A `SegmentPlan` does the same as a batched
matrix product, but over *chunks* of output rows sorted by their number of pairs, each chunk
padded only to its own longest row. Memory stays bounded by the chunk size, padding waste is
small, and the work is one gather of ``x`` rows plus a `torch.bmm` per chunk: the (P, S, D)
outer products are never formed. The plan depends only on the indices, so it is built once per
batch and reused by every interaction block, with the basis ``y`` padded once (`pad_basis`).

Gradients of any order flow to ``y`` and ``x`` (one autograd node per aggregation, whose
backward is itself differentiable).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from openjmp.model.gemnet_oc.fused import autocast_aware, mm_nt, new_buffer

# Padded pairs per chunk: 2^15 rows of the padded gather (x 64 features = 8 MiB in float32).
CHUNK_PAIRS = 1 << 15


@dataclass(frozen=True, slots=True)
class SegmentPlan:
    """How to aggregate the pairs of a sorted index into ``n_out`` rows.

    Attributes:
        n_out: number of output rows.
        num_pairs: P.
        rows: per chunk, (n_c,) int64 output rows (rows without pairs are in no chunk).
        x_index: per chunk, (n_c, K_c) int32 (int64 beyond 2^31 rows) row of ``x`` of every
            slot; padding slots read row 0 (their basis weight is zero, so finite inputs
            contribute nothing).
        pair_index: per chunk, (n_c, K_c) int64 pair of every slot; padding slots point to P.
        order: (n_rows,) the chunks' rows, concatenated ("plan order"; rows with pairs only).
    """

    n_out: int
    num_pairs: int
    rows: tuple[Tensor, ...]
    x_index: tuple[Tensor, ...]
    pair_index: tuple[Tensor, ...]
    order: Tensor

    @staticmethod
    def build(
        idx_out: Tensor,
        n_out: int,
        idx_x: Tensor | None,
        *,
        chunk_pairs: int = CHUNK_PAIRS,
    ) -> SegmentPlan:
        """Plan for pairs with output rows ``idx_out`` (P,) and input rows ``idx_x`` (P,)
        (None: pair p reads row p of x)."""
        device = idx_out.device
        num_pairs = int(idx_out.shape[0])
        if idx_x is None:
            idx_x = torch.arange(num_pairs, device=device)
        if num_pairs > 1 and bool((idx_out[1:] < idx_out[:-1]).any()):
            order = torch.argsort(idx_out, stable=True)
            idx_out, idx_x = idx_out[order], idx_x[order]
            pair_of = order
        else:
            pair_of = torch.arange(num_pairs, device=device)
        counts = torch.bincount(idx_out, minlength=n_out)
        starts = torch.cumsum(counts, 0) - counts
        by_len = torch.argsort(counts, descending=True, stable=True)
        counts_sorted = counts[by_len].tolist()
        n_nonzero = int((counts > 0).sum())
        x_ext = torch.cat([idx_x, idx_x.new_zeros(1)])  # padding reads row 0, weight 0
        if x_ext.numel() and int(x_ext.max()) < 2**31:
            x_ext = x_ext.int()  # half the memory; index_select takes int32
        pair_ext = torch.cat([pair_of, pair_of.new_full((1,), num_pairs)])

        rows, x_index, pair_index = [], [], []
        i = 0
        while i < n_nonzero:
            k = counts_sorted[i]
            j = min(n_nonzero, i + max(1, chunk_pairs // k))
            r = by_len[i:j]
            slots = torch.arange(k, device=device)
            local = starts[r][:, None] + slots[None, :]
            valid = slots[None, :] < counts[r][:, None]
            local = torch.where(valid, local, num_pairs)  # -> the appended padding entry
            rows.append(r)
            x_index.append(x_ext[local])
            pair_index.append(pair_ext[local])
            i = j
        order = by_len[:n_nonzero]
        return SegmentPlan(n_out, num_pairs, tuple(rows), tuple(x_index), tuple(pair_index), order)

    def without_pairs(self) -> SegmentPlan:
        """The plan without its pair index (needed only by `pad_basis`), to free memory."""
        return dataclasses.replace(self, pair_index=())

    def pad_basis(self, y: Tensor) -> PaddedBasis:
        """Per-pair weights (P, S) -> per chunk (n_c, S, K_c), zero in padding slots."""
        y_ext = torch.cat([y, y.new_zeros(1, y.shape[1])])
        return PaddedBasis(tuple(y_ext[p].transpose(1, 2) for p in self.pair_index), y.shape[1])

    def aggregate(self, y: PaddedBasis, x: Tensor) -> Tensor:
        """``out[o] = sum_p y[p] ⊗ x[idx_x[p]]``: padded basis from `pad_basis`, x (M, D)
        -> (n_out, S, D).

        Under autocast the products run in its reduced dtype (as autocast runs ``bmm``), with
        every operand cast to it first, so forward and backward see one dtype
        (`fused.autocast_aware`)."""
        return _aggregate(self, y.width, x, y.chunks)

    def aggregate_bilinear(
        self, y: PaddedBasis, x: Tensor, rad_w_ordered: Tensor, w: Tensor
    ) -> Tensor:
        """``(rad_w[o] @ aggregate(y, x)[o].view(K, -1)).flatten() @ w.T`` row by row, as one
        pass over the plan's chunks: the (n_out, S, D) aggregate and the (n_out, C, D')
        contraction exist only a chunk at a time (the "efficient bilinear" layer of the
        triplet and quadruplet interactions).

        y (P, S) padded, x (M, D), ``rad_w_ordered = rad_w[self.order]`` (rows in plan order,
        see `order`; rad_w (n_out, C, K) with K * D' = S * D), w (out, C * D') -> (n_out, out);
        rows without pairs are 0. Under autocast, in its dtype (`fused.autocast_aware`)."""
        return _aggregate_bilinear(self, y.width, x, rad_w_ordered, w, y.chunks)


def _add_index(index: Tensor) -> Tensor:
    """``index`` as int64 for ``index_add_``: the plans keep int32 row indices (half the
    memory; ``index_select`` takes them at full speed), but torch's CPU ``index_add_`` has its
    fast kernel for int64 only: with int32 it was 5-7x slower (32k rows of 16-112 features,
    2 threads), a tenth of the demo model's training step."""
    return index if index.dtype == torch.int64 else index.long()


def _keep_x(ctx, x: Tensor, first_basis: int) -> Tensor | None:  # noqa: ANN001
    """``x`` if backward needs it (only for the gradient of a basis chunk, the inputs from
    ``first_basis`` on), else None: the gradient of x needs only the basis and the incoming
    gradient. In direct-force training no basis requires a gradient, and x is the largest
    input of the quadruplet interaction (its (triplets, 7 x quad_in) per-triplet aggregate,
    ~0.1 GB per interaction block at JMP-S size), freed after the forward pass this way."""
    return x if any(ctx.needs_input_grad[first_basis:]) else None


class _Aggregate(torch.autograd.Function):
    """`SegmentPlan.aggregate` as one autograd node.

    Per-chunk autograd nodes would each produce a gradient of the full (n_out, S, D) output
    and of the full x in backward (a cost quadratic in the number of chunks); here backward
    touches every row once. Backward is written in differentiable torch ops, so gradients of
    any order (gradient-force training) flow through it.
    """

    @staticmethod
    def forward(ctx, plan: SegmentPlan, width: int, x: Tensor, *y: Tensor) -> Tensor:  # noqa: ANN001
        d = x.shape[1]
        out = new_buffer(x, (plan.n_out, width, d), zero=True)
        for yc, xi, rows in zip(y, plan.x_index, plan.rows):
            xc = x.index_select(0, xi.reshape(-1)).view(xi.shape[0], xi.shape[1], d)
            out.index_copy_(0, rows, torch.bmm(yc, xc))  # (n_c, S, K_c) @ (n_c, K_c, D)
        ctx.plan, ctx.x_shape = plan, x.shape
        # x is read in backward only for the basis's gradient (`_keep_x`)
        ctx.save_for_backward(_keep_x(ctx, x, 3), *y)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple:  # noqa: ANN001
        plan: SegmentPlan = ctx.plan
        x, *y = ctx.saved_tensors
        d = ctx.x_shape[1]
        need_x, need_y = ctx.needs_input_grad[2], ctx.needs_input_grad[3:]
        grad_x = new_buffer(grad, ctx.x_shape, zero=True) if need_x else None
        grad_y: list[Tensor | None] = []
        for i, (yc, xi, rows) in enumerate(zip(y, plan.x_index, plan.rows)):
            gc = grad.index_select(0, rows)  # (n_c, S, D)
            flat = xi.reshape(-1)
            if grad_x is not None:
                grad_x.index_add_(
                    0, _add_index(flat), torch.bmm(yc.transpose(1, 2), gc).reshape(-1, d)
                )
            if need_y[i]:
                xc = x.index_select(0, flat).view(xi.shape[0], xi.shape[1], d)
                grad_y.append(torch.bmm(gc, xc.transpose(1, 2)))
            else:
                grad_y.append(None)
        return (None, None, grad_x, *grad_y)


@autocast_aware
def _aggregate(plan: SegmentPlan, width: int, x: Tensor, chunks: tuple) -> Tensor:
    return _Aggregate.apply(plan, width, x, *chunks)


@autocast_aware
def _aggregate_bilinear(
    plan: SegmentPlan, width: int, x: Tensor, rad_w: Tensor, w: Tensor, chunks: tuple
) -> Tensor:
    return _AggregateBilinear.apply(plan, width, x, rad_w, w, *chunks)


class _AggregateBilinear(torch.autograd.Function):
    """`SegmentPlan.aggregate_bilinear` as one autograd node (first-order backward; the
    backbone uses it only on the fused path, see `openjmp.model.gemnet_oc.fused`). Keeps the
    per-chunk aggregates; recomputes the (rows, C * D') contraction in backward."""

    @staticmethod
    def forward(
        ctx, plan: SegmentPlan, width: int, x: Tensor, rad_w: Tensor, w: Tensor, *y: Tensor
    ) -> Tensor:  # noqa: ANN001, E501
        d = x.shape[1]
        k = rad_w.shape[2]
        out_ordered = x.new_empty(rad_w.shape[0], w.shape[0])
        aggs = []
        start = 0
        for yc, xi in zip(y, plan.x_index):
            n_c = xi.shape[0]
            xc = x.index_select(0, xi.reshape(-1)).view(n_c, xi.shape[1], d)
            agg = torch.bmm(yc, xc).view(n_c, k, -1)  # (n_c, K, D')
            del xc
            b = torch.bmm(rad_w.narrow(0, start, n_c), agg)  # (n_c, C, D')
            out_ordered.narrow(0, start, n_c).copy_(mm_nt(b.view(n_c, -1), w))
            aggs.append(agg)
            start += n_c
        ctx.plan, ctx.width, ctx.x_shape = plan, width, x.shape
        ctx.save_for_backward(_keep_x(ctx, x, 5), rad_w, w, *y, *aggs)
        return out_ordered.new_zeros(plan.n_out, w.shape[0]).index_copy_(0, plan.order, out_ordered)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple:  # noqa: ANN001
        plan: SegmentPlan = ctx.plan
        x, rad_w, w, *rest = ctx.saved_tensors
        n = len(plan.rows)
        y, aggs = rest[:n], rest[n:]
        d = ctx.x_shape[1]
        need_x, need_r, need_w = ctx.needs_input_grad[2:5]
        need_y = ctx.needs_input_grad[5:]
        grad = grad.index_select(0, plan.order)
        grad_x = new_buffer(grad, ctx.x_shape, zero=True) if need_x else None
        grad_r = new_buffer(rad_w, rad_w.shape, zero=False) if need_r else None
        grad_w = torch.zeros_like(w) if need_w else None
        w_t = w.t().contiguous()
        grad_y: list[Tensor | None] = []
        start = 0
        for i, (yc, xi, agg) in enumerate(zip(y, plan.x_index, aggs)):
            n_c = xi.shape[0]
            gc = grad.narrow(0, start, n_c)  # (n_c, out)
            rw = rad_w.narrow(0, start, n_c)  # (n_c, C, K)
            if grad_w is not None:
                b = torch.bmm(rw, agg)
                grad_w.addmm_(gc.t(), b.view(n_c, -1))
                del b
            gb = mm_nt(gc, w_t).view(n_c, rw.shape[1], -1)  # (n_c, C, D')
            if grad_r is not None:
                torch.bmm(gb, agg.transpose(1, 2), out=grad_r.narrow(0, start, n_c))
            g_agg = torch.bmm(rw.transpose(1, 2), gb).view(n_c, yc.shape[1], d)
            del gb
            flat = xi.reshape(-1)
            if grad_x is not None:
                grad_x.index_add_(
                    0, _add_index(flat), torch.bmm(yc.transpose(1, 2), g_agg).reshape(-1, d)
                )
            if need_y[i]:
                xc = x.index_select(0, flat).view(n_c, xi.shape[1], d)
                grad_y.append(torch.bmm(g_agg, xc.transpose(1, 2)))
            else:
                grad_y.append(None)
            start += n_c
        return (None, None, grad_x, grad_r, grad_w, *grad_y)


@dataclass(frozen=True, slots=True)
class PaddedBasis:
    """A per-pair basis laid out for a `SegmentPlan`: chunks (n_c, width, K_c)."""

    chunks: tuple[Tensor, ...]
    width: int


def gather_outer_sum(
    y: Tensor, x: Tensor, idx_x: Tensor | None, idx_out: Tensor, n_out: int
) -> Tensor:
    """One-off ``out[o, s, d] = sum_{p: idx_out[p] = o} y[p, s] x[idx_x[p], d]``:
    y (P, S), x (M, D) -> (n_out, S, D). Prefer a reused `SegmentPlan` in loops."""
    plan = SegmentPlan.build(idx_out, n_out, idx_x)
    return plan.aggregate(plan.pad_basis(y), x)
