"""Named presets: YAML package data under presets/ plus the benchmark tables.

Pre-training presets are whole files (presets/pretrain/<name>.yaml: ``jmp-s``, ``jmp-l``,
``demo``). A fine-tuning preset is a recipe (presets/finetune/_recipe-jmp-{s,l}.yaml) with a
dataset part laid over it; the part is a benchmark from openjmp.config.benchmarks or a file
presets/finetune/<name>.yaml (``user-energy-forces``, ``user-property``). Prefix a fine-tuning
name with ``jmp-s-`` for the JMP-S recipe; no prefix (or ``jmp-l-``) means JMP-L, the model of
the authors' published fine-tuning configs. Names are case-insensitive.
"""

from __future__ import annotations

import copy
import difflib
import functools
import re
from importlib import resources
from typing import Any, Literal

from openjmp.config.benchmarks import benchmark_parts
from openjmp.config.yaml_text import read_yaml_text
from openjmp.errors import ConfigError

Kind = Literal["pretrain", "finetune"]
BACKBONE_PREFIXES = ("jmp-s", "jmp-l")


def _preset_files(kind: Kind) -> dict[str, Any]:
    folder = resources.files("openjmp.config").joinpath("presets", kind)
    return {
        entry.name.removesuffix(".yaml"): entry
        for entry in folder.iterdir()
        if entry.name.endswith(".yaml") and not entry.name.startswith("_")
    }


def _finetune_parts() -> list[str]:
    return sorted([*benchmark_parts(), *_preset_files("finetune")])


def preset_names(kind: Kind) -> list[str]:
    """Every name that resolves for ``kind`` (fine-tuning: bare, jmp-l- and jmp-s- forms)."""
    if kind == "pretrain":
        return sorted(_preset_files("pretrain"))
    parts = _finetune_parts()
    return [*parts, *(f"{p}-{n}" for p in BACKBONE_PREFIXES for n in parts)]


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` laid onto ``base``: mappings merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _unknown(kind: Kind, name: str) -> ConfigError:
    names = preset_names(kind)
    close = difflib.get_close_matches(name.lower(), names, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    if kind == "pretrain":
        listing = ", ".join(names)
    else:
        bare = [n for n in _finetune_parts() if not re.search(r"-fold\d$", n)]
        listing = ", ".join(bare) + "; matbench-<task>-fold0..4; each also as jmp-s-<name>"
    return ConfigError(f"no {kind} config file or preset named {name!r}.{hint} Presets: {listing}")


@functools.cache
def _packaged_yaml(kind: Kind, file_name: str) -> dict[str, Any]:
    """A packaged preset file, parsed once (callers get copies)."""
    entry = resources.files("openjmp.config").joinpath("presets", kind, file_name)
    return read_yaml_text(entry.read_text(), f"{kind} preset file {file_name}")


def preset_data(kind: Kind, name: str) -> tuple[str, dict[str, Any]]:
    """(label for messages, raw config dict) of a preset; ConfigError if there is none."""
    key = name.lower()
    if kind == "pretrain":
        if key not in _preset_files("pretrain"):
            raise _unknown(kind, name)
        return f"preset {key!r}", copy.deepcopy(_packaged_yaml(kind, f"{key}.yaml"))
    backbone = "jmp-l"
    for prefix in BACKBONE_PREFIXES:
        if key.startswith(prefix + "-"):
            backbone, key = prefix, key[len(prefix) + 1 :]
    label = f"preset {name.lower()!r}"
    parts = benchmark_parts()
    if key in parts:
        part = parts[key]
    else:
        if key not in _preset_files("finetune"):
            raise _unknown(kind, name)
        part = _packaged_yaml(kind, f"{key}.yaml")
    data = deep_merge(_packaged_yaml(kind, f"_recipe-{backbone}.yaml"), part)
    data["name"] = f"{backbone}-{part.get('name', key)}"
    return label, data
