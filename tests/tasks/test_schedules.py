"""LR schedules against hand-computed values (jmp-reference §2.6, §3.1).

Besides literal numbers, the closed forms are compared with the authors' *recursive* update
rules, rewritten here from their description: warm-up adds (lr0 − start)/(W − 1) per step and
the cosine multiplies (lr − η) by a ratio of consecutive cosines. Agreement to 1e-12 relative
means the closed form is the same schedule, not an approximation of it.
"""

from __future__ import annotations

import math

import pytest
import torch

from openjmp.tasks.schedules import (
    WarmupCosineRLP,
    epochs_to_steps,
    llrd_min_lr_factor,
    pretrain_scheduler,
    warmup_cosine_factor,
)


def _optimizer(lrs: list[float]) -> torch.optim.Optimizer:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs]
    return torch.optim.AdamW(groups, betas=(0.9, 0.95), weight_decay=0.1)


def _run(opt: torch.optim.Optimizer, sched, steps: int) -> list[list[float]]:
    """lrs in effect for optimizer steps 0..steps-1."""
    out = []
    for _ in range(steps):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return out


def _recursive(base: float, start: float, eta: float, w: int, m: int, steps: int) -> list[float]:
    lrs = [start]
    for s in range(1, steps):
        lr = lrs[-1]
        if s < w:
            lr = lr + (base - start) / (w - 1)
        elif s == w:
            lr = base
        elif s <= m:
            ratio = (1 + math.cos(math.pi * (s - w) / (m - w))) / (
                1 + math.cos(math.pi * (s - w - 1) / (m - w))
            )
            lr = ratio * (lr - eta) + eta
        lrs.append(lr)
    return lrs


def test_pretrain_schedule_by_hand() -> None:
    opt = _optimizer([3e-4])
    sched = pretrain_scheduler(opt, warmup_steps=4, max_steps=10)
    lrs = [x[0] for x in _run(opt, sched, 13)]
    f = [0.2, 0.2 + 0.8 / 3, 0.2 + 1.6 / 3, 1.0, 1.0]
    assert lrs[:5] == pytest.approx([3e-4 * x for x in f], rel=1e-12)
    assert lrs[7] == pytest.approx(3e-4 * 0.55, rel=1e-12)  # half-way down: 0.1 + 0.45
    assert lrs[10:] == pytest.approx([3e-5] * 3, rel=1e-12)  # floor 0.1x at M and after
    assert lrs[:11] == pytest.approx(_recursive(3e-4, 6e-5, 3e-5, 4, 10, 11), rel=1e-12)


def test_jmp_pretrain_numbers() -> None:
    # 2000 warm-up steps from 0.2x; the paper's lr 3e-4 starts at 6e-5 and peaks at step 2000
    assert warmup_cosine_factor(0, 2000, 10_000, 0.2, 0.1) == pytest.approx(0.2)
    assert warmup_cosine_factor(1999, 2000, 10_000, 0.2, 0.1) == pytest.approx(1.0)
    assert warmup_cosine_factor(2000, 2000, 10_000, 0.2, 0.1) == pytest.approx(1.0)
    assert warmup_cosine_factor(6000, 2000, 10_000, 0.2, 0.1) == pytest.approx(0.55)


def test_pretrain_schedule_resumes_from_state_dict() -> None:
    opt = _optimizer([1e-3])
    sched = pretrain_scheduler(opt, warmup_steps=3, max_steps=9)
    ref = _run(opt, sched, 12)
    opt = _optimizer([1e-3])
    sched = pretrain_scheduler(opt, warmup_steps=3, max_steps=9)
    head = _run(opt, sched, 5)
    o_state, s_state = opt.state_dict(), sched.state_dict()
    opt2 = _optimizer([1e-3])
    sched2 = pretrain_scheduler(opt2, warmup_steps=3, max_steps=9)
    opt2.load_state_dict(o_state)
    sched2.load_state_dict(s_state)
    assert head + _run(opt2, sched2, 7) == ref


def test_llrd_floor_factor() -> None:
    assert llrd_min_lr_factor(1.0) == pytest.approx(0.1)
    assert llrd_min_lr_factor(0.3) == pytest.approx(1 / 3)
    assert llrd_min_lr_factor(0.05) == 0.99 and llrd_min_lr_factor(20.0) == 0.01
    for scale in (0.3, 0.55, 0.40, 0.30, 0.625):  # the JMP-L multipliers all end at 0.1 x base
        assert scale * llrd_min_lr_factor(scale) == pytest.approx(0.1)


def _finetune(**kw) -> tuple[torch.optim.Optimizer, WarmupCosineRLP]:
    opt = _optimizer([1e-4, 3e-5])  # "rest" at base lr, embedding at 0.3x
    sched = WarmupCosineRLP(
        opt,
        warmup_steps=3,
        max_steps=8,
        min_lr_factors=[llrd_min_lr_factor(1.0), llrd_min_lr_factor(0.3)],
        rlp_patience=0,
        **kw,
    )
    return opt, sched


def test_finetune_schedule_by_hand() -> None:
    opt, sched = _finetune()
    lrs = _run(opt, sched, 11)
    assert lrs[0] == pytest.approx([1e-5, 3e-6], rel=1e-12)  # 0.1x each group's lr
    assert lrs[1] == pytest.approx([1e-5 + 9e-5 / 2, 3e-6 + 2.7e-5 / 2], rel=1e-12)  # (W-1) = 2
    assert lrs[2] == pytest.approx([1e-4, 3e-5], rel=1e-12)
    assert lrs[3] == pytest.approx([1e-4, 3e-5], rel=1e-12)
    c = 1 + math.cos(math.pi * 1 / 5)
    assert lrs[4] == pytest.approx([1e-5 + 0.5 * 9e-5 * c, 1e-5 + 0.5 * 2e-5 * c], rel=1e-12)
    assert [x for row in lrs[8:] for x in row] == pytest.approx([1e-5] * 6, rel=1e-12)  # 0.1x base
    for g, (base, eta) in enumerate([(1e-4, 1e-5), (3e-5, 1e-5)]):
        rec = _recursive(base, 0.1 * base, eta, 3, 8, 9)
        assert [x[g] for x in lrs[:9]] == pytest.approx(rec, rel=1e-12)


def test_plateau_stage_starts_at_max_steps() -> None:
    opt, sched = _finetune()
    _run(opt, sched, 5)
    assert sched.on_validation(1.0) is False  # still in the cosine: ignored
    _run(opt, sched, 4)  # 9 steps done
    assert sched.in_plateau_stage
    assert sched.on_validation(1.0) is True  # first value: best so far
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-5, 1e-5])
    sched.on_validation(1.0)  # no relative improvement > 1e-4, patience 0: reduce by 0.8
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([8e-6, 8e-6])
    sched.on_validation(0.5)  # improvement: keep
    _run(opt, sched, 2)  # steps after M leave the reduced lr alone
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([8e-6, 8e-6])
    assert sched.get_last_lr() == pytest.approx([8e-6, 8e-6])


def test_plateau_mode_max() -> None:
    opt, sched = _finetune(rlp_mode="max")
    _run(opt, sched, 9)
    sched.on_validation(0.9)
    sched.on_validation(0.95)  # better in "max" mode: no reduction
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-5)
    sched.on_validation(0.5)
    assert opt.param_groups[0]["lr"] == pytest.approx(8e-6)


def test_finetune_schedule_resumes_including_plateau_state() -> None:
    opt, sched = _finetune()
    _run(opt, sched, 9)
    sched.on_validation(1.0)
    o_state, s_state = opt.state_dict(), sched.state_dict()
    sched.on_validation(1.0)
    expected = [g["lr"] for g in opt.param_groups]

    opt2, sched2 = _finetune()
    opt2.load_state_dict(o_state)
    sched2.load_state_dict(s_state)
    assert sched2.last_epoch == 9
    sched2.on_validation(1.0)  # restored "best" makes this a plateau, as in the original run
    assert [g["lr"] for g in opt2.param_groups] == pytest.approx(expected)
    assert expected == pytest.approx([8e-6, 8e-6])


def test_bad_settings_raise() -> None:
    with pytest.raises(ValueError, match="warmup_steps < max_steps"):
        pretrain_scheduler(_optimizer([1.0]), warmup_steps=10, max_steps=10)
    with pytest.raises(ValueError, match="min_lr_factors for 2"):
        WarmupCosineRLP(_optimizer([1.0, 1.0]), warmup_steps=1, max_steps=5, min_lr_factors=[0.1])


def test_epochs_to_steps() -> None:
    assert epochs_to_steps(5, 101) == 505
    assert epochs_to_steps(32, 101, accumulate_grad_batches=4) == 32 * 26
