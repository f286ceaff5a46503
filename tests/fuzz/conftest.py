"""Make the fuzzer library and the file writers of tests/io importable from the fuzz tests."""

from __future__ import annotations

import sys
from pathlib import Path

for _dir in (Path(__file__).resolve().parent, Path(__file__).resolve().parents[1] / "io"):
    if str(_dir) not in sys.path:
        sys.path.insert(0, str(_dir))
