"""The restricted unpickler: data comes back, code never runs.

Classes of the authors' package become inert records holding their state (also dict and list
subclasses); functions that could run code (os.system, exec, builtins.eval, ...) are refused
before they are called.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from openjmp.errors import CheckpointError
from openjmp.io.safe_pickle import PickledObject, UnsafePickleError, restricted_pickle
from openjmp.model.checkpoint import load_checkpoint


class Evil:
    def __reduce__(self):  # noqa: ANN204
        return (os.system, ("echo pwned > /dev/null",))


def test_plain_data_and_numpy_round_trip() -> None:
    data = {
        "a": [1, 2.5, None, (True, "x")],
        "b": {1, 2},
        "n": np.float64(1.5),
        "arr": np.arange(4),
    }
    for proto in (2, 4):
        back = restricted_pickle.loads(pickle.dumps(data, protocol=proto))
        assert back["a"] == data["a"] and back["b"] == {1, 2} and back["n"] == 1.5
        np.testing.assert_array_equal(back["arr"], np.arange(4))


@pytest.mark.parametrize("payload", [Evil(), eval, getattr])
def test_code_is_refused(payload: object) -> None:
    with pytest.raises(UnsafePickleError, match="allow-list"):
        restricted_pickle.loads(pickle.dumps(payload, protocol=2))


def test_authors_classes_become_inert_records() -> None:
    # a pickle stream naming classes of a package that is not installed
    stream = (
        b"\x80\x02cjmp.models.gemnet.config\nBackboneConfig\nq\x00)\x81q\x01}q\x02X\x08\x00\x00\x00"
        b"__dict__q\x03}q\x04X\n\x00\x00\x00num_blocksq\x05K\x04ssb."
    )
    obj = restricted_pickle.loads(stream)
    assert (
        isinstance(obj, PickledObject) and obj.cls_path == "jmp.models.gemnet.config.BackboneConfig"
    )
    assert obj.fields() == {"num_blocks": 4}


def test_torch_file_with_code_is_a_checkpoint_error(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    buf = io.BytesIO()
    torch.save({"state_dict": {}, "x": Evil()}, buf)
    path.write_bytes(buf.getvalue())
    with pytest.raises(CheckpointError, match=r"evil\.pt.*posix\.system|evil\.pt.*os\.system"):
        load_checkpoint(path)
