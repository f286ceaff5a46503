"""Lightning wiring shared by pre-training and fine-tuning (no model math here).

Modules, each one job (import from the module; nothing is re-exported):

* `sources`: ``open_source(fmt, SourceConfig, cache_dir, label)`` -> `RecordStore`, a record
  cache built once per source (fingerprinted, atomic, safe from several processes);
* `splits`: ``split_indices(SplitConfig, ids)`` -> {"train", "val", "test"} positions;
* `normalization`: ``resolve_normalization(...)`` -> `TargetNormalization` (linear references,
  energy mean/std, force std) from the config or the training part, cached as JSON;
* `graph_dataset`: `GraphDataset` (records -> `GraphSample`, edge dropout on keyed training
  items only) and `ConcatGraphDataset`;
* `loader`: `KeyedBatchSampler` (fixed-size or atom-capped batches from a temperature
  sampler, with dropout draw keys), `ResumableDataLoader` (Lightning-stateful: mid-epoch
  resume), `sharded_eval_loader` (evaluation shard per rank, no padding);
* `datamodule`: `GraphDataModule` (training and evaluation loaders over built graph datasets,
  the base of every data module) and `MultiDatasetDataModule` (pre-training's datasets from
  their config sections);
* `callbacks`: EMA (Lightning's `EMAWeightAveraging` on the training device), checkpoint
  (last + best), `AtomicCheckpointIO`, LR monitor;
* `trainer`: ``build_trainer(TrainerConfig, out_dir=..., precision=..., clipping=...,
  ema_decay=..., ...)`` -> `lightning.pytorch.Trainer`, ``model_dtype(precision)``;
* `backbone`: ``build_backbone(model_cfg, ...)`` and the pre-trained starting weights
  (`load_pretrained`), shared by pre-training and fine-tuning;
* `pretrain`: ``run_pretrain(PretrainConfig, out_dir=..., resume=..., progress=...)`` ->
  `PretrainResult` (the ``openjmp pretrain`` command and the demo's entry point);
* `finetune` (a package): ``run_finetune(FinetuneConfig, out_dir=...)`` and its modes (full,
  frozen backbone, residual references), on the same data, trainer and callbacks.

The LightningModule of pre-training is `openjmp.tasks.pretrain.PretrainTask`.
"""
