"""``bench_forward.py --backend all``: every runtime in its own process, rounds alternated, one table.

Prepared once in the parent: random vits weights (ours and the same weights in transformers' format), the dynamic
ONNX export, the OpenVINO IR converted from it, and an NNCF int8 IR calibrated on the packaged example photos.
Each backend then loads in a worker process (runtimes keep spinning threads, so two never share a process) and
times ``repeats`` forward passes per round when the parent asks; the parent asks each worker in turn, rotating the
order every round. Reported: median ms, speed-up over transformers, the max difference to torch fp32 on a random
input (fraction of its output range), and AbsRel / delta1 to torch fp32 on a held-out example photo after a
least-squares scale and shift (random weights: a bound on numerical error, not on depth accuracy).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

BACKENDS = (
    "transformers",
    "torch",
    "onnxruntime",
    "onnxruntime-int8",
    "openvino",
    "openvino-bf16",
    "openvino-int8",
    "openvino-int8-bf16",
)


def prepare(workdir: Path, encoder: str, log, names: list[str]) -> None:
    from bench_forward import build_pair
    from depth_anything_v2.export.metadata import ModelInfo
    from depth_anything_v2.export.onnx import export_onnx
    from depth_anything_v2.export.openvino import onnx_to_openvino, save_ir
    from depth_anything_v2.export.quantize import quantize_file

    ours, _ = build_pair(encoder, workdir)  # writes model.safetensors + config.json for transformers
    torch.save(ours.state_dict(), workdir / "ours.pth")
    t = time.perf_counter()
    export_onnx(ours, workdir / "model.onnx")
    log(f"# ONNX export (dynamic shapes, validated): {time.perf_counter() - t:.0f} s")
    info = ModelInfo(encoder, None)
    save_ir(onnx_to_openvino(workdir / "model.onnx", info), workdir / "model.xml", "fp32")
    if "openvino-int8" in names or "openvino-int8-bf16" in names:
        t = time.perf_counter()
        acc = quantize_file(ours, workdir / "model.onnx", workdir / "int8.xml", "openvino", info=info)
        log(f"# OpenVINO int8 (NNCF, 2 example photos): {time.perf_counter() - t:.0f} s; {acc.summary()}")
    if "onnxruntime-int8" in names:
        t = time.perf_counter()
        acc = quantize_file(ours, workdir / "model.onnx", workdir / "int8.onnx", "onnx", info=info)
        log(f"# ONNX Runtime int8 (static QDQ, 2 example photos): {time.perf_counter() - t:.0f} s; {acc.summary()}")


def open_worker(name: str, workdir: Path, threads: int):
    """The forward function of backend ``name``."""
    if name == "transformers":
        from transformers import DepthAnythingForDepthEstimation

        model = DepthAnythingForDepthEstimation.from_pretrained(workdir).eval()
        return lambda x: model(pixel_values=x).predicted_depth
    if name == "torch":
        from depth_anything_v2 import load_model

        model = load_model(workdir / "ours.pth")
        return model
    from depth_anything_v2.inference.backends import OnnxRuntimeBackend, OpenVINOBackend

    if name.startswith("onnxruntime"):
        return OnnxRuntimeBackend(workdir / ("int8.onnx" if "int8" in name else "model.onnx"), threads=threads)
    file = "int8.xml" if "int8" in name else "model.xml"
    return OpenVINOBackend(workdir / file, precision="bf16" if name.endswith("bf16") else "fp32", threads=threads)


def worker(name: str, workdir: Path, threads: int, size: tuple[int, int]) -> None:
    """Load, warm up, save outputs for the shared inputs, then time ``N`` calls per line read from stdin."""
    torch.set_num_threads(threads)
    fn = open_worker(name, workdir, threads)
    x = torch.load(workdir / "input.pt")
    photo = torch.load(workdir / "photo.pt")
    with torch.inference_mode():
        fn(x)
        np.save(workdir / f"out_{name}.npy", fn(x).float().numpy())
        np.save(workdir / f"photo_{name}.npy", fn(photo).float().numpy())
        print("ready", flush=True)
        for line in sys.stdin:
            times = []
            for _ in range(int(line)):
                t = time.perf_counter()
                fn(x)
                times.append(time.perf_counter() - t)
            print(json.dumps(times), flush=True)


def photo_input(input_size: int) -> torch.Tensor:
    from depth_anything_v2.export.quantize import calibration_tensors

    return torch.from_numpy(calibration_tensors(None, input_size)[-1])  # the held-out one of the int8 calibration


def errors(workdir: Path, name: str) -> tuple[float, float, float]:
    from depth_anything_v2.align.least_squares import fit_scale_shift

    ref, out = np.load(workdir / "out_torch.npy"), np.load(workdir / f"out_{name}.npy")
    diff = float(np.abs(out - ref).max() / (ref.max() - ref.min()))
    g, p = (torch.from_numpy(np.load(workdir / f"photo_{n}.npy")).double()[0] for n in ("torch", name))
    valid = g > 1e-6 * g.abs().max()
    s, t = fit_scale_shift(p, g, valid)
    a, g = (s * p + t)[valid], g[valid]
    delta1 = (torch.maximum(a / g, g / a.clamp(min=1e-12)) < 1.25).double().mean().item()
    return diff, ((a - g).abs() / g).mean().item(), delta1


def run_all(args, names: list[str], log=print) -> None:
    import platform
    import tempfile

    import openvino as ov

    h, w = map(int, args.sizes.split(",")[0].split("x"))
    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        log("# this CPU has no BF16 (OpenVINO's OPTIMIZATION_CAPABILITIES): the bf16 rows are skipped")
        names = [n for n in names if "bf16" not in n]
    with tempfile.TemporaryDirectory() as d:
        workdir = Path(d)
        torch.manual_seed(0)
        torch.save(torch.randn(1, 3, h, w), workdir / "input.pt")
        torch.save(photo_input(min(h, w)), workdir / "photo.pt")
        prepare(workdir, args.encoder, log, names)
        procs = {}
        load0 = os.getloadavg()
        for name in names:
            cmd = [sys.executable, __file__, "--worker", name, str(workdir), str(args.threads), f"{h}x{w}"]
            procs[name] = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            if procs[name].stdout.readline().strip() != "ready":
                raise RuntimeError(f"worker {name} failed to start")
        times: dict[str, list[float]] = {n: [] for n in names}
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                procs[name].stdin.write(f"{args.repeats}\n")
                procs[name].stdin.flush()
                times[name] += json.loads(procs[name].stdout.readline())
        for p in procs.values():
            p.stdin.close()
            p.wait()
        base = statistics.median(times["transformers"]) if "transformers" in times else None
        log(f"# load average before/after: {load0} / {os.getloadavg()}")
        log(f"# {platform.processor() or platform.machine()}, {args.threads} threads, {args.encoder} {h}x{w}, "
            f"{args.rounds} rounds x {args.repeats} alternated, each backend in its own process")  # fmt: skip
        log(
            "| backend | median ms | speed-up vs transformers | max diff / range vs torch fp32 | photo AbsRel | photo delta1 |"
        )
        log("|---|---|---|---|---|---|")
        for name in names:
            med = statistics.median(times[name]) * 1e3
            diff, abs_rel, delta1 = errors(workdir, name)
            ratio = f"{base * 1e3 / med:.2f}x" if base else "-"
            log(f"| {name} | {med:.1f} | {ratio} | {diff:.1e} | {abs_rel:.1e} | {delta1:.4f} |")


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--worker":
    sys.path.insert(0, str(Path(__file__).parent))
    worker(sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]), tuple(map(int, sys.argv[5].split("x"))))
