"""Training checkpoints: atomic files, RNG state, finding the newest one, pruning.

A training checkpoint is a ``torch.save`` dict that loads with ``torch.load(..., weights_only=True)`` (only
tensors and plain containers) and directly with :func:`depth_anything_v2.load_model` (the model's state dict is
under ``"model"``, unprefixed):

=================  =====================================================================================
``format``         :data:`CHECKPOINT_FORMAT`
``model``          the model's state dict (reference key names: ``pretrained.*``, ``depth_head.*``)
``encoder``        the variant name; ``max_depth``: metres for metric models, ``None`` for relative ones
``stage``          ``teacher`` / ``student`` / ``metric``
``step``           optimiser steps done; ``micro_batches``: micro-batches consumed per rank (data position)
``optimizer``      optimiser state; ``scheduler``: LR scheduler state; ``scaler``: fp16 gradient scaler state
``ranks``          one entry per rank: ``rng`` (``{"torch", "cuda", "numpy", "python"}`` generator states),
                   ``micro_batches``, ``num_workers`` and, for streamed shards, ``cursors``: each DataLoader
                   worker's stream position (epoch, shard, byte offset, shuffle-buffer references, RNG state;
                   :class:`~depth_anything_v2.training.data.ShardCursor`), so resuming seeks instead of replaying
``world_size``     ranks that wrote it (the RNG list's length)
``config``         the resolved configuration (plain data)
``best``           ``{"metric", "value", "step"}`` of the best validation so far, or ``None``
``val``            the last validation result, or ``None``
=================  =====================================================================================

``best.pt`` and ``final.pt`` are *slim* checkpoints (no optimiser, scheduler or RNG state): the weights plus
what is needed to use them. Files are written to a temporary name in the same folder and renamed into place, so
a killed run never leaves a half checkpoint under a final name.
"""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io import atomic as io_atomic
from ..weights.checkpoints import CheckpointError

log = logging.getLogger(__name__)

__all__ = [
    "CHECKPOINT_FORMAT",
    "atomic_torch_save",
    "atomic_write_text",
    "checkpoint_path",
    "get_rng_state",
    "latest_checkpoint",
    "list_checkpoints",
    "load_training_checkpoint",
    "prune_checkpoints",
    "set_rng_state",
    "slim_checkpoint",
]

CHECKPOINT_FORMAT = "depth_anything_v2.training/1"
_STEP_FILE = re.compile(r"^step_(\d+)\.pt$")
_SLIM_KEYS = ("format", "model", "encoder", "max_depth", "stage", "step", "config", "best", "val")


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (temporary file in the same folder, fsync, rename)."""
    return io_atomic.atomic_write_text(path, text, fsync=True)


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj, path)``, atomically."""
    with io_atomic.atomic_write(path, fsync=True) as fh:
        torch.save(obj, fh)
    return Path(path)


# ------------------------------------------------------------------------------------------------ RNG
def get_rng_state() -> dict[str, Any]:
    """This process's generator states, as tensors and plain values (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": _py_state_to_plain(random.getstate()),
        "cuda": None,
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _py_state_to_plain(state: tuple) -> list:
    version, internal, gauss = state
    return [int(version), [int(x) for x in internal], gauss]


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned."""
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["gauss"],
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# ----------------------------------------------------------------------------------------------- files
def checkpoint_path(directory: str | Path, step: int) -> Path:
    """``directory/step_00001234.pt``."""
    return Path(directory) / f"step_{step:08d}.pt"


def list_checkpoints(directory: str | Path) -> list[tuple[int, Path]]:
    """Complete step checkpoints in ``directory``, oldest first (temporary files are never listed)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for p in directory.iterdir():
        m = _STEP_FILE.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The newest step checkpoint in ``directory``, or ``None``."""
    found = list_checkpoints(directory)
    return found[-1][1] if found else None


def prune_checkpoints(directory: str | Path, keep_last: int) -> list[Path]:
    """Delete all but the ``keep_last`` newest step checkpoints; returns the deleted paths."""
    found = list_checkpoints(directory)
    removed = []
    for _, p in found[: max(0, len(found) - keep_last)]:
        p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def load_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint (``weights_only=True``) and check its format; ``CheckpointError`` otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and runtime errors all mean "not a usable checkpoint"
        raise CheckpointError(f"{path}: not a readable training checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(
            f"{path}: expected a training checkpoint of format {CHECKPOINT_FORMAT!r} (written by "
            f"'depth-anything train'), got {found!r}; use model.init to start from plain weights"
        )
    return ckpt


def slim_checkpoint(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The weights and metadata of a checkpoint, without optimiser / scheduler / RNG state."""
    return {k: ckpt[k] for k in _SLIM_KEYS if k in ckpt}
