"""Data-parallel pre-training: 2 CPU processes, gloo, through Lightning's DDP strategy.

A script (Lightning re-launches it for rank 1, as it would a user's script) pre-trains the tiny
model for 4 steps with ``strategy: ddp, devices: 2, accelerator: cpu``. Each rank writes down
the draws its data loader asked for and its final raw weights. The ranks must have drawn
disjoint global positions (each its own shard of the temperature-sampled epoch), and must end
with identical weights (DDP all-reduces the gradients). The 5 validation structures are split
3 / 2 between the ranks, one per batch: validation must not wait on collectives per batch. Slow (~1 min on 2 shared cores): two
processes each start torch and Lightning and build the data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from helpers.tiny_data import write_tiny_data

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path

    import lightning.pytorch as pl
    import torch

    from helpers.tiny_data import tiny_config

    from openjmp.train import graph_dataset
    from openjmp.train.pretrain import run_pretrain

    out = Path({out!r})
    draws = []
    original = graph_dataset.ConcatGraphDataset.__getitem__

    def logged(self, item):
        if isinstance(item, tuple):
            draws.append([int(item[0]), list(item[1])])
        return original(self, item)

    graph_dataset.ConcatGraphDataset.__getitem__ = logged

    class Dump(pl.Callback):
        def on_train_end(self, trainer, pl_module):
            r = trainer.global_rank
            torch.save(dict(pl_module.model.state_dict()), out / f"weights-{{r}}.pt")
            (out / f"draws-{{r}}.json").write_text(json.dumps(draws))

    if __name__ == "__main__":
        torch.set_num_threads(1)
        cfg = tiny_config(Path({data!r}), loader={{"batch_size": 3, "eval_batch_size": 1}},
            trainer={{"max_steps": 4, "val_check_interval": 2,
            "strategy": "ddp", "devices": 2, "accelerator": "cpu", "seed": 3}})
        run_pretrain(cfg, out_dir=out / "run", progress=False, logger=False, callbacks=[Dump()])
    """
)


@pytest.mark.slow
def test_two_cpu_ranks_disjoint_data_identical_weights(tmp_path: Path) -> None:
    write_tiny_data(tmp_path / "data", n_slabs=8, n_mols=10, n_val=(3, 2))
    script = tmp_path / "ddp_run.py"
    script.write_text(
        SCRIPT.format(
            out=str(tmp_path),
            data=str(tmp_path / "data"),
        )
    )
    tests_dir = str(Path(__file__).resolve().parents[1])  # for helpers.tiny_data
    path = os.pathsep.join(p for p in (tests_dir, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "PYTHONPATH": path}
    env.pop("LOCAL_RANK", None)
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=540,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    draws = [json.loads((tmp_path / f"draws-{r}.json").read_text()) for r in (0, 1)]
    positions = [{tuple(key) for _, key in d} for d in draws]
    assert len(draws[0]) == len(draws[1]) == 4 * 3  # 4 steps of batch 3 each
    assert not positions[0] & positions[1]
    assert all(key[1] % 2 == r for r in (0, 1) for key in positions[r])  # rank r: r, r+2, ...
    w0 = torch.load(tmp_path / "weights-0.pt")
    w1 = torch.load(tmp_path / "weights-1.pt")
    assert w0.keys() == w1.keys()
    for name in w0:
        assert torch.equal(w0[name], w1[name]), name
    start = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert start["global_step"] == 4
