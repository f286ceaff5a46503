"""`run_study`: the whole JMP study on the embedded corpus, one stage after another in one process.

Stages: make (or find) the corpus -> pre-train the demo backbone on the four pre-training sets
-> fine-tune every downstream task in two arms (pre-trained, scratch) x seeds, same data, head,
seeds and budget, early stopping on validation -> evaluate on the held-out test split ->
embed structures of every set with the pre-trained backbone -> report. Stages run in one
process with both threads: two torch processes on two cores slow each other about tenfold.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from openjmp.study.tasks import Budget, DemoTask, demo_tasks, finetune_config, pretrain_config

ARMS = ("pretrained", "scratch")
SEEDS = (0, 1)


@dataclass
class ArmRun:
    """One fine-tuning run: task, arm, seed and what it gave (metric in the task's unit)."""

    task: str
    arm: str
    seed: int
    test_metric: float
    val_metric: float | None
    wall_time: float
    steps: int
    stop_reason: str
    history: list[tuple[int, float]]
    test_true: list[float] = field(repr=False, default_factory=list)
    test_pred: list[float] = field(repr=False, default_factory=list)


def _status(msg: str, t0: float) -> None:
    print(f"[openjmp demo {time.perf_counter() - t0:6.1f}s] {msg}", flush=True)


def _flat(x: Any) -> list[float]:
    return [float(v) for v in np.asarray(x, dtype=np.float64).ravel()]


def _finetune(
    task: DemoTask, arm: str, seed: int, pretrain_cfg, ckpt: Path, budget: Budget, out: Path
) -> ArmRun:
    from openjmp.train.finetune.run import run_finetune

    cfg = finetune_config(
        task, pretrain_cfg, budget, checkpoint=ckpt if arm == "pretrained" else None, seed=seed
    )
    res = run_finetune(
        cfg,
        out_dir=out / "finetune" / task.name / f"{arm}-seed{seed}",
        progress=False,
        cache_dir=out / "cache",
        evaluate_parts=("val", "test"),
    )
    test = res.metrics.get("test", {})
    if task.metric not in test:
        raise RuntimeError(
            f"fine-tuning {task.name} ({arm}) reported no test {task.metric}: {test}"
        )
    val = res.metrics.get("val", {}).get(task.metric)
    return ArmRun(
        task=task.name,
        arm=arm,
        seed=seed,
        test_metric=float(test[task.metric]) * task.factor,
        val_metric=None if val is None else float(val) * task.factor,
        wall_time=float(res.wall_time),
        steps=int(res.steps),
        stop_reason=res.stop_reason,
        history=[(int(s), float(v) * task.factor) for s, v in res.history],
        test_true=_flat(res.test_targets.get(task.output, [])),
        test_pred=_flat(res.test_predictions.get(task.output, [])),
    )


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Keep the study's one-line status readable: Lightning's per-run banners (accelerators,
    tips) and its routine warnings (short epochs, checkpoint loading) are silenced here only;
    errors still surface."""
    import lightning.pytorch  # noqa: F401  (its import sets the level: import first)

    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.setLevel(logging.WARNING)
    with warnings.catch_warnings():
        for message in (
            ".*weights_only.*",
            ".*smaller than the logging interval.*",
            ".*LeafSpec.*",
            ".*does not have many workers.*",
        ):
            warnings.filterwarnings("ignore", message=message)
        try:
            yield
        finally:
            logger.setLevel(level)


def run_study(out: Path, scale: float = 1.0, seed: int = 0, corpus: Path | None = None) -> Path:
    """Run the study into ``out``; returns the path of the Markdown report."""
    with _quiet_lightning():
        return _run_study(out, scale, seed, corpus)


def _run_study(out: Path, scale: float, seed: int, corpus: Path | None) -> Path:
    from openjmp.data.demo import make_demo
    from openjmp.study.embeddings import pooled_embeddings
    from openjmp.study.report import write_report
    from openjmp.train.pretrain import run_pretrain

    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("pretrain", "finetune"):  # this study's own outputs of an earlier call
        shutil.rmtree(out / stale, ignore_errors=True)
    corpus = Path(corpus) if corpus is not None else out / "corpus"
    budget = Budget.for_scale(scale)

    _status(f"stage 1/5: embedded corpus (scale {scale}) in {corpus}", t0)
    tc = time.perf_counter()
    make_demo(corpus, scale=scale, seed=seed, progress=True)
    corpus_time = time.perf_counter() - tc

    _status("stage 2/5: multi-domain pre-training of the demo backbone", t0)
    pcfg = pretrain_config(corpus, budget, seed=seed)
    pre = run_pretrain(pcfg, out_dir=out / "pretrain", progress=False)
    _status(
        f"  pre-training: {pre.steps} steps, {pre.structures_seen} structures, {pre.wall_time:.0f} s",
        t0,
    )

    runs: list[ArmRun] = []
    tasks = demo_tasks(corpus)
    _status(
        f"stage 3/5: fine-tuning {len(tasks)} tasks x {len(ARMS)} arms x {len(SEEDS)} seeds", t0
    )
    for task in tasks:
        for s in SEEDS:
            for arm in ARMS:
                r = _finetune(task, arm, s, pcfg, pre.checkpoint, budget, out)
                runs.append(r)
                _status(
                    f"  {task.name:<16} {arm:<10} seed {s}: test {task.metric} "
                    f"{r.test_metric:.4g} {task.unit} ({r.steps} steps, {r.wall_time:.0f} s, {r.stop_reason})",
                    t0,
                )

    _status("stage 4/5: embeddings of every set with the pre-trained backbone", t0)
    emb, labels = pooled_embeddings(pre.checkpoint, pcfg, tasks, per_set=60 if scale >= 0.5 else 12)

    _status("stage 5/5: report", t0)
    summary = {
        "scale": scale,
        "seed": seed,
        "corpus_seconds": corpus_time,
        "pretrain": {
            "seconds": pre.wall_time,
            "steps": pre.steps,
            "structures_seen": pre.structures_seen,
            "val_history": pre.val_history,
            "train_history": pre.train_history,
        },
        "tasks": [asdict(t) | {"data": None, "heads": None} for t in tasks],
        "runs": [asdict(r) for r in runs],
        "total_seconds": time.perf_counter() - t0,
    }
    report = write_report(out, summary, tasks, runs, emb, labels)
    (out / "study.json").write_text(json.dumps(summary, indent=1, default=float))
    _status(f"done in {time.perf_counter() - t0:.0f} s: report {report}", t0)
    return report
