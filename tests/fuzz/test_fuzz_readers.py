"""Every reader, fed mutated native files, either reads them or raises a `DataError` naming
the file (and the record where there is one): never another exception, never a hang.

A bounded, seeded run per reader (inputs 0..N-1 of seed 0, the same files on every run); the
long run is ``python tests/fuzz/fuzz_readers.py --minutes 10 --reader NAME`` (see there).
Each input is read twice: fail-fast as training reads (``read_records``) and collecting every
problem as ``openjmp data check`` does (``check_path``).
"""

from __future__ import annotations

import pytest

from helpers.fuzzlib import FINDINGS, TARGETS, run_campaign

INPUTS = 120


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_reader_raises_only_named_data_errors(target: str, tmp_path) -> None:
    camp = run_campaign(target, seed=0, max_inputs=INPUTS, workdir=tmp_path)
    assert camp.inputs == INPUTS
    shown = "\n\n".join(
        f"input {f['input']} ({f['way']}, {f['kind']}):\n{f['detail']}" for f in camp.findings[:3]
    )
    assert not camp.findings, f"{len(camp.findings)} findings for {target}:\n{shown}"
    # the mutations reach both outcomes: some inputs still read, others are named errors
    assert camp.counts["read:ok"] > 0 and camp.counts["read:data_error"] > INPUTS // 4


def test_harness_reports_foreign_exceptions_and_hangs(tmp_path, monkeypatch) -> None:
    """The harness itself: a reader raising something other than DataError, or never
    returning, is a finding (so the test above can fail)."""
    import time

    import openjmp.io

    def broken(path, **_):
        raise KeyError("boom")

    monkeypatch.setitem(openjmp.io.FORMATS, "md_npz", broken)
    camp = run_campaign("rmd17", seed=0, max_inputs=2, workdir=tmp_path)
    assert camp.counts["read:other"] == 2 and "KeyError" in camp.findings[0]["detail"]

    def slow(path, **_):
        time.sleep(5)
        return iter(())

    monkeypatch.setitem(openjmp.io.FORMATS, "md_npz", slow)
    camp = run_campaign("rmd17", seed=0, max_inputs=1, workdir=tmp_path, limit=0.2)
    assert camp.counts["read:hang"] == 1
    assert {f["kind"] for f in camp.findings} <= set(FINDINGS)
