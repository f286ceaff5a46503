"""`PretrainTask` on tiny models: the loss through ``training_step`` with hand-computed numbers,
validation metrics in eV and eV/Å without fixed atoms, shared-gradient scaling, the optimizer
and schedule, the edge-dropout boost and activation checkpointing.

The hand-computed batch: dataset A (structures s0 = H + fixed O, s2 = H + H + O) and dataset B
(s1 = one C), each with its own references, mean, std, force std and coefficients; the heads'
outputs are fixed by hand (the other dataset's head predicts 1000, which must never count). The
expected loss is written out term by term below from the normalised targets. The force norm
carries the 1e-6 that F.pairwise_distance adds to each component, so the hand values include it.
"""

from __future__ import annotations

import math

import pytest
import torch

from openjmp.config.common import OptimizerConfig
from openjmp.config.pretrain import PretrainScheduleConfig
from openjmp.graph.batch import Batch
from openjmp.model.gemnet_oc.config import GemNetOCConfig
from openjmp.tasks.losses import pretrain_loss
from openjmp.tasks.optimizer import Optimization
from openjmp.tasks.pretrain import (
    DatasetTask,
    PretrainTask,
)

TINY = GemNetOCConfig(
    num_blocks=2, emb_size_atom=8, emb_size_edge=16, emb_size_trip_in=4, emb_size_trip_out=4,
    emb_size_quad_in=4, emb_size_quad_out=4, emb_size_aint_in=4, emb_size_aint_out=4,
    emb_size_rbf=4, emb_size_cbf=4, emb_size_sbf=4, num_radial=8, num_spherical=3,
    num_before_skip=1, num_after_skip=1, num_atom=1, num_output_afteratom=1,
    num_atom_emb_layers=1, num_global_out_layers=1, absolute_rbf_cutoff=5.0,
)  # fmt: skip
EPS = 1e-6
BIG = 1000.0


def d(*diff: float) -> float:
    return math.sqrt(sum((x + EPS) ** 2 for x in diff))


def refs(values: dict[int, float]) -> list[float]:
    out = [0.0] * 10
    for z, v in values.items():
        out[z] = v
    return out


TASKS = [
    DatasetTask("A", refs({1: 0.5, 8: -2.0}), 1.0, 2.0, 0.5, energy_coefficient=1.0,
                force_coefficient=10.0),
    DatasetTask("B", refs({6: 1.0}), 0.0, 4.0, 2.0, energy_coefficient=2.0,
                force_coefficient=3.0),
]  # fmt: skip


def hand_batch() -> Batch:
    z = torch.tensor([1, 8, 6, 1, 1, 8])
    forces = torch.tensor(
        [[1, 0, 0], [0, 0, -1], [2, 2, 0], [0, 0.5, 0], [0, 0, 0], [0.5, 0, 0]],
        dtype=torch.float64,
    )
    return Batch(
        atomic_numbers=z,
        pos=torch.zeros(6, 3, dtype=torch.float64),
        cell=torch.zeros(3, 3, 3, dtype=torch.float64),
        batch=torch.tensor([0, 0, 1, 2, 2, 2]),
        natoms=torch.tensor([2, 1, 3]),
        tags=torch.full((6,), 2),
        fixed=torch.tensor([False, True, False, False, False, False]),
        edges={},
        energy=torch.tensor([3.0, 5.0, 0.0], dtype=torch.float64),
        forces=forces,
        datasets=("A", "B", "A"),
    )


# normalised targets, by hand: E^ = (E - sum ref - mean) / std, F^ = F / std_F
E_HAT = [(3.0 - (0.5 - 2.0) - 1.0) / 2.0, (5.0 - 1.0) / 4.0, (0.0 - (1.0 - 2.0) - 1.0) / 2.0]
F_HAT = [[2, 0, 0], [0, 0, -2], [1, 1, 0], [0, 1, 0], [0, 0, 0], [1, 0, 0]]
E_ERR = [0.25, 0.5, -1.0]  # own-head prediction minus target (normalised)
F_ERR = [[3, 4, 0], [0, 0, 1], [0, 0, 2], [0, 0, 0], [6, 8, 0], [0, 0, 0]]


def mocked(task: PretrainTask):
    def predictions(batch: Batch, task_index: torch.Tensor | None = None):
        own = torch.tensor([0, 1, 0])
        assert task_index is None or task_index.tolist() == own.tolist()
        e = torch.full((3, 2), BIG, dtype=torch.float64)
        e[torch.arange(3), own] = torch.tensor(E_HAT, dtype=torch.float64) + torch.tensor(E_ERR)
        f = torch.full((6, 2, 3), BIG, dtype=torch.float64)
        f[torch.arange(6), own[batch.batch]] = torch.tensor(
            F_HAT, dtype=torch.float64
        ) + torch.tensor(F_ERR, dtype=torch.float64)
        return e, f

    task.predictions = predictions  # type: ignore[method-assign]
    return task


def new_task(**kw) -> PretrainTask:
    return PretrainTask(TINY, TASKS, dtype=torch.float64, **kw)


def test_normalised_targets_use_each_datasets_references_and_scales() -> None:
    task = new_task()
    b = hand_batch()
    e, f = task.normalized_targets(b, task.structure_tasks(b))
    assert e.tolist() == pytest.approx(E_HAT, abs=1e-15)
    assert f.tolist() == F_HAT


@pytest.mark.filterwarnings("ignore:You are trying to")
def test_training_step_loss_by_hand() -> None:
    task = mocked(new_task())
    loss = task.training_step(hand_batch(), 0)
    energy = (1.0 * 0.25 + 2.0 * 0.5 + 1.0 * 1.0) / 3
    force = (
        10.0 * (d(3, 4, 0) + d(0, 0, 1)) / 2  # s0: both atoms, the fixed one included
        + 3.0 * d(0, 0, 2) / 1  # s1
        + 10.0 * (d(0, 0, 0) + d(6, 8, 0) + d(0, 0, 0)) / 3  # s2: per-structure mean
    ) / 3
    assert float(loss) == pytest.approx(energy + force, rel=1e-14)
    assert task.train_history == [(1, pytest.approx(energy + force, rel=1e-14))]


def test_validation_sums_in_ev_without_fixed_atoms() -> None:
    task = mocked(new_task())
    task.on_validation_epoch_start()
    task.validation_step(hand_batch(), 0)
    s = task._val_sums
    # energy MAE (eV) = std * |normalised error|: A: 2 * (0.25 + 1), B: 4 * 0.5
    assert s[:, 0].tolist() == pytest.approx([2.5, 2.0]) and s[:, 1].tolist() == [2, 1]
    # force MAE (eV/Å) over free atoms' components: A: 0.5 * (3 + 4 + 6 + 8); B: 2 * 2
    assert s[:, 2].tolist() == pytest.approx([10.5, 4.0]) and s[:, 3].tolist() == [12, 3]
    loss_a = (0.25 + 10 * (d(3, 4, 0) + d(0, 0, 1)) / 2) + (
        1.0 + 10 * (2 * d(0, 0, 0) + d(6, 8, 0)) / 3
    )
    loss_b = 2 * 0.5 + 3 * d(0, 0, 2)
    assert s[:, 4].tolist() == pytest.approx([loss_a, loss_b], rel=1e-14)


def test_shared_gradients_divided_by_their_use_count() -> None:
    task = new_task()
    for p in task.parameters():
        p.grad = torch.ones_like(p)
    task.on_before_optimizer_step(None)  # type: ignore[arg-type]
    params = dict(task.named_parameters())
    nb = TINY.num_blocks
    assert torch.all(params["model.backbone.bases.mlp_rbf_tint.linear.weight"].grad == 1 / nb)
    assert torch.all(params["model.backbone.bases.mlp_cbf_qint.weight"].grad == 1 / nb)
    assert torch.all(params["model.backbone.bases.mlp_rbf_out.linear.weight"].grad == 1 / (nb + 1))
    assert torch.all(params["model.backbone.bases.edge_emb.dense.linear.weight"].grad == 1)
    assert torch.all(params["model.heads.A_energy.mlp.0.weight"].grad == 1)
    off = new_task(shared_gradient_scaling=False)
    for p in off.parameters():
        p.grad = torch.ones_like(p)
    off.on_before_optimizer_step(None)  # type: ignore[arg-type]
    assert all(torch.all(p.grad == 1) for p in off.parameters())


def test_optimizer_and_schedule() -> None:
    opt = Optimization(
        OptimizerConfig(lr=3e-4),
        PretrainScheduleConfig(warmup_steps=10, max_steps=100, max_epochs=None),
    )
    task = PretrainTask(TINY, TASKS, opt)
    conf = task.configure_optimizers()
    o, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert conf["lr_scheduler"]["interval"] == "step"
    g = o.param_groups
    assert len(g) == 1 and len(g[0]["params"]) == len(list(task.parameters()))
    assert (g[0]["betas"], g[0]["weight_decay"], g[0]["eps"]) == ((0.9, 0.95), 0.1, 1e-8)
    lrs = []
    for _ in range(101):
        lrs.append(o.param_groups[0]["lr"])
        o.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.2 * 3e-4) and lrs[9] == pytest.approx(3e-4)
    assert lrs[100] == pytest.approx(0.1 * 3e-4) and lrs[55] == pytest.approx(0.55 * 3e-4)
    sched = PretrainScheduleConfig(max_epochs=2.5, warmup_steps=3)
    epochs = PretrainTask(TINY, TASKS, Optimization(schedule=sched), steps_per_epoch=8)
    assert epochs.schedule_steps() == 20


def _real_batch(dropped: bool):

    from openjmp.config.common import GraphConfig
    from openjmp.graph.collate import collate
    from openjmp.records import AtomsRecord
    from openjmp.train.graph_dataset import GraphDataset

    from helpers.tiny_data import slabs

    recs = [AtomsRecord.from_ase(a) for a in slabs(2)]
    ds = GraphDataset(recs, GraphConfig(cutoff=4.0, max_neighbors=8, pbc=True), "A",
                      edge_dropout=0.3)  # fmt: skip
    items = [(i, (0, i)) if dropped else i for i in range(2)]
    return collate([ds[i] for i in items])


def test_edge_dropout_boost_only_in_train_mode() -> None:
    torch.manual_seed(0)
    plain = PretrainTask(TINY, TASKS, dtype=torch.float64)
    boosted = PretrainTask(TINY.replace(edge_dropout=0.3), TASKS, dtype=torch.float64)
    boosted.load_state_dict(plain.state_dict())
    batch = _real_batch(dropped=False)
    for m in (plain, boosted):
        m.eval()
    e0, _ = plain.predictions(batch)
    e1, _ = boosted.predictions(batch)
    assert torch.equal(e0, e1)  # evaluation: no boost, whatever the setting
    plain.train()
    boosted.train()
    e0, _ = plain.predictions(batch)
    e1, _ = boosted.predictions(batch)
    assert not torch.allclose(e0, e1)  # training with dropout: messages scaled by 1/(1-p)


def test_activation_checkpointing_same_numbers_same_names() -> None:
    torch.manual_seed(0)
    assert PretrainTask(TINY, TASKS).model.backbone.memory_efficient is None  # auto by default
    a = PretrainTask(TINY, TASKS, dtype=torch.float64, activation_checkpointing=False)
    b = PretrainTask(TINY, TASKS, dtype=torch.float64, activation_checkpointing=True)
    b.load_state_dict(a.state_dict())
    assert a.model.backbone.memory_efficient is False and b.model.backbone.memory_efficient
    assert list(a.state_dict()) == list(b.state_dict())
    batch = _real_batch(dropped=True)
    grads = []
    for m in (a, b):
        m.train()
        e, f = m.predictions(batch)
        (e.sum() + f.square().sum()).backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for n in grads[0]:
        torch.testing.assert_close(grads[0][n], grads[1][n], rtol=1e-12, atol=1e-14)


def test_each_head_runs_on_its_own_structures_with_the_full_runs_loss() -> None:
    """The training loss runs every task's heads on that task's structures only; loss and
    gradients are those of running every head on every structure (the authors')."""
    from openjmp.config.common import GraphConfig
    from openjmp.graph.collate import collate
    from openjmp.records import AtomsRecord
    from openjmp.train.graph_dataset import GraphDataset

    from helpers.tiny_data import molecules

    recs = [AtomsRecord.from_ase(a) for a in molecules(3)]  # elements within TASKS' tables
    graph = GraphConfig(cutoff=4.0, max_neighbors=8, pbc=False, dummy_cell=True)
    samples = [GraphDataset(recs, graph, name)[i] for i, name in enumerate(("A", "B", "A"))]
    batch = collate(samples)
    torch.manual_seed(0)
    task = PretrainTask(TINY, TASKS, dtype=torch.float64, activation_checkpointing=False)
    task.train()
    own = task.structure_tasks(batch)
    assert own.tolist() == [0, 1, 0]

    def grads() -> dict[str, torch.Tensor]:
        out = {n: p.grad.clone() for n, p in task.named_parameters() if p.grad is not None}
        task.zero_grad()
        return out

    loss, *_ = task._loss(batch)  # restricted heads
    loss.total.backward()
    g_own = grads()
    e_t, f_t = task.normalized_targets(batch, own)
    e_all, f_all = task.predictions(batch)  # every head on every structure
    full = pretrain_loss(e_all, e_t, f_all, f_t, own, batch.batch, task.energy_coef,
                         task.force_coef)  # fmt: skip
    full.total.backward()
    g_full = grads()
    torch.testing.assert_close(loss.total, full.total, rtol=1e-13, atol=0.0)
    e_own, _ = task.predictions(batch, own)
    assert e_own[0, 1] == 0 and e_own[1, 0] == 0 and e_all[0, 1] != 0
    assert g_own.keys() == g_full.keys() and len(g_own) > 50
    for n in g_full:
        torch.testing.assert_close(g_own[n], g_full[n], rtol=1e-10, atol=1e-13)
