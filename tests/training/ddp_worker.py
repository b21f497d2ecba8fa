"""Run by tests/training/test_ddp.py under ``python -m torch.distributed.run --nproc_per_node 2``.

Trains the same tiny teacher config twice in one process group, once with DDP and once with FSDP2 (each rank a
share of the global batch; FSDP also with gradient accumulation and activation checkpointing), so the test can compare the final weights with
a one-process run of the same global batch. Arguments: a JSON file holding the config dict, and the output root.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

torch.set_num_threads(1)


def main() -> None:
    from depth_anything_v2.training.config import from_dict
    from depth_anything_v2.training.trainer import train

    base = json.loads(Path(sys.argv[1]).read_text())
    out_root = sys.argv[2]
    dist.init_process_group("gloo")
    for strategy, accum in (("ddp", 1), ("fsdp", 2)):
        data = json.loads(json.dumps(base))
        data["output_dir"] = f"{out_root}/{strategy}"
        data["train"].update(strategy=strategy, grad_accum_steps=accum, activation_checkpointing=strategy == "fsdp")
        result = train(from_dict(data))
        assert result.step == data["train"]["max_steps"], result.step
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
