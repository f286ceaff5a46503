"""Load JMP checkpoints safely (authors' Lightning files, plain state dicts, ours) and save ours.

Supported files (a path; nothing is downloaded):

* the authors' pre-training Lightning checkpoints (``jmp-s.pt``, ``jmp-l.pt`` and files built
  like them): ``state_dict`` in the authors' key naming, ``hyper_parameters`` (pickled objects of
  the authors' ``jmp`` package, read as inert records, see `openjmp.io.safe_pickle`), and the
  EMA weights in ``optimizer_states[0]["ema"]``;
* a plain state dict in the authors' naming (e.g. the parity fixture ``state_dict.pt``);
* openjmp's own files written by `save_model`, and Lightning checkpoints of openjmp's training
  that carry the same entries (``format``, ``config``, ``heads``, ``ema_state_dict``,
  ``model_state_dict``).

EMA mapping (authors' ``finetune_state_dict.py``): the EMA tuple follows the state-dict keys in
order, skipping ``*rbf.offset``, ``*rbf.temps``, ``*.seq_energy_pre.*``, ``task_steps*`` and
``*scale_factor``. ``seq_energy_pre`` is an alias of ``layers`` in every output block; it takes the
(EMA) value of ``layers`` here, so both keys always hold the same tensor.

Every failure is a `CheckpointError` naming the file and the problem; nothing in a file is
executed (pickled globals outside an allow-list are refused before they are called).
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from openjmp.errors import CheckpointError, ConfigError
from openjmp.graph.spec import GRAPH_SETTINGS
from openjmp.io.safe_pickle import PickledObject, UnsafePickleError, safe_torch_load
from openjmp.model.gemnet_oc.config import GemNetOCConfig
from openjmp.model.heads import DirectForceHead, EnergyHead
from openjmp.model.infer_config import infer_backbone_sizes, infer_pretrain_heads, merge_config
from openjmp.model.jmp_model import PRETRAIN_TASKS, JMPModel, head_from_spec
from openjmp.model.keymap import authors_to_ours
from openjmp.model.outputs import INFO_KEYS, HeadInfo, OutputTransform

OPENJMP_FORMAT = "openjmp.model"
OPENJMP_FORMAT_VERSION = 1

LICENCE_NOTICE = (
    "openjmp: these are the JMP authors' published weights (Shoghi et al., ICLR 2024, "
    "facebookresearch/JMP), licensed CC-BY-NC 4.0 (Creative Commons Attribution-NonCommercial "
    "4.0 International, https://creativecommons.org/licenses/by-nc/4.0/): non-commercial use "
    "only, with attribution."
)

PUBLISHED_NORMALIZATION: dict[str, tuple[float, float]] = {
    "oc20": (24.901469505465872, 0.5111534595489502),
    "oc22": (25.229595396538468, 0.25678861141204834),
    "ani1x": (2.8700712783472118, 2.131422996520996),
    "transition1x": (1.787466168382901, 0.3591422140598297),
}
"""(energy std eV, force std eV/Å) the published JMP-S/L pre-training heads were trained on,
with energy mean 0 (jmp-reference §2.3, the authors' pre-training notebook). Their energies
were also referenced by per-dataset linear references that are not in the checkpoint."""

PUBLISHED_MISSING = (
    "the published JMP pre-training heads predict energies minus per-dataset linear references "
    "that are not in the checkpoint; give them with load_model(path, references={{'{task}': "
    "'linref.npz'}}) (the authors' file, key 'coeff', or a JSON {{element: eV}}) or "
    "`openjmp predict --references {task}=FILE`. Forces and stress are physical without them."
)

_SCALE_FILE_NAMES = {
    "base.pt": "scale_files/small.pt",
    "small.pt": "scale_files/small.pt",
    "large.pt": "scale_files/large.pt",
}


def _ema_skipped(key: str) -> bool:
    return (
        key.endswith("rbf.offset")
        or key.endswith("rbf.temps")
        or ".seq_energy_pre." in key
        or key.startswith("task_steps")
        or key.endswith("scale_factor")
    )


# ---------------------------------------------------------------------------- reading
def read_checkpoint(path: str | Path) -> Any:
    """Unpickle ``path`` safely (tensor data memory-mapped when possible)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such checkpoint file")
    try:
        try:
            return safe_torch_load(p, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            return safe_torch_load(p, mmap=False)  # legacy (non-zip) torch.save format
    except UnsafePickleError as exc:
        raise CheckpointError(f"{p}: refused, the file is not safe to load: {exc}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError) as exc:
        raise CheckpointError(
            f"{p}: not a readable torch checkpoint (truncated or corrupt?): {type(exc).__name__}: {exc}"
        ) from None
    except Exception as exc:  # any other unpickling failure of a malformed file
        raise CheckpointError(
            f"{p}: cannot read the checkpoint: {type(exc).__name__}: {exc}"
        ) from None


def _as_mapping(obj: Any) -> dict[str, Any] | None:
    if isinstance(obj, PickledObject):
        return obj.fields()
    if isinstance(obj, Mapping):
        return dict(obj)
    return None


def _tensor_dict(obj: Any, what: str, source: Path) -> dict[str, Tensor]:
    if not isinstance(obj, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()
    ):
        raise CheckpointError(f"{source}: {what} is not a mapping of names to tensors")
    return dict(obj)


def apply_ema(state_dict: Mapping[str, Tensor], ema: Any, source: Path) -> dict[str, Tensor]:
    """Replace the state dict's parameters by the EMA tensors, positionally (module docstring)."""
    if not isinstance(ema, (tuple, list)) or not all(isinstance(t, Tensor) for t in ema):
        raise CheckpointError(f"{source}: optimizer_states[0]['ema'] is not a sequence of tensors")
    keys = [k for k in state_dict if not _ema_skipped(k)]
    if len(keys) != len(ema):
        raise CheckpointError(
            f"{source}: the EMA holds {len(ema)} tensors but the state dict has {len(keys)} "
            "parameters to map them onto"
        )
    out = dict(state_dict)
    for i, (k, t) in enumerate(zip(keys, ema)):
        if t.shape != state_dict[k].shape or t.dtype != state_dict[k].dtype:
            raise CheckpointError(
                f"{source}: EMA tensor {i} has shape {tuple(t.shape)} {t.dtype} but parameter "
                f"{k!r} has {tuple(state_dict[k].shape)} {state_dict[k].dtype}"
            )
        out[k] = t
    return out


def resolve_aliases(state_dict: Mapping[str, Tensor], source: Path) -> dict[str, Tensor]:
    """Give every ``.seq_energy_pre.`` key the value of its ``.layers.`` twin (one module)."""
    out = dict(state_dict)
    for k in state_dict:
        if ".seq_energy_pre." in k:
            twin = k.replace(".seq_energy_pre.", ".layers.")
            if twin not in state_dict:
                raise CheckpointError(f"{source}: alias {k!r} has no {twin!r}")
            out[k] = state_dict[twin]
    return out


def _map_scale_file(path: Any) -> Any:
    if isinstance(path, (str, Path)) and str(path):
        name = Path(str(path)).name
        return _SCALE_FILE_NAMES.get(name, str(path))
    return path


def _authors_tasks(hparams: Mapping[str, Any] | None, n_tasks: int, source: Path) -> list[str]:
    tasks = hparams.get("tasks") if hparams else None
    if tasks is None:
        if n_tasks == len(PRETRAIN_TASKS):
            return list(PRETRAIN_TASKS)
        return [f"task{i}" for i in range(n_tasks)]
    names = []
    for t in tasks:
        f = _as_mapping(t)
        names.append(str(f.get("name")) if f and f.get("name") else str(t))
    if len(names) != n_tasks:
        raise CheckpointError(
            f"{source}: hyper_parameters list {len(names)} tasks but the weights have {n_tasks} heads"
        )
    return names


# ---------------------------------------------------------------------------- building
def _check_keys(model: nn.Module, sd: Mapping[str, Tensor], source: Path) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: state dict does not fit the model: {len(missing)} missing key(s) "
            f"{missing[:5]}, {len(unexpected)} unexpected key(s) {unexpected[:5]}"
        )
    for k, v in expected.items():
        if tuple(sd[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{source}: wrong architecture: {k!r} has shape {tuple(sd[k].shape)} in the file, "
                f"{tuple(v.shape)} in the model"
            )


def _build(
    config: GemNetOCConfig,
    heads: Mapping[str, Any] | None,
    tasks: list[str] | None,
    num_mlps: int,
    sd: Mapping[str, Tensor],
    source: Path,
    device: torch.device | str,
    dtype: torch.dtype,
) -> JMPModel:
    with torch.device("meta"):
        if heads is not None:
            model = JMPModel(config, {n: head_from_spec(s) for n, s in heads.items()})
        else:
            model = JMPModel.pretraining(config, tasks or [], num_mlps=num_mlps)
    _check_keys(model, sd, source)
    # clone: the file is memory-mapped and holds more than the weights (optimizer moments)
    model.load_state_dict({k: v.clone() for k, v in sd.items()}, strict=True, assign=True)
    for name, spec in (heads or {}).items():
        info = {k: spec[k] for k in INFO_KEYS if k in spec}
        if info:
            try:
                model.set_head_info(name, HeadInfo.from_dict(info))
            except ConfigError as exc:
                raise CheckpointError(f"{source}: head {name!r}: {exc}") from None
    return model.to(device=device, dtype=dtype).eval()


def published_head_info(model: JMPModel) -> None:
    """Give the heads of the authors' pre-training tasks what the published checkpoints
    were trained with: the normalisation (`PUBLISHED_NORMALIZATION`, energies still missing
    their references) and the task's graph setting."""
    for task, (e_std, f_std) in PUBLISHED_NORMALIZATION.items():
        graph = GRAPH_SETTINGS[task]
        if f"{task}_energy" in model.heads:
            missing = PUBLISHED_MISSING.format(task=task)
            out = OutputTransform.energy(e_std, 0.0, missing=missing)
            model.set_head_info(f"{task}_energy", HeadInfo(out, graph))
        if f"{task}_forces" in model.heads:
            model.set_head_info(f"{task}_forces", HeadInfo(OutputTransform.forces(f_std), graph))


def legacy_head_info(model: JMPModel, metadata: Mapping[str, Any], hparams: Any) -> None:
    """Head transforms (and graphs) of openjmp files written before heads carried them: from
    the statistics their ``metadata`` kept (pre-training ``tasks``, fine-tuning ``targets``)."""
    if metadata.get("kind") == "pretrain":
        for t in metadata.get("tasks") or []:
            name = t["name"]
            refs = t.get("references")
            energy = OutputTransform.energy(t["energy_std"], t["energy_mean"], refs)
            if f"{name}_energy" in model.heads:
                model.set_head_info(f"{name}_energy", output=energy)
            if f"{name}_forces" in model.heads:
                model.set_head_info(f"{name}_forces", output=OutputTransform.forces(t["force_std"]))
        return
    if metadata.get("kind") != "finetune":
        return
    graph = None
    config = hparams.get("config") if isinstance(hparams, Mapping) else None
    if isinstance(config, Mapping) and isinstance(config.get("data"), Mapping):
        from openjmp.graph.spec import GraphSpec, max_neighbors_from_base

        g = config["data"].get("graph") or {}
        if g:
            graph = GraphSpec(
                cutoff=float(g.get("cutoff", 12.0)),
                max_neighbors=max_neighbors_from_base(int(g.get("max_neighbors", 30))),
                pbc=bool(g.get("pbc", False)),
                dummy_cell=bool(g.get("dummy_cell", False)),
                qint_tags=tuple(g.get("qint_tags", (1, 2))),
                atom_count_caps=bool(g.get("atom_count_caps", False)),
            )
    for name, t in (metadata.get("targets") or {}).items():
        refs = t.get("references")
        if t.get("kind") == "energy_forces":
            scale = float(t.get("energy_scale") or t.get("std", 1.0))
            energy = OutputTransform.energy(scale, float(t.get("mean", 0.0)), refs)
            if isinstance(model.heads["energy"] if "energy" in model.heads else None, EnergyHead):
                model.set_head_info("energy", HeadInfo(energy, graph))
            forces = model.heads["forces"] if "forces" in model.heads else None
            if isinstance(forces, DirectForceHead):
                model.set_head_info(
                    "forces", HeadInfo(OutputTransform.forces(t["force_std"]), graph)
                )
            elif forces is not None:
                model.set_head_info("forces", graph=graph)
        elif name in model.heads:
            out = OutputTransform.scalar(t.get("std", 1.0), t.get("mean", 0.0), refs)
            model.set_head_info(name, HeadInfo(out, graph))


def _from_authors(
    ck: Mapping[str, Any], source: Path, ema: bool, device: Any, dtype: torch.dtype, plain: bool
) -> JMPModel:
    sd = _tensor_dict(ck if plain else ck.get("state_dict"), "state_dict", source)
    hparams = None if plain else _as_mapping(ck.get("hyper_parameters"))
    if ema and not plain:
        opt = ck.get("optimizer_states")
        state = opt[0] if isinstance(opt, (list, tuple)) and len(opt) == 1 else None
        if isinstance(state, Mapping) and state.get("ema") is not None:
            sd = apply_ema(sd, state["ema"], source)
        else:
            warnings.warn(
                f"{source}: no EMA weights in the checkpoint; using its raw weights", stacklevel=3
            )
    sd = resolve_aliases(sd, source)
    declared = _as_mapping(hparams.get("backbone")) if hparams else None
    if declared is not None and "scale_file" in declared:
        declared["scale_file"] = _map_scale_file(declared["scale_file"])
    config = merge_config(infer_backbone_sizes(sd, str(source)), declared, str(source))
    if config.scale_file and any(
        k.endswith("scale_factor") and float(v) == 0.0 for k, v in sd.items()
    ):
        raise CheckpointError(
            f"{source}: the config names scale file {config.scale_file!r} but some scale factors "
            "in the weights are unfitted (0)"
        )
    n_tasks, n_lin = infer_pretrain_heads(sd)
    tasks = _authors_tasks(hparams, n_tasks, source)
    mapped, _task_steps = authors_to_ours(sd, tasks, source=str(source))
    model = _build(config, None, tasks, n_lin or 5, mapped, source, device, dtype)
    published_head_info(model)
    if hparams is not None and hparams.get("backbone") is not None:
        print(LICENCE_NOTICE, file=sys.stderr)
    return model


def _from_openjmp(
    ck: Mapping[str, Any], source: Path, ema: bool, device: Any, dtype: torch.dtype
) -> JMPModel:
    if ck.get("version") != OPENJMP_FORMAT_VERSION:
        raise CheckpointError(
            f"{source}: unsupported openjmp checkpoint version {ck.get('version')!r}"
        )
    try:
        config = GemNetOCConfig.from_dict(ck["config"], source=str(source))
    except (ConfigError, KeyError) as exc:
        raise CheckpointError(f"{source}: bad model config: {exc}") from None
    # raw weights: "model_state_dict" in Lightning files of openjmp's training (whose
    # "state_dict" is Lightning's own, prefixed), "state_dict" in files of `save_model`
    raw = "model_state_dict" if ck.get("model_state_dict") is not None else "state_dict"
    key = "ema_state_dict" if ema and ck.get("ema_state_dict") is not None else raw
    sd = resolve_aliases(_tensor_dict(ck.get(key), key, source), source)
    heads = ck.get("heads")
    if not isinstance(heads, Mapping):
        raise CheckpointError(f"{source}: missing head specifications")
    try:
        model = _build(config, heads, None, 0, sd, source, device, dtype)
    except ConfigError as exc:
        raise CheckpointError(f"{source}: {exc}") from None
    if not any(k in spec for spec in heads.values() for k in INFO_KEYS):
        meta = ck.get("metadata")
        legacy_head_info(
            model, meta if isinstance(meta, Mapping) else {}, ck.get("hyper_parameters")
        )
    return model


def load_checkpoint(
    path: str | Path,
    *,
    ema: bool = True,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    references: Mapping[str, Any] | None = None,
) -> JMPModel:
    """Build a `JMPModel` from any supported checkpoint (module docstring), in eval mode.

    ema: use the EMA weights when the file has them (the authors' fine-tuning start point);
    False: the raw weights. Loading the authors' published weights prints their licence.
    references: per-element linear references for energy heads, ``{task or head name: file or
    table}`` (`set_references`): what the published checkpoints need for energies in eV.
    """
    source = Path(path)
    ck = read_checkpoint(source)
    if not isinstance(ck, Mapping):
        raise CheckpointError(
            f"{source}: expected a dict at the top level, got {type(ck).__name__}"
        )
    if ck.get("format") == OPENJMP_FORMAT:
        model = _from_openjmp(ck, source, ema, device, dtype)
    elif "state_dict" in ck:
        model = _from_authors(ck, source, ema, device, dtype, plain=False)
    elif "embedding.atom_embedding.weight" in ck:
        model = _from_authors(ck, source, ema, device, dtype, plain=True)
    else:
        raise CheckpointError(
            f"{source}: not a JMP checkpoint (no state_dict, no openjmp model, keys {list(ck)[:5]})"
        )
    for head, table in (references or {}).items():
        set_references(model, head, table)
    return model


def set_references(model: JMPModel, head: str, table: Any) -> None:
    """Complete energy head ``head`` (a head name or a task name, ``oc20`` -> ``oc20_energy``)
    with per-element linear references: a file (`openjmp.io.references.read_references`: the
    authors' ``linref.npz``, a JSON {element: eV}) or a (K,) table indexed by Z, eV."""
    from openjmp.io.references import read_references

    name = head if head in model.heads else f"{head}_energy"
    if not isinstance(model.heads[name] if name in model.heads else None, EnergyHead):
        energy = [n for n, h in model.heads.items() if isinstance(h, EnergyHead)]
        raise ConfigError(f"references for {head!r}: no such energy head; energy heads: {energy}")
    transform = model.output_transform(name)
    if transform is None:
        raise ConfigError(
            f"references for {name!r}: the head has no output transform to complete (its "
            "normalisation is unknown)"
        )
    if isinstance(table, (str, Path)):
        values = read_references(table)
    else:
        values = [float(v) for v in table]
    model.set_head_info(name, output=transform.with_references(values))


def save_model(
    model: JMPModel, path: str | Path, *, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write ``model`` (config, head specs, weights) to ``path`` atomically; returns the path."""
    path = Path(path)
    payload = {
        "format": OPENJMP_FORMAT,
        "version": OPENJMP_FORMAT_VERSION,
        "config": model.config.to_dict(),
        "heads": model.head_specs(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metadata": dict(metadata or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)  # only left over if the write failed
    return path
