"""Time the forward pass against transformers' DepthAnythingForDepthEstimation with the same weights.

Both models get random weights (ours converted to the transformers format and loaded with
``from_pretrained``), the same input tensor, and run alternately in one process so machine noise hits both
alike. Prints the median time of each, the ratio, the largest output difference, and peak memory: the resident
memory the first two forward passes add to a fresh process holding only that model (sampled every millisecond;
memory the allocator keeps for the next call counts).

On a GPU (``--device cuda``) each timing is synchronised, and peak memory is the CUDA memory a forward pass
allocates beyond the model (``torch.cuda.max_memory_allocated``), measured in this process.

    python benchmarks/bench_forward.py                  # vits, 518x518 and 518x686, fp32, CPU
    python benchmarks/bench_forward.py --repeats 20 --threads 2
    python benchmarks/bench_forward.py --device cuda --precision fp16 --encoder vitl --repeats 50
    python benchmarks/bench_forward.py --backend all --sizes 518x518 --rounds 5 --repeats 3   # runtimes (bench_backends.py)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch


def build_pair(encoder: str, workdir: Path):
    from transformers import DepthAnythingForDepthEstimation
    from transformers.utils import logging as hf_logging

    from depth_anything_v2 import build_model
    from depth_anything_v2.configs import get_variant
    from depth_anything_v2.weights.checkpoints import hf_config_for, reference_to_hf

    hf_logging.disable_progress_bar()
    torch.manual_seed(0)
    ours = build_model(encoder).eval()
    with torch.no_grad():  # a positive final bias keeps the random network's output off the ReLU floor
        ours.depth_head.scratch.output_conv2[2].bias.fill_(1.0)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in reference_to_hf(ours.state_dict()).items()}, workdir / "model.safetensors")
    (workdir / "config.json").write_text(json.dumps(hf_config_for(get_variant(encoder), None)))
    theirs = DepthAnythingForDepthEstimation.from_pretrained(workdir).eval()
    return ours, theirs


def run_theirs(model, x):
    return model(pixel_values=x).predicted_depth


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb(impl: str, encoder: str, h: int, w: int, threads: int) -> float:
    """Peak resident memory added by one forward pass (MB), in a fresh process holding only that model."""
    cmd = [sys.executable, __file__, "--mem-child", impl, "--encoder", encoder, "--threads", str(threads)]
    cmd += ["--size", f"{h}x{w}"]
    return float(subprocess.check_output(cmd, text=True).strip().splitlines()[-1])


def mem_child(args) -> None:
    """Build the pair, keep one model, then sample RSS every millisecond during its first two forward passes."""
    torch.set_num_threads(args.threads)
    h, w = map(int, args.size.split("x"))
    with tempfile.TemporaryDirectory() as d:
        ours, theirs = build_pair(args.encoder, Path(d))
    model = ours if args.mem_child == "ours" else theirs
    del ours, theirs
    gc.collect()
    x = torch.randn(1, 3, h, w)
    fn = (lambda: model(x)) if args.mem_child == "ours" else (lambda: run_theirs(model, x))
    with torch.inference_mode():
        # From before the first call: memory the allocator keeps for reuse after a call counts as the forward's.
        base, peak, done = _rss_mb(), [0.0], threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], _rss_mb())
                time.sleep(0.001)

        t = threading.Thread(target=sample)
        t.start()
        fn()
        fn()
        done.set()
        t.join()
    print(max(peak[0], _rss_mb()) - base)


DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cuda_peak_mb(fn, device: torch.device) -> float:
    """CUDA memory one forward pass allocates beyond what is already allocated (the model), in MB."""
    with torch.inference_mode():
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoder", default="vits")
    p.add_argument("--sizes", default="518x518,518x686")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--precision", choices=list(DTYPES), default="fp32")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument(
        "--backend",
        help="'all' or a comma list of transformers, torch, onnxruntime, openvino, openvino-bf16, openvino-int8, "
        "openvino-int8-bf16: each in its own process, rounds alternated (see bench_backends.py); first size only",
    )
    p.add_argument("--rounds", type=int, default=5, help="alternated rounds for --backend (default 5)")
    p.add_argument("--mem-child", choices=["ours", "theirs"], help=argparse.SUPPRESS)
    p.add_argument("--size", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.mem_child:
        return mem_child(args)
    if args.backend:
        from bench_backends import BACKENDS, run_all

        names = list(BACKENDS) if args.backend == "all" else args.backend.split(",")
        return run_all(args, names)

    import platform

    import transformers

    torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), DTYPES[args.precision]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(
        f"# {where}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"transformers {transformers.__version__}, encoder {args.encoder}, {args.precision}"
    )
    with tempfile.TemporaryDirectory() as d:
        ours, theirs = build_pair(args.encoder, Path(d))
        ours, theirs = ours.to(device, dtype), theirs.to(device, dtype)
        print(
            "| input (HxW) | ours median ms | transformers median ms | speed-up | max abs diff / output range | "
            "peak MB ours | peak MB transformers |"
        )
        print("|---|---|---|---|---|---|---|")
        for size in args.sizes.split(","):
            h, w = map(int, size.split("x"))
            x = torch.randn(1, 3, h, w).to(device, dtype)
            calls = {"ours": lambda x=x: ours(x), "theirs": lambda x=x: run_theirs(theirs, x)}
            times: dict[str, list[float]] = {"ours": [], "theirs": []}
            with torch.inference_mode():
                a, b = calls["ours"]().float(), calls["theirs"]().float()  # warm-up, and the outputs to compare
                for _ in range(args.repeats):
                    for name, fn in calls.items():
                        _sync(device)
                        t = time.perf_counter()
                        fn()
                        _sync(device)
                        times[name].append(time.perf_counter() - t)
            diff = (a - b).abs().max().item() / (b.max() - b.min()).item()
            mo, mt = (statistics.median(times[k]) * 1e3 for k in ("ours", "theirs"))
            if args.no_memory:
                mem = ("-", "-")
            elif device.type == "cuda":
                mem = tuple(f"{_cuda_peak_mb(calls[k], device):.0f}" for k in ("ours", "theirs"))
            elif dtype != torch.float32:
                mem = ("-", "-")  # the CPU memory subprocesses measure fp32 only
            else:
                mem = tuple(f"{peak_rss_mb(k, args.encoder, h, w, args.threads):.0f}" for k in ("ours", "theirs"))
            print(f"| {h}x{w} | {mo:.1f} | {mt:.1f} | {mt / mo:.2f}x | {diff:.1e} | {mem[0]} | {mem[1]} |", flush=True)
    print(
        "# at 518x518 both use the stored 37x37 position embedding, so outputs must agree; at other sizes "
        "transformers resizes it differently from the reference (REFERENCE section 3), so a difference is expected."
    )


if __name__ == "__main__":
    main()
