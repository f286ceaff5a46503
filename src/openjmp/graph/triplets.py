"""Triplet and quadruplet indices of GemNet-OC, vectorised in pure torch.

Same semantics and names as the authors' ``models/gemnet/interaction_indices.py``
(``get_triplets``, ``get_mixed_triplets``, ``get_quadruplets``), which use torch_sparse; here
every enumeration is a gather over contiguous segments of target-sorted edges. Edge ``c->a``
means source c, target a (``index = [source, target]``). Graphs passed as *input* graphs must
be sorted by target atom; *output* entries come out sorted by output edge, as the authors'.
Within one output edge the input edges follow their order in the input graph (the authors
follow torch_sparse's (target, source) storage order); the sets are the same.

"Same atom image" tests (an atom plus a summed cell offset) compare one int64 key per edge:
``atom * C**3 + lin(offset)`` with ``lin(o) = (o_x * C + o_y) * C + o_z`` and ``C`` large enough
that sums of up to three offsets never carry between digits, so ``lin`` is exact and linear.
"""

from __future__ import annotations

import torch
from torch import Tensor

from openjmp.graph.batch import EdgeSet
from openjmp.graph.ragged import exclusive_cumsum, gather_segments, inner_index, segment_ranges


def _radix(*graphs: EdgeSet) -> int:
    """Digit base C for `_lin`: sums of three offsets of these graphs fit in (-C/2, C/2)."""
    r = max((int(g.cell_offset.abs().max()) for g in graphs if g.cell_offset.shape[0]), default=0)
    return 6 * r + 1


def _lin(offset: Tensor, c: int) -> Tensor:
    """(E, 3) offsets -> (E,) int64, linear and injective for components in (-C/2, C/2)."""
    return (offset[:, 0] * c + offset[:, 1]) * c + offset[:, 2]


def _segments(target_sorted: Tensor, num_atoms: int) -> tuple[Tensor, Tensor]:
    """Start and length (num_atoms,) of every target atom's run of edges."""
    deg = torch.bincount(target_sorted, minlength=num_atoms)
    return exclusive_cumsum(deg), deg


def _select(keep: Tensor, *arrays: Tensor) -> list[Tensor]:
    where = torch.nonzero(keep).squeeze(1)
    return [a.take(where) for a in arrays]


def triplets(graph: EdgeSet, num_atoms: int) -> dict[str, Tensor]:
    """e2e triplets ``b->a<-c`` of one (target-sorted) graph: the authors' ``get_triplets``.

    For every output edge ``c->a``, every input edge ``b->a`` into the same atom except the
    output edge itself (edge identity, not atom identity: ``b == c`` from another image counts).

    Returns dict (T,) int64 each: ``in`` (edge b->a), ``out`` (edge c->a, sorted),
    ``out_agg`` (position of the triplet among those of its output edge).
    """
    t = graph.index[1]
    start, deg = _segments(t, num_atoms)
    first = start.take(t)
    sizes = deg.take(t) - 1  # every input edge into the target but the output edge itself
    own = torch.arange(t.shape[0], device=t.device) - first  # the output edge's own slot
    out, inp = gather_segments(first, sizes, skip=own)
    return {"in": inp, "out": out, "out_agg": segment_ranges(torch.zeros_like(sizes), sizes)}


def mixed_triplets(
    graph_in: EdgeSet,
    graph_out: EdgeSet,
    num_atoms: int,
    *,
    to_outedge: bool = False,
    return_agg_idx: bool = False,
) -> dict[str, Tensor]:
    """Triplets whose input and output edges come from two graphs: the authors' ``get_mixed_triplets``.

    For every output edge ``c->a`` of ``graph_out``: every input edge of ``graph_in`` (target
    sorted) that ends in ``a`` (``to_outedge=False``), or in ``c`` (``to_outedge=True``, the
    input edge then leads into the output edge's source), except the input edge that closes
    the loop onto the same atom image: same atom and zero summed cell offset
    (``off_out - off_in`` for ``to_outedge=False``, ``off_out + off_in`` for ``True``).

    Returns dict (T,) int64: ``in`` (graph_in edge), ``out`` (graph_out edge, sorted), and
    ``out_agg`` if ``return_agg_idx``.
    """
    out_s, out_t = graph_out.index[0], graph_out.index[1]
    in_s, in_t = graph_in.index[0], graph_in.index[1]
    c = _radix(graph_in, graph_out)
    big = c**3
    start, deg = _segments(in_t, num_atoms)
    atom = out_s if to_outedge else out_t
    out, inp = gather_segments(start.take(atom), deg.take(atom))
    key_in = in_s * big + _lin(graph_in.cell_offset, c)
    if to_outedge:
        key_out = out_t * big - _lin(graph_out.cell_offset, c)
    else:
        key_out = out_s * big + _lin(graph_out.cell_offset, c)
    inp, out = _select(key_in.take(inp) != key_out.take(out), inp, out)
    idx = {"in": inp, "out": out}
    if return_agg_idx:
        idx["out_agg"] = inner_index(out, int(out_s.shape[0]))
    return idx


def quadruplets(main: EdgeSet, qint: EdgeSet, num_atoms: int) -> dict:
    """Quadruplets ``d->b->a<-c``: the authors' ``get_quadruplets``.

    ``c->a`` and ``d->b`` are main edges, ``b->a`` a qint edge; quadruplets with ``c == d``
    (same atom and same image) are removed. Both graphs must be sorted by target.

    Returns dict:
        ``triplet_in``: {``in``: main edge d->b, ``out``: qint edge b->a} (input triplets, sorted by out),
        ``triplet_out``: {``in``: qint edge b->a, ``out``: main edge c->a} (output triplets, sorted by out),
        ``out`` (Q,): main edge c->a of each quadruplet (sorted),
        ``trip_in_to_quad`` (Q,): its input triplet, ``trip_out_to_quad`` (Q,): its output triplet,
        ``out_agg`` (Q,): position of the quadruplet among those of its output edge.
    """
    trip_in = mixed_triplets(main, qint, num_atoms, to_outedge=True)
    trip_out = mixed_triplets(qint, main, num_atoms, to_outedge=False)
    n_q = int(qint.index.shape[1])
    n_in_per_inter = torch.bincount(trip_in["out"], minlength=n_q)
    start_in = exclusive_cumsum(n_in_per_inter)
    # For each output triplet c->a<-b (qint edge b->a), its quadruplets are the input triplets
    # d->b->a of that qint edge, except the (at most one) with d == c as an image. Find that
    # one by key: atom * C^3 + lin(offset); d == c <=> key(d->b) == key(c->a) - lin(b->a).
    c = _radix(main, qint)
    c3 = c**3
    key_main = main.index[0] * c3 + _lin(main.cell_offset, c) + c3 // 2  # in [0, N * C^3)
    span = (num_atoms + 1) * c3
    if (n_q + 1) * span >= 2**62:
        raise ValueError("batch too large for the int64 quadruplet keys: split it")
    q_key = trip_in["out"] * span + key_main.take(trip_in["in"])
    if q_key.shape[0] > 1 and bool((q_key[1:] < q_key[:-1]).any()):
        perm = torch.argsort(q_key)  # main not sorted by (target, source, offset): sort here
        trip_in = {k: v.take(perm) for k, v in trip_in.items()}
        q_key = q_key.take(perm)
    inter = trip_out["in"]
    query = inter * span + key_main.take(trip_out["out"]) - _lin(qint.cell_offset, c).take(inter)
    if q_key.shape[0] == 0:  # no input triplet at all: nothing to skip
        pos = torch.zeros_like(query)
        found = torch.zeros_like(query, dtype=torch.bool)
    else:
        pos = torch.searchsorted(q_key, query)
        found = q_key.take(pos.clamp(max=int(q_key.shape[0]) - 1)) == query
    first = start_in.take(inter)
    sizes = n_in_per_inter.take(inter) - found.long()
    skip = torch.where(found, pos - first, sizes + 1)
    trip_out_to_quad, trip_in_to_quad = gather_segments(first, sizes, skip=skip)
    out_edge = trip_out["out"]
    out = torch.repeat_interleave(out_edge, sizes, output_size=int(trip_in_to_quad.shape[0]))
    # Quadruplets come grouped by output triplet, and those by output edge.
    n_main = int(main.index.shape[1])
    per_edge = torch.zeros(n_main, dtype=torch.long, device=out.device).index_add_(
        0, out_edge, sizes
    )
    out_agg = segment_ranges(torch.zeros_like(per_edge), per_edge, int(out.shape[0]))
    return {
        "triplet_in": trip_in,
        "triplet_out": trip_out,
        "out": out,
        "trip_in_to_quad": trip_in_to_quad,
        "trip_out_to_quad": trip_out_to_quad,
        "out_agg": out_agg,
    }
