"""DA-2K: relative depth between annotated point pairs (the paper's own benchmark).

``annotations.json`` maps an image path (relative to the folder holding the file) to a list of pairs::

    {"indoor/0001.jpg": [{"point1": [row, col], "point2": [row, col], "closer_point": "point1"}, ...], ...}

A pair is correct when the model puts the annotated closer point closer: higher value for a disparity model,
lower value for a depth model. Equal values count as wrong (the model did not decide). The scene type is the
image path's first folder (a leading ``images/`` is skipped); the paper's eight are :data:`SCENE_TYPES`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .datasets import DatasetError, DatasetNotFoundError, read_rgb

__all__ = ["DA2K", "SCENE_TYPES", "DA2KPair", "pair_correct", "scene_type_of", "summarize_da2k"]

SCENE_TYPES: tuple[str, ...] = (
    "indoor",
    "outdoor",
    "non_real",
    "transparent_reflective",
    "adverse_style",
    "aerial",
    "underwater",
    "object",
)

LAYOUT = (
    "  da2k/annotations.json\n"
    "  da2k/<scene_type>/<image>.jpg       (paths as the keys of annotations.json; "
    "https://huggingface.co/datasets/depth-anything/DA-2K)"
)


@dataclass(frozen=True)
class DA2KPair:
    """One annotated pair; points are ``(row, col)`` pixel coordinates of the original image."""

    point1: tuple[int, int]
    point2: tuple[int, int]
    closer: str  # "point1" or "point2"


def scene_type_of(image_path: str) -> str:
    """The scene type of an annotation key: its first folder, skipping a leading ``images/``."""
    parts = [p for p in Path(image_path).parts if p not in ("/", "")]
    if len(parts) > 1 and parts[0] == "images":
        parts = parts[1:]
    return parts[0] if len(parts) > 1 else "unknown"


def _parse_point(value: Any, where: str) -> tuple[int, int]:
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        raise DatasetError(f"{where}: expected a point [row, col], got {value!r}")
    return round(value[0]), round(value[1])


def _parse_pairs(entries: Any, where: str) -> list[DA2KPair]:
    if isinstance(entries, dict):
        entries = [entries]
    if not isinstance(entries, list):
        raise DatasetError(f"{where}: expected a list of pairs, got {type(entries).__name__}")
    pairs = []
    for i, e in enumerate(entries):
        w = f"{where}[{i}]"
        if not isinstance(e, dict) or not {"point1", "point2", "closer_point"} <= e.keys():
            raise DatasetError(f"{w}: expected keys point1, point2, closer_point, got {e!r}")
        if e["closer_point"] not in ("point1", "point2"):
            raise DatasetError(f"{w}: expected closer_point 'point1' or 'point2', got {e['closer_point']!r}")
        pairs.append(DA2KPair(_parse_point(e["point1"], w), _parse_point(e["point2"], w), e["closer_point"]))
    return pairs


class DA2K:
    """The DA-2K annotations and images: a lazy sequence of ``(key, image_rgb, pairs)``.

    Args:
        root: the folder holding ``annotations.json`` (image paths are relative to it).
        annotations: file name or path of the annotation file.
    """

    name = "da2k"
    layout = LAYOUT

    def __init__(self, root: str | Path, *, annotations: str | Path = "annotations.json") -> None:
        self.root = Path(root)
        ann_path = Path(annotations)
        if not ann_path.is_absolute():
            ann_path = self.root / ann_path
        if not ann_path.is_file():
            raise DatasetNotFoundError(f"da2k: {ann_path} not found; expected layout:\n{LAYOUT}")
        try:
            data = json.loads(ann_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DatasetNotFoundError(f"da2k: {ann_path} is not valid JSON ({e})") from None
        if not isinstance(data, dict):
            raise DatasetNotFoundError(
                f"da2k: {ann_path}: expected an object image -> pairs, got {type(data).__name__}"
            )
        self.annotations_path = ann_path
        # Sorted for a stable order (sharding, reports); pairs are parsed lazily per image so that one bad entry
        # fails that image only.
        self._items: list[tuple[str, Any]] = sorted(data.items())

    def __len__(self) -> int:
        return len(self._items)

    def key(self, index: int) -> str:
        return self._items[index][0]

    def num_pairs(self) -> int:
        return sum(len(v) if isinstance(v, list) else 1 for _, v in self._items)

    def __getitem__(self, index: int) -> tuple[str, np.ndarray, list[DA2KPair]]:
        key, entries = self._items[index]
        pairs = _parse_pairs(entries, f"{self.annotations_path.name}[{key!r}]")
        image = read_rgb(self.root / key)
        return key, image, pairs

    def describe(self) -> dict[str, Any]:
        return {
            "root": str(self.root.resolve()),
            "annotations": str(self.annotations_path),
            "num_images": len(self),
            "num_pairs": self.num_pairs(),
        }


def pair_correct(prediction: np.ndarray, pair: DA2KPair, kind: str) -> bool:
    """Whether ``prediction`` (``(H, W)`` at the image's resolution) orders ``pair`` as annotated.

    ``kind``: ``"disparity"`` (higher = closer) or ``"metric"`` (metres: lower = closer). Ties are wrong.
    """
    if kind not in ("disparity", "metric"):
        raise ValueError(f"expected kind 'disparity' or 'metric', got {kind!r}")
    h, w = prediction.shape
    for r, c in (pair.point1, pair.point2):
        if not (0 <= r < h and 0 <= c < w):
            raise DatasetError(f"point ({r}, {c}) lies outside the {h} x {w} image")
    v1 = float(prediction[pair.point1])
    v2 = float(prediction[pair.point2])
    closer, farther = (v1, v2) if pair.closer == "point1" else (v2, v1)
    return closer > farther if kind == "disparity" else closer < farther


def score_image(prediction: np.ndarray, pairs: Iterable[DA2KPair], kind: str) -> tuple[int, int]:
    """``(correct, total)`` over one image's pairs."""
    results = [pair_correct(prediction, p, kind) for p in pairs]
    return sum(results), len(results)


def summarize_da2k(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Aggregate per-image records ``{"key", "correct", "total"}`` into overall and per-scene accuracy."""
    correct = total = images = 0
    per_scene: dict[str, list[int]] = {}
    for r in records:
        images += 1
        correct += r["correct"]
        total += r["total"]
        s = per_scene.setdefault(scene_type_of(r["key"]), [0, 0])
        s[0] += r["correct"]
        s[1] += r["total"]
    ordered = [t for t in SCENE_TYPES if t in per_scene] + sorted(t for t in per_scene if t not in SCENE_TYPES)
    return {
        "accuracy": correct / total if total else math.nan,
        "num_pairs": total,
        "num_correct": correct,
        "num_images": images,
        "per_scene": {
            t: {"accuracy": per_scene[t][0] / per_scene[t][1] if per_scene[t][1] else math.nan,
                "num_pairs": per_scene[t][1]}
            for t in ordered
        },
    }  # fmt: skip
