"""The Gradio page: upload or pick an example, choose model and colormap, compare with a slider, download.

The page only wires widgets to :class:`~depth_anything_v2.app.service.DepthService`; decoding, limits, the model
lock and the encoders live there, and what is drawn in :mod:`~depth_anything_v2.app.views`. Gradio's queue runs
one event at a time (``concurrency_limit=1``), and the service's lock serialises it with the HTTP API.
"""

# No ``from __future__ import annotations`` here: Gradio reads the event handlers' annotations at run time (a
# ``gr.SelectData`` parameter is how it knows to pass the click position), and ``gr`` is a local name.

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .service import DepthService, RequestError, ResultStore, check_upload_size, safe_stem, write_downloads
from .views import colorbar_html, depth_color, summary_markdown, value_readout, video_summary_markdown

logger = logging.getLogger(__name__)

#: The bundled example photographs (see ``examples/CREDITS.md``).
EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
EXAMPLE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")

INSTALL_HINT = "the web app needs gradio: pip install 'depth-anything-v2[app]'"


def require_gradio() -> Any:
    """Import gradio, or raise ``ImportError`` with the install hint."""
    try:
        import gradio
    except ImportError as e:
        raise ImportError(f"{INSTALL_HINT} ({e})") from e
    return gradio


def example_images(folder: Path = EXAMPLES_DIR) -> list[Path]:
    """The example images in ``folder`` (sorted; none if the folder is missing)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in EXAMPLE_SUFFIXES)


def _hand_over_uploads_undecoded(image: Any) -> Any:
    """Make the ``gr.Image`` ``image`` pass its event handlers the uploaded file as it came (its path), undecoded.

    ``gr.Image`` opens every upload with Pillow before the handler runs, even with ``type="filepath"``: a text
    file named ``.jpg``, an empty file or a 400 MP PNG then fails inside Gradio, and the page shows a bare
    "Error". The service decodes the file instead, with its limits and messages the page can show.

    An instance attribute, not a subclass: Gradio writes a ``.pyi`` file beside any module that defines a
    component class. Gradio replaces a component for a session when an event returns ``gr.update(...)`` for it
    (that copy would decode again), so no event of this page does that for the image: examples set a plain value.
    """
    decode = image.preprocess

    def preprocess(payload: Any) -> Any:
        if payload is None or payload.path is None:  # nothing, or a small base64 image: Gradio's own handling
            return decode(payload)
        return str(payload.path)

    image.preprocess = preprocess
    return image


def _is_cached(repo_id: str, filename: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    return isinstance(try_to_load_from_cache(repo_id, filename), str)  # looks in the local cache only


def _model_label(service: DepthService, name: str) -> str:
    """``"vits (relative, Apache-2.0)"``, ``"vitl (metres, CC-BY-NC-4.0, not downloaded)"``, ``"tiny.pth (metres)"``."""
    from ..configs import PUBLISHED_MODELS

    choice = service.models.choices[name]
    kind = service.models.kind_of(name)
    parts = [{"metric": "metres", "disparity": "relative"}.get(kind or "", "")]
    if choice.license:
        parts.append(choice.license.split(" ")[0])
    pm = PUBLISHED_MODELS.get(choice.source) if choice.is_published else None
    if pm is not None and not service.models.is_loaded(name) and not _is_cached(pm.repo_id, pm.filename):
        parts.append("not downloaded")
    parts = [p for p in parts if p]
    return f"{name} ({', '.join(parts)})" if parts else name


def build_ui(
    service: DepthService,
    store: ResultStore,
    *,
    examples: list[Path] | None = None,
    colormap: str = "Spectral_r",
    delete_cache: tuple[int, int] = (300, 900),
) -> Any:
    """Build the ``gr.Blocks`` page (not launched: :func:`~depth_anything_v2.app.api.create_app` mounts it).

    Elements carry ``elem_id``s for tests and custom CSS: ``input-image``, ``model``, ``colormap``, ``run``,
    ``depth-slider``, ``values-tab``, ``depth-image``, ``colorbar``, ``summary``, ``readout``, ``downloads``.
    """
    gr = require_gradio()
    examples = example_images() if examples is None else examples
    run, readout = _image_handlers(gr, service, store)
    run_video = _video_handler(gr, service, store)
    with gr.Blocks(title="Depth Anything V2", analytics_enabled=False, delete_cache=delete_cache) as demo:
        limits = service.limits
        gr.Markdown(
            "## Depth Anything V2\nUpload a photo (or pick an example) to estimate its depth. Limits: "
            f"{limits.max_upload_bytes / 2**20:.3g} MiB, {limits.max_pixels / 1e6:g} megapixels, videos up to "
            f"{limits.max_video_frames} frames. Programs can call `POST /api/depth` (see `/api/docs`)."
        )
        ui: dict[str, Any] = {"key": gr.State("")}
        ui.update(_model_row(gr, service, colormap))
        with gr.Tabs():
            with gr.Tab("Image", id="image-tab"), gr.Row():
                ui.update(_image_inputs(gr, examples))
                ui.update(_image_results(gr))
            with gr.Tab("Video", id="video-tab"), gr.Row():
                ui.update(_video_panel(gr))
        _wire_events(gr, ui, run, readout, run_video)
    return demo


def _image_handlers(gr: Any, service: DepthService, store: ResultStore) -> tuple[Callable, Callable]:
    """The image tab's event handlers: ``run`` (predict, write the downloads) and ``readout`` (value on click)."""
    limits = service.limits
    cleared = (None, None, "", "", None, "", "")

    def run(image_path: str | None, model: str, cmap: str) -> tuple:
        if not image_path:
            return cleared
        try:
            check_upload_size(os.path.getsize(image_path), limits)  # before reading it into memory
            prediction = service.predict(Path(image_path).read_bytes(), model)
            stem = safe_stem(Path(image_path).name)
            folder, new = store.folder_for(f"{prediction.key}:{stem}")
            if new:
                try:
                    files = write_downloads(prediction, folder, stem)
                except BaseException:
                    store.discard(f"{prediction.key}:{stem}")
                    raise
            else:
                files = sorted(folder.iterdir(), key=_download_order)
        except RequestError as e:
            # Clear the previous image's results (they would read as this upload's), say why on the page and in
            # a toast. The HTTP API answers the same errors with their status codes.
            gr.Warning(str(e))
            return (*cleared[:3], f"**No depth computed:** {e}", *cleared[4:])
        color = depth_color(prediction, cmap)
        return (
            (prediction.image_rgb, color),
            color,
            colorbar_html(prediction, cmap),
            summary_markdown(prediction),
            [str(p) for p in files],
            prediction.key,
            "",
        )

    def readout(key: str, evt: gr.SelectData) -> str:
        if not key or evt is None or not isinstance(evt.index, list | tuple) or len(evt.index) < 2:
            return ""
        prediction = service.cached(key)
        if prediction is None:  # evicted by newer requests (the cache holds a few results)
            return "This result is no longer in memory: press *Compute depth* again."
        return value_readout(prediction, int(evt.index[0]), int(evt.index[1]))

    return run, readout


def _video_handler(gr: Any, service: DepthService, store: ResultStore) -> Callable:
    """The video tab's event handler: depth of every frame, a side-by-side video and the downloads."""
    limits = service.limits

    def run_video(
        video_path: str | None,
        model: str,
        cmap: str,
        stabilize: bool,
        progress=gr.Progress(),  # noqa: B008  (Gradio's idiom: a gr.Progress default gets the progress bar)
    ) -> tuple:
        if not video_path:
            return None, "", None
        path = Path(video_path)
        stem = safe_stem(path.name, default="video")
        try:
            key = f"video:{_file_sha256(path, limits.max_upload_bytes)}:{service.models.resolve(model).name}"
            key += f":{cmap}:{bool(stabilize)}"
            folder, new = store.folder_for(key)
            if new:
                try:
                    service.process_video(
                        path,
                        folder,
                        stem,
                        model=model,
                        colormap=cmap,
                        stabilize=bool(stabilize),
                        progress=lambda done, total: progress((done, total), unit="frames") if total else None,
                    )
                except BaseException:
                    store.discard(key)
                    raise
        except RequestError as e:
            raise gr.Error(str(e)) from None
        sbs, npy, meta = (folder / f"{stem}{suffix}" for suffix in ("_sbs.mp4", "_depth.npy", "_depth.json"))
        return str(sbs), video_summary_markdown(json.loads(meta.read_text())), [str(npy), str(meta), str(sbs)]

    return run_video


def _model_row(gr: Any, service: DepthService, colormap: str) -> dict[str, Any]:
    """The model and colormap dropdowns, shared by both tabs."""
    from ..io.outputs import available_colormaps

    model_choices = [(_model_label(service, n), n) for n in service.model_names()]
    with gr.Row():
        model = gr.Dropdown(
            model_choices,
            value=service.default_model,
            label="Model",
            interactive=len(model_choices) > 1,
            elem_id="model",
        )
        cmap = gr.Dropdown(available_colormaps(), value=colormap, label="Colormap", elem_id="colormap")
    return {"model": model, "cmap": cmap}


def _image_inputs(gr: Any, examples: list[Path]) -> dict[str, Any]:
    """The image tab's left column: the upload, the button and the examples."""
    with gr.Column(scale=1):
        image = _hand_over_uploads_undecoded(
            gr.Image(
                type="filepath",
                image_mode=None,
                sources=["upload", "clipboard"],
                label="Image",
                elem_id="input-image",
            )
        )
        button = gr.Button("Compute depth", variant="primary", elem_id="run")
        # A dataset rather than gr.Examples: picking an example must set a plain value (see above).
        example_set = (
            gr.Dataset(
                components=[image],
                # Copies in Gradio's cache (it serves nothing else): what a click puts in the input.
                samples=[[image.move_resource_to_block_cache(p)] for p in examples],
                label="Examples",
                type="values",
            )
            if examples
            else None
        )
    return {"image": image, "button": button, "example_set": example_set}


def _image_results(gr: Any) -> dict[str, Any]:
    """The image tab's right column: comparison slider, clickable depth, colorbar, summary and downloads."""
    with gr.Column(scale=2):
        with gr.Tabs():
            with gr.Tab("Compare", id="compare"):
                slider = gr.ImageSlider(
                    label="Image | depth (drag the handle)",
                    type="numpy",
                    interactive=False,
                    elem_id="depth-slider",
                )
            with gr.Tab("Depth values", id="values", elem_id="values-tab"):
                # gr.ImageSlider reports no click position (gradio 6.31); gr.Image does, in pixels.
                depth_view = gr.Image(
                    label="Depth (click for the value)",
                    type="numpy",
                    interactive=False,
                    elem_id="depth-image",
                )
        colorbar = gr.HTML(elem_id="colorbar")
        readout_md = gr.Markdown(elem_id="readout")
        summary = gr.Markdown(elem_id="summary")
        files = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="downloads")
    return {
        "slider": slider,
        "depth_view": depth_view,
        "colorbar": colorbar,
        "readout_md": readout_md,
        "summary": summary,
        "files": files,
    }


def _video_panel(gr: Any) -> dict[str, Any]:
    """The video tab's two columns: the upload, the stabilise option and the button; the result and downloads."""
    with gr.Column(scale=1):
        video_in = gr.Video(sources=["upload"], label="Video", elem_id="input-video")
        stabilize = gr.Checkbox(label="Stabilise the depth scale over time (display only; the .npy keeps raw values)")
        video_button = gr.Button("Compute video depth", variant="primary", elem_id="run-video")
    with gr.Column(scale=2):
        video_out = gr.Video(label="Video | depth", interactive=False, elem_id="depth-video")
        video_summary = gr.Markdown(elem_id="video-summary")
        video_files = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="video-downloads")
    return {
        "video_in": video_in,
        "stabilize": stabilize,
        "video_button": video_button,
        "video_out": video_out,
        "video_summary": video_summary,
        "video_files": video_files,
    }


def _wire_events(gr: Any, ui: dict[str, Any], run: Callable, readout: Callable, run_video: Callable) -> None:
    """Connect the widgets in ``ui`` to the handlers; predictions queue one at a time."""
    image, model, cmap, example_set = ui["image"], ui["model"], ui["cmap"], ui["example_set"]
    # Not image.change: it fires twice for one upload over an existing image (two predictions). An upload, a
    # picked example and a removed image are the events that change the input.
    run_io = {
        "inputs": [image, model, cmap],
        "outputs": [ui[k] for k in ("slider", "depth_view", "colorbar", "summary", "files", "key", "readout_md")],
    }
    gr.on(
        [ui["button"].click, image.upload, image.clear, model.change, cmap.change],
        run,
        **run_io,
        api_name="predict",
        concurrency_limit=1,
    )
    if example_set is not None:  # the example into the input, then the prediction
        example_set.click(
            lambda sample: sample[0],
            [example_set],
            [image],
            api_name=False,
            queue=False,  # Gradio's copy
        ).then(run, **run_io, api_name=False, concurrency_limit=1)
    # No model involved: not queued behind predictions.
    ui["depth_view"].select(
        readout, inputs=[ui["key"]], outputs=[ui["readout_md"]], api_name=False, concurrency_limit=None
    )
    ui["video_button"].click(
        run_video,
        inputs=[ui["video_in"], model, cmap, ui["stabilize"]],
        outputs=[ui["video_out"], ui["video_summary"], ui["video_files"]],
        api_name="predict_video",
        concurrency_limit=1,
    )


def _file_sha256(path: Path, max_bytes: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            if f.tell() > max_bytes:
                break  # the service refuses it anyway
    return digest.hexdigest()[:32]


def _download_order(path: Path) -> int:
    for i, suffix in enumerate(("_gray.png", "_depth16.png", ".npy", ".ply")):
        if path.name.endswith(suffix):
            return i
    return 99
