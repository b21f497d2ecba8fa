"""Luxonis NN archives: a fixed-size ONNX export plus the ``config.json`` DepthAI reads, for RVC4 cameras.

The archive (``.tar.xz``, built with ``luxonis_ml.nn_archive.ArchiveGenerator`` and validated against its
``Config`` schema) holds the ONNX and a config with

* one image input ``[1, 3, H, W]`` (NCHW, float32, H and W multiples of 14 as the encoder needs), with the
  model's pre-processing expressed in 0..255 pixel units: ``mean = 255 * (0.485, 0.456, 0.406)``,
  ``scale = 255 * (0.229, 0.224, 0.225)``, RGB order (``dai_type: RGB888p``, planar), ``resize_mode: STRETCH``
  (the host resizes the output back to the frame);
* one output ``[1, H, W]`` (the model's disparity, or metres for a metric model) and a depth-map head
  (``MapOutputParser`` from depthai-nodes, without min-max scaling: the host fuses the raw values).

What Luxonis' converter must still do for RVC4: this archive carries an ONNX (float32); RVC4 runs a SNPE/QNN
``.dlc`` that Luxonis' ``modelconverter`` (or HubAI) produces from it, quantising to INT8 with calibration
images and baking mean/scale in. RVC2 (Myriad X) is not a target: a ViT at this size does not fit its
compute budget (Luxonis ships Depth Anything V2 for RVC4 only).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["IMAGENET_MEAN_255", "IMAGENET_SCALE_255", "archive_config", "build_nn_archive"]

IMAGENET_MEAN_255 = [123.675, 116.28, 103.53]  # 255 * (0.485, 0.456, 0.406)
IMAGENET_SCALE_255 = [58.395, 57.12, 57.375]  # 255 * (0.229, 0.224, 0.225)


def _import_luxonis_ml():
    try:
        from luxonis_ml import nn_archive
    except ImportError:
        raise ImportError("NN archives need luxonis-ml: pip install 'depth-anything-v2[oak]'") from None
    return nn_archive


def _onnx_io(onnx_path: Path) -> tuple[str, list[int], str, list[int]]:
    try:
        import onnx
    except ImportError:
        raise ImportError("NN archives need onnx: pip install 'depth-anything-v2[oak]'") from None
    model = onnx.load(str(onnx_path), load_external_data=False)
    graph = model.graph
    init = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in init]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise ValueError(f"{onnx_path}: expected one input and one output, got {len(inputs)} and {len(graph.output)}")

    def shape(v) -> list[int]:
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]
        if any(d < 1 for d in dims):
            raise ValueError(f"{onnx_path}: expected a fixed-size export, got a dynamic shape for {v.name!r}: {dims}")
        return dims

    return inputs[0].name, shape(inputs[0]), graph.output[0].name, shape(graph.output[0])


def archive_config(
    name: str, onnx_file: str, input_name: str, input_shape: list[int], output_name: str, output_shape: list[int]
) -> dict:
    """The archive's ``config.json`` as a dict (see the module docstring)."""
    return {
        "config_version": "1.0",
        "model": {
            "metadata": {"name": name, "path": onnx_file, "precision": "float32"},
            "inputs": [
                {
                    "name": input_name,
                    "dtype": "float32",
                    "input_type": "image",
                    "shape": input_shape,
                    "layout": "NCHW",
                    "preprocessing": {
                        "mean": IMAGENET_MEAN_255,
                        "scale": IMAGENET_SCALE_255,
                        "dai_type": "RGB888p",
                        "resize_mode": "STRETCH",
                    },
                }
            ],
            "outputs": [{"name": output_name, "dtype": "float32", "shape": output_shape, "layout": "NHW"}],
            "heads": [
                {
                    "parser": "MapOutputParser",
                    "metadata": {"min_max_scaling": False},
                    "outputs": [output_name],
                }
            ],
        },
    }


def build_nn_archive(
    onnx_path: str | Path, out: str | Path, *, input_size: tuple[int, int], name: str = "depth-anything-v2"
) -> Path:
    """Write ``out`` (``.tar.xz``) from a fixed-size ONNX export whose input is ``input_size = (W, H)``.

    Raises ``ValueError`` when the sizes are not multiples of 14, the ONNX is dynamic or does not match
    ``input_size``, and ``ImportError`` (with the install hint) without luxonis-ml or onnx.
    """
    onnx_path, out = Path(onnx_path), Path(out)
    width, height = input_size
    if width % 14 or height % 14:
        raise ValueError(f"expected an input size with sides multiple of 14 (patch size), got {width}x{height}")
    if not onnx_path.is_file():
        raise ValueError(f"{onnx_path}: no such ONNX file")
    in_name, in_shape, out_name, out_shape = _onnx_io(onnx_path)
    if in_shape != [1, 3, height, width]:
        raise ValueError(f"{onnx_path}: expected input shape [1, 3, {height}, {width}], got {in_shape}")
    nn_archive = _import_luxonis_ml()
    cfg = archive_config(name, onnx_path.name, in_name, in_shape, out_name, out_shape)
    nn_archive.Config(**cfg)  # validate against the schema before writing anything
    stem = out.name.removesuffix(".tar.xz")
    out.parent.mkdir(parents=True, exist_ok=True)
    generator = nn_archive.ArchiveGenerator(
        archive_name=stem, save_path=str(out.parent), cfg_dict=cfg, executables_paths=[str(onnx_path)]
    )
    return Path(generator.make_archive())
