"""Evaluation: the paper's zero-shot benchmarks, metric-depth benchmarks and DA-2K.

    from depth_anything_v2.evaluation import evaluate, score_pairs, BENCHMARKS

    result = evaluate(predictor, "kitti", "/data/benchmarks")          # one benchmark -> results dict
    score_pairs([(pred, gt_depth_m, valid)], alignment="scale_shift_disparity", kind="disparity")

Modules: ``metrics`` (metrics, crops, alignment), ``datasets`` (readers + the ``BENCHMARKS`` table of default
settings), ``da2k``, ``runner`` (``evaluate``, distributed sharding), ``report`` (tables, JSON).
"""

from __future__ import annotations

from .da2k import DA2K, SCENE_TYPES
from .datasets import (
    BENCHMARKS,
    PAPER_BENCHMARKS,
    BenchmarkReader,
    BenchmarkSpec,
    DatasetError,
    DatasetNotFoundError,
    EvalSettings,
    Sample,
    get_benchmark,
)
from .metrics import (
    ALIGNMENTS,
    CROPS,
    METRIC_NAMES,
    AlignmentError,
    MetricAccumulator,
    align_prediction,
    compute_metrics,
    crop_mask,
    evaluation_mask,
    score_pairs,
)
from .runner import as_model_runner, evaluate, evaluate_da2k

__all__ = [
    "ALIGNMENTS",
    "BENCHMARKS",
    "CROPS",
    "DA2K",
    "METRIC_NAMES",
    "PAPER_BENCHMARKS",
    "SCENE_TYPES",
    "AlignmentError",
    "BenchmarkReader",
    "BenchmarkSpec",
    "DatasetError",
    "DatasetNotFoundError",
    "EvalSettings",
    "MetricAccumulator",
    "Sample",
    "align_prediction",
    "as_model_runner",
    "compute_metrics",
    "crop_mask",
    "evaluate",
    "evaluate_da2k",
    "evaluation_mask",
    "get_benchmark",
    "score_pairs",
]
