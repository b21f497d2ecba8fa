"""``depth-anything predict RECORDING --fuse stereo --roi ...`` end to end, and readouts against the scene."""

from __future__ import annotations

import numpy as np
import pytest
from oak_fixtures import INPUT_SIZE, make_session, stand_in_for

from depth_anything_v2.cli import main
from depth_anything_v2.data.synthetic import SceneConfig, render_scene
from depth_anything_v2.inference.predictor import DepthPredictor
from depth_anything_v2.io.outputs import read_depth_png16
from depth_anything_v2.io.pointcloud import Intrinsics
from depth_anything_v2.oak.recording import RecordingWriter
from depth_anything_v2.oak.spatial import Roi, RoiError, parse_roi, roi_xyz


@pytest.fixture
def recording(tmp_path, monkeypatch):
    session = make_session(n_frames=2)
    root = tmp_path / "rec"
    with RecordingWriter(root, 160, 120, session.intrinsics, 75.0) as w:
        for i, (image, stereo) in enumerate(zip(session.images_rgb, session.stereo_mm, strict=True)):
            w.write(image, stereo, i / 15)
    predictor = DepthPredictor(stand_in_for(session), input_size=INPUT_SIZE)
    # Patch where the model is made, not a name other modules may have imported already.
    monkeypatch.setattr(DepthPredictor, "from_pretrained", classmethod(lambda cls, *a, **k: predictor))
    return root, session


def test_predict_on_a_recording(recording, tmp_path, capsys):
    root, session = recording
    out = tmp_path / "fused"
    argv = ["predict", str(root), "--fuse", "stereo", "--roi", "60,40,20,20", "--out", str(out)]
    assert main([*argv, "--format", "png16,ply"]) == 0
    depth = read_depth_png16(out / "000001_depth16.png")
    assert np.mean(np.abs(depth - session.depth_m) / session.depth_m) <= 0.02
    assert len((out / "readouts.jsonl").read_text().splitlines()) == 2
    assert "2 frames" in capsys.readouterr().err
    (root / "calib.json").unlink()
    assert main(argv) == 1
    assert "calib.json: missing" in capsys.readouterr().err
    assert main(["predict", str(root), "--roi", "1,2,3", "--out", str(out)]) == 2


def test_readouts_match_the_scene_geometry():
    scene = render_scene(7, 120, 160, config=SceneConfig(indoor_probability=1.0))
    k = scene.intrinsics
    intr = Intrinsics(k[0, 0], k[1, 1], k[0, 2], k[1, 2])
    checked = 0
    for v, u in [(v, u) for v in range(10, 110, 17) for u in range(10, 150, 23)]:
        patch = scene.depth_m[v - 2 : v + 3, u - 2 : u + 3]
        if np.ptp(patch) / patch.min() > 0.005:  # only on smooth surfaces, where one point stands for the box
            continue
        # The renderer's own camera ray (x right, y UP, z forward; z = 1): the known 3-D point of pixel (u, v).
        t = float(scene.depth_m[v, u])
        point = t * np.array([(u - k[0, 2]) / k[0, 0], -(v - k[1, 2]) / k[1, 1], 1.0])
        r = roi_xyz(scene.depth_m, Roi(u - 2, v - 2, 5, 5), intr)
        ours = np.array([r.x_mm, -r.y_mm, r.z_mm]) / 1000.0  # ours is OpenCV's frame (y down)
        assert np.linalg.norm(ours - point) <= 0.01 * np.linalg.norm(point)
        checked += 1
    assert checked >= 6
    with pytest.raises(RoiError, match="box 200,10,5,5 is outside the 160x120 image"):
        roi_xyz(scene.depth_m, Roi(200, 10, 5, 5), intr)
    assert roi_xyz(scene.depth_m, Roi(150, 110, 40, 40), intr).roi == "150,110,10,10"  # clipped
    with pytest.raises(RoiError, match="expected a box 'x,y,w,h'"):
        parse_roi("1,2,3")
