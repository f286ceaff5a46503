"""YAML file or preset name -> validated config, with ``--set key=value`` overrides.

    cfg = load_config("rmd17-aspirin", "finetune", ["data.train.path=/data/aspirin.npz"])
    cfg = load_config("my_run.yaml", "pretrain")

A file may start from a preset with ``extends: <preset name>`` (mappings merge, other values
replace). Override keys are dotted field paths (list entries by number: ``heads.0.pooling``);
values are YAML scalars or flow collections (``1e-4``, ``true``, ``null``, ``[0.9, 0.95]``).
An override of ``trainer.max_steps`` also sets ``schedule.max_steps`` (and the other way
round) when the schedule counts steps and the overrides do not set both.
YAML is read with YAML 1.2 scalars (``1e-4`` is a float, ``no`` is a string) and duplicate
keys are an error. Every failure is a `ConfigError` naming the file (or preset) and the field
path, and the ``--set`` that caused it.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin, overload

import yaml
from pydantic import BaseModel, ValidationError

from openjmp.config.finetune import FinetuneConfig
from openjmp.config.presets import Kind, deep_merge, preset_data
from openjmp.config.pretrain import PretrainConfig
from openjmp.config.yaml_text import parse_yaml_value, read_yaml_text
from openjmp.errors import ConfigError

CONFIG_CLASSES: dict[str, type[PretrainConfig] | type[FinetuneConfig]] = {
    "pretrain": PretrainConfig,
    "finetune": FinetuneConfig,
}

# ---------------------------------------------------------------------------------- overrides

Path_ = tuple[str | int, ...]


def parse_override(text: str) -> tuple[Path_, Any]:
    """``"a.b.0.c=value"`` -> (("a", "b", 0, "c"), parsed value)."""
    key, sep, value = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(re.fullmatch(r"[A-Za-z_][\w\-]*|\d+", p) for p in parts):
        raise ConfigError(f"--set {text!r}: expected dotted.key=value (list entries by number)")
    try:
        parsed = parse_yaml_value(value)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text!r}: value is not a YAML scalar ({exc})") from None
    return tuple(int(p) if p.isdigit() else p for p in parts), parsed


def apply_override(data: dict[str, Any], path: Path_, value: Any, text: str) -> None:
    """Set ``data[path] = value`` in place, creating mappings on the way."""
    node: Any = data
    for i, part in enumerate(path[:-1]):
        if isinstance(node, list):
            if not isinstance(part, int) or not 0 <= part < len(node):
                raise ConfigError(
                    f"--set {text!r}: {_dotted(path[: i + 1])} is not an entry of a {len(node)}-entry list"
                )
            node = node[part]
        elif isinstance(node, dict):
            if not isinstance(node.get(part), dict | list):
                node[part] = {}
            node = node[part]
        else:
            raise ConfigError(f"--set {text!r}: {_dotted(path[:i])} is a value, not a section")
    last = path[-1]
    if isinstance(node, list):
        if not isinstance(last, int) or not 0 <= last < len(node):
            raise ConfigError(
                f"--set {text!r}: {_dotted(path)} is not an entry of a {len(node)}-entry list"
            )
        node[last] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"--set {text!r}: {_dotted(path[:-1])} is a value, not a section")


# ------------------------------------------------------------------------------ error messages


def _dotted(loc: Sequence[Any]) -> str:
    return ".".join(str(p) for p in loc) or "<top level>"


def _user_loc(data: Any, loc: Sequence[Any]) -> list[Any]:
    """The error location as the user wrote it: union tags (head kinds, member types) dropped."""
    out: list[Any] = []
    node = data
    for part in loc:
        if isinstance(node, dict):
            if part in node:
                out.append(part)
                node = node[part]
            elif node.get("kind") == part:
                continue  # discriminator tag
            else:
                out.append(part)
                node = None
        elif isinstance(node, list) and isinstance(part, int):
            out.append(part)
            node = node[part] if 0 <= part < len(node) else None
        elif node is None and isinstance(part, str | int):
            out.append(part)
        else:
            break  # a scalar: the rest names union members
    return out


def _model_of(annotation: Any, node: Any) -> type[BaseModel] | None:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _model_of(get_args(annotation)[0], node)
    if origin in (Union, types.UnionType):
        models = [m for a in get_args(annotation) if (m := _model_of(a, node)) is not None]
        if len(models) > 1 and isinstance(node, dict):
            models = [
                m
                for m in models
                if m.model_fields.get("kind") and m.model_fields["kind"].default == node.get("kind")
            ]
        return models[0] if len(models) == 1 else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _allowed_keys(root: type[BaseModel], data: Any, loc: Sequence[Any]) -> list[str]:
    """Field names of the model at ``loc`` (the mapping holding an unknown key), if found."""
    model: type[BaseModel] | None = root
    node = data
    i = 0
    while i < len(loc) and model is not None:
        field = model.model_fields.get(str(loc[i]))
        if field is None:
            return []
        node = node.get(loc[i]) if isinstance(node, dict) else None
        annotation = field.annotation
        while get_origin(annotation) in (Union, types.UnionType):  # Optional[list[...]] etc.
            inner = [a for a in get_args(annotation) if a is not type(None)]
            if len(inner) != 1:
                break
            annotation = inner[0]
        if get_origin(annotation) in (list, dict) and i + 1 < len(loc):
            i += 1
            node = node[loc[i]] if isinstance(node, list | dict) and _has(node, loc[i]) else None
            annotation = get_args(annotation)[-1]
        model = _model_of(annotation, node)
        i += 1
    return sorted(model.model_fields) if model is not None else []


def _has(node: list[Any] | dict[Any, Any], key: Any) -> bool:
    return key in node if isinstance(node, dict) else isinstance(key, int) and 0 <= key < len(node)


def _explain(
    exc: ValidationError,
    cls: type[BaseModel],
    data: dict[str, Any],
    label: str,
    overrides: list[tuple[Path_, str]],
) -> ConfigError:
    lines: dict[str, list[str]] = {}
    for err in exc.errors(include_url=False):
        loc = _user_loc(data, err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(cls, data, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            msg = "unknown key" + (f" (did you mean {close[0]!r}?)" if close else "")
            if allowed:
                msg += f"; allowed: {', '.join(allowed)}"
        elif err["type"] not in ("missing", "value_error", "assertion_error"):
            msg += f" (got {err.get('input')!r:.80})"
        for path, text in overrides:
            n = min(len(path), len(loc))
            if n and list(path[:n]) == list(loc[:n]):
                msg += f" [from --set {text}]"
                break
        key = _dotted(loc)
        if msg not in lines.setdefault(key, []):
            lines[key].append(msg)
    body = "\n".join(f"  {key}: {' | '.join(msgs)}" for key, msgs in lines.items())
    return ConfigError(
        f"{label}: invalid {cls.model_fields['kind'].default} configuration:\n{body}"
    )


# -------------------------------------------------------------------------------------- loading


@overload
def load_config(
    source: str | Path, kind: Literal["pretrain"], overrides: Sequence[str] = ()
) -> PretrainConfig: ...
@overload
def load_config(
    source: str | Path, kind: Literal["finetune"], overrides: Sequence[str] = ()
) -> FinetuneConfig: ...
@overload
def load_config(
    source: str | Path, kind: Kind | None = None, overrides: Sequence[str] = ()
) -> PretrainConfig | FinetuneConfig: ...
def load_config(
    source: str | Path, kind: Kind | None = None, overrides: Sequence[str] = ()
) -> PretrainConfig | FinetuneConfig:
    """A YAML file or a preset name (for ``kind``) with overrides, validated.

    ``kind`` is the subcommand (pretrain / finetune); when None, a file's ``kind`` key decides.
    """
    path = Path(source)
    if path.is_file():
        label = str(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"{label}: cannot read ({exc.strerror})") from None
        data = read_yaml_text(text, label)
        file_kind = data.get("kind")
        if kind is not None and file_kind not in (None, kind):
            raise ConfigError(f"{label}: kind: {file_kind} file given to 'openjmp {kind}'")
        kind = kind or file_kind
        if kind not in CONFIG_CLASSES:
            raise ConfigError(f"{label}: say 'kind: pretrain' or 'kind: finetune'")
        base = data.pop("extends", None)
        if base is not None:
            if not isinstance(base, str):
                raise ConfigError(f"{label}: extends: must name a preset, got {base!r}")
            try:
                base_data = preset_data(kind, base)[1]
            except ConfigError as exc:
                raise ConfigError(f"{label}: extends: {exc}") from None
            data = deep_merge(base_data, data)
    else:
        if kind is None:
            raise ConfigError(f"{source}: no such file (presets need pretrain or finetune)")
        if path.suffix in (".yaml", ".yml") or len(path.parts) > 1:
            raise ConfigError(f"{source}: no such file")
        label, data = preset_data(kind, str(source))
    parsed = [(parse_override(text), text) for text in overrides]
    for (key, value), text in parsed:
        apply_override(data, key, value, text)
    blame = [(key, text) for (key, _), text in parsed]
    blame += _follow_max_steps(data, [key for (key, _), _ in parsed], blame)
    cls = CONFIG_CLASSES[kind]
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise _explain(exc, cls, data, label, blame) from None


_STEPS = {
    ("trainer", "max_steps"): ("schedule", "max_steps"),
    ("schedule", "max_steps"): ("trainer", "max_steps"),
}


def _follow_max_steps(
    data: dict[str, Any], set_keys: list[Path_], blame: list[tuple[Path_, str]]
) -> list[tuple[Path_, str]]:
    """When an override sets ``trainer.max_steps`` or ``schedule.max_steps`` and not the other,
    the other follows it if the schedule counts steps (a preset's 600-step schedule would
    otherwise go on under a 100-step run, its learning rate never decaying). Returns the
    derived keys with the override to name in errors."""
    derived: list[tuple[Path_, str]] = []
    for src, dst in _STEPS.items():
        if src not in set_keys or dst in set_keys or ("schedule", "max_epochs") in set_keys:
            continue
        schedule, trainer = data.get("schedule"), data.get("trainer")
        if not isinstance(schedule, dict) or not isinstance(trainer, dict):
            continue
        if schedule.get("max_steps") is None:  # the schedule counts epochs: nothing to follow
            continue
        value = (trainer if src[0] == "trainer" else schedule)[src[1]]
        (schedule if dst[0] == "schedule" else trainer)[dst[1]] = value
        text = next(t for k, t in blame if k == src)
        derived.append((dst, f"{text} ({'.'.join(dst)} follows it)"))
    return derived


def load_pretrain_config(source: str | Path, overrides: Sequence[str] = ()) -> PretrainConfig:
    """`load_config` for ``openjmp pretrain``."""
    return load_config(source, "pretrain", overrides)


def load_finetune_config(source: str | Path, overrides: Sequence[str] = ()) -> FinetuneConfig:
    """`load_config` for ``openjmp finetune``."""
    return load_config(source, "finetune", overrides)


def dump_config(config: BaseModel) -> str:
    """The full resolved config as YAML (every default written out), to save beside a run."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


__all__ = [
    "dump_config",
    "load_config",
    "load_finetune_config",
    "load_pretrain_config",
    "parse_override",
]
