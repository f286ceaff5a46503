"""Fused autograd kernels for GemNet-OC's edge-sized layers: same numbers, less kept, faster.

GemNet-OC's time and memory go to a hundred (edges, emb_edge) activations per pass, produced by
Dense layers with a scaled SiLU. Autograd, op by op, keeps the input of every matrix product,
the input of every activation and both factors of every product with a radial basis: about 2.6
(E, emb_edge) tensors per Dense layer. The functions here compute the same expressions, in the
same order of floating-point operations, as one autograd node each, keeping only what cannot be
recomputed cheaply (a layer's input and its pre-activation) and recomputing the rest in backward
from it with element-wise passes or small products (radial bases of 16 features):

* `dense`: x @ W.T, optionally followed by the scaled SiLU (keeps x and the pre-activation);
* `residual_stack`: a chain of `ResidualLayer`; keeps the chain's input (or the
  pre-activation the chain's input is the activation of) and the two pre-activations of every
  layer (the layers' inputs are recomputed element-wise);
* `act_mul_down`: the input side of every triplet / quadruplet interaction,
  act(down(s * act(dense(m))[idx] * (rad @ W_rbf.T))); keeps m and two pre-activations;
* `edge_to_atom`: s * sum over the edges of each atom of m * (rbf @ W.T);
* `force_merge`: the first layer of the direct-force MLP on the per-block outputs
  s_i * x_i * (rbf @ W_i.T); keeps only the x_i;
* `sym_up`: the two up-projections of a symmetric message, (act(x W_ca.T) + act(x W_ac.T)
  [id_swap]) / sqrt 2; keeps only x (the (E, 64) -> (E, 2 emb_edge) product is recomputed);

The triplet and quadruplet aggregations with their "efficient bilinear" layer are fused in
`openjmp.model.gemnet_oc.segment.SegmentPlan.aggregate_bilinear`.

On CPU in float32 the large matrix products go to oneDNN (``torch.ops.mkldnn``), about 1.2x the
rate of MKL's sgemm on the AMD EPYC machines measured (and 1.5-2x on the narrow products of the
interactions); the weight gradients (a reduction over the edges) stay with MKL, which is faster
there. In float64 and on other devices everything is plain torch.

Under autocast (mixed-precision training: ``bf16-mixed``, ``16-mixed``) every kernel runs in
the autocast dtype (`autocast_aware`): its floating-point inputs, parameters included, are
cast to it on the way in (differentiable casts: parameter gradients arrive in float32), and it
runs with autocast off, forward and backward in that one dtype, as autocast itself runs the
products (element-wise passes then run in that dtype too, as they do on autocast's product
outputs). Their outputs are in that dtype.

The backward passes are first-order only (``once_differentiable``): the backbone uses these
kernels only while `active` (see `enabled`), which it switches off when positions require
gradients (gradient forces: training needs the second derivative), when activation
checkpointing is on, and while scale factors are being fitted.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import ctypes.util
import functools
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd import Function
from torch.autograd.function import once_differentiable

INV_SQRT_2 = 2**-0.5

ONEDNN_MIN_WORK = 1 << 27
"""Multiply-adds (rows x in x out) from which a float32 CPU product goes to oneDNN. oneDNN
builds a kernel for every new shape, and training batches bring a new row count every step:
0.4-1.4 ms per call, which made the demo model's training steps (products of 4k-20k x 64 x 64,
under 10^8 multiply-adds) slower than MKL's, while JMP-S's edge products (~5 x 10^8 and up)
still gain 1.2-1.6x with it (2 threads, AMD EPYC, rows varied call to call)."""

_HAS_ONEDNN = torch.backends.mkldnn.is_available() and hasattr(
    torch.ops.mkldnn, "_linear_pointwise"
)
_ENABLED = contextvars.ContextVar("openjmp_fused", default=False)
_RECOMPUTE_RESIDUAL = contextvars.ContextVar("openjmp_fused_recompute_residual", default=False)


@contextlib.contextmanager
def enabled(flag: bool = True, *, recompute_residual: bool = False) -> Iterator[None]:
    """Use the fused kernels inside this context (the backbone's choice, see module docstring).

    recompute_residual: `residual_stack` keeps one pre-activation per residual layer instead of
    two and recomputes the other product in backward (one more product per layer, one
    (rows, units) tensor less kept per layer)."""
    token = _ENABLED.set(bool(flag))
    token_r = _RECOMPUTE_RESIDUAL.set(bool(recompute_residual))
    try:
        yield
    finally:
        _RECOMPUTE_RESIDUAL.reset(token_r)
        _ENABLED.reset(token)


def active() -> bool:
    return _ENABLED.get()


_F = TypeVar("_F", bound=Callable[..., Any])


def _cast(a: Any, dtype: torch.dtype) -> Any:
    if isinstance(a, Tensor):
        return a.to(dtype) if a.is_floating_point() else a
    if isinstance(a, list | tuple):
        return type(a)(_cast(b, dtype) for b in a)
    return a


def _device_type(args: Sequence[Any]) -> str | None:
    for a in args:
        if isinstance(a, Tensor):
            return a.device.type
        if isinstance(a, list | tuple) and (t := _device_type(a)) is not None:
            return t
    return None


def autocast_aware(fn: _F) -> _F:
    """``fn`` as is without autocast; under autocast (of its tensors' device type) with every
    floating-point tensor argument (also inside list / tuple arguments) cast to the autocast
    dtype and autocast off inside, so the kernel's forward and backward see one dtype."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        device = _device_type(args)
        if device is None or not torch.is_autocast_enabled(device):
            return fn(*args, **kwargs)
        low = torch.get_autocast_dtype(device)
        args = tuple(_cast(a, low) for a in args)
        kwargs = {k: _cast(v, low) for k, v in kwargs.items()}
        with torch.autocast(device, enabled=False):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


HUGE_PAGE_MIN_BYTES = 32 << 20
"""CPU buffers from this size are mapped with transparent huge pages (`new_buffer`)."""
_MADV_HUGEPAGE = 14


def _load_madvise():  # noqa: ANN202
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_madvise = _load_madvise()


def new_buffer(like: Tensor, shape: Sequence[int], *, zero: bool) -> Tensor:
    """A fresh tensor of ``like``'s dtype and device; zero-filled if ``zero``.

    glibc maps every allocation above 32 MiB afresh and the kernel faults it in 4 KiB page by
    page, which costs ~5x the time of writing it (82 ms for 100 MB here); with transparent
    huge pages requested for the range (``madvise``; Linux, THP in "madvise" or "always"
    mode) it costs ~1.5x. Smaller buffers come from malloc's reused heap."""
    t = like.new_empty(tuple(shape))
    nbytes = t.numel() * t.element_size()
    if _madvise is not None and t.device.type == "cpu" and nbytes >= HUGE_PAGE_MIN_BYTES:
        ptr = t.data_ptr()
        start = (ptr + 4095) & ~4095
        end = (ptr + nbytes) & ~4095
        if end > start:
            _madvise(start, end - start, _MADV_HUGEPAGE)  # best effort: errors are ignored
    return t.zero_() if zero else t


def _onednn(x: Tensor, w: Tensor) -> bool:
    return (
        _HAS_ONEDNN
        and not (torch.is_grad_enabled() and (x.requires_grad or w.requires_grad))
        and x.dtype == torch.float32
        and x.device.type == "cpu"
        and x.shape[0] * x.shape[1] * w.shape[0] >= ONEDNN_MIN_WORK
    )


def mm_nt(x: Tensor, w: Tensor) -> Tensor:
    """x (n, k) @ w.T ((m, k) -> (n, m)), on oneDNN for large float32 CPU products (outside
    autograd: with gradients recorded it is a plain differentiable product)."""
    if _onednn(x, w):
        # oneDNN takes strided weights (column slices, transposes) through a reference
        # kernel ~1000x slower: give it dense row-major operands (weights are small)
        return torch.ops.mkldnn._linear_pointwise(
            x.contiguous(), w.contiguous(), None, "none", [], ""
        )
    return torch.mm(x, w.t())


def mm_nt_silu(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """silu(x @ w.T + b), on oneDNN with the bias and activation applied in the product's
    epilogue (no separate pass over the output); inference only (no pre-activation kept)."""
    if _onednn(x, w) and (b is None or not (torch.is_grad_enabled() and b.requires_grad)):
        return torch.ops.mkldnn._linear_pointwise(
            x.contiguous(), w.contiguous(), b, "swish", [], ""
        )
    a = torch.mm(x, w.t()) if b is None else torch.addmm(b, x, w.t())
    return F.silu(a, inplace=True)


def _act(a: Tensor, scale: float) -> Tensor:
    """silu(a) * scale as a fresh tensor (the order of `ScaledSiLU`)."""
    y = F.silu(a)
    return y.mul_(scale) if scale != 1.0 else y


def _act_(a: Tensor, scale: float) -> Tensor:
    """In place: a <- silu(a) * scale (a must be a fresh temporary)."""
    y = F.silu(a, inplace=True)
    return y.mul_(scale) if scale != 1.0 else y


def _silu_grad(g: Tensor, a: Tensor) -> Tensor:
    """g * silu'(a) (fresh tensor); constant factors are folded into the small weights."""
    return torch.ops.aten.silu_backward(g, a)


def _needs_grad(*ts: Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in ts)


def _mul_scale_(x: Tensor, s: Tensor | None) -> Tensor:
    return x if s is None else x.mul_(s)


def _scaled(w: Tensor, c: float | Tensor) -> Tensor:
    return w * c if not (isinstance(c, float) and c == 1.0) else w


# --------------------------------------------------------------------------- dense
class _Dense(Function):
    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, scale: float | None) -> Tensor:  # noqa: ANN001
        a = mm_nt(x, w)
        ctx.scale = scale
        if scale is None:
            ctx.save_for_backward(x, w)
            return a
        ctx.save_for_backward(x, w, a)
        return _act(a, scale)

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor) -> tuple:  # noqa: ANN001
        x, w, *a = ctx.saved_tensors
        c = 1.0 if ctx.scale is None else ctx.scale
        ga = g if ctx.scale is None else _silu_grad(g, a[0])  # true gradient: c * ga
        gx = mm_nt(ga, _scaled(w, c).t()) if ctx.needs_input_grad[0] else None
        gw = _scaled(torch.mm(ga.t(), x), c) if ctx.needs_input_grad[1] else None
        return gx, gw, None


@autocast_aware
def dense(x: Tensor, w: Tensor, scale: float | None) -> Tensor:
    """x @ w.T, then silu(.) * scale unless scale is None: (n, in) -> (n, out)."""
    if not _needs_grad(x, w):
        if scale is None:
            return mm_nt(x, w)
        y = mm_nt_silu(x, w)
        return y.mul_(scale) if scale != 1.0 else y
    return _Dense.apply(x, w, scale)


# ----------------------------------------------------------------- residual stack
# One layer: r' = (r + c * silu(c * silu(r W1.T) W2.T)) / sqrt 2, computed as
# a1 = r W1.T, a2 = silu(a1) (c W2).T, r' = silu(a2) * (c / sqrt 2) + r / sqrt 2.
# The chain's input r0 is x, or act(x) = silu(x) * act_in for a pre-activation x: the stack
# then keeps x (which the product before it would keep anyway) instead of act(x), and
# recomputes act(x) in backward.
def _stack_input(x: Tensor, act_in: float | None) -> Tensor:
    return x if act_in is None else _act(x, act_in)


def _residual_forward(
    x: Tensor, ws: Sequence[Tensor], scale: float, keep: list | None, lean: bool = False
) -> Tensor:
    """``keep``: None (inference), else filled with (a1, a2) per layer, a1 None if ``lean``;
    x is the chain's input r0."""
    r = x
    for i in range(0, len(ws), 2):
        w2 = _scaled(ws[i + 1], scale)
        if keep is None:  # inference: activations as the products' epilogues
            y = mm_nt_silu(mm_nt_silu(r, ws[i]), w2)
        else:
            a1 = mm_nt(r, ws[i])
            a2 = mm_nt(F.silu(a1), w2)
            keep += [None if lean else a1, a2]
            del a1
            y = F.silu(a2)
        r = y.mul_(scale * INV_SQRT_2).add_(r, alpha=INV_SQRT_2)
    return r


class _ResidualStack(Function):
    @staticmethod
    def forward(ctx, x, scale, lean, act_in, *ws):  # noqa: ANN001, ANN206
        keep: list[Tensor | None] = []
        out = _residual_forward(_stack_input(x, act_in), ws, scale, keep, lean)
        ctx.scale, ctx.n, ctx.act_in = scale, len(ws), act_in
        ctx.save_for_backward(x, *ws, *keep)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor) -> tuple:  # noqa: ANN001
        c, n = ctx.scale, ctx.n
        x, *rest = ctx.saved_tensors
        ws, pre = rest[:n], rest[n:]
        rs: list[Tensor | None] = [_stack_input(x, ctx.act_in)]  # the layers' inputs, recomputed
        for j in range(n // 2 - 1):
            y = F.silu(pre[2 * j + 1])
            rs.append(y.mul_(c * INV_SQRT_2).add_(rs[-1], alpha=INV_SQRT_2))
        gws: list[Tensor | None] = [None] * n
        k2 = c * INV_SQRT_2  # d r' / d silu(a2)
        for j in reversed(range(n // 2)):
            a1, a2 = pre[2 * j], pre[2 * j + 1]
            w1, w2 = ws[2 * j], ws[2 * j + 1]
            if a1 is None:  # "lean": recomputed from the layer's input
                a1 = mm_nt(rs[j], w1)
            ga2 = _silu_grad(g, a2)  # true gradient of a2: k2 * ga2
            h = F.silu(a1)
            gws[2 * j + 1] = torch.mm(ga2.t(), h).mul_(k2 * c)
            del h
            ga1 = _silu_grad(mm_nt(ga2, (w2 * (k2 * c)).t()), a1)
            del ga2
            gws[2 * j] = torch.mm(ga1.t(), rs[j])
            rs[j] = None
            if j > 0 or ctx.needs_input_grad[0]:
                g = mm_nt(ga1, w1.t()).add_(g, alpha=INV_SQRT_2)
        g_x = None
        if ctx.needs_input_grad[0]:
            g_x = g if ctx.act_in is None else _silu_grad(g * ctx.act_in, x)  # autograd's order
        return (g_x, None, None, None, *gws)


@autocast_aware
def residual_stack(
    x: Tensor, weights: Sequence[Tensor], scale: float, *, act_in: float | None = None
) -> Tensor:
    """A chain of `ResidualLayer` (two Dense + scaled SiLU each): weights (w1, w2, w1, w2, ...),
    r -> (r + act(act(r W1.T) W2.T)) / sqrt 2, layer by layer, from r = x, or from
    r = silu(x) * act_in (x a pre-activation, kept instead of its activation)."""
    if not weights:
        return _stack_input(x, act_in)
    if not _needs_grad(x, *weights):
        return _residual_forward(_stack_input(x, act_in), weights, scale, None)
    return _ResidualStack.apply(x, scale, _RECOMPUTE_RESIDUAL.get(), act_in, *weights)


# ------------------------------------------------------------ interaction input
# p = s * act(m W_ba.T)[idx] * (rad W_rbf.T) computed as silu(m W_ba.T)[idx] * (rad (c s W_rbf).T)
class _ActMulDown(Function):
    @staticmethod
    def forward(  # noqa: ANN001
        ctx, m, w_ba, rad, w_rbf, s, w_down, idx, scale: float
    ) -> Tensor:
        a_ba = mm_nt(m, w_ba)
        x = F.silu(a_ba)
        if idx is not None:
            x = x.index_select(0, idx)
        cs = scale if s is None else s * scale
        p = x.mul_(mm_nt(rad, w_rbf * cs))
        a_d = mm_nt(p, w_down)
        del p, x
        ctx.scale = scale
        ctx.save_for_backward(m, w_ba, rad, w_rbf, s, w_down, idx, a_ba, a_d)
        return _act(a_d, scale)

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor) -> tuple:  # noqa: ANN001
        m, w_ba, rad, w_rbf, s, w_down, idx, a_ba, a_d = ctx.saved_tensors
        c = ctx.scale
        cs = c if s is None else s * c
        ga_d = _silu_grad(g, a_d).mul_(c)  # (E, D_down): small
        xe = F.silu(a_ba)
        if idx is not None:
            xe = xe.index_select(0, idx)
        w_rbf_cs = w_rbf * cs
        r = mm_nt(rad, w_rbf_cs)
        g_wdown = torch.mm(ga_d.t(), xe * r)
        gp = mm_nt(ga_d, w_down.t())
        del ga_d
        g_r = gp.mul(xe)  # gradient of r = rad (cs W_rbf).T
        del xe
        g_wrbf = torch.mm(g_r.t(), rad).mul_(cs)
        g_rad = mm_nt(g_r, w_rbf_cs.t()) if ctx.needs_input_grad[2] else None
        del g_r
        g_x = gp.mul_(r)
        del r
        if idx is not None:
            g_x = g_x.new_zeros(a_ba.shape).index_add_(0, idx, g_x)
        ga_ba = _silu_grad(g_x, a_ba)
        del g_x
        g_wba = torch.mm(ga_ba.t(), m)
        g_m = mm_nt(ga_ba, w_ba.t()) if ctx.needs_input_grad[0] else None
        return g_m, g_wba, g_rad, g_wrbf, None, g_wdown, None, None


@autocast_aware
def act_mul_down(
    m: Tensor,
    w_ba: Tensor,
    rad: Tensor,
    w_rbf: Tensor,
    s: Tensor | None,
    w_down: Tensor,
    scale: float,
    idx: Tensor | None = None,
) -> Tensor:
    """act(p @ w_down.T), p = s * act(m @ w_ba.T)[idx] * (rad @ w_rbf.T): (M, D) -> (E, D_down).

    ``s`` a 0-d scale factor (None: unscaled), ``idx`` (E,) gathers rows of act(m @ w_ba.T)."""
    if not _needs_grad(m, w_ba, rad, w_rbf, w_down):
        x = mm_nt_silu(m, w_ba)
        if idx is not None:
            x = x.index_select(0, idx)
        cs = scale if s is None else s * scale
        return _act_(mm_nt(x.mul_(mm_nt(rad, w_rbf * cs)), w_down), scale)
    return _ActMulDown.apply(m, w_ba, rad, w_rbf, s, w_down, idx, scale)


# ----------------------------------------------------------------- edge to atom
class _EdgeToAtom(Function):
    @staticmethod
    def forward(ctx, m, rbf, w, idx, num_atoms: int, factor: float, s) -> Tensor:  # noqa: ANN001
        p = m * mm_nt(rbf, w)
        out = p.new_zeros(num_atoms, p.shape[1]).index_add_(0, idx, p)
        del p
        if factor != 1.0:
            out = out / factor
        ctx.factor = factor
        ctx.save_for_backward(m, rbf, w, idx, s)
        return _mul_scale_(out, s)

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor) -> tuple:  # noqa: ANN001
        m, rbf, w, idx, s = ctx.saved_tensors
        if s is not None:
            g = g * s
        if ctx.factor != 1.0:
            g = g / ctx.factor
        ge = g.index_select(0, idx)
        r = mm_nt(rbf, w)
        gm = ge * r if ctx.needs_input_grad[0] else None
        del r
        g_r = ge.mul_(m)
        gw = torch.mm(g_r.t(), rbf)
        g_rbf = mm_nt(g_r, w.t()) if ctx.needs_input_grad[1] else None
        return gm, g_rbf, gw, None, None, None, None


@autocast_aware
def edge_to_atom(
    m: Tensor,
    rbf: Tensor,
    w: Tensor,
    idx: Tensor,
    num_atoms: int,
    s: Tensor | None,
    divide_by: float = 1.0,
) -> Tensor:
    """s * (sum over the edges e of atom idx[e] of m[e] * (rbf[e] @ w.T)) / divide_by:
    (E, D), (E, R) -> (num_atoms, D)."""
    if not _needs_grad(m, rbf, w):
        x = m * mm_nt(rbf, w)
        out = x.new_zeros(num_atoms, x.shape[1]).index_add_(0, idx, x)
        if divide_by != 1.0:
            out = out / divide_by
        return _mul_scale_(out, s)
    return _EdgeToAtom.apply(m, rbf, w, idx, num_atoms, divide_by, s)


# ------------------------------------------------------------------ force merge
class _ForceMerge(Function):
    @staticmethod
    def forward(ctx, rbf, n: int, *args) -> Tensor:  # noqa: ANN001
        xs, ws, ss, heads = args[:n], args[n : 2 * n], args[2 * n : 3 * n], args[3 * n :]
        z = None
        for x, w, s, a in zip(xs, ws, ss, heads):
            p = x * mm_nt(rbf, w if s is None else w * s)
            z = mm_nt(p, a) if z is None else z.add_(mm_nt(p, a))
        ctx.n = n
        ctx.save_for_backward(rbf, *args)
        return z

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor) -> tuple:  # noqa: ANN001
        n = ctx.n
        rbf, *args = ctx.saved_tensors
        xs, ws, ss, heads = args[:n], args[n : 2 * n], args[2 * n : 3 * n], args[3 * n :]
        gx, gw, ga = [], [], []
        g_rbf = None
        for x, w, s, a in zip(xs, ws, ss, heads):
            ws_ = w if s is None else w * s
            r = mm_nt(rbf, ws_)
            ga.append(torch.mm(g.t(), x * r))
            gp = mm_nt(g, a.t())
            g_r = gp.mul(x)
            gw.append(_mul_scale_(torch.mm(g_r.t(), rbf), s))
            if ctx.needs_input_grad[0]:
                term = mm_nt(g_r, ws_.t())
                g_rbf = term if g_rbf is None else g_rbf.add_(term)
            del g_r
            gx.append(gp.mul_(r))
        return (g_rbf, None, *gx, *gw, *([None] * n), *ga)


@autocast_aware
def force_merge(
    xs: Sequence[Tensor],
    rbf: Tensor,
    ws: Sequence[Tensor],
    ss: Sequence[Tensor | None],
    heads: Sequence[Tensor],
) -> Tensor:
    """sum_i (ss[i] * xs[i] * (rbf @ ws[i].T)) @ heads[i].T: the per-block force outputs through
    the first (column-split) layer of the final MLP, before its activation."""
    n = len(xs)
    if not _needs_grad(*xs, rbf, *ws, *heads) or any(s is not None and s.requires_grad for s in ss):
        z = None
        for x, w, s, a in zip(xs, ws, ss, heads):
            p = x * mm_nt(rbf, w)
            p = p if s is None else p * s
            z = mm_nt(p, a) if z is None else z + mm_nt(p, a)
        assert z is not None
        return z
    return _ForceMerge.apply(rbf, n, *xs, *ws, *ss, *heads)


# ----------------------------------------------------------- symmetric up-projection
class _SymUp(Function):
    @staticmethod
    def forward(ctx, x, w_ca, w_ac, id_swap, scale: float) -> Tensor:  # noqa: ANN001
        y = F.silu(mm_nt(x, w_ca))
        y.add_(F.silu(mm_nt(x, w_ac)).index_select(0, id_swap))
        ctx.scale = scale
        ctx.save_for_backward(x, w_ca, w_ac, id_swap)
        return y.mul_(scale * INV_SQRT_2)

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor) -> tuple:  # noqa: ANN001
        x, w_ca, w_ac, id_swap = ctx.saved_tensors
        k = ctx.scale * INV_SQRT_2  # true gradients: k * ga
        ga_ca = _silu_grad(g, mm_nt(x, w_ca))
        g_ac = torch.empty_like(g).index_copy_(0, id_swap, g)  # through the permutation
        ga_ac = _silu_grad(g_ac, mm_nt(x, w_ac))
        del g_ac
        gw_ca = torch.mm(ga_ca.t(), x).mul_(k)
        gw_ac = torch.mm(ga_ac.t(), x).mul_(k)
        gx = None
        if ctx.needs_input_grad[0]:
            gx = mm_nt(ga_ca, (w_ca * k).t()).add_(mm_nt(ga_ac, (w_ac * k).t()))
        return gx, gw_ca, gw_ac, None, None


@autocast_aware
def sym_up(x: Tensor, w_ca: Tensor, w_ac: Tensor, id_swap: Tensor, scale: float) -> Tensor:
    """(act(x @ w_ca.T) + act(x @ w_ac.T)[id_swap]) / sqrt 2; ``id_swap`` a permutation."""
    if not _needs_grad(x, w_ca, w_ac):
        y = mm_nt_silu(x, w_ca)
        y.add_(mm_nt_silu(x, w_ac).index_select(0, id_swap))
        return y.mul_(scale * INV_SQRT_2)
    return _SymUp.apply(x, w_ca, w_ac, id_swap, scale)


# ------------------------------------------------------------------ head MLPs
# Linear (+bias) -> act -> Linear -> act ... -> Linear: the activations' factor c is folded into
# the next weight (a_{i+1} = silu(a_i) (c W_{i+1}).T + b_{i+1}); only x and the a_i are kept.
def _mlp_forward(x: Tensor, params: Sequence[Tensor | None], c: float, keep: list | None) -> Tensor:
    n = len(params) // 2
    h = x
    for i in range(n):
        w, b = params[2 * i], params[2 * i + 1]
        w = w if i == 0 else w * c
        if keep is None and i < n - 1:
            h = mm_nt_silu(h, w, b)
            continue
        a = mm_nt(h, w)
        if b is not None:
            a = a.add_(b)
        if i == n - 1:
            return a
        if keep is not None:
            keep.append(a)
            h = F.silu(a)
        else:
            h = F.silu(a, inplace=True)
    return h


class _MLP(Function):
    @staticmethod
    def forward(ctx, x: Tensor, c: float, *params: Tensor | None) -> Tensor:  # noqa: ANN001
        keep: list[Tensor] = []
        out = _mlp_forward(x, params, c, keep)
        ctx.c, ctx.n = c, len(params) // 2
        ctx.has_bias = [p is not None for p in params[1::2]]
        ctx.save_for_backward(x, *[p for p in params if p is not None], *keep)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor) -> tuple:  # noqa: ANN001
        c, n = ctx.c, ctx.n
        x, *rest = ctx.saved_tensors
        ws, bs = [], []
        for has_b in ctx.has_bias:
            ws.append(rest.pop(0))
            bs.append(rest.pop(0) if has_b else None)
        pre = rest  # a_0 .. a_{n-2}
        grads: list[Tensor | None] = [None] * (2 * n)
        ga = g
        for i in reversed(range(n)):
            ci = 1.0 if i == 0 else c
            h = x if i == 0 else F.silu(pre[i - 1])
            grads[2 * i] = _scaled(torch.mm(ga.t(), h), ci)
            if bs[i] is not None:
                grads[2 * i + 1] = ga.sum(0)
            del h
            if i > 0:
                ga = _silu_grad(mm_nt(ga, _scaled(ws[i], ci).t()), pre[i - 1])
            elif ctx.needs_input_grad[0]:
                ga = mm_nt(ga, ws[0].t())
            else:
                ga = None
        return (ga, None, *grads)


def sequential(seq: torch.nn.Sequential, x: Tensor) -> Tensor | None:
    """``seq(x)`` for an MLP of Linear layers alternating with one kind of scaled-SiLU
    activation (the heads' MLPs), as one fused node; None when ``seq`` has another form."""
    from openjmp.model.gemnet_oc.layers import _UNFUSABLE, activation_scale

    mods = list(seq)
    if len(mods) % 2 != 1 or x.dim() != 2:
        return None
    linears, acts = mods[0::2], mods[1::2]
    if not all(type(m) is torch.nn.Linear for m in linears):
        return None
    scales = {activation_scale(a) for a in acts}
    if len(scales) > 1 or _UNFUSABLE in scales or None in scales:
        return None
    c = scales.pop() if scales else 1.0
    params: list[Tensor | None] = []
    for m in linears:
        params += [m.weight, m.bias]
    return _mlp(x, c, params)


@autocast_aware
def _mlp(x: Tensor, c: float, params: list[Tensor | None]) -> Tensor:
    if not _needs_grad(x, *params):
        return _mlp_forward(x, params, c, None)
    return _MLP.apply(x, c, *params)
