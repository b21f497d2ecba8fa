import math

import numpy as np
import pytest
import torch
from eval_fixtures import column_disparity, image_depth

from depth_anything_v2.evaluation import AlignmentError, DatasetNotFoundError, evaluate, evaluate_da2k
from depth_anything_v2.evaluation.da2k import DA2K, pair_correct, scene_type_of
from depth_anything_v2.evaluation.datasets import DIODE
from depth_anything_v2.evaluation.report import da2k_table, metrics_table, table2


def oracle_disparity(image_rgb):
    """A relative 'model' that is right up to scale and shift: disparity = 2 / depth + 0.3."""
    return (2.0 / image_depth(image_rgb) + 0.3).astype(np.float32)


def test_oracle_relative_model_scores_perfectly(tmp_path, make_diode):
    make_diode(tmp_path / "diode", n_indoors=2, n_outdoor=1)
    r = evaluate(oracle_disparity, "diode", tmp_path, kind="disparity", per_image=True)
    assert r["num_evaluated"] == 3 and r["num_failed"] == 0 and r["num_skipped"] == 0
    assert r["metrics"]["abs_rel"] < 1e-6 and r["metrics"]["d1"] == 1.0
    assert r["metrics_pooled"]["rmse"] < 1e-5
    assert r["settings"] == {
        "min_depth": 0.6, "max_depth": 350.0, "crop": "none", "alignment": "scale_shift_disparity",
        "min_valid_pixels": 10,
    }  # fmt: skip
    assert r["dataset"]["split"] == "val" and r["dataset"]["num_samples"] == 3
    row = r["per_image"][0]
    assert row["scale"] == pytest.approx(0.5) and row["shift"] == pytest.approx(-0.15)
    assert row["num_valid"] == 27 * 42  # row 0 masked out


def test_metric_model_scored_as_metres_with_known_error(tmp_path, make_diode):
    make_diode(tmp_path, n_indoors=1, n_outdoor=1)

    def too_far(image_rgb):
        return (1.5 * image_depth(image_rgb)).astype(np.float32)

    r = evaluate(too_far, "diode", tmp_path, kind="metric", alignment="none")
    assert r["metrics"]["abs_rel"] == pytest.approx(0.5, rel=1e-6)
    assert (r["metrics"]["d1"], r["metrics"]["d2"]) == (0.0, 1.0)  # ratio 1.5: >= 1.25, < 1.5625
    assert r["metrics"]["silog"] == pytest.approx(math.sqrt(0.5) * math.log(1.5), rel=1e-5)
    # median scaling removes the global factor
    r = evaluate(too_far, "diode", tmp_path, kind="metric", alignment="median")
    assert r["metrics"]["abs_rel"] < 1e-6
    with pytest.raises(AlignmentError, match="relative disparity"):
        evaluate(oracle_disparity, "diode", tmp_path, kind="disparity", alignment="none")


def test_corrupt_sample_is_reported_and_skipped_and_limit(tmp_path, make_diode):
    make_diode(tmp_path, n_indoors=3, n_outdoor=0)
    reader = DIODE(tmp_path)
    (tmp_path / "val" / reader.key(1)).write_bytes(b"garbage")
    r = evaluate(oracle_disparity, reader, kind="disparity")
    assert r["num_evaluated"] == 2 and r["num_failed"] == 1
    assert r["settings"]["min_depth"] == 0.6 and r["title"] == "DIODE"  # an opened reader keeps its defaults
    assert r["failures"][0]["key"] == reader.key(1) and "not a readable image" in r["failures"][0]["error"]
    r = evaluate(oracle_disparity, "diode", tmp_path, kind="disparity", limit=1)
    assert r["num_evaluated"] == 1 and r["dataset"]["limit"] == 1


def test_errors_for_missing_data_and_bad_arguments(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"data root .* does not exist"):
        evaluate(oracle_disparity, "diode", tmp_path / "nope", kind="disparity")
    with pytest.raises(ValueError, match="unknown benchmark 'foo'"):
        evaluate(oracle_disparity, "foo", tmp_path, kind="disparity")
    with pytest.raises(ValueError, match="needs kind="):
        evaluate(oracle_disparity, "diode", tmp_path)
    with pytest.raises(TypeError, match="expected a DepthPredictor"):
        evaluate(42, "diode", tmp_path)


def test_tiny_model_and_predictor_paths(tmp_path, make_diode):
    from depth_anything_v2 import DepthPredictor, build_model

    make_diode(tmp_path, n_indoors=2, n_outdoor=0)
    torch.manual_seed(0)
    model = build_model("tiny")
    model.train()
    r1 = evaluate(model, "diode", tmp_path, input_size=28)
    assert model.training  # restored for the training loop
    assert r1["prediction_kind"] == "disparity" and r1["model"]["input_size"] == 28
    assert r1["num_evaluated"] == 2 and all(math.isfinite(v) for v in r1["metrics"].values())
    predictor = DepthPredictor(model, input_size=28, device="cpu")
    r2 = evaluate(predictor, "diode", tmp_path, batch_size=2)
    assert r2["metrics"] == pytest.approx(r1["metrics"], rel=1e-5)
    with pytest.raises(ValueError, match="built with input_size=28"):
        evaluate(predictor, "diode", tmp_path, input_size=518)


def test_da2k_disparity_and_depth_models(tmp_path, make_da2k):
    make_da2k(tmp_path / "da2k")
    r = evaluate_da2k(column_disparity, tmp_path, kind="disparity")
    assert (r["num_pairs"], r["num_correct"], r["num_images"]) == (5, 3, 3)
    assert r["accuracy"] == pytest.approx(0.6)
    assert list(r["per_scene"]) == ["indoor", "outdoor", "underwater"]  # the paper's order
    assert r["per_scene"]["indoor"] == {"accuracy": 1.0, "num_pairs": 2}
    assert r["per_scene"]["outdoor"]["accuracy"] == 0.0 and r["per_scene"]["underwater"]["accuracy"] == 0.5

    # The same ordering as depth (lower = closer) gives the same accuracy ...
    r_depth = evaluate_da2k(lambda im: 100.0 - column_disparity(im), tmp_path, kind="metric")
    assert r_depth["accuracy"] == pytest.approx(0.6)
    # ... and a disparity map misread as depth flips every decided pair (the tie stays wrong): 1 of 5.
    r_flip = evaluate_da2k(column_disparity, tmp_path, kind="metric")
    assert r_flip["num_correct"] == 1
    assert evaluate(column_disparity, "da2k", tmp_path, kind="disparity")["accuracy"] == pytest.approx(0.6)


def test_da2k_bad_points_fail_that_image_only(tmp_path, make_da2k):
    import json

    ann = make_da2k(tmp_path)
    ann["outdoor/b.png"] = [{"point1": [100, 1], "point2": [2, 5], "closer_point": "point1"}]
    ann["indoor/a.jpg"].append({"point1": [1, 1], "point2": [2, 2], "closer_point": "both"})
    (tmp_path / "annotations.json").write_text(json.dumps(ann))
    r = evaluate_da2k(column_disparity, DA2K(tmp_path), kind="disparity")
    assert r["num_failed"] == 2 and r["num_images"] == 1
    errors = {f["key"]: f["error"] for f in r["failures"]}
    assert "outside the 28 x 42 image" in errors["outdoor/b.png"]
    assert "expected closer_point 'point1' or 'point2'" in errors["indoor/a.jpg"]
    with pytest.raises(DatasetNotFoundError, match=r"annotations\.json not found"):
        DA2K(tmp_path / "empty")


def test_da2k_helpers():
    from depth_anything_v2.evaluation.da2k import DA2KPair

    pred = np.array([[1.0, 2.0]])
    assert pair_correct(pred, DA2KPair((0, 1), (0, 0), "point1"), "disparity")
    assert not pair_correct(pred, DA2KPair((0, 1), (0, 0), "point1"), "metric")
    assert pair_correct(pred, DA2KPair((0, 1), (0, 0), "point2"), "metric")
    assert scene_type_of("images/aerial/x.jpg") == "aerial" and scene_type_of("x.jpg") == "unknown"


def test_markdown_tables_show_paper_rows_and_this_run(tmp_path, make_diode, make_da2k):
    make_diode(tmp_path / "diode")
    make_da2k(tmp_path / "da2k")
    res = {"diode": evaluate(oracle_disparity, "diode", tmp_path, kind="disparity")}
    t = table2(res, "oracle")
    assert "| DIODE (AbsRel ↓ / δ1 ↑) |" in t.splitlines()[0]
    assert "| V2-L (paper) | 0.066 / 0.952 |" in t and "| **oracle** | 0.000 / 1.000 |" in t
    assert "scale_shift_disparity | 0.6-350 | none |" in metrics_table(res)
    d = da2k_table(evaluate_da2k(column_disparity, tmp_path, kind="disparity"), "cols")
    assert "| V2-S (paper) | 95.3 |" in d and "| **cols** | 60.0 | 100.0 | 0.0 | 50.0 |" in d
