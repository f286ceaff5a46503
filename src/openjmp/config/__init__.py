"""Run configurations for ``openjmp pretrain`` and ``openjmp finetune``: pydantic models
(unknown keys rejected), YAML loading with ``--set`` overrides, and the named presets.

    from openjmp.config import load_config
    cfg = load_config("rmd17-aspirin", "finetune", ["data.train.path=rmd17_aspirin.npz"])
"""

from openjmp.config.finetune import FinetuneConfig
from openjmp.config.load import (
    dump_config,
    load_config,
    load_finetune_config,
    load_pretrain_config,
)
from openjmp.config.presets import preset_names
from openjmp.config.pretrain import PretrainConfig

__all__ = [
    "FinetuneConfig",
    "PretrainConfig",
    "dump_config",
    "load_config",
    "load_finetune_config",
    "load_pretrain_config",
    "preset_names",
]
