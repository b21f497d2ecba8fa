"""Training: losses, the trainer for the three stages (teacher, student, metric) and pseudo-labelling.

    from depth_anything_v2.training import load_config, train
    result = train(load_config("configs/train/miniature_teacher.yaml", ["train.max_steps=50"]))

Names load lazily, so ``import depth_anything_v2.training`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_getattr

_LAZY = {
    "train": "trainer",
    "Trainer": "trainer",
    "TrainResult": "trainer",
    "TrainingError": "trainer",
    "evaluate_model": "trainer",
    "load_encoder_init": "trainer",
    "build_training_model": "trainer",
    "TrainConfig": "config",
    "load_config": "config",
    "ConfigError": "config",
    "pseudo_label": "pseudo_label",
    "PseudoLabelError": "pseudo_label",
    "DepthLoss": "losses",
}
__all__ = sorted(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from .config import ConfigError, TrainConfig, load_config
    from .losses import DepthLoss
    from .pseudo_label import PseudoLabelError, pseudo_label
    from .trainer import (
        Trainer,
        TrainingError,
        TrainResult,
        build_training_model,
        evaluate_model,
        load_encoder_init,
        train,
    )


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
