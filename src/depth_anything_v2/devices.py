"""The one device resolver and the one precision table, for inference, training, evaluation and the CLI."""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)

#: Precision names accepted everywhere (``--precision``, ``DepthPredictor(precision=...)``, training's ``amp``).
PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


_warned_cpu_precisions: set[str] = set()


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"auto"`` -> ``"fp16"`` on CUDA and MPS, ``"fp32"`` on the CPU; anything else as given (checked).

    fp16/bf16 on a CPU without native half-precision kernels is several times *slower* than fp32 (vits at
    266x266 on this project's CPU, ``benchmarks/bench_cpu_precision.py``: fp16 4.4-5.5x, bf16 5.8-6.3x the fp32
    time), so asking for it there logs a warning, once per precision.
    """
    if precision == "auto":
        return "fp32" if device.type == "cpu" else "fp16"
    if precision not in PRECISIONS:
        raise ValueError(f"expected precision 'auto' or one of {sorted(PRECISIONS)}, got {precision!r}")
    if device.type == "cpu" and precision != "fp32" and precision not in _warned_cpu_precisions:
        _warned_cpu_precisions.add(precision)
        logger.warning(
            "precision %s on the CPU is usually several times slower than fp32 (no native %s kernels on most "
            "CPUs); use fp32 there, or precision 'auto' (fp16 on a GPU, fp32 on the CPU)",
            precision,
            precision,
        )
    return precision


def precision_dtype(name: str) -> torch.dtype:
    """``"fp16"`` -> ``torch.float16``; a clear ``ValueError`` for an unknown name."""
    try:
        return PRECISIONS[name]
    except KeyError:
        raise ValueError(f"expected precision one of {sorted(PRECISIONS)}, got {name!r}") from None


def resolve_device(device: str | torch.device | None, local_rank: int | None = None) -> torch.device:
    """``"auto"`` / ``None`` -> CUDA, then MPS, then CPU; an explicit device is checked to exist here.

    Under torchrun pass ``local_rank``: a bare ``cuda`` (or ``auto`` on a CUDA machine) becomes
    ``cuda:LOCAL_RANK`` (modulo the device count) and is made the current CUDA device.
    """
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            device = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"expected device auto, cpu, cuda, cuda:N or mps, got {device!r}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} requested, but CUDA is not available here")
        if local_rank is not None:
            if dev.index is None:
                dev = torch.device("cuda", local_rank % torch.cuda.device_count())
            torch.cuda.set_device(dev)
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device {str(device)!r} requested, but MPS is not available here")
    elif dev.type != "cpu":
        raise ValueError(f"expected device auto, cpu, cuda, cuda:N or mps, got {str(device)!r}")
    return dev
