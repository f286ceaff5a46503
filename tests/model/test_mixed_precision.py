"""Mixed precision (the presets' ``16-mixed``, and ``bf16-mixed``) against float32, on CPU.

Autocast runs the backbone's matrix products in float16 / bfloat16; element-wise geometry
(distances, angles, bases) stays float32, and the heads pool per-atom energies in float32 (a
bfloat16 sum of a 300 eV total would be off by about 1 eV). The tolerances below are the ones
the README states, as relative errors (norm of the difference over the norm of the float32
value) on a random tiny model, molecules and a periodic cell:

=========  ==========  =============  ===============  ===================
autocast   energies    direct forces  gradient forces  training gradients
=========  ==========  =============  ===============  ===================
float16    1e-2        5e-2           0.25             0.15
bfloat16   5e-2        1e-1           molecules 0.1;   0.3
                                      periodic cells
                                      unbounded (do
                                      not)
=========  ==========  =============  ===============  ===================

Training gradients: every parameter gradient of an energy + direct-force loss, as one vector.
Training under autocast runs on the fused kernels (`openjmp.model.gemnet_oc.fused`), in the
autocast dtype; the tolerances hold for them and for plain autocast alike.

Gradient forces are a derivative through every reduced-precision product: for near-
equilibrium cells, whose forces are small differences of large terms, bfloat16 loses them
entirely. Training uses mixed precision as the authors do; prediction (`openjmp.api`, the
calculator, evaluate) always runs in the model's own float32 or float64.
"""

from __future__ import annotations

import pytest
import torch
from ase.build import bulk, molecule

from openjmp.graph.collate import collate
from openjmp.graph.gemnet import build_graph_sample
from openjmp.graph.spec import graph_spec
from openjmp.model.gemnet_oc.config import GemNetOCConfig
from openjmp.model.heads import GradientForceHead
from openjmp.model.jmp_model import JMPModel
from openjmp.records import AtomsRecord

from helpers.physics_models import TINY, run

TOL = {
    torch.float16: {"energy": 1e-2, "direct": 5e-2, "gradient": 0.25},
    torch.bfloat16: {"energy": 5e-2, "direct": 1e-1, "gradient": 0.1},
}
TRAIN_GRAD_TOL = {torch.float16: 0.15, torch.bfloat16: 0.3}
"""Parameter gradients of a training loss (energies and direct forces), all as one vector."""


def model() -> JMPModel:
    torch.manual_seed(0)
    m = JMPModel.pretraining(GemNetOCConfig.jmp_s(**TINY), ("t",))
    m.heads["t_gradient"] = GradientForceHead("t_energy")
    return m.eval()


def structures() -> dict[str, tuple[list, str]]:
    mols = [molecule("CH3CH2OH"), molecule("C6H6")]
    for a in mols:
        a.rattle(0.05, seed=1)
        a.center(vacuum=5.0)
    cu = bulk("Cu", "fcc", a=3.6) * (2, 2, 2)
    cu.rattle(0.05, seed=2)
    return {"molecules": (mols, "ani1x"), "Cu cell": ([cu], "oc20")}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_autocast_stays_within_the_stated_tolerances(dtype: torch.dtype) -> None:
    m = model()
    for name, (frames, setting) in structures().items():
        ref = run(m, frames, setting)
        with torch.autocast("cpu", dtype=dtype):
            out = run(m, frames, setting)
        assert out["energy"].dtype == torch.float32  # pooled in float32, not in dtype
        for key in ("energy", "direct", "gradient"):
            if dtype == torch.bfloat16 and key == "gradient" and name != "molecules":
                continue  # stated as unbounded: bfloat16 gradient forces of a bulk cell
            err = rel(out[key], ref[key])
            assert torch.isfinite(out[key]).all()
            assert err < TOL[dtype][key], (name, key, err)
            assert err > 0  # autocast really ran in reduced precision


def _train_pass(m: JMPModel, frames: list, setting: str) -> tuple[torch.Tensor, ...]:
    """Energies, direct forces and every parameter gradient (one vector) of an energy + force
    loss in training mode, as float64."""
    m.zero_grad(set_to_none=True)
    b = collate([build_graph_sample(AtomsRecord.from_ase(a), graph_spec(setting)) for a in frames])
    out = m(b, heads=["t_energy", "t_forces"])
    loss = out["t_energy"].float().pow(2).sum() + out["t_forces"].float().pow(2).sum()
    (loss / loss.detach()).backward()  # O(1), as training's normalised losses (float16's range)
    grads = [p.grad for p in m.parameters() if p.grad is not None]
    assert all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
    flat = torch.cat([g.flatten() for g in grads])
    return out["t_energy"].detach().double(), out["t_forces"].detach().double(), flat.double()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_mixed_precision_training_runs_on_the_fused_kernels(
    dtype: torch.dtype, monkeypatch
) -> None:
    """Under autocast, training passes (no position gradients) run on the fused kernels, in
    the autocast dtype (`fused.autocast_aware`), and both they and plain autocast stay within
    the stated tolerances of float32: energies, direct forces, and the parameter gradients of
    an energy + force loss (all of them as one vector: `TRAIN_GRAD_TOL`)."""
    from openjmp.model.gemnet_oc import fused, segment

    calls = []
    for kernel in (fused._ResidualStack, fused._MLP, segment._AggregateBilinear):
        monkeypatch.setattr(
            kernel, "apply", lambda *a, _f=kernel.apply, _k=kernel: calls.append(_k) or _f(*a)
        )
    m = model().train()
    tol = (TOL[dtype]["energy"], TOL[dtype]["direct"], TRAIN_GRAD_TOL[dtype])
    for name, (frames, setting) in structures().items():
        ref = _train_pass(m, frames, setting)
        for fk in (False, True):
            m.backbone.fused_kernels = fk
            calls.clear()
            with torch.autocast("cpu", dtype=dtype):
                out = _train_pass(m, frames, setting)
            assert len(set(calls)) == (3 if fk else 0), calls
            errs = [rel(a, b) for a, b in zip(out, ref)]
            assert all(0 < e < t for e, t in zip(errs, tol)), (name, fk, errs)


def test_bf16_mixed_pretraining_runs_on_cpu(tmp_path) -> None:  # noqa: ANN001
    """``precision: bf16-mixed`` trains on CPU (fp16 AMP needs a GPU: a named error)."""
    from openjmp.errors import ConfigError
    from openjmp.train.pretrain import run_pretrain

    from helpers.tiny_data import tiny_config, write_tiny_data

    write_tiny_data(tmp_path / "data")
    cfg = tiny_config(tmp_path / "data", precision="bf16-mixed")
    cfg = cfg.model_copy(update={"trainer": cfg.trainer.model_copy(update={"max_steps": 3})})
    result = run_pretrain(cfg, out_dir=tmp_path / "run", progress=False, logger=False)
    assert result.steps == 3 and [s for s, _ in result.val_history] == [0, 3]
    losses = [loss for _, loss in result.train_history]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    for _, per_dataset in result.val_history:
        for metrics in per_dataset.values():
            assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    with pytest.raises(ConfigError, match="16-mixed"):
        run_pretrain(tiny_config(tmp_path / "data", precision="16-mixed"), out_dir=tmp_path / "r2")


def test_bf16_mixed_finetuning_with_gradient_forces_runs_on_cpu(tmp_path) -> None:  # noqa: ANN001
    """Fine-tuning energies + gradient forces under ``bf16-mixed`` (the MD22 recipe's mixed
    precision): it trains, and its validation errors are finite numbers in eV and eV/Å."""
    from openjmp.train.finetune.run import run_finetune

    from helpers.ft_helpers import tiny_config, write_molecules

    data = write_molecules(tmp_path / "mols.extxyz")
    cfg = tiny_config(data, ["precision=bf16-mixed", "heads.0.forces=gradient"])
    result = run_finetune(cfg, out_dir=tmp_path / "run", progress=False, logger=False,
                          evaluate_parts=())  # fmt: skip
    assert [s for s, _ in result.history] == [0, 4, 8]
    assert all(0 < v < 1e3 for _, v in result.history)
