"""Output paths: a read-only destination is a named error before any work, and temporaries of
killed processes are removed by the next writer (openjmp.io.paths)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from openjmp.cli.main import main
from openjmp.errors import DataError
from openjmp.io.paths import check_writable_dir, clean_stale_temporaries, temporary_path

from helpers.writers import molecule_frames, write_rmd17


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_check_writable_dir(tmp_path, readonly_dir) -> None:
    assert check_writable_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    with pytest.raises(DataError, match=r"readonly: the run directory is not writable: it refuses"):
        check_writable_dir(readonly_dir, "run directory")
    with pytest.raises(DataError, match=r"where it would be created, refuses new files"):
        check_writable_dir(readonly_dir / "sub" / "out", "output directory")
    (tmp_path / "f").write_text("x")
    with pytest.raises(DataError, match="f is a file, not a directory"):
        check_writable_dir(tmp_path / "f" / "out")


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path) -> None:
    dest = tmp_path / "cache"
    dead = _dead_pid()
    this_host = temporary_path(dest).name.replace(f"-{os.getpid()}-", f"-{dead}-")
    # names without a host are those of older openjmp versions (taken as this host's)
    stale = [tmp_path / this_host, tmp_path / f".cache.old-{dead}-0badf00d"]
    for s in stale:
        s.mkdir()
        (s / "positions.bin").write_bytes(b"0" * 100)
    live = temporary_path(dest)  # this process: alive
    live.mkdir()
    other_host = tmp_path / f".cache.tmp-{dead}-12345678@some-other-node"
    other_host.mkdir()
    unrelated = tmp_path / f".cached.tmp-{dead}-12345678"
    unrelated.mkdir()
    stale_file = tmp_path / f".cache.tmp-{dead}-aaaaaaaa"  # atomic_write_bytes leaves files
    stale_file.write_text("x")
    removed = clean_stale_temporaries(dest)
    assert sorted(removed) == sorted([*stale, stale_file])
    assert live.exists() and other_host.exists() and unrelated.exists()


def test_data_convert_cleans_up_after_a_killed_conversion(tmp_path) -> None:
    """A conversion killed mid-way leaves its hidden temporary directory; the next conversion
    to the same destination removes it (and writes the cache)."""
    src = write_rmd17(tmp_path / "rmd17_ethanol.npz", molecule_frames("CH3CH2OH", 30))
    dest = tmp_path / "cache"
    code = (
        "import sys, time; from openjmp.data import convert as c\n"
        "orig = c.StoreWriter.add\n"
        "def slow(self, rec):\n"
        "    orig(self, rec); print('writing', flush=True); time.sleep(60)\n"
        "c.StoreWriter.add = slow\n"
        f"c.convert({str(src)!r}, {str(dest)!r}, split_options={{'train': 20, 'val': 4}})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, 9)
    proc.wait()
    left = list(tmp_path.glob(".cache.tmp-*"))
    assert len(left) == 1 and left[0].is_dir() and not dest.exists()
    args = ["data", "convert", str(src), str(dest), "--split-option", "train=20",
            "--split-option", "val=4"]  # fmt: skip
    assert main(args) == 0
    assert dest.is_dir() and list(tmp_path.glob(".cache.tmp-*")) == []


def test_read_only_destinations_fail_before_any_work(tmp_path, readonly_dir, capsys) -> None:
    t0 = time.perf_counter()
    missing = tmp_path / "not-read-yet.npz"  # reading it would fail: the check comes first
    assert main(["data", "convert", str(missing), str(readonly_dir / "cache")]) == 2
    err = capsys.readouterr().err
    assert "readonly: the directory of the cache is not writable" in err
    assert main(["data", "make-demo", str(readonly_dir / "corpus"), "--scale", "0.05"]) == 2
    err = capsys.readouterr().err
    assert "readonly/corpus: the demo corpus directory is not writable" in err
    assert time.perf_counter() - t0 < 10
    assert np.asarray(list(readonly_dir.iterdir())).size == 0
