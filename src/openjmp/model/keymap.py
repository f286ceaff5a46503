"""Map between the authors' state-dict keys and `JMPModel`'s own module tree.

The embedding and the backbone use the authors' attribute names, so their keys are the same on
both sides (``embedding.atom_embedding.weight``, ``backbone.*``). Only the heads differ:

    authors' pre-training model            JMPModel.pretraining(config, tasks)
    output.out_energy.{t}.{i}.{w|b}   <->  heads.{tasks[t]}_energy.mlp.{i}.{w|b}
    output.out_forces.{t}.{i}.{w|b}   <->  heads.{tasks[t]}_forces.mlp.{i}.{w|b}

``task_steps.*`` entries of the authors' checkpoints are step counters of their metrics, not
weights: `authors_to_ours` drops them explicitly (they are returned separately).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from torch import Tensor

from openjmp.errors import CheckpointError

IGNORED_PREFIXES: tuple[str, ...] = ("task_steps.",)
"""Authors' keys that are not model weights (metric step counters)."""

_HEAD_RE = re.compile(r"^output\.out_(energy|forces)\.(\d+)\.(.+)$")
_OUR_HEAD_RE = re.compile(r"^heads\.(.+)_(energy|forces)\.mlp\.(.+)$")


def authors_to_ours(
    state_dict: Mapping[str, Tensor], tasks: Sequence[str], *, source: str = "state dict"
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Authors' pre-training keys -> `JMPModel` keys.

    Returns ``(mapped, ignored)``: ``ignored`` holds the ``task_steps.*`` entries. A head index
    beyond ``tasks`` raises `CheckpointError` naming ``source``.
    """
    mapped: dict[str, Tensor] = {}
    ignored: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith(IGNORED_PREFIXES):
            ignored[key] = value
            continue
        match = _HEAD_RE.match(key)
        if match is None:
            mapped[key] = value
            continue
        kind, t, rest = match.group(1), int(match.group(2)), match.group(3)
        if t >= len(tasks):
            raise CheckpointError(
                f"{source}: key {key!r} is for task index {t} but the model has {len(tasks)} tasks"
            )
        mapped[f"heads.{tasks[t]}_{kind}.mlp.{rest}"] = value
    return mapped, ignored


def ours_to_authors(state_dict: Mapping[str, Tensor], tasks: Sequence[str]) -> dict[str, Tensor]:
    """`JMPModel.pretraining` keys -> the authors' key names (inverse of `authors_to_ours`)."""
    index = {t: i for i, t in enumerate(tasks)}
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        match = _OUR_HEAD_RE.match(key)
        if match is None:
            out[key] = value
            continue
        task, kind, rest = match.groups()
        if task not in index:
            raise KeyError(f"head {task}_{kind} is not one of the tasks {list(tasks)}")
        out[f"output.out_{kind}.{index[task]}.{rest}"] = value
    return out
