"""Images per second of ``depth-anything predict`` on a folder, against the model alone.

Generates a folder of JPEGs, then times, on the same random-weight model:

1. ``model``: the predictor on images already decoded in memory (pre-processing, forward, resize back), nothing
   read or written: the ceiling for the end-to-end rate;
2. ``sequential``: decode, predict, write, one image after another in one thread (what a plain loop does);
3. ``predict``: the CLI, whose decoding, inference and writing overlap (thread pools, bounded queues).

and prints images/s for each and the ratios ``predict / model`` (1.0 = the model never waits on I/O) and
``predict / sequential`` (the gain of the overlap).

    python benchmarks/bench_predict_folder.py                              # tiny, 48 images 640x480, cpu
    python benchmarks/bench_predict_folder.py --encoder vits --images 32 --device cuda --batch-size 4
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def make_folder(folder: Path, count: int, width: int, height: int, seed: int = 0) -> None:
    """``count`` JPEGs with smooth structure plus noise (compresses like a photo, not like flat colour)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    for i in range(count):
        fx, fy, phase = (*rng.uniform(0.005, 0.03, 2).tolist(), rng.uniform(0, 6.28))
        base = 127 + 80 * np.sin(x * fx + phase)[..., None] * np.cos(y * fy)[..., None] * np.array([1.0, 0.7, 0.4])
        noise = rng.normal(0, 12, (height, width, 3))
        rgb = np.clip(base + noise, 0, 255).astype(np.uint8)
        sub = folder / f"part{i % 4}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(sub / f"img{i:05d}.jpg", quality=90)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoder", default="tiny", help="random-weight variant: tiny (default) or vits/vitb/vitl")
    p.add_argument("--images", type=int, default=48)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--input-size", type=int, default=518)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--format", default="png16,color", help="formats written by the end-to-end runs")
    p.add_argument("--workers", type=int, default=None, help="predict --workers (default: its own)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    p.add_argument("--json", type=Path, help="also write the numbers here")
    args = p.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    from depth_anything_v2 import build_model, outputs
    from depth_anything_v2.cli import main as cli_main
    from depth_anything_v2.inference.predictor import DepthPredictor
    from depth_anything_v2.io.images import read_image
    from depth_anything_v2.io.inputs import expand_inputs

    torch.manual_seed(0)
    model = build_model(args.encoder)
    with torch.no_grad():  # a positive final bias keeps the random network's output off the ReLU floor
        model.depth_head.scratch.output_conv2[2].bias.fill_(1.0)
    formats = args.format.split(",")

    with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp:
        tmp = Path(tmp)
        folder = tmp / "images"
        make_folder(folder, args.images, args.width, args.height)
        weights = tmp / "weights.pth"
        torch.save(model.state_dict(), weights)
        predictor = DepthPredictor(model, input_size=args.input_size, device=args.device, precision=args.precision)
        items = expand_inputs([str(folder)]).items
        decoded = [read_image(item.source) for item in items]

        def sync() -> None:
            if predictor.device.type == "cuda":
                torch.cuda.synchronize()

        # Warm-up (kernels, allocator) on a few images, not timed.
        for _ in predictor.predict_iter(((i, im) for i, im in enumerate(decoded[:4])), batch_size=args.batch_size):
            pass
        sync()

        # 1. The model alone: in-memory images, results dropped (moved to host as numpy, which the predictor does).
        t = time.perf_counter()
        for _ in predictor.predict_iter(((i, im) for i, im in enumerate(decoded)), batch_size=args.batch_size):
            pass
        sync()
        model_s = time.perf_counter() - t

        # 2. Sequential: decode -> predict -> write, one image at a time.
        seq_out = tmp / "sequential"
        t = time.perf_counter()
        for item in items:
            image_rgb = read_image(item.source)
            result = predictor.predict(image_rgb)
            outputs.write_depth_outputs(
                item.output_paths(seq_out, formats), result.depth, result.kind, image_rgb=image_rgb
            )
        sync()
        sequential_s = time.perf_counter() - t

        # 3. The CLI, with its overlapped pipeline (the model is loaded from the saved weights before the clock).
        DepthPredictor.from_pretrained = classmethod(lambda cls, *a, **k: predictor)  # type: ignore[method-assign]
        argv = ["predict", str(folder), "--out", str(tmp / "predict"), "--weights", str(weights), "--format",
                args.format, "--batch-size", str(args.batch_size), "--input-size", str(args.input_size),
                "--no-progress"]  # fmt: skip
        if args.workers is not None:
            argv += ["--workers", str(args.workers)]
        t = time.perf_counter()
        code = cli_main(argv)
        sync()
        predict_s = time.perf_counter() - t
        if code != 0:
            print(f"predict exited with {code}", file=sys.stderr)
            return code

    n = args.images
    result = {
        "encoder": args.encoder,
        "images": n,
        "size": f"{args.width}x{args.height}",
        "input_size": args.input_size,
        "batch_size": args.batch_size,
        "device": str(predictor.device),
        "precision": args.precision,
        "formats": args.format,
        "torch_threads": torch.get_num_threads(),
        "model_img_per_s": n / model_s,
        "sequential_img_per_s": n / sequential_s,
        "predict_img_per_s": n / predict_s,
        "predict_over_model": model_s / predict_s,
        "predict_over_sequential": sequential_s / predict_s,
    }
    print(
        f"{args.encoder} {args.width}x{args.height} -> input {args.input_size}, batch {args.batch_size}, "
        f"{result['device']} {args.precision}, {n} images, formats {args.format}"
    )
    print(f"  model alone (in memory): {result['model_img_per_s']:8.2f} images/s")
    print(f"  sequential loop:         {result['sequential_img_per_s']:8.2f} images/s")
    print(f"  depth-anything predict:  {result['predict_img_per_s']:8.2f} images/s")
    print(f"  predict / model alone:   {result['predict_over_model']:8.2f}")
    print(f"  predict / sequential:    {result['predict_over_sequential']:8.2f}")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
