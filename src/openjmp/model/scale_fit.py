"""Fit GemNet-OC scale factors for a new configuration (the authors' ``fit_scales.py`` procedure).

Every `ScaleFactor` multiplies a sum or product whose variance depends on the architecture.
Going through the factors in module order, each is fitted on the same few batches: with the
earlier factors already set and itself unset (identity), the forward passes record the mean
over features of the variance of its output (Var_out) and of its reference input (Var_in, or 1
when it has none); the factor becomes sqrt(Var_in / Var_out). Forward passes run in eval mode
without gradients. Scale files are JSON ``{module path relative to the backbone: value}``,
written atomically; the authors' ``.pt`` scale files are read too.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import torch

from openjmp.errors import CheckpointError, ConfigError
from openjmp.graph.batch import Batch
from openjmp.io.safe_pickle import safe_torch_load
from openjmp.model.jmp_model import JMPModel

FittedMode = Literal["replace", "ignore", "error"]


def _forward_all(model: JMPModel, batches: Sequence[Batch]) -> None:
    with torch.no_grad():
        for b in batches:
            model(b)


def observe_ratios(model: JMPModel, batches: Sequence[Batch]) -> dict[str, float]:
    """sqrt(Var_in / Var_out) of every factor, observed all at once with the current values
    (1.0 everywhere for a freshly fitted model on the batches it was fitted on)."""
    factors = model.backbone.scale_factors()
    was_training = model.training
    model.eval()
    for f in factors.values():
        f.start_observing()
    try:
        _forward_all(model, batches)
    finally:
        stats = {n: f.stop_observing() for n, f in factors.items()}
        model.train(was_training)
    return {n: math.sqrt(s["variance_in"] / s["variance_out"]) for n, s in stats.items()}


def fit_scale_factors(
    model: JMPModel,
    batches: Sequence[Batch],
    *,
    fitted: FittedMode = "replace",
    log: Callable[[str], None] | None = None,
) -> dict[str, float]:
    """Fit every scale factor of ``model.backbone`` in module order (module docstring).

    fitted: what to do with factors that already have a value: ``replace`` (reset and refit
    all), ``ignore`` (keep them, fit the others) or ``error``. Returns all factors' values.
    """
    if not batches:
        raise ConfigError("fit_scale_factors needs at least one batch")
    factors = model.backbone.scale_factors()
    already = [n for n, f in factors.items() if f.fitted]
    if already and fitted == "error":
        raise ConfigError(f"{len(already)} scale factors are already fitted, e.g. {already[0]}")
    if fitted == "replace":
        for f in factors.values():
            f.scale_factor.zero_()
    was_training = model.training
    model.eval()
    try:
        for name, factor in factors.items():
            if factor.fitted:
                continue
            factor.start_observing()
            try:
                _forward_all(model, batches)
            finally:
                stats = factor.stop_observing()
            if not (stats["variance_out"] > 0 and stats["variance_in"] > 0):
                raise ConfigError(
                    f"cannot fit scale factor {name}: variance in {stats['variance_in']}, "
                    f"out {stats['variance_out']} (too few rows in the batches?)"
                )
            value = math.sqrt(stats["variance_in"] / stats["variance_out"])
            factor.scale_factor.fill_(value)
            if log is not None:
                log(
                    f"{name}: Var_in {stats['variance_in'] / stats['n_samples']:.4g}, "
                    f"Var_out {stats['variance_out'] / stats['n_samples']:.4g} -> {value:.6g}"
                )
    finally:
        model.train(was_training)
    return {n: float(f.scale_factor) for n, f in factors.items()}


def save_scale_file(values: Mapping[str, float], path: str | Path) -> Path:
    """Write ``{name: value}`` as JSON, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({k: float(v) for k, v in values.items()}, f, indent=1)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def load_scale_file(path: str | Path) -> dict[str, float]:
    """Read a JSON scale file or the authors' ``.pt`` dict (safely: no code is run)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: scale file not found")
    if p.suffix == ".json":
        try:
            data = json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{p}: not valid JSON: {exc}") from None
        data.pop("comment", None)
    else:
        try:
            data = safe_torch_load(p)
        except Exception as exc:  # noqa: BLE001 - any unreadable file becomes one clear error
            raise CheckpointError(f"{p}: cannot read scale file: {exc}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{p}: a scale file maps factor names to numbers")
    try:
        return {str(k): float(v) for k, v in data.items()}
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{p}: non-numeric scale factor: {exc}") from None
