"""Helpers for the trainer / pseudo-label / pipeline tests: tiny configs and tiny generated data."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np


def teacher_config(tmp_path: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A teacher config that trains the tiny model on a dozen generated scenes in about a second."""
    config: dict[str, Any] = {
        "stage": "teacher",
        "output_dir": str(tmp_path / "run"),
        "seed": 0,
        "model": {"encoder": "tiny"},
        "data": {
            "train": [{"type": "synthetic", "n": 12, "size": [56, 70]}],
            "val": [{"type": "synthetic", "n": 2, "size": [56, 70], "seed": 7}],
            "crop_size": 56,
            "num_workers": 0,
        },
        "optim": {"lr_encoder": 1e-3, "lr_decoder": 2e-3},
        "train": {"batch_size": 4, "max_steps": 4, "log_every": 1, "ckpt_every": 2, "progress": False},
        "val": {"input_size": 56},
    }
    for name, values in sections.items():
        if isinstance(values, dict) and isinstance(config.get(name), dict):
            config[name] = {**config[name], **copy.deepcopy(values)}
        else:
            config[name] = copy.deepcopy(values)
    return config


def write_pseudo_shards(root: Path, shards: int, per_shard: int, size=(56, 70), seed: int = 11) -> list[Path]:
    """Pseudo-label shards whose labels are the exact disparity of generated scenes."""
    from depth_anything_v2.data.datasets import depth_to_disparity
    from depth_anything_v2.data.shards import ShardWriter, make_pseudo_label_sample
    from depth_anything_v2.data.synthetic import SyntheticScenes

    scenes = SyntheticScenes(shards * per_shard, size, seed)
    with ShardWriter(str(root / "pseudo-%06d.tar"), max_count=per_shard) as sink:
        for i in range(len(scenes)):
            scene = scenes.render(i)
            disparity, valid = depth_to_disparity(scene.depth_m, scene.valid_mask, scene.sky_mask)
            sink.write(make_pseudo_label_sample(f"s{i:04d}", scene.image_rgb, disparity, valid, image_ext="png"))
    return sink.shards


def write_images(root: Path, n: int, size=(42, 56), seed: int = 5, ext: str = "png") -> list[Path]:
    """``n`` small generated RGB images (files only, no labels)."""
    import cv2

    from depth_anything_v2.data.synthetic import render_scene

    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        image = render_scene(np.random.SeedSequence([seed, i]), *size).image_rgb
        path = root / f"img_{i:03d}.{ext}"
        cv2.imwrite(str(path), image[..., ::-1])
        paths.append(path)
    return paths


def live_teacher(seed: int = 0, max_depth: float | None = None):
    """A random tiny model whose relative output is alive (positive last bias, visible spread)."""
    from model_factory import random_model

    return random_model("tiny", max_depth, seed)
