"""What the web page shows for a prediction: the coloured depth, a colour bar with units, a summary, a readout.

Plain functions of a :class:`~depth_anything_v2.app.service.Prediction` (no Gradio), so they are tested alone.
Near is drawn like near for both kinds (``outputs.display_range``); the colour bar runs from near (left) to far
(right), labelled in metres for metric models and "near"/"far" for relative (disparity) ones, which have no unit.
"""

from __future__ import annotations

import html

import numpy as np

from .service import Prediction

#: Colour stops in the colour bar's CSS gradient (the colormap is smooth; 17 stops are indistinguishable from 256).
_BAR_STOPS = 17


def depth_color(prediction: Prediction, cmap: str = "Spectral_r") -> np.ndarray:
    """The depth map coloured with ``cmap`` (near = the colormap's last colour): RGB uint8 ``(H, W, 3)``."""
    from ..io.outputs import colorize, display_range

    return colorize(prediction.depth, cmap, *display_range(prediction.depth, prediction.kind))


def _fmt_m(x: float) -> str:
    return f"{x:.3g} m" if abs(x) < 100 else f"{x:.0f} m"


def colorbar_html(prediction: Prediction, cmap: str = "Spectral_r", ticks: int = 5) -> str:
    """An HTML colour bar, near on the left: ticks in metres (metric) or "near"/"far" (disparity)."""
    from ..io.outputs import display_range, get_colormap

    lut = get_colormap(cmap)
    # Index 255 is near for both kinds (display_range reverses metric maps), so the bar walks the table backwards.
    index = np.linspace(255, 0, _BAR_STOPS).round().astype(int)
    stops = ", ".join(
        f"rgb({r},{g},{b}) {100.0 * i / (_BAR_STOPS - 1):.1f}%" for i, (r, g, b) in enumerate(lut[index].tolist())
    )
    vmin, vmax = display_range(prediction.depth, prediction.kind)
    if prediction.is_metric:
        near, far = vmax, vmin  # metric: (vmin, vmax) = (max depth, min depth)
        values = np.linspace(near, far, max(2, ticks))
        labels = [_fmt_m(float(v)) for v in values]
        caption = "depth in metres"
    else:
        labels = ["near", *([""] * max(0, ticks - 2)), "far"]
        caption = f"relative depth (disparity {vmin:.3g} .. {vmax:.3g}; larger = closer, no unit)"
    tick_html = "".join(
        f'<span style="flex:1;text-align:{"left" if i == 0 else "right" if i == len(labels) - 1 else "center"}">'
        f"{html.escape(t)}</span>"
        for i, t in enumerate(labels)
    )
    return (
        f'<div class="da2-colorbar" data-kind="{prediction.kind}" data-cmap="{html.escape(cmap)}">'
        f'<div style="height:14px;border-radius:3px;background:linear-gradient(to right, {stops})"></div>'
        f'<div class="da2-ticks" style="display:flex;font-size:0.85em">{tick_html}</div>'
        f'<div style="font-size:0.8em;opacity:0.8">{html.escape(caption)}</div></div>'
    )


def summary_markdown(prediction: Prediction) -> str:
    """One paragraph: model, kind and unit, size, value range, timing, and what the downloads are."""
    depth = prediction.depth
    finite = depth[np.isfinite(depth)]
    height, width = depth.shape
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (float("nan"), float("nan"))
    med = float(np.median(finite)) if finite.size else float("nan")
    timing = "cached" if prediction.cached else f"{prediction.inference_s * 1000:.0f} ms"
    if prediction.is_metric:
        what = f"metric depth in metres (model range up to {prediction.max_depth:g} m)"
        rng = f"{lo:.3g} – {hi:.3g} m, median {med:.3g} m"
        ply = "a coloured point cloud (`.ply`, metres, OpenCV camera frame)"
    else:
        what = "relative depth (disparity: larger = closer, unknown scale and shift, no unit)"
        rng = f"disparity {lo:.4g} – {hi:.4g}"
        ply = "no point cloud (it needs metric depth: pick a `metric-*` model)"
    return (
        f"**{html.escape(prediction.model)}** · {what} · {width}×{height} px · {rng} · {timing}\n\n"
        f"Downloads: 8-bit grayscale PNG (white = near), 16-bit PNG (mapping in its `depth_anything_v2` text "
        f"chunk{', millimetres' if prediction.is_metric else ''}), float32 `.npy` (exact values), and {ply}."
    )


def value_readout(prediction: Prediction, x: int, y: int) -> str:
    """The value at pixel column ``x``, row ``y``: ``"depth at (x, y): 3.42 m"`` or the disparity."""
    height, width = prediction.depth.shape
    if not (0 <= x < width and 0 <= y < height):
        return f"({x}, {y}) is outside the {width}×{height} image"
    v = float(prediction.depth[y, x])
    if prediction.is_metric:
        return f"depth at ({x}, {y}): **{v:.3f} m**"
    return f"disparity at ({x}, {y}): **{v:.4g}** (relative, no unit)"


def video_summary_markdown(meta: dict) -> str:
    """One paragraph from a video's ``<stem>_depth.json`` (``video.process_video``'s metadata)."""
    n, height, width = meta["shape"]
    fps = meta["fps_rational"]
    num, _, den = fps.partition("/")
    rate = float(num) / float(den or 1)
    lo, hi = sorted(meta["display_range"] or (float("nan"), float("nan")))
    if meta["kind"] == "metric":
        what, rng = "metric depth in metres", f"display range {lo:.3g} – {hi:.3g} m"
    else:
        what, rng = "relative depth (disparity, no unit)", f"display range {lo:.4g} – {hi:.4g}"
    stab = " · stabilised display" if meta.get("stabilized") else ""
    return (
        f"{n} frames · {width}×{height} px · {rate:.4g} fps ({fps}) · {what} · {rng} (one range for the whole "
        f"clip){stab}\n\nDownloads: float32 `.npy` of shape (frames, H, W) with exactly the model's values, its "
        f"`.json` metadata, and the side-by-side video."
    )
