"""Run a model over a benchmark: the Python API behind ``depth-anything eval``.

    from depth_anything_v2 import DepthPredictor
    from depth_anything_v2.evaluation import evaluate

    predictor = DepthPredictor.from_pretrained("vits", device="cuda")
    result = evaluate(predictor, "nyu", "/data/benchmarks")
    result["metrics"]["abs_rel"], result["metrics"]["d1"]

``model_or_predictor`` is a :class:`~depth_anything_v2.inference.predictor.DepthPredictor`, a
:class:`~depth_anything_v2.dpt.DepthAnythingV2` (wrapped in a predictor on its own device; its train/eval mode
is restored afterwards, so a training loop can validate mid-run), or any callable ``image_rgb -> (H, W) array``
together with ``kind="disparity" | "metric"``.

Distributed: when ``torch.distributed`` is initialised (e.g. under ``torchrun``), each rank evaluates the strided
shard ``indices[rank::world_size]`` and the per-image records are gathered and aggregated in dataset order, so
every rank returns numbers identical to a one-process run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .da2k import DA2K, score_image, summarize_da2k
from .datasets import BENCHMARKS, BenchmarkReader, DatasetError, EvalSettings, get_benchmark
from .metrics import ALIGNMENTS, AlignmentError, MetricAccumulator, evaluation_mask, fit_alignment, pixel_sums

__all__ = ["ModelRunner", "as_model_runner", "evaluate", "evaluate_da2k", "resolve_data_dir"]

logger = logging.getLogger(__name__)


@dataclass
class ModelRunner:
    """What evaluation needs from a model: predictions for a stream of images, and what they mean.

    Attributes:
        predict_iter: ``iterable of (key, image_rgb) -> iterator of (key, (H, W) float array)``.
        kind: ``"disparity"`` (relative model) or ``"metric"`` (metres).
        info: description recorded with the results (input size, precision, ...).
        restore: called when evaluation ends (puts a borrowed model back in train mode).
    """

    predict_iter: Callable[[Iterator[tuple[Any, np.ndarray]]], Iterator[tuple[Any, np.ndarray]]]
    kind: str
    info: dict[str, Any]
    restore: Callable[[], None] = lambda: None


def as_model_runner(
    model_or_predictor: Any, *, input_size: int | None = None, kind: str | None = None, batch_size: int = 1
) -> ModelRunner:
    """Adapt a ``DepthPredictor``, a ``DepthAnythingV2`` or a callable to a :class:`ModelRunner`.

    ``input_size``: for a model or callable-free path, the shorter side fed to the network (default 518); a
    predictor keeps its own and a different value here is an error (build the predictor with it).
    """
    obj = model_or_predictor
    if kind is not None and kind not in ("disparity", "metric"):
        raise ValueError(f"expected kind 'disparity' or 'metric', got {kind!r}")
    restore: Callable[[], None] = lambda: None  # noqa: E731
    predictor = None
    if hasattr(obj, "predict_iter") and hasattr(obj, "is_metric"):
        predictor = obj
        if input_size is not None and input_size != predictor.input_size:
            raise ValueError(
                f"the predictor was built with input_size={predictor.input_size}, but input_size={input_size} "
                "was requested; build it with the size you want to evaluate at"
            )
    elif hasattr(obj, "infer_image") and hasattr(obj, "is_metric"):
        from ..inference.predictor import DepthPredictor

        was_training = bool(getattr(obj, "training", False))
        dtype = next(obj.parameters()).dtype
        precision = {"torch.float16": "fp16", "torch.bfloat16": "bf16"}.get(str(dtype), "fp32")
        predictor = DepthPredictor(obj, input_size=input_size or 518, device=None, precision=precision)

        def restore() -> None:
            obj.train(was_training)

    if predictor is not None:
        model_kind = "metric" if predictor.is_metric else "disparity"
        if kind is not None and kind != model_kind:
            raise ValueError(f"kind={kind!r} was given, but the model predicts {model_kind}")

        def predict_iter(items: Iterator[tuple[Any, np.ndarray]]) -> Iterator[tuple[Any, np.ndarray]]:
            for key, result in predictor.predict_iter(items, batch_size=batch_size):
                yield key, result.prediction

        info = {
            "input_size": predictor.input_size,
            "precision": getattr(predictor, "precision", "fp32"),
            "device": str(predictor.device),
            "max_depth": getattr(predictor.model, "max_depth", None),
            "encoder": getattr(predictor.model, "encoder", None),
            "batch_size": batch_size,
        }
        return ModelRunner(predict_iter, model_kind, info, restore)

    if callable(obj):
        if kind is None:
            raise ValueError("a plain callable needs kind='disparity' or kind='depth' (what it returns)")

        def call_iter(items: Iterator[tuple[Any, np.ndarray]]) -> Iterator[tuple[Any, np.ndarray]]:
            for key, image in items:
                yield key, np.asarray(obj(image))

        return ModelRunner(call_iter, kind, {"callable": getattr(obj, "__name__", type(obj).__name__)})
    raise TypeError(
        f"expected a DepthPredictor, a DepthAnythingV2 model or a callable image_rgb -> depth, got {type(obj).__name__}"
    )


def resolve_data_dir(data_root: str | Path, folder: str) -> Path:
    """``<data_root>/<folder>`` when it exists, else ``data_root`` itself (pointing at the dataset directly)."""
    root = Path(data_root)
    if not root.is_dir():
        from .datasets import DatasetNotFoundError

        raise DatasetNotFoundError(f"data root {root} does not exist")
    return root / folder if (root / folder).is_dir() else root


def _dist() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gather(records: list[dict[str, Any]], world_size: int) -> list[dict[str, Any]]:
    if world_size == 1:
        return records
    from ..distributed import all_gather_objects

    return [r for part in all_gather_objects(records) for r in part]


def _progress(total: int, enabled: bool, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img", dynamic_ncols=True)


def _resize_to(pred: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if pred.shape == shape:
        return pred
    import cv2

    return cv2.resize(pred.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def _shard(n: int, limit: int | None, rank: int, world: int) -> list[int]:
    if limit is not None and limit < 0:
        raise ValueError(f"expected limit >= 0, got {limit}")
    total = n if limit is None else min(n, limit)
    return list(range(rank, total, world))


def evaluate(
    model_or_predictor: Any,
    benchmark: str | BenchmarkReader,
    data_root: str | Path | None = None,
    *,
    settings: EvalSettings | None = None,
    alignment: str | None = None,
    min_depth: float | None = None,
    max_depth: float | None = None,
    crop: str | None = None,
    input_size: int | None = None,
    kind: str | None = None,
    batch_size: int = 1,
    limit: int | None = None,
    reader_kwargs: dict[str, Any] | None = None,
    per_image: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluate a model on one benchmark and return the results dict.

    Args:
        model_or_predictor: see the module docstring.
        benchmark: a name from ``BENCHMARKS`` (or ``"da2k"``), or an opened reader (then ``data_root`` is unused).
        data_root: the folder holding the benchmark's folder (``<data_root>/nyu/...``) or the benchmark folder.
        settings: full evaluation settings; default the benchmark's. ``alignment``, ``min_depth``,
            ``max_depth``, ``crop`` override single fields.
        input_size: shorter side at inference (models and callables; a predictor uses its own).
        kind: what a plain callable returns (``"disparity"`` or ``"metric"``).
        batch_size: images per forward pass when consecutive images share a working size.
        limit: evaluate only the first ``limit`` samples of the split (before sharding).
        reader_kwargs: options for the reader (e.g. ``{"split_file": ...}``, ``{"kb_crop": False}``).
        per_image: include every image's metrics (and fitted scale/shift) in the result.
        progress: show a progress bar (rank 0 only).

    Returns:
        ``{"benchmark", "title", "settings", "dataset", "prediction_kind", "model", "metrics" (per-image mean),
        "metrics_pooled", "num_evaluated", "num_skipped", "num_failed", "failures": [{"key", "error"}], ...}``.

    Raises:
        DatasetNotFoundError: the benchmark is not where expected. AlignmentError: ``alignment="none"`` with a
        relative model. ValueError: unknown benchmark or setting.
    """
    if isinstance(benchmark, str) and benchmark == "da2k":
        return evaluate_da2k(
            model_or_predictor, data_root, input_size=input_size, kind=kind, batch_size=batch_size, limit=limit,
            reader_kwargs=reader_kwargs, per_image=per_image, progress=progress,
        )  # fmt: skip
    runner = as_model_runner(model_or_predictor, input_size=input_size, kind=kind, batch_size=batch_size)
    reader, base, name, title = _open_benchmark(benchmark, data_root, reader_kwargs)
    settings = (settings or base).replace(alignment=alignment, min_depth=min_depth, max_depth=max_depth, crop=crop)
    _check_alignment(settings, runner.kind, name)

    rank, world = _dist()
    indices = _shard(len(reader), limit, rank, world)
    started = time.perf_counter()
    records = _score_shard(runner, reader, indices, settings, per_image, progress and rank == 0, name)
    scores, per_image_rows = _aggregate(sorted(_gather(records, world), key=lambda r: r["index"]), per_image)
    result: dict[str, Any] = {
        "benchmark": name,
        "title": title,
        "settings": settings.to_dict(),
        "dataset": {**reader.describe(), "limit": limit},
        "prediction_kind": runner.kind,
        "model": runner.info,
        **scores,
        "world_size": world,
        "seconds": time.perf_counter() - started,
    }
    if per_image:
        result["per_image"] = per_image_rows
    return result


def _open_benchmark(
    benchmark: str | BenchmarkReader, data_root: str | Path | None, reader_kwargs: dict[str, Any] | None
) -> tuple[BenchmarkReader, EvalSettings, str, str]:
    """``(reader, default settings, name, title)`` of a benchmark name (opened under ``data_root``) or reader."""
    if isinstance(benchmark, str):
        spec = get_benchmark(benchmark)
        if data_root is None:
            raise ValueError(f"benchmark {benchmark!r} needs data_root")
        reader = spec.open(resolve_data_dir(data_root, spec.folder), **(reader_kwargs or {}))
        return reader, spec.settings, spec.name, spec.title
    # An opened reader of a known benchmark keeps that benchmark's defaults; others get EvalSettings().
    known = get_benchmark(benchmark.name) if benchmark.name in BENCHMARKS else None
    base = known.settings if known is not None else EvalSettings()
    return benchmark, base, benchmark.name, known.title if known is not None else benchmark.name


def _check_alignment(settings: EvalSettings, kind: str, name: str) -> None:
    """Refuse an unknown alignment, and ``"none"`` (scoring as metres) for a relative model."""
    if settings.alignment not in ALIGNMENTS:
        raise ValueError(f"expected alignment one of {ALIGNMENTS}, got {settings.alignment!r}")
    if settings.alignment == "none" and kind != "metric":
        raise AlignmentError(
            f"{name}: alignment 'none' scores predictions as metres, but the model predicts relative disparity; "
            "use a metric model or --alignment scale_shift_disparity"
        )


def _score_shard(
    runner: ModelRunner,
    reader: BenchmarkReader,
    indices: list[int],
    settings: EvalSettings,
    keep_fit: bool,
    show_progress: bool,
    name: str,
) -> list[dict[str, Any]]:
    """One record per sample of this rank's shard: its pixel sums, or why it was skipped or failed."""
    records: list[dict[str, Any]] = []
    bar = _progress(len(indices), show_progress, name)

    def samples() -> Iterator[tuple[Any, np.ndarray]]:
        for i in indices:
            try:
                sample = reader[i]
            except (DatasetError, OSError) as e:
                logger.warning("%s: skipping sample %d (%s): %s", name, i, reader.key(i), e)
                records.append({"index": i, "key": reader.key(i), "error": str(e)})
                if bar is not None:
                    bar.update(1)
                continue
            yield (i, sample), sample.image_rgb

    try:
        for (i, sample), pred in runner.predict_iter(samples()):
            records.append(_score_sample(i, sample, pred, settings, runner.kind, keep_fit))
            if bar is not None:
                bar.update(1)
    finally:
        runner.restore()
        if bar is not None:
            bar.close()
    return records


def _aggregate(records: list[dict[str, Any]], per_image: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Metrics (per-image mean, pooled) and skipped/failed keys of the records, and the per-image rows."""
    acc = MetricAccumulator()
    per_image_rows = []
    for r in records:
        if "sums" in r:
            m = acc.add(r["sums"])
            if per_image:
                per_image_rows.append({"key": r["key"], **m, **r.get("fit", {}), "num_valid": int(r["sums"]["n"])})
    failures = [{"key": r["key"], "error": r["error"]} for r in records if "error" in r]
    skipped = [r["key"] for r in records if "skipped" in r]
    scores = {
        "metrics": acc.mean(),
        "metrics_pooled": acc.pooled(),
        "num_evaluated": len(acc),
        "num_skipped": len(skipped),
        "num_failed": len(failures),
        "skipped": skipped,
        "failures": failures,
    }
    return scores, per_image_rows


def _score_sample(
    index: int, sample: Any, pred: np.ndarray, settings: EvalSettings, kind: str, keep_fit: bool
) -> dict[str, Any]:
    gt = sample.depth_m
    mask = evaluation_mask(
        gt, sample.valid, min_depth=settings.min_depth, max_depth=settings.max_depth, crop=settings.crop
    )
    if int(mask.sum()) < settings.min_valid_pixels:
        return {"index": index, "key": sample.key, "skipped": f"{int(mask.sum())} valid pixels"}
    pred_v = _resize_to(np.asarray(pred, dtype=np.float32), gt.shape)[mask]
    if not np.isfinite(pred_v).all():
        return {"index": index, "key": sample.key, "error": "the prediction has non-finite values"}
    gt_v = gt[mask]
    apply, fit = fit_alignment(
        pred_v, gt_v, alignment=settings.alignment, kind=kind,
        min_depth=settings.min_depth, max_depth=settings.max_depth,
    )  # fmt: skip
    record: dict[str, Any] = {"index": index, "key": sample.key, "sums": pixel_sums(apply(pred_v), gt_v)}
    if keep_fit:
        record["fit"] = fit
    return record


def evaluate_da2k(
    model_or_predictor: Any,
    data_root: str | Path | DA2K | None,
    *,
    input_size: int | None = None,
    kind: str | None = None,
    batch_size: int = 1,
    limit: int | None = None,
    reader_kwargs: dict[str, Any] | None = None,
    per_image: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Pair-ordering accuracy on DA-2K, overall and per scene type (see :mod:`.da2k`).

    ``data_root``: the folder holding ``da2k/annotations.json`` (or ``annotations.json`` itself), or a
    :class:`~.da2k.DA2K`. Other arguments as in :func:`evaluate`.
    """
    runner = as_model_runner(model_or_predictor, input_size=input_size, kind=kind, batch_size=batch_size)
    if isinstance(data_root, DA2K):
        reader = data_root
    else:
        if data_root is None:
            raise ValueError("benchmark 'da2k' needs data_root")
        reader = DA2K(resolve_data_dir(data_root, "da2k"), **(reader_kwargs or {}))
    rank, world = _dist()
    indices = _shard(len(reader), limit, rank, world)
    records: list[dict[str, Any]] = []
    started = time.perf_counter()
    bar = _progress(len(indices), progress and rank == 0, "da2k")

    def samples() -> Iterator[tuple[Any, np.ndarray]]:
        for i in indices:
            try:
                key, image, pairs = reader[i]
            except (DatasetError, OSError) as e:
                logger.warning("da2k: skipping %s: %s", reader.key(i), e)
                records.append({"index": i, "key": reader.key(i), "error": str(e)})
                if bar is not None:
                    bar.update(1)
                continue
            yield (i, key, pairs, image.shape[:2]), image

    try:
        for (i, key, pairs, shape), pred in runner.predict_iter(samples()):
            try:
                correct, total = score_image(_resize_to(np.asarray(pred, dtype=np.float32), shape), pairs, runner.kind)
                records.append({"index": i, "key": key, "correct": correct, "total": total})
            except DatasetError as e:
                records.append({"index": i, "key": key, "error": str(e)})
            if bar is not None:
                bar.update(1)
    finally:
        runner.restore()
        if bar is not None:
            bar.close()

    records = sorted(_gather(records, world), key=lambda r: r["index"])
    scored = [r for r in records if "error" not in r]
    failures = [{"key": r["key"], "error": r["error"]} for r in records if "error" in r]
    result = {
        "benchmark": "da2k",
        "title": "DA-2K",
        "settings": {"tie": "counts as wrong", "point_order": "[row, col]"},
        "dataset": {**reader.describe(), "limit": limit},
        "prediction_kind": runner.kind,
        "model": runner.info,
        **summarize_da2k(scored),
        "num_failed": len(failures),
        "failures": failures,
        "world_size": world,
        "seconds": time.perf_counter() - started,
    }
    if per_image:
        result["per_image"] = [{k: r[k] for k in ("key", "correct", "total")} for r in scored]
    return result
