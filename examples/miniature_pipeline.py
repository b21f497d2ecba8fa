"""The whole Depth Anything V2 training pipeline in miniature: offline, on a CPU, in a few minutes.

    python examples/miniature_pipeline.py                  # tutorial scale, work folder runs/miniature
    python examples/miniature_pipeline.py --scale test     # smaller still (the integration test)

1. Data: procedurally generated scenes with exact depth (the "precise synthetic labels") for the teacher; a
   separate set of generated images whose depth is *not* used (the "unlabeled real images"); a validation set
   and a held-out test set.
2. Teacher: ``depth-anything train --config configs/train/miniature_teacher.yaml`` (L_ssi + 2 L_gm).
3. Pseudo labels: ``depth-anything pseudo-label --teacher .../teacher/final.pt --input .../unlabeled/images``.
4. Student: ``depth-anything train --config configs/train/miniature_student.yaml`` (trimmed loss, feature
   alignment), trained on pseudo labels only.
5. Held-out AbsRel / delta1 (least-squares scale and shift in disparity space, the paper's protocol) of the
   untrained student, the teacher and the student, as a table.

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
        "scenes": 96,
        "unlabeled": 64,
        "val": 4,
        "heldout": 32,
        "teacher_steps": 200,
        "student_steps": 200,
        "size": (64, 84),
        "crop": 56,
        "shard_size": 32,
        "val_every": 0,
    },
}


def prepare_data(work: Path, s: dict[str, Any]) -> None:
    """Render the four generated sets (each from its own seed, so no scene is shared)."""
    from depth_anything_v2.data.synthetic import write_synthetic_folder

    write_synthetic_folder(work / "synthetic", s["scenes"], size=s["size"], seed=0)
    write_synthetic_folder(work / "unlabeled", s["unlabeled"], size=s["size"], seed=1)  # depth never read
    write_synthetic_folder(work / "heldout", s["heldout"], size=s["size"], seed=2)
    write_synthetic_folder(work / "val", s["val"], size=s["size"], seed=3)


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


def evaluate(work: Path, s: dict[str, Any], student_argv: list[str]) -> list[dict[str, Any]]:
    """AbsRel / delta1 on the held-out scenes for the untrained student, the teacher and the student."""
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
    rows = []
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
    echo(f"# 1. data -> {work}")
    prepare_data(work, s)
    commands = stage_commands(work, s, config_dir=config_dir, progress=progress)
    for step, (name, argv) in enumerate(commands.items(), 2):
        echo(f"# {step}. {name.replace('_', '-')}\ndepth-anything {shlex.join(argv)}")
        code = cli(argv)
        if code != 0:
            raise RuntimeError(f"stage {name} failed with exit code {code}")
    echo("# 5. held-out evaluation")
    rows = evaluate(work, s, commands["student"])
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
