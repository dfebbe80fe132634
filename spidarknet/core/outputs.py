"""Outputs that are never half-written nor overwritten by surprise.

:func:`staged_dir` builds a folder under a temporary name beside its destination and
renames it into place only when the work completed; :func:`atomic_path` does the same
for a single file.  Both refuse an existing destination unless ``force`` is given.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from spidarknet.core.errors import OutputError

log = logging.getLogger(__name__)


def check_destination(path: str | os.PathLike, force: bool, what: str = "output") -> Path:
    """Fail early when ``path`` exists (without force) or its folder is not writable."""
    path = Path(path)
    if path.exists() and not force:
        raise OutputError(f"{what} {path} already exists; use --force to replace it or choose another name")
    parent = path.absolute().parent
    if not parent.is_dir():
        raise OutputError(f"cannot write {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"cannot write {path}: folder {parent} is not writable")
    return path


@contextlib.contextmanager
def staged_dir(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder that becomes ``path`` when the block succeeds."""
    final = check_destination(path, force, "output folder")
    stage = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.absolute().parent))
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    swap_into_place(stage, final)
    os.chmod(final, 0o755)
    log.debug("wrote the folder %s (%d files)", final, sum(len(files) for _, _, files in os.walk(final)))


def swap_into_place(stage: str | os.PathLike, final: str | os.PathLike) -> None:
    """The finished folder ``stage`` becomes ``final``; an older ``final`` (folder or file) is
    moved aside first and removed only once the new one is in place."""
    stage, final = Path(stage), Path(final)
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(stage, final)
    if old is not None:
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, force: bool = False, what: str = "output") -> Iterator[Path]:
    """Yield a temporary file name that is renamed to ``path`` when the block succeeds."""
    final = check_destination(path, force, what)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.absolute().parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.chmod(tmp, 0o644)
    os.replace(tmp, final)
    log.debug("wrote the %s %s (%d bytes)", what, final, final.stat().st_size)


def json_ready(value):
    """NaN and infinities become ``None`` (JSON has no such numbers); numpy scalars plain."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(data: dict, path: str | os.PathLike, force: bool = False, what: str = "output") -> None:
    """``data`` as strict JSON (NaN -> null), written atomically."""
    with atomic_path(path, force, what) as tmp:
        with open(tmp, "w") as handle:
            json.dump(json_ready(data), handle, indent=2, allow_nan=False)
            handle.write("\n")
