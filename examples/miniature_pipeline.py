"""The whole Depth Anything V2 training pipeline in miniature: offline, on a CPU, in a few minutes.

    python examples/miniature_pipeline.py                  # tutorial scale, work folder runs/miniature
    python examples/miniature_pipeline.py --scale test     # smaller still (the integration test)

1. Data: procedurally generated scenes with exact depth (the "precise synthetic labels") for the teacher; a
   separate set of generated images whose depth is *not* used (the "unlabeled real images"); a validation set
   and a held-out test set. The camera tilts and rolls (``SCENE_RANGES``), so the image row alone does not
   tell depth.
2. Teacher: ``depth-anything train --config configs/train/miniature_teacher.yaml`` (L_ssi + 2 L_gm).
3. Pseudo labels: ``depth-anything pseudo-label --teacher .../teacher/final.pt --input .../unlabeled/images``.
4. Student: ``depth-anything train --config configs/train/miniature_student.yaml`` (trimmed loss, feature
   alignment), trained on pseudo labels only.
5. Held-out AbsRel / delta1 (least-squares scale and shift in disparity space, the paper's protocol) of a
   network-free row prior (each row's median disparity over the teacher's training scenes), the untrained
   student, the teacher and the student, as a table.

Every seed is fixed (each data set's, and the configs' ``seed`` for model init, crops and loader order) and torch
runs on one thread, so a rerun prints the same table to the last digit.

Every stage runs through the ``depth-anything`` command exactly as printed, so the lines can be copied into a
shell. Run it from the repository root (the config files are read from ``configs/train``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]

#: Sizes of each scale: numbers of scenes / images, optimiser steps, render size (H, W), crop, shard size.
SCALES: dict[str, dict[str, Any]] = {
    "tutorial": {
        "scenes": 384,
        "unlabeled": 384,
        "val": 16,
        "heldout": 48,
        "teacher_steps": 800,
        "student_steps": 800,
        "size": (72, 96),
        "crop": 56,
        "shard_size": 64,
        "val_every": 200,
    },
    "test": {
        "scenes": 64,
        "unlabeled": 48,
        "val": 2,
        "heldout": 16,
        "teacher_steps": 90,
        "student_steps": 60,
        "size": (48, 64),
        "crop": 42,
        "shard_size": 24,
        "val_every": 0,
    },
}


#: Camera poses where the image row does not predict depth: with the generator's defaults (a camera held level
#: within a few degrees) the best network-free guess, each row's median disparity over the training set, scored
#: as well as a trained teacher (AbsRel 0.297 vs 0.295 on the tutorial's held-out set). Here the horizon tilts
#: and moves across the frame, so a model has to find it in the image.
SCENE_RANGES: dict[str, Any] = {"pitch_deg": (-40.0, 30.0), "roll_deg": (-45.0, 45.0), "camera_height_m": (0.3, 6.0)}


def scene_config():
    """The generator's scene ranges for the miniature: SCENE_RANGES over the defaults."""
    from depth_anything_v2.data.synthetic import SceneConfig

    return SceneConfig(**SCENE_RANGES)


def prepare_data(work: Path, s: dict[str, Any]) -> None:
    """Render the four generated sets (each from its own seed, so no scene is shared)."""
    from depth_anything_v2.data.synthetic import write_synthetic_folder

    cfg = scene_config()
    write_synthetic_folder(work / "synthetic", s["scenes"], size=s["size"], seed=0, config=cfg)
    write_synthetic_folder(work / "unlabeled", s["unlabeled"], size=s["size"], seed=1, config=cfg)  # depth unread
    write_synthetic_folder(work / "heldout", s["heldout"], size=s["size"], seed=2, config=cfg)
    write_synthetic_folder(work / "val", s["val"], size=s["size"], seed=3, config=cfg)


def _folder(path: Path) -> str:
    return f"[{{type: folder, root: {json.dumps(path.as_posix())}, depth_unit: m}}]"


def stage_commands(work: Path, s: dict[str, Any], *, config_dir: Path, progress: bool) -> dict[str, list[str]]:
    """The three ``depth-anything`` command lines (argv lists, without the program name)."""
    common = [
        f"data.val={_folder(work / 'val')}",
        f"data.crop_size={s['crop']}",
        f"val.input_size={s['crop']}",
        f"train.val_every={s['val_every']}",
        f"train.progress={'true' if progress else 'false'}",
    ]
    teacher = [
        "train",
        "--config",
        str(config_dir / "miniature_teacher.yaml"),
        f"output_dir={(work / 'teacher').as_posix()}",
        f"data.train={_folder(work / 'synthetic')}",
        f"train.max_steps={s['teacher_steps']}",
        *common,
    ]
    pseudo = [
        "pseudo-label",
        "--teacher",
        str(work / "teacher" / "final.pt"),
        "--input",
        str(work / "unlabeled" / "images"),
        "--out",
        str(work / "pseudo"),
        "--shard-size",
        str(s["shard_size"]),
        "--input-size",
        str(s["crop"]),
        "--batch-size",
        "16",
        "--device",
        "cpu",
        *([] if progress else ["--no-progress"]),
    ]
    student = [
        "train",
        "--config",
        str(config_dir / "miniature_student.yaml"),
        f"output_dir={(work / 'student').as_posix()}",
        f"data.train=[{{type: shards, shards: {json.dumps((work / 'pseudo').as_posix())}}}]",
        f"train.max_steps={s['student_steps']}",
        *common,
    ]
    return {"teacher": teacher, "pseudo_label": pseudo, "student": student}


def row_prior(root: Path) -> np.ndarray:
    """The best network-free guess from the image row alone: each row's median disparity (1/m, sky 0) over the
    labelled scenes in ``root``; shape (H,)."""
    disparity = [np.where(np.isfinite(d), 1.0 / d, 0.0) for d in map(np.load, sorted((root / "depth").glob("*.npy")))]
    return np.median(np.stack(disparity), axis=(0, 2))


def score_row_prior(rows: np.ndarray, heldout: Any) -> dict[str, Any]:
    """The row prior scored as the models are (``evaluate_model``: per-image least-squares scale and shift in
    disparity space, metrics averaged per image)."""
    from depth_anything_v2.evaluation.metrics import score_pairs

    pairs = []
    for i in range(len(heldout)):
        sample = heldout[i]
        depth = sample["depth_m"].numpy()
        if depth.shape[0] != len(rows):
            raise ValueError(f"expected held-out images {len(rows)} rows high (the training scenes), got {depth.shape}")
        pairs.append((np.broadcast_to(rows[:, None], depth.shape), depth, sample["valid_mask"].numpy()))
    return score_pairs(pairs, alignment="scale_shift_disparity", kind="disparity")


def evaluate(work: Path, s: dict[str, Any], student_argv: list[str]) -> list[dict[str, Any]]:
    """AbsRel / delta1 on the held-out scenes for the row prior (no network), the untrained student, the teacher
    and the student."""
    from depth_anything_v2 import load_model
    from depth_anything_v2.data.datasets import ImageDepthFolder
    from depth_anything_v2.training.config import load_config
    from depth_anything_v2.training.trainer import build_training_model, evaluate_model

    heldout = ImageDepthFolder(work / "heldout", target="depth")
    config = load_config(student_argv[2], student_argv[3:])
    models = {
        "untrained (student at init)": build_training_model(config),
        "teacher (synthetic labels)": load_model(work / "teacher" / "final.pt"),
        "student (pseudo labels only)": load_model(work / "student" / "final.pt"),
    }
    prior = score_row_prior(row_prior(work / "synthetic"), heldout)
    rows = [{"model": "row prior (no network)", **prior["metrics"], "num_images": prior["num_images"]}]
    for name, model in models.items():
        result = evaluate_model(model.eval(), heldout, input_size=s["crop"])
        rows.append({"model": name, **result["metrics"], "num_images": result["num_images"]})
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    n = rows[0]["num_images"] if rows else 0
    lines = [
        f"held-out generated scenes: {n} images, scale+shift aligned in disparity space",
        f"{'model':<30} {'AbsRel':>8} {'delta1':>8}",
    ]
    lines += [f"{r['model']:<30} {r['abs_rel']:8.4f} {r['d1']:8.4f}" for r in rows]
    return "\n".join(lines)


def run(work: Path, scale: str = "tutorial", *, config_dir: Path | None = None, progress: bool = True, echo=print):
    """Run all stages; returns the table rows. Raises ``RuntimeError`` if a stage fails."""
    from depth_anything_v2.cli import main as cli

    s = SCALES[scale]
    config_dir = config_dir or REPO / "configs" / "train"
    work = Path(work)
    t0 = time.perf_counter()
    # One thread: the same floating-point reduction order on every machine (the table reproduces to the last
    # digit), and tiny convolutions gain nothing from more. Every other random choice is seeded (data: each
    # set's seed; model init, crops and loader order: the configs' seed).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        echo(f"# 1. data -> {work}")
        prepare_data(work, s)
        echo(f"# ({time.perf_counter() - t0:.0f} s)")
        commands = stage_commands(work, s, config_dir=config_dir, progress=progress)
        for step, (name, argv) in enumerate(commands.items(), 2):
            echo(f"# {step}. {name.replace('_', '-')}\ndepth-anything {shlex.join(argv)}")
            code = cli(argv)
            if code != 0:
                raise RuntimeError(f"stage {name} failed with exit code {code}")
            echo(f"# ({time.perf_counter() - t0:.0f} s)")
        echo("# 5. held-out evaluation")
        rows = evaluate(work, s, commands["student"])
    finally:
        torch.set_num_threads(threads)
    echo(format_table(rows))
    echo(f"# total {time.perf_counter() - t0:.0f} s")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("runs/miniature"), help="work folder")
    parser.add_argument("--scale", choices=sorted(SCALES), default="tutorial")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    run(args.work, args.scale, progress=not args.no_progress)
    return 0


if __name__ == "__main__":
    sys.exit(main())
