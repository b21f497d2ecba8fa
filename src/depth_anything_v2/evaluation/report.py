"""Markdown tables laid out like the paper's, the paper's numbers, and atomic JSON output."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..io.atomic import atomic_write
from .datasets import BENCHMARKS, PAPER_BENCHMARKS

__all__ = ["PAPER_DA2K", "PAPER_TABLE2", "da2k_table", "metrics_table", "sanitize", "table2", "write_json"]

#: Depth Anything V2, Table 2 (zero-shot relative depth): benchmark -> (AbsRel, delta1) per model.
PAPER_TABLE2: dict[str, dict[str, tuple[float, float]]] = {
    "V2-S (paper)": {
        "kitti": (0.078, 0.936), "nyu": (0.053, 0.973), "sintel": (0.500, 0.718),
        "eth3d": (0.142, 0.851), "diode": (0.073, 0.942),
    },
    "V2-B (paper)": {
        "kitti": (0.078, 0.939), "nyu": (0.049, 0.976), "sintel": (0.495, 0.734),
        "eth3d": (0.137, 0.858), "diode": (0.068, 0.950),
    },
    "V2-L (paper)": {
        "kitti": (0.074, 0.946), "nyu": (0.045, 0.979), "sintel": (0.487, 0.752),
        "eth3d": (0.131, 0.865), "diode": (0.066, 0.952),
    },
}  # fmt: skip

#: DA-2K accuracy (%) from the paper.
PAPER_DA2K: dict[str, float] = {
    "Marigold (paper)": 86.8,
    "V1 (paper)": 88.5,
    "V2-S (paper)": 95.3,
    "V2-B (paper)": 97.0,
    "V2-L (paper)": 97.1,
    "V2-G (paper)": 97.4,
}

_METRIC_HEADERS = {
    "d1": "δ1 ↑", "d2": "δ2 ↑", "d3": "δ3 ↑", "abs_rel": "AbsRel ↓", "sq_rel": "SqRel ↓", "rmse": "RMSE ↓",
    "rmse_log": "RMSE-log ↓", "log10": "log10 ↓", "silog": "SiLog ↓",
}  # fmt: skip


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}"


def _title(name: str, result: Mapping[str, Any] | None = None) -> str:
    if result is not None and result.get("title"):
        return str(result["title"])
    return BENCHMARKS[name].title if name in BENCHMARKS else name


def table2(
    results: Mapping[str, Mapping[str, Any]],
    label: str = "this run",
    *,
    aggregate: str = "metrics",
    with_paper: bool = True,
) -> str:
    """AbsRel / δ1 per benchmark, the paper's Table 2 layout, with the paper's rows above this run's.

    ``results``: benchmark name -> the dict :func:`~.runner.evaluate` returned. ``aggregate``: ``"metrics"``
    (per-image mean) or ``"metrics_pooled"``.
    """
    names = [n for n in PAPER_BENCHMARKS if n in results] + [n for n in results if n not in PAPER_BENCHMARKS]
    if not names:
        return ""
    header = "| model | " + " | ".join(f"{_title(n, results[n])} (AbsRel ↓ / δ1 ↑)" for n in names) + " |"
    lines = [header, "|---|" + "---|" * len(names)]
    if with_paper and any(n in PAPER_BENCHMARKS for n in names):
        for model, row in PAPER_TABLE2.items():
            cells = [f"{row[n][0]:.3f} / {row[n][1]:.3f}" if n in row else "-" for n in names]
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
    cells = []
    for n in names:
        m = results[n].get(aggregate, {})
        cells.append(f"{_fmt(m.get('abs_rel'))} / {_fmt(m.get('d1'))}")
    lines.append(f"| **{label}** | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def metrics_table(results: Mapping[str, Mapping[str, Any]], *, aggregate: str = "metrics") -> str:
    """Every metric per benchmark, with the settings that produced it."""
    if not results:
        return ""
    keys = list(_METRIC_HEADERS)
    lines = [
        "| benchmark | images | alignment | range (m) | crop | " + " | ".join(_METRIC_HEADERS[k] for k in keys) + " |",
        "|---|---|---|---|---|" + "---|" * len(keys),
    ]
    for n, r in results.items():
        s = r.get("settings", {})
        hi = s.get("max_depth")
        rng = f"{s.get('min_depth', 0):g}-{'inf' if hi is None else f'{hi:g}'}"
        m = r.get(aggregate, {})
        lines.append(
            f"| {_title(n, r)} | {r.get('num_evaluated', 0)} | {s.get('alignment', '-')} | {rng} | "
            f"{s.get('crop', '-')} | " + " | ".join(_fmt(m.get(k)) for k in keys) + " |"
        )
    return "\n".join(lines)


def da2k_table(result: Mapping[str, Any], label: str = "this run", *, with_paper: bool = True) -> str:
    """DA-2K accuracy (%) overall and per scene type, with the paper's overall numbers."""
    scenes = list(result.get("per_scene", {}))
    lines = [
        "| model | accuracy (%) | " + " | ".join(scenes) + " |",
        "|---|---|" + "---|" * len(scenes),
    ]
    if with_paper:
        for model, acc in PAPER_DA2K.items():
            lines.append(f"| {model} | {acc:.1f} | " + " | ".join("-" for _ in scenes) + " |")
    acc = result.get("accuracy")
    per = [result["per_scene"][s]["accuracy"] for s in scenes]
    lines.append(
        f"| **{label}** | {_fmt(None if acc is None else 100 * acc, 1)} | "
        + " | ".join(_fmt(None if a is None else 100 * a, 1) for a in per)
        + " |"
    )
    return "\n".join(lines)


def sanitize(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, tuples -> lists, paths -> str."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): sanitize(v) for k, v in obj.items()}
    if isinstance(obj, Sequence) and not isinstance(obj, str | bytes):
        return [sanitize(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as JSON atomically (temporary file in the same folder, then ``os.replace``)."""
    path = Path(path)
    with atomic_write(path, "w") as fh:
        json.dump(sanitize(data), fh, indent=2, allow_nan=False)
        fh.write("\n")
    return path
