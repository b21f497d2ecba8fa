"""Export to ONNX and OpenVINO, with metadata inside and a validation against PyTorch before success.

    from depth_anything_v2.export import export_model, export_onnx
    export_model("vits", "vits.onnx")                                   # dynamic batch, height and width
    export_model("vits", "vits.xml", format="openvino", precision="int8")
    export_onnx(model, "vits_518x686.onnx", input_size=(518, 686))      # a DepthAnythingV2 at one fixed size

Everything here needs the ``export`` extra (onnx, onnxscript, onnxruntime, openvino, nncf), imported lazily.
"""

from __future__ import annotations

from .._lazy import lazy_getattr

_LAZY = {
    "export_model": "api",
    "ExportResult": "api",
    "export_onnx": "onnx",
    "export_openvino": "openvino",
    "ExportError": "metadata",
    "ModelInfo": "metadata",
}
__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY, globals())
