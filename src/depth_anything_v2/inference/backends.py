"""Runtime backends: one small interface over PyTorch, ONNX Runtime and OpenVINO.

A backend takes the network input the reference builds (float32 ``(B, 3, H, W)``, RGB / 255 normalised with the
ImageNet mean and std, H and W multiples of 14) and returns float32 ``(B, H, W)`` disparity or metres, plus
what the model is (``encoder``, ``kind``, ``max_depth``). :class:`~.predictor.DepthPredictor` puts the reference's
pre- and post-processing around any of them:

    DepthPredictor.from_pretrained("model.onnx")                          # ONNX Runtime, metadata from the file
    DepthPredictor.from_pretrained("model.xml", ov_device="GPU")          # OpenVINO IR
    DepthPredictor.from_pretrained("vits", backend="openvino")            # a checkpoint, exported on the fly

ONNX Runtime and OpenVINO are optional (the ``export`` extra); each is imported when a backend is opened.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from ..configs import PATCH_SIZE

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnxruntime", "openvino")
#: OpenVINO inference precision per predictor precision. fp32 is exact; bf16/fp16 are OpenVINO's fast paths
#: (its default on a CPU with BF16 is bf16, which is why fp32 is asked for explicitly).
OV_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}


class Backend(Protocol):
    """``backend(x)``: float32 ``(B, 3, H, W)`` normalised image -> float32 ``(B, H, W)`` on the CPU (or on the
    model's device for the torch backend)."""

    name: str
    encoder: str
    max_depth: float | None

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


class TorchBackend:
    """The PyTorch model itself (any device and precision)."""

    name = "torch"

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        # Any module mapping (B, 3, H, W) to (B, H, W) with a max_depth will do (tests drive stand-ins through it).
        self.encoder, self.max_depth = getattr(model, "encoder", None), model.max_depth

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).float()


def _check_input(x: torch.Tensor, fixed: tuple[int, int] | None, where: str) -> np.ndarray:
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected input of shape (B, 3, H, W), got {tuple(x.shape)}")
    if fixed is not None and tuple(x.shape[-2:]) != fixed:
        raise ValueError(
            f"{where} was exported for input size {fixed[0]}x{fixed[1]} only, got {x.shape[-2]}x{x.shape[-1]}; "
            "export without --input-size for a file that runs at any multiple of 14"
        )
    if x.shape[-2] % PATCH_SIZE or x.shape[-1] % PATCH_SIZE:
        raise ValueError(f"expected height and width divisible by {PATCH_SIZE}, got {tuple(x.shape[-2:])}")
    return np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)


def _set_info(backend, info, path: Path) -> None:
    backend.info, backend.path = info, path
    backend.encoder, backend.max_depth = info.encoder, info.max_depth


def _open_error(path: Path, runtime: str, e: Exception) -> ValueError:
    return ValueError(f"cannot open {path} with {runtime}: {str(e).strip().splitlines()[0] if str(e) else e!r}")


class OnnxRuntimeBackend:
    """An exported ``.onnx`` run by ONNX Runtime.

    Args:
        path: a file written by ``depth-anything export --format onnx``.
        providers: execution providers in order of preference (``["CUDAExecutionProvider",
            "CPUExecutionProvider"]``, ``TensorrtExecutionProvider``...); default: the CPU.
        threads: intra-op threads (default: ONNX Runtime's, one per physical core).
    """

    name = "onnxruntime"

    def __init__(self, path: str | os.PathLike, *, providers: list[str] | None = None, threads: int | None = None):
        from ..export.metadata import INPUT_NAME, ModelInfo
        from ..export.onnx import require

        ort = require("onnxruntime", "the onnxruntime backend")
        path = Path(path)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        providers = providers or ["CPUExecutionProvider"]
        unknown = sorted(set(providers) - set(ort.get_available_providers()))
        if unknown:
            raise ValueError(
                f"expected ONNX Runtime execution providers from {ort.get_available_providers()}, got {unknown} "
                "(GPU providers need the onnxruntime-gpu package)"
            )
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such ONNX file")
        try:
            self.session = ort.InferenceSession(os.fspath(path), options, providers=providers)
        except Exception as e:  # ONNX Runtime raises its own exception types for corrupt or invalid graphs
            raise _open_error(path, "ONNX Runtime", e) from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != INPUT_NAME or len(inputs[0].shape) != 4:
            got = ", ".join(f"{i.name} {i.shape}" for i in inputs)
            raise ValueError(f"{path}: expected one input {INPUT_NAME!r} of shape (B, 3, H, W), got {got}")
        meta = self.session.get_modelmeta().custom_metadata_map
        _set_info(self, ModelInfo.from_props(meta, str(path)), path)
        self.output_name = self.session.get_outputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        from ..export.metadata import INPUT_NAME

        (out,) = self.session.run([self.output_name], {INPUT_NAME: _check_input(x, self.info.input_size, self.path)})
        return torch.from_numpy(out)


class OpenVINOBackend:
    """An OpenVINO IR (``.xml`` + ``.bin``) or ``.onnx`` run by OpenVINO.

    Args:
        path: a file written by ``depth-anything export``.
        device: ``"CPU"``, ``"GPU"``, ``"NPU"``, ``"AUTO"``...
        precision: ``"fp32"`` (exact; the default), ``"bf16"`` or ``"fp16"`` (OpenVINO's inference precision).
        threads: CPU inference threads (default: OpenVINO's).
    """

    name = "openvino"

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        device: str = "CPU",
        precision: str = "fp32",
        threads: int | None = None,
    ):
        from ..export.metadata import INPUT_NAME, NAMESPACE, ModelInfo
        from ..export.onnx import require

        ov = require("openvino", "the openvino backend")
        path = Path(path)
        if precision not in OV_PRECISION:
            raise ValueError(f"expected precision one of {sorted(OV_PRECISION)}, got {precision!r}")
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such OpenVINO IR or ONNX file")
        core = ov.Core()
        try:
            model = core.read_model(os.fspath(path))
        except Exception as e:  # OpenVINO raises RuntimeError subclasses with long C++ traces
            raise _open_error(path, "OpenVINO", e) from None
        inputs = model.inputs
        if len(inputs) != 1 or INPUT_NAME not in inputs[0].get_names() or inputs[0].get_partial_shape().rank != 4:
            got = ", ".join(f"{sorted(i.get_names())} {i.get_partial_shape()}" for i in inputs)
            raise ValueError(f"{path}: expected one input {INPUT_NAME!r} of shape (B, 3, H, W), got {got}")
        _set_info(self, ModelInfo.from_props(_ov_props(model, path, NAMESPACE), str(path)), path)
        config = {"PERFORMANCE_HINT": "LATENCY"}
        if device.split(".")[0] in ("CPU", "GPU", "NPU"):
            config["INFERENCE_PRECISION_HINT"] = OV_PRECISION[precision]
        if threads and device == "CPU":
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            self.compiled = core.compile_model(model, device, config)
        except Exception as e:
            raise ValueError(
                f"OpenVINO cannot compile {path} for device {device!r} ({core.available_devices} "
                f"available): {str(e).strip().splitlines()[0]}"
            ) from None
        self.request = self.compiled.create_infer_request()
        self.precision, self.device = precision, device

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.request.infer({0: _check_input(x, self.info.input_size, self.path)})
        return torch.from_numpy(np.array(out[0], dtype=np.float32, copy=True))


def _ov_props(model, path: Path, namespace: str) -> dict[str, str]:
    """Metadata of an OpenVINO model: the IR's rt_info section, or an ONNX file's metadata_props."""
    if path.suffix.lower() == ".onnx":
        import onnx

        return {p.key: p.value for p in onnx.load(os.fspath(path), load_external_data=False).metadata_props}
    if not model.has_rt_info(namespace):
        return {}
    keys = model.get_rt_info()[namespace].keys()
    return {f"{namespace}.{k}": model.get_rt_info([namespace, k]).astype(str) for k in keys}


def runtime_for_path(source: str | os.PathLike) -> str | None:
    """``"onnxruntime"`` for ``.onnx``, ``"openvino"`` for ``.xml``, ``None`` for anything else (a checkpoint)."""
    return {".onnx": "onnxruntime", ".xml": "openvino"}.get(Path(source).suffix.lower())


def open_backend(
    path: str | os.PathLike,
    backend: str = "auto",
    *,
    providers: list[str] | None = None,
    ov_device: str | None = None,
    threads: int | None = None,
    precision: str = "fp32",
):
    """Open an exported file with ``backend`` (``"auto"``: by its suffix)."""
    if backend == "auto":
        backend = runtime_for_path(path) or "onnxruntime"
    if backend == "onnxruntime":
        if precision != "fp32":
            raise ValueError(
                f"the onnxruntime backend runs the file as exported; expected precision fp32, got {precision!r} "
                "(export with --precision fp16 or int8 instead)"
            )
        return OnnxRuntimeBackend(path, providers=providers, threads=threads)
    if backend == "openvino":
        return OpenVINOBackend(path, device=ov_device or "CPU", precision=precision, threads=threads)
    raise ValueError(f"expected backend onnxruntime or openvino for {path}, got {backend!r}")


def export_cache_path(model) -> Path:
    """Where :func:`backend_from_model` keeps the ONNX export of ``model``: ``$XDG_CACHE_HOME/depth_anything_v2``
    (``~/.cache`` by default; ``DEPTH_ANYTHING_CACHE`` overrides), named by a hash of the weights, the head and
    the versions of this project and of torch, so a changed model never reuses a stale file."""
    import hashlib

    from .. import __version__

    digest = hashlib.sha256(repr((model.encoder, model.max_depth, __version__, torch.__version__)).encode())
    for key, tensor in model.state_dict().items():
        digest.update(key.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    root = os.environ.get("DEPTH_ANYTHING_CACHE") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "depth_anything_v2"
    )
    return Path(root) / "exports" / f"{model.encoder}-{digest.hexdigest()[:20]}.onnx"


def backend_from_model(model, backend: str, **options):
    """Open ``model`` with ``backend`` through its ONNX export (dynamic size, validated), made once and cached
    (:func:`export_cache_path`): the first run of a checkpoint pays the export (about 50 s for vits on 2 cores)."""
    path = export_cache_path(model)
    if not path.is_file():
        from ..export.onnx import export_onnx

        logger.warning(
            "exporting %s to %s for the %s backend (once; later runs reuse it)", model.encoder, path, backend
        )
        export_onnx(model, path)
    return open_backend(path, backend, **options)
