"""Video pipeline: peak memory versus clip length, and frames/s of the pipeline around the model.

Each run happens in a fresh subprocess so that its peak resident memory (``ru_maxrss``) is its own. The clip is
generated (a moving pattern, H.264 through PyAV when installed, else MPEG-4 through OpenCV) and processed by
``video.process_video`` with either a stand-in predictor (``--predictor fake``: depth = a blur of the frame,
~free, so the numbers are the pipeline's own cost: decode, range pass, colourise, encode, raw writes) or a
random-weight model (``--predictor tiny`` / ``vits``).

    python benchmarks/bench_video_memory.py --size 640x360 --frames 60 600
    python benchmarks/bench_video_memory.py --predictor vits --device cuda --size 1280x720 --frames 100 1000

Flat memory means the peak RSS of the long clip is within a few MB of the short one.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np


def make_clip(path: Path, frames: int, width: int, height: int, rate: Fraction) -> None:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    try:
        import av
    except ImportError:
        av = None
    if av is not None:
        container = av.open(str(path), "w")
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast"}
    else:
        import cv2

        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(rate), (width, height))
    for i in range(frames):
        v = 127 + 100 * np.sin((xx + 3 * i) / 40.0) * np.cos((yy - 2 * i) / 30.0)
        rgb = np.repeat(v[..., None], 3, axis=2).astype(np.uint8)
        if av is not None:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        else:
            writer.write(rgb)
    if av is not None:
        for packet in stream.encode():
            container.mux(packet)
        container.close()
    else:
        writer.release()


class BlurPredictor:
    """Stand-in with the predictor's ``predict_iter`` contract; costs ~1 ms per 720p frame."""

    is_metric = False

    def predict_iter(self, items, batch_size=1):
        import cv2

        from depth_anything_v2.inference.predictor import DepthResult

        for key, rgb in items:
            gray = rgb[..., 1].astype(np.float32)
            yield key, DepthResult(cv2.blur(gray, (15, 15)) / 25.5, "disparity")


def child(args: argparse.Namespace) -> None:
    from depth_anything_v2.inference import video

    if args.predictor == "fake":
        predictor = BlurPredictor()
    else:
        from depth_anything_v2 import build_model
        from depth_anything_v2.inference.predictor import DepthPredictor

        predictor = DepthPredictor(build_model(args.predictor), input_size=args.input_size, device=args.device)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    summary = video.process_video(
        predictor,
        Path(args.clip),
        Path(args.out),
        "bench",
        formats=set(args.formats.split(",")),
        colormap="Spectral_r",
        stabilize=args.stabilize,
        batch_size=args.batch_size,
    )
    seconds = time.perf_counter() - t
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"frames": summary["frames"], "seconds": seconds, "rss_before_mb": rss0 / 1024,
                      "peak_rss_mb": rss1 / 1024}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[60, 600], help="clip lengths to compare")
    parser.add_argument("--size", default="640x360", help="WxH of the generated clip")
    parser.add_argument("--fps", default="30000/1001")
    parser.add_argument("--predictor", default="fake", help="fake, tiny, vits, vitb, vitl (random weights)")
    parser.add_argument("--input-size", type=int, default=518)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--formats", default="color,sbs,npy")
    parser.add_argument("--stabilize", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--clip", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    width, height = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'frames':>7} {'seconds':>8} {'frames/s':>9} {'peak RSS MB':>12}  ({args.predictor}, {args.size}, "
              f"formats {args.formats}{', stabilised' if args.stabilize else ''})")  # fmt: skip
        for n in args.frames:
            clip = Path(tmp) / f"clip{n}.mp4"
            make_clip(clip, n, width, height, Fraction(args.fps))
            cmd = [sys.executable, __file__, "--child", "--clip", str(clip), "--out", str(Path(tmp) / f"out{n}"),
                   "--predictor", args.predictor, "--input-size", str(args.input_size), "--device", args.device,
                   "--batch-size", str(args.batch_size), "--formats", args.formats]  # fmt: skip
            if args.stabilize:
                cmd.append("--stabilize")
            env = {**os.environ, "PYTHONWARNINGS": "ignore"}
            res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout)
            print(f"{res['frames']:>7} {res['seconds']:>8.2f} {res['frames'] / res['seconds']:>9.1f} "
                  f"{res['peak_rss_mb']:>12.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
