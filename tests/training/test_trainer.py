"""The trainer: configuration, exact resume, checkpoints that load for inference, the three stages, error paths."""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from training_fixtures import live_teacher, teacher_config, write_images, write_pseudo_shards

from depth_anything_v2 import load_model
from depth_anything_v2.cli import main
from depth_anything_v2.training import checkpointing as ckpt_io
from depth_anything_v2.training.config import ConfigError, from_dict, load_config
from depth_anything_v2.training.trainer import (
    Trainer,
    TrainingError,
    build_training_model,
    train,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _write_yaml(path: Path, data: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(data))
    return path


def _load(path: Path) -> dict:
    return torch.load(path, weights_only=True)


# ------------------------------------------------------------------------------------------ configuration
def test_overrides_types_and_stage_defaults(tmp_path: Path) -> None:
    path = _write_yaml(tmp_path / "c.yaml", teacher_config(tmp_path, stage="student", optim={"lr_encoder": "5e-6"}))
    config = load_config(
        path,
        [
            "train.max_steps=7",
            "optim.lr_decoder=1e-4",  # YAML 1.1 reads this as a string; the float field converts it
            "data.crop_size=[56, 70]",
            'data.train=[{type: shards, shards: "x/pseudo-{000000..000003}.tar"}]',
            "model.init=null",
        ],
    )
    assert config.train.max_steps == 7
    assert config.optim.lr_encoder == 5e-6 and config.optim.lr_decoder == 1e-4
    assert config.crop_hw == (56, 70)
    assert config.data.train == [{"type": "shards", "shards": "x/pseudo-{000000..000003}.tar"}]
    # Student defaults from the paper: trimmed loss, feature alignment, Adam.
    assert (config.loss.trim, config.loss.feature_weight, config.optim.name) == (0.1, 1.0, "adam")
    metric = from_dict(teacher_config(tmp_path, stage="metric", model={"encoder": "tiny", "max_depth": 20}))
    assert (metric.optim.name, metric.optim.weight_decay, metric.model.max_depth) == ("adamw", 0.01, 20.0)
    # An explicit value beats the stage default.
    assert from_dict(teacher_config(tmp_path, stage="student", loss={"trim": 0.2})).loss.trim == 0.2


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optim.lr_encodr=1e-5"], "unknown key 'optim.lr_encodr'; expected one of"),
        (["optim.lr_encodr=1e-5"], "did you mean 'optim.lr_encoder'"),
        (["train.max_steps=many"], "train.max_steps: expected an integer, got 'many'"),
        (["data.crop_size=50"], "data.crop_size: expected positive multiples of 14, got 50"),
        (["stage=metric"], "model.max_depth: the metric stage needs the depth range"),
        (["model.max_depth=20"], "only the metric stage has a depth range"),
        (["stage=pupil"], "stage: expected one of ['teacher', 'student', 'metric'], got 'pupil'"),
        (["data.train=[{type: nyu, root: x}]"], "data.train[0].type: expected one of"),
        (["train.precision=fp8"], "train.precision: expected one of 'fp32' | 'bf16' | 'fp16', got 'fp8'"),
        (["train.batch_size=6", "train.grad_accum_steps=4"], "not divisible by grad_accum_steps 4"),
        (["maxsteps"], "expected an override of the form key=value"),
        (["data.train=[{type: shards, shards: x/{000..009}.tar}]"], "quote strings holding braces"),
        (["optim.weight_decay=0.1"], "use name: adamw for weight decay"),
        (["data.val=[{type: shards, shards: x.tar}]"], "validation needs ground-truth depth"),
        (["model.encoder=vith"], "model.encoder: expected one of"),
    ],
)
def test_bad_configs_are_refused_with_the_key_and_what_was_expected(tmp_path, overrides, message) -> None:
    path = _write_yaml(tmp_path / "c.yaml", teacher_config(tmp_path))
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    assert message in str(info.value)


def test_cli_usage_errors_exit_2_and_print_config(tmp_path: Path, capsys) -> None:
    path = _write_yaml(tmp_path / "c.yaml", teacher_config(tmp_path))
    assert main(["train", "--config", str(path), "train.max_stepz=3"]) == 2
    assert "unknown key 'train.max_stepz'" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("stage: [teacher\n")
    assert main(["train", "--config", str(bad)]) == 2
    assert "cannot parse" in capsys.readouterr().err
    # A dataset that is not there is a usage error too (found when the run starts).
    assert main(["train", "--config", str(path), "data.train=[{type: hypersim, root: /nonexistent}]"]) == 2
    assert "data.train[0]" in capsys.readouterr().err
    assert main(["train", "--config", str(path), "--print-config", "train.max_steps=9", "--resume", "auto"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["train"]["max_steps"] == 9 and printed["train"]["resume"] == "auto"
    assert printed["optim"]["lr_encoder"] == 1e-3


# ------------------------------------------------------------------------------------------------ resume
def _resume_matches(tmp_path: Path, config: dict, stop: int) -> tuple[dict, dict]:
    """Train uninterrupted; then train from the step-``stop`` checkpoint in a fresh folder; return both."""
    full = train(from_dict(config))
    resumed_dir = Path(config["output_dir"] + "_resumed")
    (resumed_dir / "checkpoints").mkdir(parents=True)
    shutil.copy(ckpt_io.checkpoint_path(Path(config["output_dir"]) / "checkpoints", stop), resumed_dir / "checkpoints")
    # The log as a run killed after step `stop` left it: later lines, the last one cut short.
    log = (Path(config["output_dir"]) / "train_log.jsonl").read_text()
    (resumed_dir / "train_log.jsonl").write_text(log + '{"step": 9, "lo')
    resumed = train(from_dict({**config, "output_dir": str(resumed_dir)}), resume="auto")
    assert resumed.step == full.step
    return _load(full.final_checkpoint), _load(resumed.final_checkpoint)


def _assert_same_state(a: dict, b: dict) -> None:
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def test_resume_continues_exactly_as_an_uninterrupted_run(tmp_path: Path) -> None:
    config = teacher_config(
        tmp_path,
        train={
            "batch_size": 4,
            "grad_accum_steps": 2,
            "max_steps": 4,
            "log_every": 1,
            "ckpt_every": 2,
            "keep_last": 5,
            "progress": False,
        },
    )
    # 12 scenes, 2 per micro-batch: an epoch is 6 micro-batches = 3 steps, so the resumed run crosses an epoch.
    a, b = _resume_matches(tmp_path, config, stop=2)
    _assert_same_state(a, b)
    full_a = _load(Path(config["output_dir"]) / "checkpoints" / "step_00000004.pt")
    full_b = _load(Path(config["output_dir"] + "_resumed") / "checkpoints" / "step_00000004.pt")
    state_a, state_b = full_a["optimizer"]["state"], full_b["optimizer"]["state"]
    assert all(torch.equal(state_a[k]["exp_avg_sq"], state_b[k]["exp_avg_sq"]) for k in state_a)
    assert full_a["scheduler"] == full_b["scheduler"]
    assert full_b["ranks"][0]["micro_batches"] == 8
    # The log continues without duplicates: the lines after the checkpoint were dropped and rewritten.
    records = [json.loads(ln) for ln in (Path(config["output_dir"] + "_resumed") / "train_log.jsonl").open()]
    train_steps = [r["step"] for r in records if "loss" in r]
    assert train_steps == [1, 2, 3, 4]


def test_student_on_shards_resumes_exactly_with_workers_cutmix_and_feature_alignment(tmp_path: Path) -> None:
    write_pseudo_shards(tmp_path / "pseudo", shards=4, per_shard=6)
    config = teacher_config(
        tmp_path,
        stage="student",
        data={
            "train": [{"type": "shards", "shards": str(tmp_path / "pseudo")}],
            "num_workers": 2,
            "cutmix": 0.5,
            "shuffle_buffer": 4,
        },
        train={"batch_size": 4, "max_steps": 5, "log_every": 1, "ckpt_every": 3, "progress": False},
    )
    a, b = _resume_matches(tmp_path, config, stop=3)
    _assert_same_state(a, b)
    # The resume seeked: the checkpoint holds both workers' stream positions.
    saved = _load(ckpt_io.checkpoint_path(Path(config["output_dir"]) / "checkpoints", 3))
    assert [sorted(c) for c in saved["ranks"][0]["cursors"]] == [sorted(CURSOR_KEYS)] * 2
    log = [json.loads(ln) for ln in (Path(config["output_dir"]) / "train_log.jsonl").open()]
    losses = [r for r in log if "loss" in r]
    # Student loss terms: the trimmed SSI + GM, and feature alignment against the frozen initial encoder
    # (zero at step 1: the student starts as that encoder, every token is above the 0.85 threshold).
    assert losses[0]["feat"] == 0.0 and all(math.isfinite(r["feat"]) for r in losses)
    assert a["stage"] == "student" and a["config"]["loss"]["trim"] == 0.1


CURSOR_KEYS = ("epoch", "shard", "offset", "draining", "buffer", "rng", "count")


def test_a_resumed_shard_stream_seeks_instead_of_replaying(tmp_path: Path, monkeypatch) -> None:
    import depth_anything_v2.data.shards as shards_module
    from depth_anything_v2.training.data import ShardBatches, StreamBatches

    write_pseudo_shards(tmp_path / "pseudo", shards=2, per_shard=8)  # 8 batches of 2 per epoch

    def stream(**resume) -> StreamBatches:
        source = ShardBatches(str(tmp_path / "pseudo"), transform=None, micro_batch=2, seed=0, rank=0,
                              world_size=1, shuffle_buffer=3)  # fmt: skip
        return StreamBatches(source, world_size=1, num_workers=0, pin_memory=False, **resume)

    counts = {"read": 0, "decoded": 0}
    iter_tar, decode_field = shards_module._iter_tar, shards_module.decode_field

    def counted_iter_tar(*args):
        for sample in iter_tar(*args):
            counts["read"] += 1
            yield sample

    def counted_decode(field, data):
        counts["decoded"] += field == "png"
        return decode_field(field, data)

    monkeypatch.setattr(shards_module, "_iter_tar", counted_iter_tar)
    monkeypatch.setattr(shards_module, "decode_field", counted_decode)
    full, states = stream(), []
    batches = []
    for batch in full:
        batches.append(batch["disparity"])
        states.append(torch.load(_roundtrip(full.cursors, tmp_path), weights_only=True))  # plain data
        if len(batches) == 12:
            break
    # Mid-epoch with a full shuffle buffer, while draining the buffer at the epoch's end, in the next epoch.
    for stop in (3, 7, 9):
        counts.update(read=0, decoded=0)
        resumed = iter(stream(position=stop, cursors=states[stop - 1]))
        again = [next(resumed)["disparity"] for _ in range(3)]
        assert all(torch.equal(x, y) for x, y in zip(again, batches[stop : stop + 3], strict=True)), stop
        # Nothing before the resume point is decoded; only the shuffle buffer (3 samples) is read again.
        assert counts["decoded"] == 6 and counts["read"] <= 3 + 6, (stop, counts)


def _roundtrip(value, tmp_path: Path) -> Path:
    path = tmp_path / "cursors.pt"
    torch.save(value, path)
    return path


# ------------------------------------------------------------------------------------ checkpoints and use
def test_final_checkpoint_loads_with_load_model_and_runs_predict(tmp_path: Path) -> None:
    config = teacher_config(tmp_path, train={"batch_size": 4, "max_steps": 3, "log_every": 1, "ckpt_every": 1,
                                             "keep_last": 2, "val_every": 1, "progress": False})  # fmt: skip
    result = train(from_dict(config))
    ckpt = _load(result.final_checkpoint)
    assert ckpt["format"] == ckpt_io.CHECKPOINT_FORMAT and ckpt["encoder"] == "tiny" and ckpt["max_depth"] is None
    assert "optimizer" not in ckpt  # final.pt / best.pt are slim
    model = load_model(result.final_checkpoint)
    assert all(torch.equal(v, ckpt["model"][k]) for k, v in model.state_dict().items())
    # Full step checkpoints load too, and only the newest keep_last are kept.
    assert [s for s, _ in ckpt_io.list_checkpoints(result.output_dir / "checkpoints")] == [2, 3]
    load_model(ckpt_io.latest_checkpoint(result.output_dir / "checkpoints"), encoder="tiny")
    # best.pt is the step with the lowest validation AbsRel in the log.
    vals = [json.loads(ln) for ln in (result.output_dir / "train_log.jsonl").open() if '"val"' in ln]
    best_step = min(vals, key=lambda r: r["val"]["abs_rel"])["step"]
    assert _load(result.output_dir / "best.pt")["step"] == best_step == result.best["step"]
    # The poly schedule, per optimiser step.
    lrs = {
        json.loads(ln)["step"]: json.loads(ln)["lr_decoder"]
        for ln in (result.output_dir / "train_log.jsonl").open()
        if '"loss"' in ln
    }
    assert lrs[1] == pytest.approx(2e-3 * (1 - 1 / 3) ** 0.9) and lrs[3] == 0.0
    image = write_images(tmp_path / "images", 1)[0]
    code = main(["predict", str(image), "--weights", str(result.final_checkpoint), "--encoder", "tiny",
                 "--out", str(tmp_path / "pred"), "--format", "npy", "--device", "cpu", "--input-size", "56",
                 "--no-progress"])  # fmt: skip
    assert code == 0
    depth = __import__("numpy").load(tmp_path / "pred" / "img_000.npy")
    assert depth.shape == (42, 56) and depth.std() > 0


def test_metric_stage_starts_from_a_relative_encoder_and_trains_silog(tmp_path: Path) -> None:
    relative = train(
        from_dict(teacher_config(tmp_path / "rel", train={"batch_size": 4, "max_steps": 1, "progress": False}))
    )
    config = teacher_config(
        tmp_path,
        stage="metric",
        model={"encoder": "tiny", "max_depth": 20.0, "init": str(relative.final_checkpoint)},
        data={
            "train": [
                {"type": "synthetic", "n": 12, "size": [56, 70], "scene": {"indoor_probability": 1.0}, "holes": 0.6}
            ],
            "val": [{"type": "synthetic", "n": 2, "size": [56, 70], "seed": 7, "scene": {"indoor_probability": 1.0}}],
            "crop_size": 56,
            "num_workers": 0,
        },
        val={"input_size": 56, "max_depth": 20.0},
        train={"batch_size": 4, "max_steps": 2, "log_every": 1, "progress": False},
    )
    start = build_training_model(from_dict(config))
    rel = _load(relative.final_checkpoint)["model"]
    assert start.is_metric and start.max_depth == 20.0
    assert all(torch.equal(v, rel[f"pretrained.{k}"]) for k, v in start.pretrained.state_dict().items())
    assert not torch.equal(start.depth_head.scratch.output_conv1.weight, rel["depth_head.scratch.output_conv1.weight"])
    result = train(from_dict(config))
    logged = [json.loads(ln) for ln in (result.output_dir / "train_log.jsonl").open()]
    assert "silog" in logged[0] and math.isfinite(logged[0]["silog"])
    assert result.last_val["alignment"] == "none"  # metres, scored without alignment
    ckpt = _load(result.final_checkpoint)
    assert ckpt["max_depth"] == 20.0 and ckpt["stage"] == "metric"
    # load_model cannot tell a metric checkpoint from its weights: pass max_depth (recorded in the checkpoint).
    model = load_model(result.final_checkpoint, max_depth=ckpt["max_depth"])
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 56, 56))
    assert model.is_metric and float(out.min()) > 0 and float(out.max()) < 20.0
    # Gradient accumulation optimises the same SiLog of the global batch (its square root over all pixels).
    _assert_same_optimisation(logged, _accumulated_log(tmp_path / "accum", config))


def _accumulated_log(out: Path, config: dict) -> list[dict]:
    config = {**config, "output_dir": str(out), "train": {**config["train"], "grad_accum_steps": 2}}
    return [r for r in train(from_dict(config)).history if "loss" in r]


def _assert_same_optimisation(a: list[dict], b: list[dict]) -> None:
    a = [r for r in a if "loss" in r]
    assert len(a) == len(b) >= 2
    for x, y in zip(a, b, strict=True):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-5), (x, y)
        assert x["grad_norm"] == pytest.approx(y["grad_norm"], rel=1e-4), (x, y)


def test_gradient_accumulation_with_holes_and_trimming_equals_one_micro_batch(tmp_path: Path) -> None:
    # Labels with 0-60% holes, trimmed loss: 2 micro-batches of 2 equal 1 of 4 (per-micro-batch denominators
    # differed by about 1%).
    data = {"train": [{"type": "synthetic", "n": 12, "size": [56, 70], "holes": 0.6}], "val": []}
    config = teacher_config(tmp_path / "one", data=data, loss={"trim": 0.1}, train={"max_steps": 2, "ckpt_every": 9})
    _assert_same_optimisation(train(from_dict(config)).history, _accumulated_log(tmp_path / "two", config))


def test_tensorboard_events_hold_the_logged_scalars(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = teacher_config(
        tmp_path, train={"batch_size": 4, "max_steps": 3, "log_every": 1, "progress": False, "tensorboard": True}
    )
    result = train(from_dict(config))
    logged = [json.loads(ln) for ln in (result.output_dir / "train_log.jsonl").open()]
    events = EventAccumulator(str(result.output_dir / "tensorboard"))
    events.Reload()
    losses = [(r["step"], r["loss"]) for r in logged if "loss" in r]
    assert len(losses) == 3
    scalars = [(e.step, e.value) for e in events.Scalars("loss")]
    assert [s for s, _ in scalars] == [s for s, _ in losses]
    np.testing.assert_allclose([v for _, v in scalars], [v for _, v in losses], rtol=1e-6)
    assert "val/abs_rel" in events.Tags()["scalars"]


# ------------------------------------------------------------------------------------------- error paths
def test_non_finite_steps_are_skipped_then_training_stops(tmp_path: Path, monkeypatch, capsys) -> None:
    def nan_loss(self, pred, features, batch, regions, totals):
        return {"loss": pred.float().mean() * float("nan")}

    monkeypatch.setattr(Trainer, "_loss", nan_loss)
    config = teacher_config(tmp_path, train={"batch_size": 4, "max_steps": 10, "max_bad_steps": 3, "progress": False})
    path = _write_yaml(tmp_path / "c.yaml", config)
    assert main(["train", "--config", str(path)]) == 1
    assert "3 consecutive steps with a non-finite loss" in capsys.readouterr().err
    with pytest.raises(TrainingError):
        train(from_dict(config))


def test_dry_run_checks_everything_and_writes_nothing(tmp_path: Path, capsys) -> None:
    path = _write_yaml(tmp_path / "c.yaml", teacher_config(tmp_path))
    assert main(["train", "--config", str(path), "--dry-run"]) == 0
    assert "at step 1" in capsys.readouterr().out
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_steps(tmp_path: Path, precision: str) -> None:
    config = teacher_config(tmp_path, train={"batch_size": 4, "max_steps": 2, "log_every": 1, "precision": precision,
                                             "progress": False})  # fmt: skip
    result = train(from_dict(config))
    losses = [r["loss"] for r in result.history if "loss" in r]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    scaled = [r.get("loss_scale") for r in result.history if "loss" in r]
    assert (scaled[0] is not None) == (precision == "fp16")  # fp16 uses a gradient scaler, bf16 does not


CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs" / "train").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_stage_configs_are_valid(path: Path) -> None:
    config = load_config(path)
    assert config.stage in path.stem
    if config.stage == "metric":
        assert config.model.max_depth in (20.0, 80.0) and config.optim.name == "adamw"
    if not path.stem.startswith("miniature"):  # the paper's recipe
        assert (config.optim.lr_encoder, config.optim.lr_decoder, config.data.crop_size) == (5e-6, 5e-5, 518)
        assert config.train.batch_size == {"teacher": 64, "student": 192, "metric": 32}[config.stage]


def test_validation_scores_an_oracle_as_perfect_and_a_flipped_map_as_poor() -> None:
    from depth_anything_v2.data.synthetic import SyntheticScenes
    from depth_anything_v2.training.trainer import evaluate_model

    scenes = SyntheticScenes(3, (56, 70), seed=4, target="depth")

    class Replay(torch.nn.Module):
        """Returns prepared maps in order (the evaluator's image resize is the identity at 56 x 70)."""

        def __init__(self, maps: list[torch.Tensor]) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))
            self.maps, self.is_metric, self.max_depth = maps, False, None

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            assert x.shape[-2:] == (56, 70)
            return self.maps.pop(0)[None]

    disparity = [torch.where(s["valid_mask"], 1 / s["depth_m"].clamp(min=1e-6), 0.0) for s in scenes]
    perfect = evaluate_model(Replay([3.0 * d + 0.5 for d in disparity]), scenes, input_size=56)
    assert perfect["num_images"] == 3 and perfect["alignment"] == "scale_shift_disparity"
    assert perfect["metrics"]["abs_rel"] < 1e-4 and perfect["metrics"]["d1"] == 1.0
    flipped = evaluate_model(Replay([d.flip(0) for d in disparity]), scenes, input_size=56)
    assert flipped["metrics"]["abs_rel"] > 0.2 and flipped["metrics"]["d1"] < 0.7


def test_validation_scores_exactly_what_the_predictor_and_eval_predict() -> None:
    from depth_anything_v2.data.synthetic import SyntheticScenes
    from depth_anything_v2.evaluation.metrics import score_pairs
    from depth_anything_v2.inference.predictor import DepthPredictor
    from depth_anything_v2.training.trainer import evaluate_model

    scenes = SyntheticScenes(2, (50, 66), seed=4, target="depth")  # resized to 56 x 74 and back
    model = live_teacher(seed=1).eval()
    predictor = DepthPredictor(model, input_size=56)
    rgb = [scenes.render(i).image_rgb for i in range(2)]
    preds = [predictor.predict(im).depth for im in rgb]
    batch = torch.from_numpy(np.stack(rgb)).permute(0, 3, 1, 2)
    np.testing.assert_array_equal(predictor.predict_tensor(batch[:1]).numpy(), preds[0][None])
    np.testing.assert_allclose(predictor.predict_tensor(batch).numpy(), np.stack(preds), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"expected RGB uint8 images of shape \(B, 3, H, W\), got torch.float32"):
        predictor.predict_tensor(batch.float())
    got = evaluate_model(model, scenes, input_size=56)
    abs_rel = [
        score_pairs(
            [(pred, scenes[i]["depth_m"].numpy(), scenes[i]["valid_mask"].numpy())],
            alignment="scale_shift_disparity",
            kind="disparity",
            min_depth=1e-3,
            max_depth=math.inf,
        )["metrics"]["abs_rel"]
        for i, pred in enumerate(preds)
    ]
    assert got["metrics"]["abs_rel"] == pytest.approx(sum(abs_rel) / 2, rel=1e-9)


def test_activation_checkpointing_gives_the_same_loss_and_gradients() -> None:
    from depth_anything_v2.training.trainer import TrainingModule, checkpoint_blocks

    torch.manual_seed(0)
    x = torch.randn(2, 3, 56, 70)
    grads = []
    for checkpointed in (False, True):
        model = live_teacher(seed=2)
        if checkpointed:
            checkpoint_blocks(model.pretrained.blocks)
        pred, _ = TrainingModule(model)(x)
        loss = (pred**2).mean()
        loss.backward()
        grads.append(
            (float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        )
    assert grads[0][0] == grads[1][0]
    assert grads[0][1].keys() == grads[1][1].keys()
    for name, g in grads[0][1].items():
        torch.testing.assert_close(grads[1][1][name], g, rtol=1e-6, atol=1e-8, msg=name)


def test_memory_estimate_for_the_papers_vitg_teacher(tmp_path: Path, capsys) -> None:
    from depth_anything_v2.training.memory import estimate_memory

    config = teacher_config(
        tmp_path,
        model={"encoder": "vitg"},
        data={"train": [{"type": "synthetic", "n": 8}], "crop_size": 518},
        train={"batch_size": 32, "precision": "bf16", "strategy": "fsdp"},
    )
    plain = estimate_memory(from_dict(config), 8)
    assert plain.num_parameters == 1_258_132_225 and plain.micro_batch == 4
    # Sharded fp32 Adam moments: 8 bytes x trainable parameters (all but the unused mask token and
    # refinenet4.resConfUnit1) / 8 GPUs.
    assert plain.optimizer == 8 * 1_255_475_713 / 8
    config["train"]["activation_checkpointing"] = True
    checkpointed = estimate_memory(from_dict(config), 8)
    assert checkpointed.activations < plain.activations / 4 and checkpointed.parameters == plain.parameters
    path = _write_yaml(tmp_path / "g.yaml", config)
    assert main(["train", "--config", str(path), "--estimate-memory", "8"]) == 0
    out = capsys.readouterr().out
    assert "1258.1M parameters, 8 GPU(s), micro-batch 4" in out and "activations" in out
    assert main(["train", "--config", str(path), "--estimate-memory", "3"]) == 2  # 32 is not divisible by 3
    assert "not divisible by world size 3" in capsys.readouterr().err
