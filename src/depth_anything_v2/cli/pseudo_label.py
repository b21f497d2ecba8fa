"""``depth-anything pseudo-label``: a teacher's disparity for unlabeled images, into resumable tar shards.

    depth-anything pseudo-label --teacher runs/teacher/final.pt --input unlabeled/ --out pseudo/
    torchrun --nproc_per_node 8 -m depth_anything_v2.cli.pseudo_label --teacher T --input "raw/{000000..000999}.tar" --out pseudo/
    torchrun ... --input-format lists --input "lists/part-{000..099}.txt" --out pseudo/

Exit codes: 0 all inputs labelled, 1 some inputs could not be read (listed; the rest is written), 2 usage error,
3 the teacher is a published model that is neither cached nor downloadable.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import EXIT_FAILURES, EXIT_OK, ModelUnavailable, UsageError

logger = logging.getLogger(__name__)

EPILOG = """\
inputs:
  images: folders (recursive), files, quoted globs, .txt lists; sorted, then chunked: shard i holds the
  inputs i*N .. (i+1)*N-1 (N = --shard-size). Every rank lists every input: up to a few million images.
  lists (--input-format lists): an image list split into parts ("lists/part-{000..099}.txt", a glob or a
  folder of .txt parts; one path per line, relative to the part's folder). Part p is streamed and cut into
  OUT/pseudo-<p>-<j>.tar of N lines; a rank holds one shard's lines at a time (tens of millions of images).
  shards: existing tar shards of unlabeled images (lists, globs, brace ranges like
  "raw/{000000..000099}.tar"), streamed; output shard i labels input shard i.

outputs:
  OUT/pseudo-<i>.tar (WebDataset layout: <key>.<jpg|png|...> the image's own bytes, <key>.disparity.png
  16-bit disparity over the sample's range, max abs error range/131068, <key>.json quantisation + source),
  OUT/pseudo-<i>.json (failed inputs of that shard; for list parts the digest of its lines),
  OUT/pseudo_label_manifest.json (the plan). Each rank prints its throughput (images/s).

resuming:
  rerun the same command: finished shards are skipped, a killed shard is redone from scratch (it was never
  renamed into place), so every input ends up in exactly one shard. A list part whose lines changed under
  a finished shard is refused.

distributed:
  torchrun --nproc_per_node 8 -m depth_anything_v2.cli.pseudo_label ... (rank r labels the image chunks,
  input shards or list parts i with i % 8 == r on cuda:LOCAL_RANK, with its own progress bar); several
  nodes: torchrun --nnodes M ... or any launcher that sets RANK/WORLD_SIZE.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "pseudo-label",
        help="label unlabeled images with a teacher into resumable tar shards",
        description="Run a relative-depth teacher over unlabeled images and write pseudo labels into tar shards.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--teacher", required=True, help="published model name or weights path (relative model)")
    p.add_argument("--encoder", help="encoder of --teacher (checked; inferred when omitted)")
    p.add_argument(
        "--input", nargs="+", required=True, metavar="INPUT", help="image folders/files/globs/lists, or shards"
    )
    p.add_argument("--input-format", choices=["auto", "images", "lists", "shards"], default="auto",
                   help="auto: shards when every INPUT ends in .tar, else images")  # fmt: skip
    p.add_argument("--out", required=True, type=Path, help="output folder for the shards")
    p.add_argument("--shard-size", type=int, default=1000, help="images per output shard (image and list inputs)")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    p.add_argument("--input-size", type=int, default=518, help="shorter side the teacher sees")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda (cuda:LOCAL_RANK under torchrun), mps")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16", "auto"])
    p.add_argument("--encoding", default="png16", choices=["png16", "f16"], help="disparity storage")
    p.add_argument("--max-shards", type=int, help="stop after writing this many shards (rerun to continue)")
    p.add_argument("--workers", type=int, default=4, help="image reading threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..devices import resolve_device
    from ..distributed import env_rank
    from ..inference.predictor import DepthPredictor
    from ..training.pseudo_label import PseudoLabelError, pseudo_label
    from ..weights.checkpoints import CheckpointError
    from ..weights.loading import ModelUnavailableError

    if args.shard_size < 1 or args.batch_size < 1:
        raise UsageError(f"expected --shard-size and --batch-size >= 1, got {args.shard_size} and {args.batch_size}")
    if args.max_shards is not None and args.max_shards < 0:
        raise UsageError(f"expected --max-shards >= 0, got {args.max_shards}")
    try:
        rank, world, local = env_rank()
        device = resolve_device(args.device, local)
        predictor = DepthPredictor.from_pretrained(
            args.teacher, encoder=args.encoder, device=device, precision=args.precision, input_size=args.input_size
        )
    except ModelUnavailableError as e:
        raise ModelUnavailable(str(e)) from None
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        raise UsageError(str(e)) from None
    try:
        report = pseudo_label(
            predictor,
            list(args.input),
            args.out,
            shard_size=args.shard_size,
            batch_size=args.batch_size,
            encoding=args.encoding,
            input_kind=args.input_format,
            teacher=str(args.teacher),
            rank=rank,
            world_size=world,
            max_shards=args.max_shards,
            read_workers=args.workers,
            progress=not args.no_progress,
        )
    except PseudoLabelError as e:
        raise UsageError(str(e)) from None
    who = f"rank {rank}/{world}: " if world > 1 else ""
    of = "" if report.num_shards is None else f" of {report.num_shards}"
    print(
        f"{who}{len(report.written)} shard(s) written ({report.samples_written} samples) at "
        f"{report.images_per_second:.2f} images/s, {len(report.skipped)} already done, "
        f"{len(report.remaining)} left{of} in {report.out_dir}"
    )
    if report.remaining:
        print(f"{who}stopped after --max-shards {args.max_shards}; rerun the same command to continue")
    if report.failures:
        print(f"{who}{len(report.failures)} input(s) could not be read:", file=sys.stderr)
        for source, reason in report.failures[:20]:
            print(f"  {source}: {reason}", file=sys.stderr)
        if len(report.failures) > 20:
            print(f"  ... and {len(report.failures) - 20} more (see {report.out_dir}/pseudo-*.json)", file=sys.stderr)
        return EXIT_FAILURES
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """``python -m depth_anything_v2.cli.pseudo_label ...`` (for torchrun): the ``pseudo-label`` command."""
    from . import main as cli_main

    return cli_main(["pseudo-label", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
