"""Staged writing of exported files: everything is written into a hidden folder next to the output, checked,
and only then moved to its final name, so a failed export or validation leaves nothing under that name."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def staged(out: str | os.PathLike) -> Iterator[Path]:
    """Yield a path with ``out``'s name inside a temporary folder beside it; on success move every file written
    there (``model.onnx``, or ``model.xml`` + ``model.bin``, sidecars) next to ``out`` with ``os.replace``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        yield tmp / out.name
        for f in sorted(tmp.iterdir()):
            os.chmod(f, 0o666 & ~_umask())  # mkdtemp's files would otherwise keep private modes
            os.replace(f, out.parent / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
