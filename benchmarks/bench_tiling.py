"""Tiled high-resolution inference: time and peak memory, tiled vs untiled, for large photos.

Each run happens in a fresh subprocess so that its peak resident memory (``VmHWM``) is its own. The photo is one
of the app's examples (``chelsea.jpg``) upscaled to the requested size (bicubic) in that subprocess, with a
random-weight model. ``base MB`` is the resident memory once the model and the photo are in memory, ``peak MB``
the highest it reached during the prediction, ``added MB`` the difference. Untiled and tiled runs alternate, and
each row reports the median of ``--rounds`` runs and the ratio to the untiled run of the same size.

    python benchmarks/bench_tiling.py --encoder vits --sizes 4000x3000 --rounds 1
    python benchmarks/bench_tiling.py --encoder tiny --sizes 4000x3000 8000x6000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

EXAMPLE = Path(__file__).parents[1] / "src" / "depth_anything_v2" / "app" / "examples" / "chelsea.jpg"


def _vm(field: str) -> float:
    """A ``/proc/self/status`` memory field in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(args: argparse.Namespace) -> None:
    import cv2
    import numpy as np
    import torch

    from depth_anything_v2 import DepthPredictor, Tiling, build_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    predictor = DepthPredictor(build_model(args.encoder), input_size=args.input_size)
    width, height = (int(v) for v in args.size.split("x"))
    rgb = np.ascontiguousarray(cv2.resize(cv2.imread(str(EXAMPLE)), (width, height), cv2.INTER_CUBIC)[..., ::-1])
    base = _vm("VmRSS")
    tiling = Tiling(progress=False) if args.mode == "tiled" else None
    start = time.perf_counter()
    result = predictor.predict(rgb, tiling=tiling, batch_size=args.batch_size)
    seconds = time.perf_counter() - start
    plan = result.meta.get("tiling", {}).get("plan", [])
    tiles = sum(p["tiles"] for p in plan)
    record = {"seconds": seconds, "base_mb": base, "peak_mb": _vm("VmHWM"), "tiles": tiles, "shape": result.depth.shape}
    print(json.dumps(record))


def run_one(args: argparse.Namespace, size: str, mode: str) -> dict:
    cmd = [sys.executable, __file__, "--child", "--mode", mode, "--size", size, "--encoder", args.encoder,
           "--input-size", str(args.input_size), "--batch-size", str(args.batch_size), "--threads", str(args.threads)]  # fmt: skip
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default="vits", help="vits, vitb, vitl or tiny (random weights)")
    parser.add_argument("--sizes", nargs="+", default=["4000x3000", "8000x6000"], help="WIDTHxHEIGHT")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--input-size", type=int, default=518)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=["untiled", "tiled"], help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    runs: dict[tuple[str, str], list[dict]] = {}
    for _ in range(args.rounds):
        for size in args.sizes:
            for mode in ("untiled", "tiled"):  # alternating, so both see the same machine load
                r = run_one(args, size, mode)
                runs.setdefault((size, mode), []).append(r)
                print(f"# {size} {mode}: {r['seconds']:.1f} s, peak {r['peak_mb']:.0f} MB", file=sys.stderr, flush=True)
    print(f"encoder {args.encoder}, input size {args.input_size}, batch {args.batch_size}, {args.threads} threads, "
          f"median of {args.rounds} round(s)\n")  # fmt: skip
    print("| photo | mode | tiles | seconds | x untiled | base MB | peak MB | added MB | x untiled |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        ref = {}
        for mode in ("untiled", "tiled"):
            rs = runs[(size, mode)]
            sec = statistics.median(r["seconds"] for r in rs)
            base = statistics.median(r["base_mb"] for r in rs)
            peak = statistics.median(r["peak_mb"] for r in rs)
            ref.setdefault("sec", sec)
            ref.setdefault("added", peak - base)
            width, height = (int(v) for v in size.split("x"))
            mp = width * height / 1e6
            print(f"| {size} ({mp:.0f} MP) | {mode} | {rs[0]['tiles']} | {sec:.1f} | {sec / ref['sec']:.2f} | "
                  f"{base:.0f} | {peak:.0f} | {peak - base:.0f} | {(peak - base) / ref['added']:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
