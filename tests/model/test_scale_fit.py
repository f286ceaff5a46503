"""Scale-factor fitting (the authors' procedure) and scale files.

After fitting on some batches, observing all factors at once on the same batches must give
sqrt(Var_in / Var_out) = 1 for every factor: each factor's input only depends on factors fitted
before it (module order is a valid computation order), so it saw exactly these statistics.
"""

from __future__ import annotations

import json
from pathlib import Path

import ase.io
import pytest

from openjmp.cli.main import main
from openjmp.errors import ConfigError
from openjmp.model.scale_fit import (
    fit_scale_factors,
    load_scale_file,
    observe_ratios,
    save_scale_file,
)

from helpers.tiny_models import make_batch, tiny_model


def test_fitted_factors_normalise_their_outputs(frames: dict) -> None:
    m = tiny_model(seed=5)
    batches = [make_batch([frames["molecule"]], "ani1x"), make_batch([frames["bulk"]], "oc20")]
    values = fit_scale_factors(m, batches)
    assert len(values) == 2 * 11 + 3 * 2 and all(v > 0 for v in values.values())
    ratios = observe_ratios(m, batches)
    assert all(r == pytest.approx(1.0, rel=1e-9) for r in ratios.values()), ratios
    with pytest.raises(ConfigError, match="already fitted"):
        fit_scale_factors(m, batches, fitted="error")
    assert fit_scale_factors(m, batches, fitted="ignore") == values


def test_scale_file_round_trip(tmp_path: Path) -> None:
    values = {"int_blocks.0.trip_interaction.scale_rbf": 1.5, "out_blocks.0.scale_sum": 0.25}
    p = save_scale_file(values, tmp_path / "s.json")
    assert load_scale_file(p) == values
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json"):
        load_scale_file(tmp_path / "bad.json")


def test_fit_scales_command(tmp_path: Path, frames: dict) -> None:
    from helpers.tiny_models import TINY

    structures = tmp_path / "s.extxyz"
    ase.io.write(structures, [frames["molecule"], frames["molecule"]])
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(TINY))
    out = tmp_path / "scales.json"
    args = ["fit-scales", str(structures), "-o", str(out), "--config", str(cfg), "--graph", "ani1x"]
    assert main([*args, "--num-batches", "1"]) == 0
    values = json.loads(out.read_text())
    assert len(values) == 28 and all(v > 0 for v in values.values())
