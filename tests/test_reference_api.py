"""The reference repository's README snippets, run verbatim against an official-format checkpoint file."""

import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
import torch

# Depth-Anything-V2/README.md, "Use our models", verbatim except `encoder = 'vitl'` -> 'vits' (the line the
# README invites users to change; a vitl file is 1.3 GB).
RELATIVE_SNIPPET = """
import cv2
import torch

from depth_anything_v2.dpt import DepthAnythingV2

DEVICE = 'cuda' if torch.cuda.is_available() else 'mps' if torch.backends.mps.is_available() else 'cpu'

model_configs = {
    'vits': {'encoder': 'vits', 'features': 64, 'out_channels': [48, 96, 192, 384]},
    'vitb': {'encoder': 'vitb', 'features': 128, 'out_channels': [96, 192, 384, 768]},
    'vitl': {'encoder': 'vitl', 'features': 256, 'out_channels': [256, 512, 1024, 1024]},
    'vitg': {'encoder': 'vitg', 'features': 384, 'out_channels': [1536, 1536, 1536, 1536]}
}

encoder = 'vits' # or 'vits', 'vitb', 'vitg'

model = DepthAnythingV2(**model_configs[encoder])
model.load_state_dict(torch.load(f'checkpoints/depth_anything_v2_{encoder}.pth', map_location='cpu'))
model = model.to(DEVICE).eval()

raw_img = cv2.imread('your/image/path')
depth = model.infer_image(raw_img) # HxW raw depth map in numpy
"""

# Depth-Anything-V2/metric_depth/README.md, verbatim except `encoder = 'vitl'` -> 'vits'.
METRIC_SNIPPET = """
import cv2
import torch

from depth_anything_v2.dpt import DepthAnythingV2

model_configs = {
    'vits': {'encoder': 'vits', 'features': 64, 'out_channels': [48, 96, 192, 384]},
    'vitb': {'encoder': 'vitb', 'features': 128, 'out_channels': [96, 192, 384, 768]},
    'vitl': {'encoder': 'vitl', 'features': 256, 'out_channels': [256, 512, 1024, 1024]}
}

encoder = 'vits' # or 'vits', 'vitb'
dataset = 'hypersim' # 'hypersim' for indoor model, 'vkitti' for outdoor model
max_depth = 20 # 20 for indoor model, 80 for outdoor model

model = DepthAnythingV2(**{**model_configs[encoder], 'max_depth': max_depth})
model.load_state_dict(torch.load(f'checkpoints/depth_anything_v2_metric_{dataset}_{encoder}.pth', map_location='cpu'))
model.eval()

raw_img = cv2.imread('your/image/path')
depth = model.infer_image(raw_img) # HxW depth map in meters in numpy
"""


@pytest.mark.parametrize(
    ("snippet", "ckpt", "max_depth"),
    [
        (RELATIVE_SNIPPET, "depth_anything_v2_vits.pth", None),
        (METRIC_SNIPPET, "depth_anything_v2_metric_hypersim_vits.pth", 20.0),
    ],
)
def test_reference_readme_snippet_runs_verbatim(tmp_path, snippet, ckpt, max_depth, make_model):
    model = make_model("vits", max_depth)
    (tmp_path / "checkpoints").mkdir()
    torch.save(model.state_dict(), tmp_path / "checkpoints" / ckpt)
    (tmp_path / "your" / "image").mkdir(parents=True)
    bgr = np.random.default_rng(0).integers(0, 256, (40, 54, 3), dtype=np.uint8)
    # cv2.imread('your/image/path') reads by content, not extension
    _, png = cv2.imencode(".png", bgr)
    (tmp_path / "your" / "image" / "path").write_bytes(png.tobytes())
    script = snippet + "\nimport numpy as np\nnp.save('out.npy', depth)\n"
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    depth = np.load(tmp_path / "out.npy")
    assert depth.dtype == np.float32 and depth.shape == (40, 54)
    np.testing.assert_array_equal(depth, model.eval().infer_image(bgr))
    if max_depth:
        assert (depth > 0).all() and (depth < max_depth).all()
