"""`FinetuneTask`: the LightningModule of JMP's downstream recipe (jmp-reference §3).

A pre-trained (or fresh) embedding + GemNet-OC backbone, new heads from the config's ``heads``
(`openjmp.tasks.finetune_targets`), trained end to end:

* losses in normalised units, summed over targets (`Target.loss`);
* AdamW on layer-wise LR groups (``llrd``, `openjmp.tasks.param_groups`), frozen parameters
  (``freeze``) left out of the optimizer;
* per-group warm-up + cosine, then reduce-on-plateau on the monitored validation metric
  (`openjmp.tasks.schedules.WarmupCosineRLP`), stepped every optimizer step;
* shared basis-projection gradients divided by their use count before clipping
  (``on_before_optimizer_step``, a number-changing hook, as the authors);
* validation metrics in physical units (`openjmp.tasks.finetune_metrics`), logged as
  ``val/<metric>``; the monitored one is kept in ``history`` [(step, value)], saved in the
  checkpoint so a resumed run keeps it; training stops once every group's lr is below
  ``early_stopping.min_lr`` (the authors' second stopping rule).

Gradient forces need autograd in validation and test: run it with a Trainer built with
``inference_mode=False`` (`openjmp.train.finetune.full` does). Clipping (value 1.0), EMA and early
stopping are stock Lightning (Trainer arguments and callbacks).

The hyper-parameters (``config`` as JSON, the ``backbone`` dict, the fitted ``stats``) are saved
in every checkpoint: ``FinetuneTask.load_from_checkpoint(path)`` rebuilds the model without the
data or the pre-trained file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from openjmp.config.finetune import FinetuneConfig
from openjmp.errors import ConfigError
from openjmp.graph.batch import Batch
from openjmp.model.gemnet_oc.config import GemNetOCConfig
from openjmp.model.jmp_model import JMPModel, head_from_spec, head_spec
from openjmp.model.outputs import HeadInfo
from openjmp.tasks.finetune_metrics import MetricAccumulator
from openjmp.tasks.finetune_targets import Target, build_target, check_heads, target_name
from openjmp.tasks.optimizer import configure_optimization, optimization_settings
from openjmp.tasks.param_groups import freeze, llrd_param_groups, scale_shared_gradients
from openjmp.tasks.schedules import WarmupCosineRLP, epochs_to_steps, llrd_min_lr_factor

HISTORY_KEY = "openjmp_finetune"
MONITOR_KEY = "val/monitor"
"""Logged every validation: the monitored metric, negated when larger is better, so checkpoint
selection, early stopping and plateau detection can all minimise it."""
MODEL_PREFIX = "model."


def metric_names(targets: Mapping[str, Target]) -> list[str]:
    """Every validation metric the targets produce (``<output>_mae`` etc.)."""
    names: list[str] = []
    for t in targets.values():
        for key in t.outputs():
            if t.kind == "classification":
                names += [f"{key}_accuracy", f"{key}_balanced_accuracy"]
            else:
                names += [f"{key}_mae", f"{key}_rmse"]
    return names


class FinetuneTask(pl.LightningModule):
    """Fine-tuning module (module docstring).

    Args:
        config: ``FinetuneConfig.model_dump(mode="json")`` (or the config itself).
        backbone: `GemNetOCConfig.to_dict()` of the backbone (force flags as the heads need).
        stats: per-head statistics from `openjmp.tasks.finetune_stats.resolve_statistics`.
        head_specs: model heads to build from a spec (`openjmp.model.jmp_model.head_spec`)
            instead of the default new head, e.g. to continue a checkpoint's head.
        steps_per_epoch: optimizer steps per training epoch (to turn the schedule's epochs into
            steps); needed for training with an epoch-based schedule, not for inference.
    """

    def __init__(
        self,
        config: Mapping[str, Any] | FinetuneConfig,
        backbone: Mapping[str, Any],
        stats: Mapping[str, Mapping[str, Any]],
        steps_per_epoch: int | None = None,
        head_specs: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(config, FinetuneConfig):
            config = config.model_dump(mode="json")
        hp: dict[str, Any] = {
            "config": dict(config),
            "backbone": dict(backbone),
            "stats": {k: dict(v) for k, v in stats.items()},
        }
        if head_specs:
            hp["head_specs"] = {k: dict(v) for k, v in head_specs.items()}
        self.save_hyperparameters(hp)
        self.config = FinetuneConfig.model_validate(config)
        bb = GemNetOCConfig.from_dict(backbone, source="backbone")
        check_heads(list(self.config.heads))
        targets = {
            target_name(h): build_target(h, stats.get(target_name(h), {}), bb)
            for h in self.config.heads
        }
        self.targets = nn.ModuleDict(targets)
        heads: dict[str, nn.Module] = {}
        for t in targets.values():
            heads.update(t.model_heads(bb))
        for name, spec in (head_specs or {}).items():  # heads started from a checkpoint's heads
            pooled = ("energy", "scalar")  # the same computation (per-atom MLP, pooled)
            ours = head_spec(heads[name])["type"] if name in heads else None
            if ours != spec.get("type") and not (ours in pooled and spec.get("type") in pooled):
                raise ConfigError(f"head {name!r}: a {spec.get('type')} head cannot replace it")
            heads[name] = head_from_spec(spec)
        self.model = JMPModel(bb, heads)
        self.model.set_activation_checkpointing(self.config.model.activation_checkpointing)
        graph = self.config.data.graph.spec()
        self.derived: dict[str, str] = {}
        for name, t in targets.items():
            elements = stats.get(name, {}).get("elements")
            transforms = t.output_transforms()
            for head in t.model_heads(bb):
                self.model.set_head_info(
                    head,
                    HeadInfo(
                        transforms.get(head),
                        graph,
                        None if elements is None else tuple(elements),
                    ),
                )
            self.derived.update(t.derived())
        self.num_blocks = bb.num_blocks
        try:
            self.frozen = (
                freeze(self.model, self.config.freeze, bb.num_blocks) if self.config.freeze else []
            )
        except ValueError as exc:
            raise ConfigError(f"freeze: {exc}") from None
        available = [*metric_names(targets), "loss"]
        if self.config.monitor.metric not in available:
            raise ConfigError(
                f"monitor.metric {self.config.monitor.metric!r} is not produced by these heads; "
                f"available: {', '.join(available)}"
            )
        self.optimization = optimization_settings(
            self.config.optimizer,
            self.config.schedule,
            monitor_mode=self.config.monitor.mode,
            precision=self.config.precision,
        )
        self.steps_per_epoch = steps_per_epoch
        self.stopped_by_min_lr = False
        self.history: list[tuple[int, float]] = []
        self.train_losses: list[tuple[int, float]] = []
        self._val = MetricAccumulator(targets)
        self._outputs = {k for t in targets.values() for k in t.outputs()}

    # ----------------------------------------------------------------- model calls
    @property
    def gradient_forces(self) -> bool:
        return self.config.gradient_forces

    def set_dtype(self, dtype: torch.dtype) -> FinetuneTask:
        """Parameters (and the model's buffers) to ``dtype``; the targets' referencing and
        normalisation buffers stay float64 (large total energies keep their digits)."""
        self.model.to(dtype)
        for p in self.targets.parameters():
            p.data = p.data.to(dtype)
        return self

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        """Physical predictions: ``energy`` (B,) eV, ``forces`` (N, 3) eV/Å, ``stress`` (B, 6)
        eV/Å³ Voigt when trained, scalars (B,) in their units, class logits (B, C)."""
        return self.physical(self.model_outputs(batch), batch)

    def model_outputs(self, batch: Batch) -> dict[str, Tensor]:
        """Raw outputs of every model head (and the stress, when a target trains on it)."""
        return self.model(batch, stress=self.derived or None)

    def physical(self, out: Mapping[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        """Raw outputs -> physical predictions: model heads through `JMPModel.to_physical`
        (the conversion `openjmp.predict` uses), the other targets through their own."""
        raw = {k: v for k, v in out.items() if k in self.model.heads or k in self.derived}
        converted = self.model.to_physical(raw, batch, derived=self.derived)
        preds = {k: v for k, v in converted.items() if k in self._outputs}
        for t in self.targets.values():
            preds.update(t.predict({**out, **converted}, batch))
        return preds

    def labels(self, batch: Batch) -> dict[str, Tensor]:
        res: dict[str, Tensor] = {}
        for t in self.targets.values():
            res.update(t.labels(batch))
        return res

    def losses(self, batch: Batch) -> dict[str, Tensor]:
        """Per-target losses (normalised units) of one batch."""
        out = self.model_outputs(batch)
        return {name: t.loss(out, batch) for name, t in self.targets.items()}

    def transfer_batch_to_device(
        self, batch: Any, device: torch.device, dataloader_idx: int
    ) -> Any:
        if isinstance(batch, Batch):
            return batch.to(device)  # labels stay float64; the model casts positions itself
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    # ------------------------------------------------------------------- training
    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        parts = self.losses(batch)
        loss = torch.stack(list(parts.values())).sum()
        n = batch.num_graphs
        self.log("train/loss", loss, batch_size=n, prog_bar=True)
        for name, value in parts.items():
            if len(parts) > 1:
                self.log(f"train/loss_{name}", value, batch_size=n)
        self.train_losses.append((int(self.global_step), float(loss.detach())))
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Changes numbers: the shared basis projections are used by every block, so the authors
        # divide their gradients by the use count (num_blocks; mlp_rbf_out num_blocks + 1) after
        # backward (and gradient accumulation) and before clipping, in fine-tuning too (§1.4).
        if self.config.shared_gradient_scaling:
            scale_shared_gradients(self.model, num_blocks=self.num_blocks)

    def configure_optimizers(self) -> dict[str, Any]:
        named = [(n, p) for n, p in self.model.named_parameters()]
        named += [(f"targets.{n}", p) for n, p in self.targets.named_parameters()]
        o = self.optimization
        groups = llrd_param_groups(named, o.lr, self.config.llrd or {}, self.num_blocks)
        if not groups:
            raise ConfigError("nothing to train: every parameter is frozen")
        warmup, total = self.schedule_steps()
        floors = [llrd_min_lr_factor(g["lr_scale"], o.min_lr_factor) for g in groups]
        return configure_optimization(
            groups, o, warmup_steps=warmup, max_steps=total, min_lr_factors=floors
        )

    def schedule_steps(self) -> tuple[int, int]:
        """(warm-up steps W, cosine end M) in optimizer steps."""
        s = self.optimization
        accum = self.config.trainer.accumulate_grad_batches
        needs_epochs = s.warmup_steps is None or s.max_steps is None
        if needs_epochs and not self.steps_per_epoch:
            raise ConfigError("the schedule is in epochs: FinetuneTask needs steps_per_epoch")
        batches = (self.steps_per_epoch or 1) * accum

        def steps(n: int | None, epochs: float | None) -> int:
            return int(n) if n is not None else epochs_to_steps(epochs or 0.0, batches, accum)

        warmup = steps(s.warmup_steps, s.warmup_epochs)
        return warmup, max(steps(s.max_steps, s.max_epochs), warmup + 1)

    # ----------------------------------------------------------------- validation
    def on_validation_epoch_start(self) -> None:
        self._val.reset()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        out = self.model_outputs(batch)  # gradient forces switch autograd on inside the model
        preds = self.physical(out, batch)
        loss = out["embedding"].new_zeros(())
        for t in self.targets.values():
            loss = loss + t.loss(out, batch).detach()
        self._val.update(preds, self.labels(batch), batch)
        self._val.add("loss/sum", loss * batch.num_graphs)
        self._val.add("loss/n", torch.tensor(float(batch.num_graphs)))

    def _reduce(self, t: Tensor) -> Tensor:
        if self.trainer.world_size > 1:
            return self.trainer.strategy.reduce(t.to(self.device), reduce_op="sum").cpu()
        return t

    def on_validation_epoch_end(self) -> None:
        metrics = self._val.compute(reduce=self._reduce)
        if "loss/n" in self._val.sums:
            metrics["loss"] = float(
                self._reduce(self._val.sums["loss/sum"]) / self._reduce(self._val.sums["loss/n"])
            )
        for name, value in metrics.items():
            self.log(f"val/{name}", value)
        value = metrics.get(self.config.monitor.metric)
        if value is None:
            return
        sign = 1.0 if self.config.monitor.mode == "min" else -1.0
        self.log(MONITOR_KEY, sign * value)
        if self.trainer.sanity_checking:  # the validation before training: step 0 of the curve
            if self.global_step == 0 and not self.history:
                self.history.append((0, float(value)))
            return
        self.history.append((int(self.global_step), float(value)))
        if self.trainer.state.fn != "fit":
            return
        scheduler = self.lr_schedulers()
        if isinstance(scheduler, WarmupCosineRLP):
            scheduler.on_validation(value)
        es = self.config.early_stopping
        if es is not None and es.min_lr is not None:
            lrs = [g["lr"] for g in self.trainer.optimizers[0].param_groups]
            if max(lrs) < es.min_lr:
                self.trainer.should_stop = True
                self.stopped_by_min_lr = True

    # ---------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[HISTORY_KEY] = {
            "history": list(self.history),
            "train_losses": list(self.train_losses),
        }
        self.add_model_payload(checkpoint)

    def add_model_payload(self, checkpoint: dict[str, Any]) -> None:
        """Make the checkpoint an openjmp model file too (`openjmp.model.checkpoint`): the
        `JMPModel` config, head specs and weights (``ema_state_dict``: the weights Lightning put
        in ``state_dict``, the EMA when it is on; ``model_state_dict``: the raw weights), and the
        statistics that turn the heads' outputs into physical units (``metadata``)."""
        from openjmp.model.checkpoint import OPENJMP_FORMAT, OPENJMP_FORMAT_VERSION

        averaged = checkpoint["state_dict"]
        raw = checkpoint.get("current_model_state", averaged)

        def strip(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
            n = len(MODEL_PREFIX)
            return {k[n:]: v for k, v in sd.items() if k.startswith(MODEL_PREFIX)}

        checkpoint["format"] = OPENJMP_FORMAT
        checkpoint["version"] = OPENJMP_FORMAT_VERSION
        checkpoint["config"] = self.model.config.replace(edge_dropout=None).to_dict()
        checkpoint["heads"] = self.model.head_specs()
        checkpoint["ema_state_dict"] = strip(averaged)
        checkpoint["model_state_dict"] = strip(raw)
        checkpoint["metadata"] = self.metadata()

    def metadata(self) -> dict[str, Any]:
        """How the heads' raw outputs become physical units (saved with the weights)."""
        targets = {}
        for name, t in self.targets.items():
            entry: dict[str, Any] = {"kind": t.kind, **self.hparams["stats"].get(name, {})}
            if t.kind == "energy_forces":
                entry["energy_scale"] = float(t.energy_scale)
                entry["gradient_forces"] = bool(t.gradient)
            targets[name] = entry
        return {
            "kind": "finetune",
            "targets": targets,
            "heads_predict": "each head's 'output' transform (openjmp.model.outputs): energy: "
            "E = sum(references[Z]) + mean + energy_scale * y eV, forces: energy_scale * y "
            "(gradient) or force_std * y (direct) eV/A; scalars: sum(references[Z]) + mean + "
            "std * y",
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get(HISTORY_KEY, {})
        self.history = [(int(s), float(v)) for s, v in state.get("history", [])]
        self.train_losses = [(int(s), float(v)) for s, v in state.get("train_losses", [])]
