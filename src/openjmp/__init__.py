"""openjmp: Joint Multi-domain Pre-training (JMP) for atomic property prediction.

Public API: what users may import from ``openjmp``. Everything else is internal.
"""

from __future__ import annotations

from openjmp._version import __version__
from openjmp.errors import CheckpointError, ConfigError, DataError, OpenJMPError
from openjmp.records import AtomsRecord
from openjmp.validate import validate_record

__all__ = [
    "AtomsRecord",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "OpenJMPError",
    "__version__",
    "validate_record",
]
