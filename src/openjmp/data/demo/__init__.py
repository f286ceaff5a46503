"""Embedded default data: a reproducible multi-domain mini-JMP corpus made on the user's machine.

`make_demo(out, scale, seed)` writes seven sets, each in the native format of the dataset it
stands in for (OC20 and OC22 LMDBs, ANI-1x and Transition-1x HDF5, QM9 xyz tarball, rMD17 npz,
MatBench json), labelled with ASE's EMT (slabs, alloys) and GFN2-xTB via tblite (molecules),
plus ``manifest.json``. See :mod:`openjmp.data.demo.build`.
"""

from openjmp.data.demo.build import SETS, make_demo
from openjmp.data.demo.manifest import MANIFEST_NAME, read_manifest, verify_manifest

__all__ = ["MANIFEST_NAME", "SETS", "make_demo", "read_manifest", "verify_manifest"]
