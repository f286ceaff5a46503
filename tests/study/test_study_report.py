"""The study report's arithmetic: improvement per seed, average over energy/force tasks only,
and the compute-saved line, on hand-made runs whose answers are computed by hand."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from openjmp.study.report import _rows, average_improvement, compute_saved, headline_table


@dataclass
class _Task:
    name: str
    title: str
    kind: str
    unit: str = "meV"


@dataclass
class _Run:
    task: str
    arm: str
    seed: int
    test_metric: float
    wall_time: float = 10.0
    steps: int = 10
    history: list = field(default_factory=list)


def test_improvements_and_average_ignore_electronic_tasks() -> None:
    tasks = [_Task("f", "forces", "forces"), _Task("g", "gap", "electronic")]
    runs = [
        _Run("f", "scratch", 0, 100.0),
        _Run("f", "pretrained", 0, 40.0),
        _Run("f", "scratch", 1, 200.0),
        _Run("f", "pretrained", 1, 120.0),
        _Run("g", "scratch", 0, 10.0),
        _Run("g", "pretrained", 0, 10.0),
        _Run("g", "scratch", 1, 10.0),
        _Run("g", "pretrained", 1, 10.0),
    ]
    rows = _rows(tasks, runs)
    assert rows[0].improvements == pytest.approx([0.6, 0.4])
    assert average_improvement(rows) == pytest.approx(0.5)  # the gap's 0 % is not averaged in
    table = headline_table(rows)
    assert "50 ± 10 %" in table
    assert "| 150.0 ± 50.0 meV | 80.00 ± 40.00 meV |" in table  # spread to the mean's decimals


def test_spread_is_printed_to_the_decimals_of_the_mean() -> None:
    tasks = [_Task("a", "alloy", "energy", "meV/atom")]
    runs = [
        _Run("a", "scratch", 0, 9.555),
        _Run("a", "pretrained", 0, 7.468),
        _Run("a", "scratch", 1, 10.46),
        _Run("a", "pretrained", 1, 7.298),
    ]
    table = headline_table(_rows(tasks, runs))
    assert "| 10.01 ± 0.45 meV/atom | 7.383 ± 0.085 meV/atom |" in table


def test_compute_saved_uses_time_to_scratch_best() -> None:
    # scratch reaches its best (5.0) at step 8 of 10 steps in 10 s -> 8 s;
    # pre-trained first reaches <= 5.0 at step 2 of 10 steps in 20 s -> 4 s; saved 4 s.
    scr = _Run(
        "t", "scratch", 0, 5.0, wall_time=10.0, history=[(0, 9.0), (4, 6.0), (8, 5.0), (10, 5.5)]
    )
    pre = _Run("t", "pretrained", 0, 3.0, wall_time=20.0, history=[(0, 7.0), (2, 4.9), (10, 3.0)])
    saved, notes = compute_saved([scr, pre])
    assert saved == pytest.approx(4.0) and notes == []
    never = _Run("t", "pretrained", 0, 6.0, history=[(0, 7.0), (10, 6.0)])
    saved, notes = compute_saved([scr, never])
    assert saved == 0.0 and "never reached" in notes[0]


def test_convergence_lines_count_stop_reasons_and_runs_still_improving() -> None:
    from openjmp.study.report import convergence_lines

    @dataclass
    class _R(_Run):
        stop_reason: str = "max_steps"

    runs = [
        _R("t", "scratch", 0, 1.0, history=[(0, 9.0), (5, 4.0), (10, 3.0)]),  # still improving
        _R(
            "t",
            "scratch",
            1,
            1.0,
            history=[(0, 9.0), (5, 2.0), (10, 3.0)],
            stop_reason="early_stopping",
        ),
        _R("t", "pretrained", 0, 1.0, history=[(0, 9.0), (10, 1.0)]),
        _R("t", "pretrained", 1, 1.0, history=[(0, 9.0), (10, 1.0)]),
    ]
    (line,) = convergence_lines([_Task("t", "task", "energy")], runs)
    assert line == (
        "- t: scratch: stopped by early_stopping 1/2, max_steps 1/2; best validation at the last "
        "check in 1/2; pretrained: stopped by max_steps 2/2; best validation at the last check in 2/2"
    )
