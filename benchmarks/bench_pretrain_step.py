"""Steps per second of the embedded study's pre-training, as `openjmp pretrain demo` runs them.

`bench_model.py --case demo_train_step` times the model's forward and backward on one fixed
batch. This times the whole training step of the real run: the ``demo`` preset (2-block
GemNet-OC, 4 datasets, batches of 16 drawn by temperature sampling, graphs built with edge
dropout by the loader), through Lightning with the loss, the backward pass, gradient clipping,
AdamW, the LR schedule and the EMA update, on the embedded demo corpus. Each step is the wall
time from one training batch's end to the next one's (data loading included); the first
``--skip`` steps and validation are left out. The preset's LR schedule is kept; the run stops
after ``--skip + --steps`` steps.

    .venv/bin/python benchmarks/bench_pretrain_step.py [--steps 80] [--corpus DIR] [--set K=V]

``--corpus``: an existing demo corpus (`openjmp data make-demo DIR`); by default one is made
(or reused) in the system's temporary directory. ``--set KEY=VALUE`` (repeatable): a config
override on top of the preset, as ``openjmp pretrain demo --set`` takes it (e.g.
``loader.num_workers=1``). Prints one JSON line: the median and quartiles of the step time,
steps/s, the step count and the overrides. Run it with nothing else running on
the machine (see the README's Benchmarks section); compare two versions of the code by running
this script against each, interleaved, in one session.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

THREADS = 2


def demo_corpus(path: Path | None) -> Path:
    """``path``, or a demo corpus made (once) in the temporary directory."""
    if path is not None:
        return path
    from openjmp.data.demo.build import make_demo

    out = Path(tempfile.gettempdir()) / "openjmp-bench-demo-corpus"
    make_demo(out)  # does nothing when a complete corpus of the same arguments is there
    return out


def run(
    steps: int = 80, skip: int = 10, corpus: Path | None = None, overrides: list[str] | None = None
) -> dict[str, Any]:
    import lightning.pytorch as pl
    import torch

    from openjmp.config.load import load_pretrain_config
    from openjmp.train.pretrain import run_pretrain

    torch.set_num_threads(THREADS)
    root = demo_corpus(corpus)
    total = steps + skip
    preset = load_pretrain_config("demo")
    config = load_pretrain_config(
        "demo",
        [
            f"schedule.max_steps={preset.schedule.max_steps}",
            f"data_root={root}",
            f"trainer.max_steps={total}",
            f"trainer.val_check_interval={10 * total}",
            "trainer.max_time=null",
            *(overrides or []),
        ],
    )

    class StepClock(pl.Callback):
        def __init__(self) -> None:
            self.ends: list[float] = []

        def on_train_batch_end(self, *args: Any, **kwargs: Any) -> None:
            self.ends.append(time.perf_counter())

    clock = StepClock()
    with tempfile.TemporaryDirectory() as out:
        run_pretrain(config, out_dir=Path(out), progress=False, logger=False, callbacks=[clock])
    gaps = [b - a for a, b in zip(clock.ends, clock.ends[1:], strict=False)][skip - 1 :]
    if not gaps:
        raise SystemExit(f"no steps timed (steps={steps}, skip={skip})")
    q = statistics.quantiles(gaps, n=4) if len(gaps) > 1 else [gaps[0]] * 3
    median = statistics.median(gaps)
    return {
        "case": "demo_pretrain_step",
        "threads": torch.get_num_threads(),
        "steps_timed": len(gaps),
        "seconds_median": median,
        "seconds_q1": q[0],
        "seconds_q3": q[2],
        "steps_per_s": 1.0 / median,
        "batch_size": config.loader.batch_size,
        "overrides": list(overrides or []),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=80, help="timed steps (default 80)")
    ap.add_argument("--skip", type=int, default=10, help="warm-up steps left out (default 10)")
    ap.add_argument("--corpus", type=Path, default=None, help="an existing demo corpus")
    ap.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config override on top of the demo preset (repeatable)",
    )
    args = ap.parse_args()
    if args.steps < 1 or args.skip < 1:
        ap.error("--steps and --skip must be at least 1")
    from openjmp.errors import ConfigError

    try:
        result = run(args.steps, args.skip, args.corpus, args.overrides)
    except ConfigError as exc:
        raise SystemExit(f"bench_pretrain_step: {exc}") from None
    print(json.dumps(result))


if __name__ == "__main__":
    main()
