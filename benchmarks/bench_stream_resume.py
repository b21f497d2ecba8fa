"""Resuming a student's shard stream: seeking to the saved cursor versus replaying the stream from step 0.

Writes generated pseudo-label shards, reads ``--position`` micro-batches, then times the first batch of a resumed
stream both ways (alternating rounds, medians) and counts the samples each reads from the tar files. The replay
path is what resuming did before the cursor was saved (and still does for a checkpoint of another worker count).

    python benchmarks/bench_stream_resume.py --shards 8 --per-shard 40 --position 150
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "training"))

from training_fixtures import write_pseudo_shards

import depth_anything_v2.data.shards as shards_module
from depth_anything_v2.training.data import ShardBatches, StreamBatches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--per-shard", type=int, default=40)
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--shuffle-buffer", type=int, default=16)
    ap.add_argument("--position", type=int, default=150, help="micro-batches consumed before the resume")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    folder = Path(tempfile.mkdtemp())
    write_pseudo_shards(folder, shards=args.shards, per_shard=args.per_shard)

    reads = [0]
    iter_tar = shards_module._iter_tar

    def counted(*a):
        for sample in iter_tar(*a):
            reads[0] += 1
            yield sample

    shards_module._iter_tar = counted

    def stream(**resume) -> StreamBatches:
        source = ShardBatches(str(folder), transform=None, micro_batch=args.micro_batch, seed=0, rank=0,
                              world_size=1, shuffle_buffer=args.shuffle_buffer)  # fmt: skip
        return StreamBatches(source, world_size=1, num_workers=0, pin_memory=False, **resume)

    full = stream()
    batches = iter(full)
    for _ in range(args.position):
        next(batches)
    cursors = list(full.cursors)
    expected = next(batches)["disparity"]
    times: dict[str, list[float]] = {"seek": [], "replay": []}
    counts: dict[str, int] = {}
    for r in range(args.rounds):
        for mode in ("seek", "replay") if r % 2 == 0 else ("replay", "seek"):
            reads[0] = 0
            start = time.perf_counter()
            first = next(iter(stream(position=args.position, cursors=cursors if mode == "seek" else None)))
            times[mode].append(time.perf_counter() - start)
            counts[mode] = reads[0]
            assert torch.equal(first["disparity"], expected), mode
    total = args.shards * args.per_shard
    print(f"{args.position} micro-batches of {args.micro_batch} consumed ({args.position * args.micro_batch} samples, "
          f"{args.position * args.micro_batch / total:.1f} epochs of {total}); shuffle buffer {args.shuffle_buffer}")  # fmt: skip
    for mode, values in times.items():
        print(f"{mode:>6}: first batch after resume {statistics.median(values) * 1e3:7.1f} ms (median of "
              f"{len(values)}), {counts[mode]} samples read from tar")  # fmt: skip
    print(f"replay / seek: {statistics.median(times['replay']) / statistics.median(times['seek']):.1f}x time, "
          f"{counts['replay'] / counts['seek']:.1f}x samples read; both give the same batch")  # fmt: skip


if __name__ == "__main__":
    main()
