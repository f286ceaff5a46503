"""`run_frozen`: the frozen-backbone mode for tiny datasets (``openjmp finetune ... --frozen``).

Same data, splits and statistics as `openjmp.train.finetune.run_finetune`, but the pre-trained
backbone is only run once per structure: its pooled features feed a ridge regression (closed
form, α chosen on val), a small MLP, or (classification) a logistic regression
(`openjmp.tasks.frozen`). Seconds on a CPU. Supported heads: scalar, classification, and the
energy of an energy/forces head (forces need end-to-end fine-tuning: a `ConfigError`).

Writes ``config.yaml``, ``stats.json``, ``model.pt`` (the backbone with the fitted regression
heads as `openjmp.model.heads.PooledHead` modules and their output transforms: an openjmp model
file that `openjmp.load_model`, `openjmp.predict` and the calculator read in physical units,
energies with gradient forces), ``frozen_heads.pt`` (every fitted head as fitted, classification
included), ``metrics.json`` and ``test_predictions.npz`` into ``out_dir``; returns a
`FinetuneResult` whose ``best_checkpoint`` is ``model.pt`` (``frozen_heads.pt`` when only
classification heads were fitted) and whose ``history`` is the validation metric of the chosen
head at step 0 (nothing is trained step by step).
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import yaml

from openjmp.config.finetune import (
    ClassificationHead,
    EnergyForcesHead,
    FinetuneConfig,
    ForcesHead,
    ScalarHead,
)
from openjmp.errors import ConfigError
from openjmp.io.paths import atomic_write_bytes, check_writable_dir
from openjmp.model.checkpoint import save_model
from openjmp.model.heads import PooledHead
from openjmp.model.jmp_model import JMPModel
from openjmp.model.outputs import HeadInfo, OutputTransform
from openjmp.tasks.finetune_metrics import array_metrics
from openjmp.tasks.finetune_stats import record_label, reference_offsets, resolve_statistics
from openjmp.tasks.finetune_targets import target_name
from openjmp.tasks.frozen import RidgeHead, fit_logistic, fit_mlp, fit_ridge, pooled_features
from openjmp.train.backbone import build_backbone, load_pretrained, resolve_architecture
from openjmp.train.finetune.data import (
    FinetuneDataModule,
    check_labels,
    iterate_batches,
    load_finetune_splits,
)
from openjmp.train.finetune.result import FinetuneResult

FrozenHead = Literal["ridge", "mlp"]
PARTS = ("train", "val", "test")


def _check_heads(config: FinetuneConfig) -> None:
    for h in config.heads:
        if isinstance(h, ForcesHead):
            raise ConfigError(
                "frozen mode fits per-structure targets; forces need end-to-end fine-tuning"
            )
        if not isinstance(h, EnergyForcesHead | ScalarHead | ClassificationHead):
            raise ConfigError(f"frozen mode does not support {h.kind} heads")


def _backbone(config: FinetuneConfig) -> JMPModel:
    dtype = torch.float64 if config.precision == "64-true" else torch.float32
    backbone, state = build_backbone(config.model, direct_forces=False, dtype=dtype)
    model = JMPModel(backbone, {})
    if state is not None:
        load_pretrained(model, state, config.model.checkpoint)
    return model.to(dtype).eval()


def _labels(head: Any, records: Any) -> np.ndarray:
    key = head.energy_target if isinstance(head, EnergyForcesHead) else head.target
    return np.array([record_label(r, key, f"head {target_name(head)!r}") for r in records])


def _pooled_module(
    fitted: dict[str, Any], head: Any, stats: dict[str, Any], model: JMPModel
) -> tuple[PooledHead, OutputTransform]:
    """The fitted ridge / MLP as a `PooledHead` with its output transform (physical units)."""
    regressor = fitted["model"]
    energy = isinstance(head, EnergyForcesHead)
    emb = model.config.emb_size_atom
    if isinstance(regressor, RidgeHead):
        w = np.reshape(regressor.weight, (emb, -1))
        module = PooledHead(
            emb, pooling=fitted["pooling"], num_outputs=w.shape[1], scalar=not energy
        )
        with torch.no_grad():
            module.mlp[0].weight.copy_(torch.as_tensor(w.T))
            module.mlp[0].bias.copy_(torch.as_tensor(np.reshape(regressor.bias, -1)))
    else:
        lin = regressor.net
        module = PooledHead(
            emb,
            pooling=fitted["pooling"],
            hidden=lin[0].out_features,
            num_outputs=lin[2].out_features,
            scalar=not energy,
        )
        module.mlp.load_state_dict(lin.state_dict())
    with torch.no_grad():
        module.feature_mean.copy_(torch.as_tensor(regressor.scaler.mean))
        module.feature_std.copy_(torch.as_tensor(regressor.scaler.std))
    refs, mean, std = stats.get("references"), stats["mean"], stats["std"]
    if energy:
        transform = OutputTransform.energy(std, mean, refs)
    else:
        transform = OutputTransform.scalar(std, mean, refs, unit=str(stats.get("unit", "")))
    return module.to(model.dtype), transform


def run_frozen(
    config: FinetuneConfig,
    *,
    out_dir: Path,
    head: FrozenHead | None = None,
    progress: bool = True,
) -> FinetuneResult:
    """Fit frozen-backbone heads for ``config`` (module docstring): ``config.adaptation``
    ("ridge" or "mlp"; ridge for a "full" config), or ``head`` when given; the run's
    ``config.yaml`` records the one used."""
    t0 = time.perf_counter()
    if head is None:
        head = config.adaptation if config.adaptation in ("ridge", "mlp") else "ridge"  # type: ignore[assignment]
    if config.residual_references is not None:
        raise ConfigError("residual_references needs adaptation: full (end-to-end training)")
    config = config.model_copy(update={"adaptation": head})  # the run's config.yaml says so
    config = resolve_architecture(config)
    _check_heads(config)
    out_dir = check_writable_dir(out_dir, "run directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(
        out_dir / "config.yaml",
        yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False).encode(),
    )
    torch.manual_seed(config.trainer.seed)
    splits = load_finetune_splits(config.data, out_dir / "cache")
    records = {p: splits.part(p).records for p in PARTS if splits.part(p) is not None}  # type: ignore[union-attr]
    for p, recs in records.items():
        check_labels(recs, list(config.heads), p)
    stats = resolve_statistics(list(config.heads), records["train"], fmt=config.data.format)
    model = _backbone(config)
    dm = FinetuneDataModule(splits, config.data.graph, config.loader)
    poolings = ["sum" if isinstance(h, EnergyForcesHead) else h.pooling for h in config.heads]
    bs = config.loader.eval_batch_size or config.loader.batch_size
    feats = {
        p: pooled_features(model, iterate_batches(dm.dataset(p), bs), poolings) for p in records
    }  # type: ignore[arg-type]
    if progress:
        print(
            f"frozen features: {', '.join(f'{p} {len(r)}' for p, r in records.items())} structures"
        )

    metrics: dict[str, dict[str, float]] = {p: {} for p in records}
    preds: dict[str, dict[str, np.ndarray]] = {p: {} for p in records}
    truth: dict[str, dict[str, np.ndarray]] = {p: {} for p in records}
    fitted: dict[str, Any] = {}
    for h, pooling in zip(config.heads, poolings):
        name = target_name(h)
        x = {p: feats[p][pooling] for p in records}
        y = {p: _labels(h, records[p]) for p in records}
        if isinstance(h, ClassificationHead):
            yi = {p: v.astype(np.int64) for p, v in y.items()}
            if head == "mlp":
                model_h, curve = fit_mlp(
                    x["train"],
                    yi["train"],
                    x["val"],
                    yi["val"],
                    classes=h.num_classes,
                    seed=config.trainer.seed,
                )
            else:
                model_h, curve = fit_logistic(x["train"], yi["train"], x["val"], yi["val"])
            for p in records:
                scores = model_h.predict(x[p])
                preds[p][name], truth[p][name] = scores, yi[p]
                metrics[p].update(array_metrics(name, scores, yi[p], classes=h.num_classes))
        else:
            s = stats[name]
            offset = {p: reference_offsets(records[p], s.get("references")) for p in records}
            norm = {p: (y[p] - offset[p] - s["mean"]) / s["std"] for p in records}
            if head == "mlp":
                model_h, curve = fit_mlp(
                    x["train"], norm["train"], x["val"], norm["val"], seed=config.trainer.seed
                )
            else:
                model_h, curve = fit_ridge(x["train"], norm["train"], x["val"], norm["val"])
            for p in records:
                pred = offset[p] + s["mean"] + s["std"] * np.reshape(model_h.predict(x[p]), -1)
                preds[p][name], truth[p][name] = pred, y[p]
                metrics[p].update(array_metrics(name, pred, y[p]))
        fitted[name] = {"kind": head if not isinstance(h, ClassificationHead) or head == "mlp" else "logistic",
                        "pooling": pooling, "model": model_h, "curve": curve}  # fmt: skip

    modules = {
        name: _pooled_module(fitted[name], h, stats[name], model)
        for h in config.heads
        if not isinstance(h, ClassificationHead) and (name := target_name(h))
    }
    model_path = None
    if modules:
        graph = config.data.graph.spec()
        for name, (module, transform) in modules.items():
            model.heads[name] = module
            elements = tuple(stats[name].get("elements") or ()) or None
            model.set_head_info(name, HeadInfo(transform, graph, elements))
        model_path = save_model(
            model, out_dir / "model.pt", metadata={"kind": "frozen", "head": head, "stats": stats}
        )
    path = out_dir / "frozen_heads.pt"
    buf = io.BytesIO()
    torch.save({"config": config.model_dump(mode="json"), "stats": stats, "heads": fitted}, buf)
    atomic_write_bytes(path, buf.getvalue())
    atomic_write_bytes(out_dir / "stats.json", json.dumps(stats, indent=1).encode())
    monitor, mode = config.monitor.metric, config.monitor.mode
    if (
        monitor not in metrics["val"]
    ):  # e.g. forces_mae of an energy/forces config: energy only here
        monitor = next(k for k in metrics["val"] if k.endswith(("_mae", "_balanced_accuracy")))
        mode = "max" if monitor.endswith("accuracy") else "min"
    best = metrics["val"].get(monitor)
    wall = time.perf_counter() - t0
    atomic_write_bytes(
        out_dir / "metrics.json",
        json.dumps(
            {
                "mode": f"frozen-{head}",
                "checkpoint": str(path),
                "best_metric": best,
                "wall_time": wall,
                "metrics": metrics,
            },
            indent=1,
        ).encode(),  # fmt: skip
    )
    if "test" in records:
        arrays = {f"pred_{k}": v for k, v in preds["test"].items()} | {
            f"true_{k}": v for k, v in truth["test"].items()
        }
        b = io.BytesIO()
        np.savez(b, **arrays)
        atomic_write_bytes(out_dir / "test_predictions.npz", b.getvalue())
    return FinetuneResult(
        out_dir=out_dir,
        best_checkpoint=model_path or path,
        last_checkpoint=None,
        monitor=monitor,
        mode=mode,
        best_metric=best,
        history=[] if best is None else [(0, best)],
        metrics=metrics,
        test_predictions=preds.get("test", {}),
        test_targets=truth.get("test", {}),
        wall_time=wall,
        steps=0,
        stop_reason="frozen",
    )
