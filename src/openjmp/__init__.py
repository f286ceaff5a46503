"""openjmp: Joint Multi-domain Pre-training (JMP) for atomic property prediction.

Public API: what users may import from ``openjmp``. Everything else is internal.
"""

from __future__ import annotations

from openjmp._version import __version__
from openjmp.errors import CheckpointError, ConfigError, DataError, OpenJMPError
from openjmp.records import AtomsRecord
from openjmp.validate import validate_record


def __getattr__(name: str) -> object:
    """load_model, predict and JMPCalculator are imported on first use (they pull in torch)."""
    if name in ("load_model", "predict"):
        from openjmp import api

        return getattr(api, name)
    if name == "JMPCalculator":
        from openjmp.calculator import JMPCalculator

        return JMPCalculator
    raise AttributeError(f"module 'openjmp' has no attribute {name!r}")


__all__ = [
    "AtomsRecord",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "JMPCalculator",
    "OpenJMPError",
    "__version__",
    "load_model",
    "predict",
    "validate_record",
]
