"""An export checks itself before it reports success: it runs the written file and compares with PyTorch."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from .metadata import ExportError

logger = logging.getLogger(__name__)

#: Largest allowed |exported - torch| / (output range) per stored precision. fp32 is exact up to rounding;
#: fp16 weights and activations cost about 1e-3 here; int8 is judged by its accuracy report instead.
TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2, "int8": None}
#: Two sizes for a dynamic export: one keeps a 37-token axis (518), where runtimes are most likely to take a
#: shortcut the reference does not, and one non-square size away from it.
VALIDATION_SIZES = ((518, 392), (266, 364))


def max_relative_difference(out: torch.Tensor, ref: torch.Tensor) -> float:
    """``max |out - ref| / (ref.max() - ref.min())`` (``inf`` for non-finite outputs)."""
    if not torch.isfinite(out).all():
        return float("inf")
    span = (ref.max() - ref.min()).item() or 1.0
    return (out - ref).abs().max().item() / span


def validate_export(model, path: Path, *, input_size=None, precision: str = "fp32", runtime: str = "onnxruntime"):
    """Run ``path`` with ``runtime`` at two sizes (the fixed size for a fixed-size export) and compare with
    ``model`` in fp32. Returns the worst relative difference; raises :class:`ExportError` above
    :data:`TOLERANCE` (int8: only non-finite outputs fail)."""
    from ..inference.backends import open_backend
    from .onnx import _cpu_fp32

    model = _cpu_fp32(model)
    backend = open_backend(path, runtime)
    tol = TOLERANCE[precision]
    sizes = (tuple(input_size),) if input_size else VALIDATION_SIZES
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for h, w in sizes:
        x = torch.randn(1, 3, h, w, generator=generator)
        with torch.inference_mode():
            ref = model(x).float()
        diff = max_relative_difference(backend(x), ref)
        logger.info("%s on %s at %dx%d: max difference %.2e of the output range", path.name, runtime, h, w, diff)
        if diff == float("inf") or (tol is not None and diff > tol):
            raise ExportError(
                f"the exported model does not match PyTorch in {runtime} at {h}x{w}: max difference {diff:.2e} of "
                f"the output range, expected <= {tol if tol is not None else 'finite outputs'}; nothing was written"
            )
        worst = max(worst, diff)
    return worst
