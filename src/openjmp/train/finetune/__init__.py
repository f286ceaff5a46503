"""Fine-tuning runs: every adaptation of a pre-trained model, one package.

Modules (import from the module; nothing is re-exported):

* `run`: ``run_finetune(FinetuneConfig, out_dir=...)``, the entry point: picks the mode from
  ``config.adaptation``;
* `full`: end-to-end training (`run_full`), `build_task`, `load_task` (a fine-tuning
  checkpoint back as a `FinetuneTask`), `predict_dataset` (physical predictions and metrics);
* `frozen`: frozen backbone + ridge / MLP on pooled features (`run_frozen`), written as a model
  file like any other;
* `residual`: a head started from the checkpoint's with references refitted to its residual;
* `data`: splits and the data module of a fine-tuning run;
* `callbacks`: early stopping on the monitored metric and why a run stopped (the EMA and the
  checkpoints are the shared ones of `openjmp.train.callbacks`);
* `result`: `FinetuneResult`.

The LightningModule is `openjmp.tasks.finetune.FinetuneTask`; the backbone and its starting
weights come from `openjmp.train.backbone`, shared with pre-training.
"""
