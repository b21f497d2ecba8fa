"""Is half precision worth it on this CPU? Times one forward pass in fp32, bf16 and fp16, alternating.

Three copies of the same random model (fp32, bf16, fp16 parameters) run in turn on the same input, so machine
noise hits all alike; prints each precision's median and its ratio to fp32 measured in the same run. On CPUs
without native half-precision kernels (no AVX512-BF16/AMX/AVX512-FP16) both are several times slower than
fp32, which is why ``precision="auto"`` picks fp32 on the CPU and fp16/bf16 there log a warning.

    python benchmarks/bench_cpu_precision.py                      # vits at 266x266, 1 thread, 3 rounds
    python benchmarks/bench_cpu_precision.py --size 518 --threads 2 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from depth_anything_v2.weights.loading import build_model

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--encoder", default="vits")
    p.add_argument("--size", type=int, default=266, help="square input side, a multiple of 14 (default 266)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    state = build_model(args.encoder).state_dict()
    models = {}
    for name, dtype in PRECISIONS.items():
        model = build_model(args.encoder)
        model.load_state_dict(state)
        models[name] = model.to(dtype=dtype).eval()
    x = torch.randn(1, 3, args.size, args.size)
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for name, model in models.items():  # warm-up
            model(x.to(PRECISIONS[name]))
        for _ in range(args.rounds):
            for name, model in models.items():
                t0 = time.perf_counter()
                model(x.to(PRECISIONS[name]))
                times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["fp32"])
    print(f"{args.encoder} at {args.size}x{args.size}, {args.threads} thread(s), median of {args.rounds} rounds")
    for name, t in times.items():
        print(f"  {name}: {statistics.median(t) * 1000:7.0f} ms  {statistics.median(t) / base:5.2f}x fp32")


if __name__ == "__main__":
    main()
