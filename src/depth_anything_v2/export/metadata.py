"""What an exported file says about its model: one ``ModelInfo``, written as string key/value pairs into the
ONNX ``metadata_props`` and the OpenVINO IR's ``rt_info``, and read back by the runtime backends."""

from __future__ import annotations

from dataclasses import dataclass

from .. import __version__
from ..configs import IMAGENET_MEAN, IMAGENET_STD, PATCH_SIZE, PUBLISHED_MODELS

#: Prefix of every key this project writes (the rt_info section of an OpenVINO IR has the same name).
NAMESPACE = "depth_anything_v2"
INPUT_NAME, OUTPUT_NAME = "image", "depth"


class ExportError(RuntimeError):
    """An export that could not be written or did not validate (nothing is left under the output name)."""


def weights_license(encoder: str, source: str | None = None) -> str:
    """The licence of the weights: the published model's, else the official one for that encoder."""
    published = PUBLISHED_MODELS.get(str(source)) or PUBLISHED_MODELS.get(encoder)
    if published is None:
        return "unknown"
    if str(source) in PUBLISHED_MODELS:
        return published.license
    return f"{published.license} if trained from the official {encoder} weights"


@dataclass(frozen=True)
class ModelInfo:
    """The model behind an exported file.

    ``input_size`` is ``None`` for a file that runs at any multiple of ``patch_multiple`` (dynamic shapes),
    else the fixed ``(H, W)``. ``precision`` is how the weights are stored (``fp32``, ``fp16``, ``int8``).
    """

    encoder: str
    max_depth: float | None
    license: str = "unknown"
    input_size: tuple[int, int] | None = None
    precision: str = "fp32"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    patch_multiple: int = PATCH_SIZE
    version: str = __version__

    @property
    def kind(self) -> str:
        """``"metric"`` (metres) or ``"disparity"`` (relative model)."""
        return "disparity" if self.max_depth is None else "metric"

    def to_props(self) -> dict[str, str]:
        props = {
            "encoder": self.encoder,
            "kind": self.kind,
            "max_depth": "" if self.max_depth is None else repr(float(self.max_depth)),
            "mean": ",".join(map(repr, self.mean)),
            "std": ",".join(map(repr, self.std)),
            "patch_multiple": str(self.patch_multiple),
            "input_size": "dynamic" if self.input_size is None else "x".join(map(str, self.input_size)),
            "input": f"{INPUT_NAME}: float32 (B, 3, H, W), RGB / 255 normalised with mean and std",
            "output": f"{OUTPUT_NAME}: float32 (B, H, W), "
            + ("disparity (relative: larger is closer)" if self.max_depth is None else "depth in metres"),
            "precision": self.precision,
            "license": self.license,
            "version": self.version,
        }
        return {f"{NAMESPACE}.{k}": v for k, v in props.items()}

    @classmethod
    def from_props(cls, props: dict[str, str], where: str = "the file") -> ModelInfo:
        """Parse :meth:`to_props`'s keys; a file without them is not one of this project's exports."""
        p = {k[len(NAMESPACE) + 1 :]: v for k, v in props.items() if k.startswith(NAMESPACE + ".")}
        missing = sorted({"encoder", "kind", "max_depth"} - p.keys())
        if missing:
            raise ValueError(
                f"{where} has no Depth Anything V2 metadata (missing {', '.join(NAMESPACE + '.' + m for m in missing)}); "
                "expected a file written by `depth-anything export`"
            )
        size = p.get("input_size", "dynamic")
        return cls(
            encoder=p["encoder"],
            max_depth=float(p["max_depth"]) if p["max_depth"] else None,
            license=p.get("license", "unknown"),
            input_size=None if size == "dynamic" else tuple(int(s) for s in size.split("x")),  # type: ignore[arg-type]
            precision=p.get("precision", "fp32"),
            mean=tuple(float(v) for v in p["mean"].split(",")) if "mean" in p else IMAGENET_MEAN,  # type: ignore[arg-type]
            std=tuple(float(v) for v in p["std"].split(",")) if "std" in p else IMAGENET_STD,  # type: ignore[arg-type]
            patch_multiple=int(p.get("patch_multiple", PATCH_SIZE)),
            version=p.get("version", "unknown"),
        )
