"""`openjmp.tasks.optimizer.adamw`: fused on CPU, same updates as torch's per-tensor AdamW."""

from __future__ import annotations

import torch

from openjmp.tasks.optimizer import adamw

KW = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)


def _run(make, steps: int = 5) -> list[torch.Tensor]:
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(7, 5)), torch.nn.Parameter(torch.randn(5))]
    opt = make([{"params": params[:1], "lr": 3e-3}, {"params": params[1:]}])
    for step in range(steps):
        for k, p in enumerate(params):
            p.grad = torch.sin(p.detach() * (step + k + 1))
        opt.step()
    return [p.detach().clone() for p in params]


def test_fused_on_cpu_and_same_updates_as_reference() -> None:
    opt = adamw([torch.nn.Parameter(torch.zeros(3))], **KW)
    assert opt.defaults["fused"] is True
    ours = _run(lambda g: adamw(g, **KW))
    ref = _run(lambda g: torch.optim.AdamW(g, foreach=False, **KW))
    moved = _run(lambda g: torch.optim.AdamW(g, foreach=False, **KW), steps=0)
    for a, b, start in zip(ours, ref, moved, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
        assert not torch.allclose(a, start)  # the steps did move the parameters


def test_not_fused_for_non_float_or_unsupported_parameters() -> None:
    opt = adamw([torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))], **KW)
    assert opt.defaults["fused"] is True  # float64 is supported
    meta = torch.nn.Parameter(torch.zeros(3, device="meta"))
    opt = adamw([meta], **KW)
    assert not opt.defaults["fused"]
