"""``depth-anything app``: the web demo (Gradio) and the HTTP API (FastAPI) in one server."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from typing import TYPE_CHECKING

from . import EXIT_FAILURES, EXIT_MODEL_UNAVAILABLE, EXIT_OK, UsageError
from .common import add_model_arguments, backend_options, licence_notice

if TYPE_CHECKING:
    from ..app.service import DepthService, ModelChoice, ModelManager

logger = logging.getLogger(__name__)

HELP_EPILOG = """\
the page:
  http://HOST:PORT/            upload an image or pick an example; model, colormap, slider, downloads
                               (grayscale PNG, 16-bit PNG, float32 .npy, .ply point cloud for metric models);
                               a Video tab (side-by-side .mp4 and float32 .npy of all frames)
the API (for programs):
  POST /api/depth?format=png16|npy[&model=NAME]   the image as multipart field 'image' or as the raw body
  GET  /api/info                                  models, limits, formats
  GET  /api/docs                                  OpenAPI description
  e.g.  curl -sS -F image=@photo.jpg -D headers.txt -o depth16.png http://127.0.0.1:7860/api/depth
  Metadata in the response headers: X-Depth-Kind (disparity|metric), X-Depth-Unit (m|none),
  X-Depth-Scale / X-Depth-Offset (value = offset + scale * pixel), X-Depth-Metadata (all of it, JSON).

The default model loads at start (published models are downloaded once into the Hugging Face cache). Requests
run one at a time; at most --max-queue wait, the next gets 503. The server listens on 127.0.0.1 unless --host
says otherwise. Ctrl-C (or SIGTERM) stops it and deletes its temporary folder.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "app",
        help="web demo and HTTP API (Gradio page + POST /api/depth)",
        description="Serve a web page and an HTTP API that estimate the depth of uploaded images.",
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    m = add_model_arguments(p)
    m.add_argument(
        "--fixed-model",
        action="store_true",
        help="offer only the given model (default: the published models can be picked in the page and the API)",
    )
    m.add_argument("--max-loaded-models", type=int, default=1, help="models kept in memory when switching (default 1)")
    s = p.add_argument_group("server")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=7860, help="port (default 7860; 0 = any free port)")
    s.add_argument("--no-ui", action="store_true", help="serve only the HTTP API, no web page")
    lim = p.add_argument_group("limits")
    lim.add_argument("--max-upload-mb", type=float, default=20.0, help="largest upload in MiB (default 20)")
    lim.add_argument("--max-megapixels", type=float, default=16.0, help="largest image in megapixels (default 16)")
    lim.add_argument("--max-aspect", type=float, default=16.0, help="most elongated side ratio accepted (default 16)")
    lim.add_argument("--max-video-frames", type=int, default=300, help="longest video in frames (default 300)")
    lim.add_argument("--max-queue", type=int, default=16, help="requests allowed to wait for the model (default 16)")
    p.set_defaults(func=run)


def _check_args(args: argparse.Namespace) -> None:
    from ..configs import PUBLISHED_MODELS

    if args.model is not None and args.model not in PUBLISHED_MODELS:
        raise UsageError(f"--model: expected one of {', '.join(PUBLISHED_MODELS)}, got {args.model!r}")
    if args.weights is not None and not args.weights.exists():
        raise UsageError(f"--weights: {args.weights}: no such file or folder")
    if args.max_depth is not None and not args.max_depth > 0:
        raise UsageError(f"--max-depth: expected > 0 metres, got {args.max_depth}")
    if args.input_size < 14 or args.input_size % 14:
        raise UsageError(f"--input-size: expected a positive multiple of 14, got {args.input_size}")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port: expected 0-65535, got {args.port}")
    for name in ("max_upload_mb", "max_megapixels"):
        if not getattr(args, name) > 0:
            raise UsageError(f"--{name.replace('_', '-')}: expected > 0, got {getattr(args, name)}")
    if not args.max_aspect >= 1:
        raise UsageError(f"--max-aspect: expected >= 1, got {args.max_aspect}")
    for name in ("max_queue", "max_loaded_models", "max_video_frames"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')}: expected >= 1, got {getattr(args, name)}")


def run(args: argparse.Namespace) -> int:
    """Serve the page and the API until Ctrl-C or SIGTERM; the exit code."""
    _check_args(args)
    _check_packages(args.no_ui)
    from ..app.api import is_loopback
    from ..app.service import DepthService, Limits

    default = _default_choice(args)
    models = _model_manager(args, default)
    limits = Limits(
        max_upload_bytes=round(args.max_upload_mb * 2**20),
        max_pixels=round(args.max_megapixels * 1e6),
        max_aspect=args.max_aspect,
        max_video_frames=args.max_video_frames,
    )
    service = DepthService(models, limits, max_pending=args.max_queue)
    print(licence_notice(default.name) or f"loading model {default.name} ...", file=sys.stderr, flush=True)
    failure = _load_default(models, default.name)
    if failure is not None:
        return failure
    if not is_loopback(args.host):
        print(
            f"warning: listening on {args.host}: anyone who can reach this machine can use the app",
            file=sys.stderr,
        )
    return _serve(service, args, default.name)


def _check_packages(no_ui: bool) -> None:
    """Raise a ``UsageError`` with the install hint if FastAPI, uvicorn or (for the page) Gradio is missing."""
    import importlib.util

    # Only look for the packages here: Gradio must be imported after the app points GRADIO_TEMP_DIR at its own
    # temporary folder (some of its paths are fixed at import time).
    needed = ["fastapi", "uvicorn"] + ([] if no_ui else ["gradio"])
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(f"the app needs {', '.join(missing)}: pip install 'depth-anything-v2[app]'")


def _default_choice(args: argparse.Namespace) -> ModelChoice:
    """The model served by default: ``--weights``, or the published ``--model`` with any overrides."""
    from ..app.service import ModelChoice

    if args.weights is not None:
        return ModelChoice.weights(args.weights, encoder=args.encoder, max_depth=args.max_depth)
    default = ModelChoice.published(args.model or "vits")
    if args.encoder is not None or args.max_depth is not None:
        default = ModelChoice(
            default.name,
            default.source,
            args.encoder or default.encoder,
            args.max_depth if args.max_depth is not None else default.max_depth,
            default.description,
            default.license,
            is_published=True,
        )
    return default


def _model_manager(args: argparse.Namespace, default: ModelChoice) -> ModelManager:
    """The models offered (the default, then the published ones unless ``--fixed-model``) and how they run."""
    from ..app.service import ModelManager, published_choices

    choices = [default] + ([] if args.fixed_model else [c for c in published_choices() if c.name != default.name])
    return ModelManager(
        choices,
        default=default.name,
        max_loaded=args.max_loaded_models,
        input_size=args.input_size,
        device=args.device,
        precision=args.precision,
        runtime=backend_options(args),
    )


def _load_default(models: ModelManager, name: str) -> int | None:
    """Load the default model now; on failure print why and return the exit code (None when it loaded)."""
    from ..app.service import RequestError
    from ..weights.loading import ModelUnavailableError as ModelNotAvailable

    try:
        # Load once, now (downloading a published model if needed): a bad checkpoint fails here, not on the first
        # request, and the operator sees the full reason.
        models.get(name, download=True)
    except RequestError as e:
        cause = e.__cause__ or e
        if isinstance(cause, ModelNotAvailable):  # its message names the model and the ways out
            print(f"depth-anything app: error: {cause}", file=sys.stderr)
            return EXIT_MODEL_UNAVAILABLE
        print(f"depth-anything app: error: model {name!r} could not be loaded: {cause}", file=sys.stderr)
        return EXIT_FAILURES
    return None


def _serve(service: DepthService, args: argparse.Namespace, model_name: str) -> int:
    """Run the server until Ctrl-C or SIGTERM (its temporary folder is deleted on the way out); the exit code."""
    from ..app.api import running_app

    stop = threading.Event()
    main_thread = threading.current_thread() is threading.main_thread()
    # SIGTERM stops the server like Ctrl-C, so the temporary folder is deleted (signals reach the main thread only).
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set()) if main_thread else None
    try:
        with running_app(service, args.host, args.port, ui=not args.no_ui) as server:
            # One line on stdout with the address (scripts read it; --port 0 picks a free port).
            print(f"depth-anything app: serving {model_name} on {server.url}/ (API: {server.url}/api/depth)")
            sys.stdout.flush()
            with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: leave the with blocks, which clean up
                server.wait(stop)
    except OSError as e:  # the port is taken, or the address is not this machine's
        print(f"depth-anything app: error: cannot serve on {args.host}:{args.port}: {e}", file=sys.stderr)
        return EXIT_FAILURES
    except RuntimeError as e:
        print(f"depth-anything app: error: {e}", file=sys.stderr)
        return EXIT_FAILURES
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    return EXIT_OK
