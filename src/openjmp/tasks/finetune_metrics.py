"""Validation/test metrics of fine-tuning, in physical units, accumulated over batches.

Per regression output ``k`` (energy eV per structure, forces eV/Å per Cartesian component of
free atoms, a scalar in its unit): ``k_mae`` and ``k_rmse``. Per classification output:
``k_accuracy`` and ``k_balanced_accuracy`` (mean recall over the classes present, as
``sklearn.metrics.balanced_accuracy_score``). Sums are kept as float64 tensors so that a DDP run
can add them across ranks (``reduce``) before the division.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import Tensor

from openjmp.graph.batch import Batch
from openjmp.tasks.finetune_targets import FORCES, Target, as_float_array


class MetricAccumulator:
    """Error sums per output of ``targets``; optionally keeps every prediction and label."""

    def __init__(self, targets: Mapping[str, Target], *, collect: bool = False) -> None:
        self.classes: dict[str, int] = {}
        self.outputs: list[str] = []
        for t in targets.values():
            for key in t.outputs():
                self.outputs.append(key)
                if t.kind == "classification":
                    self.classes[key] = int(t.num_classes)
        self.collect = collect
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.predictions: dict[str, list[np.ndarray]] = {k: [] for k in self.outputs}
        self.labels: dict[str, list[np.ndarray]] = {k: [] for k in self.outputs}

    def add(self, name: str, value: Tensor) -> None:
        """Add ``value`` to the running sum ``name`` (float64, CPU)."""
        value = value.detach().to(torch.float64).cpu()
        self.sums[name] = self.sums[name] + value if name in self.sums else value

    def update(
        self, preds: Mapping[str, Tensor], labels: Mapping[str, Tensor], batch: Batch
    ) -> None:
        """Add one batch: ``preds``/``labels`` from `Target.predict` / `Target.labels`."""
        for key in self.outputs:
            if key not in labels or key not in preds:
                continue
            p, y = preds[key].detach(), labels[key].detach()
            if key in self.classes:
                c = self.classes[key]
                hits = y.long() * c + p.argmax(-1)
                self.add(f"{key}/confusion", torch.bincount(hits, minlength=c * c).reshape(c, c))
            else:
                err = p.to(torch.float64) - y.to(torch.float64)
                if key == FORCES:
                    free = (~batch.fixed.bool()).to(torch.float64)[:, None].expand_as(err)
                    err = err * free
                    n = free.sum()
                else:
                    n = torch.tensor(float(err.numel()), dtype=torch.float64)
                self.add(f"{key}/abs", err.abs().sum())
                self.add(f"{key}/sq", (err * err).sum())
                self.add(f"{key}/n", n)
            if self.collect:
                self.predictions[key].append(as_float_array(p))
                self.labels[key].append(as_float_array(y))

    def compute(self, reduce: Callable[[Tensor], Tensor] | None = None) -> dict[str, float]:
        """Metric name -> value; ``reduce`` sums a tensor over DDP ranks (identity by default)."""
        out: dict[str, float] = {}
        for key in self.outputs:
            if key in self.classes:
                if f"{key}/confusion" not in self.sums:
                    continue
                cm = self.sums[f"{key}/confusion"]
                cm = reduce(cm) if reduce else cm
                total = cm.sum()
                support = cm.sum(1)
                present = support > 0
                recall = torch.diagonal(cm)[present] / support[present]
                out[f"{key}_accuracy"] = float(torch.diagonal(cm).sum() / total)
                out[f"{key}_balanced_accuracy"] = float(recall.mean())
                continue
            if f"{key}/n" not in self.sums:
                continue
            abs_sum, sq_sum, n = (self.sums[f"{key}/{s}"] for s in ("abs", "sq", "n"))
            if reduce is not None:
                abs_sum, sq_sum, n = reduce(abs_sum), reduce(sq_sum), reduce(n)
            if float(n) == 0:
                continue
            out[f"{key}_mae"] = float(abs_sum / n)
            out[f"{key}_rmse"] = float(torch.sqrt(sq_sum / n))
        return out

    def arrays(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(predictions, labels) concatenated per output (needs ``collect=True``)."""
        preds = {k: np.concatenate(v) for k, v in self.predictions.items() if v}
        labels = {k: np.concatenate(v) for k, v in self.labels.items() if v}
        return preds, labels


def array_metrics(
    name: str, pred: np.ndarray, true: np.ndarray, *, classes: int | None = None
) -> dict[str, float]:
    """The metrics of `MetricAccumulator` for whole arrays: regression (``pred`` and ``true``
    of one shape) or classification (``pred`` (M, C) scores, ``true`` (M,) class indices)."""
    if classes is not None:
        hits = np.asarray(true, np.int64) * classes + np.argmax(pred, -1)
        cm = np.bincount(hits, minlength=classes * classes).reshape(classes, classes)
        support = cm.sum(1)
        present = support > 0
        return {
            f"{name}_accuracy": float(np.trace(cm) / cm.sum()),
            f"{name}_balanced_accuracy": float(np.mean(np.diag(cm)[present] / support[present])),
        }
    err = np.asarray(pred, np.float64) - np.asarray(true, np.float64)
    return {
        f"{name}_mae": float(np.mean(np.abs(err))),
        f"{name}_rmse": float(np.sqrt(np.mean(err * err))),
    }
