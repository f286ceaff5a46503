"""Output paths: check a destination is writable before work starts; name and clean temporaries.

* `check_writable_dir(path, what)`: the directory (or, if it does not exist yet, the nearest
  existing directory above it, where it would be created) accepts new files; otherwise a
  `DataError` naming the path and what it is for, raised before any work starts (instead of an
  `OSError` traceback after an hour of conversion or prediction).
* `temporary_path(dest)`: a hidden sibling ``.<name>.tmp-<pid>-<hex>@<host>`` to write into and
  rename over ``dest`` (atomic writes).
* `atomic_write_bytes(path, data)`: write through `temporary_path` and rename (`os.replace`),
  so a kill never leaves a half-written file under the final name.
* `clean_stale_temporaries(dest)`: remove the temporaries of ``dest`` left by processes of this
  host that no longer run (a killed ``openjmp data convert``); those of live processes, and of
  other hosts (a shared file system), are kept.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import uuid
from pathlib import Path

from openjmp.errors import DataError

__all__ = ["atomic_write_bytes", "check_writable_dir", "clean_stale_temporaries", "temporary_path"]

_HOST = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname()) or "localhost"
_TEMP = re.compile(r"\.(?:tmp|old)-(?P<pid>\d+)-[0-9a-f]{8}(?:@(?P<host>[A-Za-z0-9_.-]+))?$")


def check_writable_dir(path: str | Path, what: str = "output directory") -> Path:
    """Return ``path``; `DataError` if files cannot be created in it (see the module doc).

    A path that does not exist yet is fine when its nearest existing parent is a writable
    directory (it will be created there). Tested by creating and removing a file, so it holds
    for read-only mounts, ACLs and root alike. ``what`` names the directory in the message
    (e.g. "cache directory", "run directory").
    """
    p = Path(path)
    probe_dir = p
    while not probe_dir.exists():
        if probe_dir.parent == probe_dir:
            break
        probe_dir = probe_dir.parent
    if probe_dir.exists() and not probe_dir.is_dir():
        raise DataError(
            p, None, f"cannot create the {what}: {probe_dir} is a file, not a directory"
        )
    probe = probe_dir / f".openjmp-write-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        probe.touch(exist_ok=False)
    except OSError as exc:
        where = "it" if probe_dir == p else f"{probe_dir}, where it would be created,"
        raise DataError(
            p, None, f"the {what} is not writable: {where} refuses new files ({exc.strerror})"
        ) from None
    probe.unlink(missing_ok=True)
    return p


def temporary_path(dest: str | Path, kind: str = "tmp") -> Path:
    """A hidden sibling of ``dest`` named after this process and host (``kind``: tmp or old)."""
    dest = Path(dest)
    return dest.with_name(f".{dest.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}@{_HOST}")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory + `os.replace`."""
    path = Path(path)
    tmp = temporary_path(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def clean_stale_temporaries(dest: str | Path) -> list[Path]:
    """Remove ``.<name>.tmp-<pid>-*`` / ``.<name>.old-<pid>-*`` siblings of ``dest`` whose
    process is gone (this host only; names without a host are taken as this host's, as older
    openjmp versions wrote them). Returns what was removed."""
    dest = Path(dest)
    parent, prefix = dest.parent, f".{dest.name}."
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    for entry in parent.iterdir():
        name = entry.name
        if not name.startswith(prefix):
            continue
        m = _TEMP.match(name[len(prefix) - 1 :])
        if m is None or (m.group("host") not in (None, _HOST)) or _alive(int(m.group("pid"))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        if not entry.exists():
            removed.append(entry)
    return removed
