"""`make_demo`: manifest contents, reproducibility, idempotence, refusal and atomic writes.

The full corpus is the session fixture (scale 0.05, 2 workers); the behaviours of re-running
are checked on a one-set corpus (MatBench-like, EMT only, ~1 s) by narrowing ``SETS``, built
in this process (``workers=0``; the worker-count test below covers the pool).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openjmp.data.demo import build, make_demo, verify_manifest
from openjmp.errors import ConfigError

EXPECTED = {
    "oc20_like": ("pretrain", "ocp-lmdb"),
    "oc22_like": ("pretrain", "ocp-lmdb"),
    "ani1x_like": ("pretrain", "ani1x-hdf5"),
    "transition1x_like": ("pretrain", "transition1x-hdf5"),
    "qm9_like": ("finetune", "qm9-xyz-tar"),
    "rmd17_like": ("finetune", "rmd17-npz"),
    "matbench_like": ("finetune", "matbench-json"),
}


def test_manifest_describes_the_corpus(demo_corpus: Path, demo_manifest: dict) -> None:
    m = demo_manifest
    assert m["scale"] == 0.05 and m["seed"] == 0
    assert {"ase", "tblite", "openjmp", "numpy"} <= set(m["generators"])
    assert set(m["sets"]) == set(EXPECTED)
    for name, (role, fmt) in EXPECTED.items():
        s = m["sets"][name]
        assert (s["role"], s["format"]) == (role, fmt)
        assert s["counts"]["structures"] > 0
        assert s["files"] and all(rel.startswith(f"{name}/") for rel in s["files"])
        theory = s["level_of_theory"]
        assert (
            ("EMT" in theory)
            if name in ("oc20_like", "oc22_like", "matbench_like")
            else ("GFN2-xTB" in theory)
        )
    assert verify_manifest(demo_corpus / "manifest.json") == []
    # nothing left over from the atomic writes
    assert not [p.name for p in demo_corpus.iterdir() if p.name.startswith(".")]


def test_checksums_catch_a_changed_file(demo_corpus: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(demo_corpus, copy)
    target = copy / "rmd17_like" / "rmd17" / "splits" / "index_train_01.csv"
    text = target.read_text()
    target.write_text(text.replace("1", "7", 1) if "1" in text else "7" + text[1:])
    problems = verify_manifest(copy / "manifest.json")
    assert problems and "index_train_01.csv" in problems[0]


def test_labels_do_not_depend_on_worker_count(
    demo_corpus: Path, demo_manifest: dict, tmp_path: Path
) -> None:
    """One worker reproduces the 2-worker files byte for byte (MD amplifies any change)."""
    sets = ["rmd17_like", "ani1x_like"]
    path = make_demo(tmp_path / "one", scale=0.05, seed=0, progress=False, workers=1, sets=sets)
    one = json.loads(path.read_text())
    for name in sets:
        assert one["sets"][name]["files"] == demo_manifest["sets"][name]["files"], name


def test_other_seed_changes_the_data(demo_manifest: dict, tmp_path: Path) -> None:
    path = make_demo(
        tmp_path / "s1", scale=0.05, seed=1, progress=False, workers=0, sets=["ani1x_like"]
    )
    other = json.loads(path.read_text())["sets"]["ani1x_like"]["files"]
    assert other != demo_manifest["sets"]["ani1x_like"]["files"]


@pytest.fixture
def one_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "SETS", {"matbench_like": build.SETS["matbench_like"]})


def test_second_call_does_nothing(
    one_set: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = make_demo(tmp_path, scale=0.01, seed=3, progress=False, workers=0)
    before = first.read_bytes()

    class NoPool:
        def __init__(self, *a: object) -> None:
            raise AssertionError("a complete corpus must not be regenerated")

    monkeypatch.setattr(build, "JobPool", NoPool)
    assert make_demo(tmp_path, scale=0.01, seed=3, progress=False, workers=0) == first
    assert first.read_bytes() == before


def test_other_scale_or_seed_is_refused(one_set: None, tmp_path: Path) -> None:
    make_demo(tmp_path, scale=0.01, seed=3, progress=False, workers=0)
    with pytest.raises(ConfigError, match=r"scale=0.01, seed=3.*asked: scale=0.01, seed=4"):
        make_demo(tmp_path, scale=0.01, seed=4, progress=False, workers=0)
    with pytest.raises(ConfigError, match="asked: scale=0.1"):
        make_demo(tmp_path, scale=0.1, seed=3, progress=False, workers=0)


def test_damaged_corpus_is_rebuilt(one_set: None, tmp_path: Path) -> None:
    manifest = make_demo(tmp_path, scale=0.01, seed=3, progress=False, workers=0)
    files = json.loads(manifest.read_text())["sets"]["matbench_like"]["files"]
    victim = tmp_path / next(iter(files))
    victim.unlink()
    make_demo(tmp_path, scale=0.01, seed=3, progress=False, workers=0)
    assert victim.is_file() and verify_manifest(manifest) == []
    assert json.loads(manifest.read_text())["sets"]["matbench_like"]["files"] == files


def test_stale_work_directories_are_removed(one_set: None, tmp_path: Path) -> None:
    stale = tmp_path / ".matbench_like.tmp-999999"
    stale.mkdir()
    (stale / "partial.json.gz").write_bytes(b"")
    make_demo(tmp_path, scale=0.01, seed=3, progress=False, workers=0)
    assert not stale.exists()


def test_failed_write_leaves_no_manifest_and_no_partial_set(
    one_set: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = build.SETS["matbench_like"]

    def broken_write(results, directory, seed):
        (directory / "half-written.json.gz").write_bytes(b"\x1f\x8b")
        raise OSError("disk full")

    monkeypatch.setitem(
        build.SETS, "matbench_like", spec.__class__(**{**spec.__dict__, "write": broken_write})
    )
    with pytest.raises(OSError, match="disk full"):
        make_demo(tmp_path, scale=0.01, seed=3, progress=False, workers=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_output_path_must_be_a_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is not a directory"):
        make_demo(tmp_path / "file", progress=False)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scale": 0.0}, "scale must be a positive"),
        ({"scale": float("nan")}, "scale must be a positive"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"seed": 1.5}, "seed must be a non-negative integer"),
        ({"workers": -1}, "workers must be a non-negative integer"),
        ({"sets": ["qm10_like"]}, "unknown sets"),
    ],
)
def test_bad_arguments_are_config_errors(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make_demo(tmp_path / "x", progress=False, **kwargs)
    assert not (tmp_path / "x").exists()
