"""The fused kernels (`openjmp.model.gemnet_oc.fused`, `SegmentPlan.aggregate_bilinear`)
against plain autograd.

* float64: the fused path gives the plain path's energies, direct forces and every parameter
  gradient of a pre-training loss (energies and forces) up to summation order (1e-11
  relative), and every fused kernel is used;
* float32 with oneDNN forced on every product: the fused path is as close to the float64
  truth as the plain float32 path is (within a factor of 4 or float32's resolution);
* each kernel's gradient against torch.autograd.gradcheck;
* the fused path is off where its first-order backward would be wrong or its statistics
  missing: with position gradients, under activation checkpointing, while fitting scales.
"""

from __future__ import annotations

import collections

import pytest
import torch
import torch.nn.functional as F

from openjmp.model.gemnet_oc import fused
from openjmp.model.gemnet_oc.graph_inputs import gemnet_graph
from openjmp.model.gemnet_oc.layers import ScaledSiLU
from openjmp.model.gemnet_oc.segment import SegmentPlan

from helpers.tiny_models import make_batch, tiny_model

TASKS = ("oc20", "ani1x")


def _loss_and_grads(model, batch) -> tuple[torch.Tensor, torch.Tensor, dict]:  # noqa: ANN001
    model.zero_grad(set_to_none=True)
    out = model(batch)
    e = torch.stack([out[f"{t}_energy"] for t in TASKS])
    f = torch.stack([out[f"{t}_forces"] for t in TASKS])
    (e.pow(2).sum() + f.pow(2).sum()).backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return e.detach(), f.detach(), grads


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp(min=1e-30))


@pytest.fixture(scope="module")
def batches(frames: dict) -> list:
    return [
        make_batch([frames["bulk"], frames["molecule"]], "oc20"),
        make_batch([frames["molecule"]], "ani1x"),
    ]


def test_fused_equals_plain_in_float64(batches: list, monkeypatch) -> None:
    calls: collections.Counter = collections.Counter()
    kernels = [
        getattr(fused, n)
        for n in (
            "_Dense",
            "_ResidualStack",
            "_ActMulDown",
            "_EdgeToAtom",
            "_ForceMerge",
            "_SymUp",
            "_MLP",
        )
    ]
    from openjmp.model.gemnet_oc import segment

    kernels.append(segment._AggregateBilinear)
    for k in kernels:
        orig = k.apply

        def counted(*a, _orig=orig, _name=k.__name__):  # noqa: ANN002, ANN202
            calls[_name] += 1
            return _orig(*a)

        monkeypatch.setattr(k, "apply", counted)
    model = tiny_model(seed=3).train()
    for batch in batches:
        model.backbone.fused_kernels = False
        e0, f0, g0 = _loss_and_grads(model, batch)
        model.backbone.fused_kernels = True
        e1, f1, g1 = _loss_and_grads(model, batch)
        assert _rel(e1, e0) < 1e-11 and _rel(f1, f0) < 1e-11
        assert g0.keys() == g1.keys() and len(g0) > 200
        for name in g0:
            assert _rel(g1[name], g0[name]) < 1e-11, name
    assert set(calls) == {k.__name__ for k in kernels}, calls


def test_fused_float32_is_as_accurate_as_plain(batches: list, monkeypatch) -> None:
    monkeypatch.setattr(fused, "ONEDNN_MIN_WORK", 0)  # oneDNN for every product
    batch = batches[0]
    truth = tiny_model(seed=5).train()
    e64, f64, g64 = _loss_and_grads(truth, batch)
    model = tiny_model(seed=5).float().train()
    errs = {}
    for fk in (False, True):
        model.backbone.fused_kernels = fk
        e, f, g = _loss_and_grads(model, batch)
        errs[fk] = (_rel(e, e64), _rel(f, f64), max(_rel(g[n], g64[n]) for n in g64))
    for plain, fast in zip(errs[False], errs[True]):
        assert fast <= max(4 * plain, 1e-5), errs


def test_fused_inference_equals_plain(batches: list, monkeypatch) -> None:
    """Without gradients the kernels run their in-place / epilogue forms: float64 equal to
    plain autograd up to summation order; float32 (oneDNN on every product) as close to the
    float64 truth as plain float32."""
    monkeypatch.setattr(fused, "ONEDNN_MIN_WORK", 0)
    model = tiny_model(seed=4).eval()
    model32 = tiny_model(seed=4).float().eval()
    for batch in batches:
        with torch.no_grad():
            out = {}
            for m, fk in ((model, False), (model, True), (model32, False), (model32, True)):
                m.backbone.fused_kernels = fk
                out[m.dtype, fk] = m(batch)
        truth = out[torch.float64, False]
        for name in truth:
            assert _rel(out[torch.float64, True][name], truth[name]) < 1e-12, name
            err_plain = _rel(out[torch.float32, False][name], truth[name])
            err_fast = _rel(out[torch.float32, True][name], truth[name])
            assert err_fast <= max(4 * err_plain, 1e-5), (name, err_fast, err_plain)


def test_kernels_gradcheck() -> None:
    g = torch.Generator().manual_seed(1)

    def r(*shape: int, grad: bool = True) -> torch.Tensor:
        return torch.randn(*shape, dtype=torch.float64, generator=g).requires_grad_(grad)

    x, w1, w2, w3, w4 = r(7, 5), r(5, 5), r(5, 5), r(5, 5), r(5, 5)
    assert torch.autograd.gradcheck(lambda *a: fused.dense(a[0], a[1], 1.3), (x, w1))
    assert torch.autograd.gradcheck(lambda *a: fused.dense(a[0], a[1], None), (x, w1))
    assert torch.autograd.gradcheck(
        lambda *a: fused.residual_stack(a[0], a[1:], 1 / 0.6), (x, w1, w2, w3, w4)
    )
    # a pre-activation input: the stack applies silu(x) * act_in itself (same numbers as the
    # activation before it) and keeps x, not the activation's output
    stacked = fused.residual_stack(x, [w1, w2, w3, w4], 1 / 0.6, act_in=1.3)
    torch.testing.assert_close(
        stacked, fused.residual_stack(F.silu(x) * 1.3, [w1, w2, w3, w4], 1 / 0.6), rtol=0, atol=0
    )
    assert stacked.grad_fn.saved_tensors[0] is x
    assert torch.autograd.gradcheck(
        lambda *a: fused.residual_stack(a[0], a[1:], 1 / 0.6, act_in=1.3), (x, w1, w2, w3, w4)
    )
    rad, w_rbf, w_down = r(9, 3), r(5, 3), r(4, 5)
    idx = torch.tensor([0, 2, 2, 6, 1, 0, 3, 5, 4])
    s = torch.tensor(0.7, dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda *a: fused.act_mul_down(a[0], a[1], a[2], a[3], s, a[4], 1.2, idx=idx),
        (x, w1, rad, w_rbf, w_down),
    )
    m, rbf = r(9, 5), r(9, 3)
    assert torch.autograd.gradcheck(
        lambda *a: fused.edge_to_atom(a[0], a[1], a[2], idx, 7, s, 0.9), (m, rbf, w_rbf)
    )
    xs, heads = [r(9, 5), r(9, 5)], [r(4, 5), r(4, 5)]
    assert torch.autograd.gradcheck(
        lambda *a: fused.force_merge(a[0:2], a[2], a[3:5], [s, None], a[5:7]),
        (*xs, rbf, w_rbf, r(5, 3), *heads),
    )
    head = torch.nn.Sequential(
        torch.nn.Linear(5, 4), ScaledSiLU(), torch.nn.Linear(4, 4), ScaledSiLU(),
        torch.nn.Linear(4, 1, bias=False),
    ).double()  # fmt: skip
    torch.testing.assert_close(fused.sequential(head, x), head(x))  # the same function
    mlp_params = [r(4, 5), r(4), r(4, 4), r(4), r(1, 4)]
    assert torch.autograd.gradcheck(
        lambda x, *p: fused._MLP.apply(x, 1 / 0.6, p[0], p[1], p[2], p[3], p[4], None),
        (x, *mlp_params),
    )
    swap = torch.tensor([1, 0, 3, 2, 5, 4, 6])
    assert torch.autograd.gradcheck(
        lambda *a: fused.sym_up(a[0], a[1], a[2], swap, 1.1), (r(7, 3), r(5, 3), r(5, 3))
    )


def test_aggregate_bilinear_gradcheck() -> None:
    g = torch.Generator().manual_seed(2)
    n_out, m, p, s_w, d, c = 6, 5, 23, 4, 6, 3
    idx_out = torch.randint(0, n_out - 1, (p,), generator=g)  # last row: no pairs
    idx_x = torch.randint(0, m, (p,), generator=g)
    plan = SegmentPlan.build(idx_out, n_out, idx_x, chunk_pairs=5)
    assert len(plan.rows) > 2
    y = torch.randn(p, s_w, dtype=torch.float64, generator=g).requires_grad_()
    x = torch.randn(m, d, dtype=torch.float64, generator=g).requires_grad_()
    k = 2  # (S * D) read as (K, D'): D' = S * D / K
    rad_w = torch.randn(n_out, c, k, dtype=torch.float64, generator=g).requires_grad_()
    w = torch.randn(5, c * s_w * d // k, dtype=torch.float64, generator=g).requires_grad_()

    def fused_fn(y, x, rad_w, w):  # noqa: ANN001, ANN202
        return plan.aggregate_bilinear(plan.pad_basis(y), x, rad_w.index_select(0, plan.order), w)

    def plain(y, x, rad_w, w):  # noqa: ANN001, ANN202
        agg = plan.aggregate(plan.pad_basis(y), x).reshape(n_out, k, -1)
        return (rad_w @ agg).reshape(n_out, -1) @ w.T

    torch.testing.assert_close(fused_fn(y, x, rad_w, w), plain(y, x, rad_w, w))
    assert torch.all(fused_fn(y, x, rad_w, w)[-1] == 0)
    assert torch.autograd.gradcheck(fused_fn, (y, x, rad_w, w))


def test_fused_only_where_first_order_backward_suffices(frames: dict) -> None:
    from openjmp.model import scale_fit

    model = tiny_model(seed=3).train()
    batch = make_batch([frames["molecule"]], "ani1x")
    graph = gemnet_graph(batch, batch.pos.to(model.dtype))
    bb = model.backbone
    assert bb.use_fused(graph, "off")
    assert not bb.use_fused(graph, "selective")  # activation checkpointing: plain autograd
    pos = batch.pos.to(model.dtype).requires_grad_(True)
    assert not bb.use_fused(gemnet_graph(batch, pos), "off")  # gradient forces
    factor = next(iter(bb.scale_factors().values()))
    factor.start_observing()
    try:
        assert not bb.use_fused(graph, "off")
    finally:
        factor.stop_observing()
    assert bb.use_fused(graph, "off")
    bb.fused_kernels = False
    assert not bb.use_fused(graph, "off")
    assert scale_fit is not None


def _saved_storages(fn) -> set[int]:  # noqa: ANN001
    """Data pointers of every tensor autograd keeps while running ``fn()``."""
    kept: set[int] = set()

    def pack(t: torch.Tensor) -> torch.Tensor:
        kept.add(t.untyped_storage().data_ptr())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return kept


def test_aggregations_keep_their_input_only_for_a_basis_gradient() -> None:
    """Direct-force training: no basis needs a gradient, so the aggregations do not keep their
    input x for backward (the quadruplet interaction's largest tensor); gradients of x, the
    radial weights and the bilinear weight stay exact; with a basis gradient x is kept."""
    g = torch.Generator().manual_seed(4)
    n_out, m, p, s_w, d, c, k = 6, 5, 23, 4, 6, 3, 2
    idx_out = torch.randint(0, n_out - 1, (p,), generator=g)
    idx_x = torch.randint(0, m, (p,), generator=g)
    plan = SegmentPlan.build(idx_out, n_out, idx_x, chunk_pairs=5)
    y = torch.randn(p, s_w, dtype=torch.float64, generator=g)
    x = torch.randn(m, d, dtype=torch.float64, generator=g).requires_grad_()
    rad_w = torch.randn(n_out, c, k, dtype=torch.float64, generator=g).requires_grad_()
    w = torch.randn(5, c * s_w * d // k, dtype=torch.float64, generator=g).requires_grad_()

    def bilinear(y, x, rad_w, w):  # noqa: ANN001, ANN202
        return plan.aggregate_bilinear(plan.pad_basis(y), x, rad_w.index_select(0, plan.order), w)

    x_ptr = x.untyped_storage().data_ptr()
    assert x_ptr not in _saved_storages(lambda: bilinear(y, x, rad_w, w))
    assert x_ptr not in _saved_storages(lambda: plan.aggregate(plan.pad_basis(y), x))
    assert torch.autograd.gradcheck(lambda *a: bilinear(y, *a), (x, rad_w, w))
    assert torch.autograd.gradcheck(lambda a: plan.aggregate(plan.pad_basis(y), a), (x,))
    y_grad = y.clone().requires_grad_()
    assert x_ptr in _saved_storages(lambda: bilinear(y_grad, x, rad_w, w))
    assert x_ptr in _saved_storages(lambda: plan.aggregate(plan.pad_basis(y_grad), x))
