"""Progress bars on steps over a few seconds (``data convert`` here; cache building and
evaluation use the same `openjmp.progress.bar`), off under ``--no-progress`` and in CI."""

from __future__ import annotations

import pytest

from openjmp import progress
from openjmp.cli.main import main

from helpers.writers import molecule_frames, write_rmd17


@pytest.mark.parametrize(
    "ci,flag,shown", [(None, [], True), (None, ["--no-progress"], False), ("true", [], False)]
)
def test_convert_progress(tmp_path, monkeypatch, capsys, ci, flag, shown) -> None:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    src = write_rmd17(tmp_path / "rmd17_ethanol.npz", molecule_frames("CH3CH2OH", 30))
    args = ["data", "convert", str(src), str(tmp_path / "c"), "--split-option", "train=20",
            "--split-option", "val=4", *flag]  # fmt: skip
    assert main(args) == 0
    err = capsys.readouterr().err
    assert ("converting rmd17_ethanol.npz" in err and "30 records" in err) == shown


def test_switch_and_ci(monkeypatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    items = [1, 2, 3]
    assert progress.enabled() and progress.bar(items, "x") is not items
    with progress.enabled_as(False):
        assert not progress.enabled() and progress.bar(items, "x") is items
    monkeypatch.setenv("CI", "1")
    assert not progress.enabled() and progress.bar(items, "x") is items


def test_evaluation_batches_show_progress(monkeypatch, capsys) -> None:
    from ase.build import molecule

    from openjmp.config.common import GraphConfig
    from openjmp.records import AtomsRecord
    from openjmp.train.finetune.data import iterate_batches
    from openjmp.train.graph_dataset import GraphDataset

    monkeypatch.delenv("CI", raising=False)
    recs = [AtomsRecord.from_ase(molecule("CH3CH2OH")) for _ in range(5)]
    ds = GraphDataset(recs, GraphConfig(cutoff=6.0), "mols")
    assert len(list(iterate_batches(ds, 2))) == 3
    assert "evaluating" in capsys.readouterr().err
    with progress.enabled_as(False):
        assert len(list(iterate_batches(ds, 2))) == 3
    assert "evaluating" not in capsys.readouterr().err
