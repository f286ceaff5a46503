"""Sizes and counts must be positive wherever they are set: ``--max-atoms-per-batch 0`` and the
like are usage errors naming the option, ``loader.max_atoms_per_batch: 0`` a config error naming
the field, before any work starts."""

from __future__ import annotations

import pytest

from openjmp.cli.main import main
from openjmp.config.load import load_config
from openjmp.errors import ConfigError


@pytest.mark.parametrize(
    "argv,option",
    [
        (["data", "make-demo", "out", "--scale", "0"], "--scale"),
        (["data", "check", "x.xyz", "--limit", "-1"], "--limit"),
        (["data", "check", "x.xyz", "--cutoff", "0"], "--cutoff"),
        (["data", "check", "x.xyz", "--max-edges", "0"], "--max-edges"),
        (["demo", "--scale", "-1"], "--scale"),
        (["demo", "--threads", "0"], "--threads"),
        (["evaluate", "run.ckpt", "--batch-size", "0"], "--batch-size"),
        (["fit-scales", "x.xyz", "-o", "s.json", "--batch-size", "0"], "--batch-size"),
        (["fit-scales", "x.xyz", "-o", "s.json", "--num-batches", "-2"], "--num-batches"),
        (["predict", "m.pt", "x.xyz", "-o", "o.npz", "--max-atoms-per-batch", "0"],
         "--max-atoms-per-batch"),
    ],
)  # fmt: skip
def test_cli_rejects_non_positive_sizes(argv, option, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and "must be" in err


@pytest.mark.parametrize(
    "override",
    ["loader.max_atoms_per_batch=0", "loader.batch_size=0", "loader.eval_batch_size=-4",
     "trainer.max_steps=0", "data.graph.max_edges=0", "data.graph.cutoff=0"],
)  # fmt: skip
def test_config_rejects_non_positive_sizes(override: str) -> None:
    field = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"{field}: .*greater than"):
        load_config("user-energy-forces", "finetune", [override])
