"""``depth-anything eval``: the paper's benchmarks, metric benchmarks and DA-2K in one command.

    depth-anything eval --benchmark kitti nyu sintel eth3d diode --data-root /data/benchmarks \\
        --model vitl --out results.json
    torchrun --nproc_per_node 8 -m depth_anything_v2.cli eval --benchmark da2k --data-root /data --model vits

Exit codes: 0 all samples evaluated, 1 some samples failed (reported, skipped; the results are still written),
2 usage error (unknown benchmark, missing data, bad weights), 3 the model is neither cached nor downloadable.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import logging
import platform
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import EXIT_FAILURES, EXIT_OK, UsageError
from .common import add_model_arguments, load_predictor, model_source

if TYPE_CHECKING:
    from ..distributed import DistInfo

logger = logging.getLogger(__name__)

_SPLIT_FILE_READERS = ("kitti", "hypersim", "vkitti2")


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..evaluation.datasets import BENCHMARKS
    from ..evaluation.metrics import ALIGNMENTS, CROPS

    names = [*BENCHMARKS, "da2k"]
    p = subparsers.add_parser(
        "eval",
        help="evaluate a model on depth benchmarks (KITTI, NYU-D, Sintel, ETH3D, DIODE, Hypersim, VKITTI2, DA-2K)",
        description=(
            "Evaluate on benchmarks in their published layouts under --data-root/<name>/. Relative models are "
            "aligned to the ground truth by least squares in disparity space (the paper's protocol); metric "
            "models are scored as metres on hypersim/vkitti2 (or anywhere with --alignment none). Writes every "
            "setting that affects the numbers to --out and prints tables laid out like the paper's. Under "
            "torchrun each process evaluates a strided shard; the numbers equal a one-process run."
        ),
    )
    p.add_argument("--benchmark", nargs="+", required=True, metavar="NAME", help=f"one or more of {names}")
    p.add_argument("--data-root", required=True, type=Path, help="folder holding <benchmark>/ folders")
    add_model_arguments(p, required=True, default_model=None)
    p.add_argument("--batch-size", type=int, default=1, help="images per forward pass (same working size; default 1)")
    p.add_argument("--alignment", choices=ALIGNMENTS, default=None, help="override the benchmark's alignment")
    p.add_argument("--min-eval-depth", type=float, default=None, help="override the benchmark's minimum depth")
    p.add_argument("--max-eval-depth", type=float, default=None, help="override the benchmark's depth cap")
    p.add_argument("--crop", choices=CROPS, default=None, help="override the benchmark's evaluation crop")
    p.add_argument("--split-file", type=Path, default=None, help=f"split list for {', '.join(_SPLIT_FILE_READERS)}")
    p.add_argument("--no-kb-crop", action="store_true", help="KITTI: keep the full frame (no 352x1216 crop)")
    p.add_argument("--limit", type=int, default=None, help="only the first N samples of each benchmark")
    p.add_argument("--out", type=Path, default=None, help="results JSON (written after each benchmark)")
    p.add_argument("--per-image", action="store_true", help="include per-image metrics in the JSON")
    p.add_argument(
        "--aggregate",
        choices=["per_image", "pooled"],
        default="per_image",
        help="what the printed tables show (default per_image)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, or of a directory's files (sorted relative names and contents)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if path.is_dir():
            h.update(f.relative_to(path).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _reader_kwargs(name: str, args: argparse.Namespace) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if args.split_file is not None and name in _SPLIT_FILE_READERS:
        kwargs["split_file"] = args.split_file
    if name == "kitti" and args.no_kb_crop:
        kwargs["kb_crop"] = False
    return kwargs


def run(args: argparse.Namespace) -> int:
    from ..evaluation.da2k import DA2K
    from ..evaluation.datasets import BENCHMARKS, DatasetNotFoundError
    from ..evaluation.runner import resolve_data_dir

    names = list(dict.fromkeys(args.benchmark))
    unknown = [n for n in names if n not in BENCHMARKS and n != "da2k"]
    if unknown:
        raise UsageError(f"unknown benchmark {', '.join(map(repr, unknown))}; expected one of {[*BENCHMARKS, 'da2k']}")
    if not args.data_root.is_dir():
        raise UsageError(f"--data-root {args.data_root} does not exist or is not a folder")
    if args.limit is not None and args.limit < 0:
        raise UsageError(f"--limit must be >= 0, got {args.limit}")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.split_file is not None and not any(n in _SPLIT_FILE_READERS for n in names):
        raise UsageError(f"--split-file applies to {', '.join(_SPLIT_FILE_READERS)} only")

    # Open every reader before loading the model: a missing dataset fails in a second, not after an hour.
    for n in names:
        folder = "da2k" if n == "da2k" else BENCHMARKS[n].folder
        try:
            if n == "da2k":
                DA2K(resolve_data_dir(args.data_root, folder))
            else:
                BENCHMARKS[n].open(resolve_data_dir(args.data_root, folder), **_reader_kwargs(n, args))
        except (DatasetNotFoundError, ValueError, ImportError) as e:
            where = "" if (args.data_root / folder).is_dir() else f"expected the dataset in {args.data_root / folder}: "
            raise UsageError(f"{n}: {where}{e}") from None

    from ..distributed import cleanup_distributed, init_distributed

    try:  # under torchrun: join the process group (NCCL on GPUs, Gloo on CPUs); alone: no group
        info = init_distributed(args.device)
    except ValueError as e:
        raise UsageError(str(e)) from None
    try:
        return _evaluate_all(args, names, info)
    finally:  # a process that leaves without destroying its group can abort at exit (Gloo threads)
        cleanup_distributed(info)


def _evaluate_all(args: argparse.Namespace, names: list[str], info: DistInfo) -> int:
    from ..evaluation import report
    from ..evaluation.metrics import AlignmentError
    from ..evaluation.runner import evaluate

    source = model_source(args)
    rank, world = info.rank, info.world_size
    # Under torchrun each process takes its own GPU (cuda:LOCAL_RANK); alone, the usual device choice.
    predictor = load_predictor(args, device=str(info.device) if info.is_distributed else args.device)

    model_info: dict[str, Any] = {
        "source": str(source),
        "encoder": predictor.model.encoder,
        "max_depth": predictor.model.max_depth,
        "prediction": "metric depth (m)" if predictor.is_metric else "relative disparity",
        "input_size": args.input_size,
        "precision": predictor.precision,
        "device": str(predictor.device),
    }
    if rank == 0:
        weights_path = args.weights
        if args.model is not None:
            from ..weights.loading import resolve_published

            weights_path = resolve_published(args.model)
        model_info["weights_path"] = str(weights_path)
        model_info["weights_sha256"] = sha256_of(Path(weights_path))

    import torch

    from .. import __version__

    document: dict[str, Any] = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "arguments": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"},
        "model": model_info,
        "world_size": world,
        "environment": {
            "depth_anything_v2": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "benchmarks": {},
    }
    failed = 0
    for n in names:
        try:
            result = evaluate(
                predictor, n, args.data_root,
                alignment=args.alignment, min_depth=args.min_eval_depth, max_depth=args.max_eval_depth,
                crop=args.crop, batch_size=args.batch_size, limit=args.limit, reader_kwargs=_reader_kwargs(n, args),
                per_image=args.per_image, progress=not args.no_progress and rank == 0,
            )  # fmt: skip
        except AlignmentError as e:
            raise UsageError(str(e)) from None
        failed += result["num_failed"]
        document["benchmarks"][n] = result
        if rank == 0:
            for f in result["failures"]:
                print(f"depth-anything eval: {n}: failed {f['key']}: {f['error']}", file=sys.stderr)
            if args.out is not None:
                report.write_json(args.out, document)

    if rank == 0:
        _print_tables(document, args, source)
        if failed:
            print(f"depth-anything eval: {failed} sample(s) failed and were skipped (listed above)", file=sys.stderr)
    return EXIT_FAILURES if failed else EXIT_OK


def _print_tables(document: dict[str, Any], args: argparse.Namespace, source: Any) -> None:
    from ..evaluation import report

    label = Path(str(source)).name
    aggregate = "metrics" if args.aggregate == "per_image" else "metrics_pooled"
    depth_results = {n: r for n, r in document["benchmarks"].items() if n != "da2k"}
    out = []
    if depth_results:
        out += [
            f"## Zero-shot depth (AbsRel / δ1, {args.aggregate.replace('_', '-')} mean)",
            "",
            report.table2(depth_results, label, aggregate=aggregate),
            "",
            "## All metrics",
            "",
            report.metrics_table(depth_results, aggregate=aggregate),
            "",
        ]
    if "da2k" in document["benchmarks"]:
        out += ["## DA-2K", "", report.da2k_table(document["benchmarks"]["da2k"], label), ""]
    if args.out is not None:
        out.append(f"results: {args.out}")
    print("\n".join(out))


if __name__ == "__main__":  # torchrun ... -m depth_anything_v2.cli.eval --benchmark ...
    from . import main

    sys.exit(main(["eval", *sys.argv[1:]]))
