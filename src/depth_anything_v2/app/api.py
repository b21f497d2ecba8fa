"""The HTTP server: a small FastAPI app (the API for programs) with the Gradio page mounted at ``/``.

Endpoints (all under ``/api``; the page's own Gradio routes live under ``/gradio_api``):

``POST /api/depth?format=png16|npy&model=NAME``
    The image as a multipart file field ``image`` (``curl -F image=@photo.jpg``) or as the raw request body
    (``curl --data-binary @photo.jpg -H 'Content-Type: application/octet-stream'``). Answers the depth map:

    - ``format=png16`` (default): a 16-bit grayscale PNG, ``image/png``. Relative models: ``value = offset +
      scale * pixel`` spreads the map's min..max over 0..65535; metric models: millimetres (``scale`` 0.001),
      0 = no value. The mapping is also in the PNG's ``depth_anything_v2`` text chunk
      (``depth_anything_v2.io.outputs.read_depth_png16`` reads it back).
    - ``format=npy``: float32 ``(H, W)`` NumPy file with the model's values exactly (``np.load``).

    Metadata in the response headers: ``X-Depth-Kind`` (``disparity`` or ``metric``), ``X-Depth-Unit`` (``m``
    or ``none``), ``X-Depth-Scale`` and ``X-Depth-Offset`` (``value = offset + scale * stored``),
    ``X-Depth-Invalid`` (the stored value meaning "no value", or ``none``), and ``X-Depth-Metadata``: all of it
    as JSON (model, kind, unit, max_depth, width, height, min, max, scale, offset, encoding, inference_ms).

    Errors: 400 not an image / corrupt, 413 upload or image too large, 422 bad ``format``/``model`` or an
    over-elongated image, 503 busy (too many queued requests) or model unavailable; the JSON body's
    ``detail`` says what was expected and what came.
``GET /api/info``
    Models (name, kind, unit, licence, loaded), the default model, the limits and the formats.
``GET /api/health``
    ``{"status": "ok"}``.

Requests are served one at a time by the service's lock (the Gradio queue runs one event at a time too); at most
``max_pending`` wait. Uploads are read into memory (multipart parts above 1 MiB go to an unlinked temporary
file that disappears with the request); the request body is capped before it is read.
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations at run time, and
# ``Request`` is imported inside ``create_app`` (FastAPI is optional).

import contextlib
import ipaddress
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Literal

from .service import (
    API_FORMATS,
    DepthService,
    InvalidParameterError,
    Limits,
    PayloadTooLargeError,
    RequestError,
    ResultStore,
    check_upload_size,
    encode,
)

logger = logging.getLogger(__name__)

#: Room for the multipart envelope (boundaries, part headers, small fields) on top of the image itself.
MULTIPART_OVERHEAD_BYTES = 64 * 1024

INSTALL_HINT = "the web app needs gradio, fastapi and uvicorn: pip install 'depth-anything-v2[app]'"


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"{INSTALL_HINT} ({e})") from e


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# ------------------------------------------------------------------------------------------------------------
# The app's own temporary folder


class Workspace:
    """The app's temporary folder: Gradio's upload cache and the UI's download files. ``close()`` removes it.

    Gradio reads its cache location from the environment, so while the workspace is open ``GRADIO_TEMP_DIR``
    points at ``<workspace>/gradio`` and ``GRADIO_EXAMPLES_CACHE`` at ``<workspace>/examples-cache``; ``close``
    restores them. ``parent`` defaults to the system temporary folder (``TMPDIR``).
    """

    def __init__(self, parent: str | Path | None = None) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="depth-anything-app-", dir=parent)).resolve()
        self.gradio_dir = self.path / "gradio"
        # Inside Gradio's cache: Gradio serves files returned from there as they are (no copy) and its
        # delete_cache sweep covers them too.
        self.results_dir = self.gradio_dir / "results"
        self.gradio_dir.mkdir()
        self._saved_env = {k: os.environ.get(k) for k in ("GRADIO_TEMP_DIR", "GRADIO_EXAMPLES_CACHE")}
        os.environ["GRADIO_TEMP_DIR"] = str(self.gradio_dir)
        os.environ["GRADIO_EXAMPLES_CACHE"] = str(self.path / "examples-cache")
        self._closed = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for k, v in self._saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> "Workspace":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------------------------------------------------
# Request body limit


class BodySizeLimitMiddleware:
    """Pure ASGI middleware: refuse request bodies above ``max_bytes`` on paths starting with ``prefix`` (413).

    A declared ``Content-Length`` is checked before anything is read; chunked bodies are counted as they arrive
    and cut off as soon as they pass the limit.
    """

    def __init__(self, app: Any, max_bytes: int, prefix: str = "/api/") -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.prefix = prefix

    async def _reject(self, send: Any, message: str) -> None:
        body = json.dumps({"detail": message}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await self._reject(send, f"request too large: expected at most {limit} bytes, got {int(value)}")
                return
        received = 0
        started = False

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLargeError(f"request too large: expected at most {limit} bytes, got more")
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except PayloadTooLargeError as e:  # raised while reading, outside a handler that would turn it into 413
            if not started:
                await self._reject(send, str(e))


# ------------------------------------------------------------------------------------------------------------
# The app

_DEPTH_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"image": {"type": "string", "format": "binary"}},
                    "required": ["image"],
                }
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    "responses": {
        "200": {
            "description": "The depth map; metadata in the X-Depth-* headers",
            "content": {"image/png": {}, "application/octet-stream": {}},
        },
        "400": {"description": "not an image, or a corrupt one"},
        "413": {"description": "upload or image too large"},
        "422": {"description": "unknown format or model, or an over-elongated image"},
        "503": {"description": "busy (too many queued requests) or the model could not be loaded"},
    },
}


def create_app(
    service: DepthService,
    workspace: Workspace,
    *,
    ui: bool = True,
    examples: list[Path] | None = None,
) -> Any:
    """The FastAPI app: ``/api/*`` endpoints plus, with ``ui``, the Gradio page mounted at ``/``.

    Gradio is given no ``allowed_paths``: it serves only its own cache under ``workspace`` (uploads, rendered
    images, the downloads and copies of the bundled examples) and its static assets.
    """
    fastapi = _require("fastapi")
    from .. import __version__

    app = fastapi.FastAPI(
        title="Depth Anything V2",
        version=__version__,
        description="POST an image to /api/depth; get its depth map back (16-bit PNG or .npy) with metadata.",
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.service = service
    _add_api_routes(app, service)
    # Outermost: the cap applies before FastAPI or Starlette read anything.
    app.add_middleware(
        BodySizeLimitMiddleware, max_bytes=service.limits.max_upload_bytes + MULTIPART_OVERHEAD_BYTES, prefix="/api/"
    )
    if ui:
        app = _mount_ui(app, service, workspace, examples)
    return app


def _add_api_routes(app: Any, service: DepthService) -> None:
    """``POST /api/depth``, ``GET /api/info``, ``GET /api/health``, and request errors as JSON with their status."""
    from fastapi import Request
    from fastapi.responses import JSONResponse, Response
    from starlette.concurrency import run_in_threadpool

    limits = service.limits

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status_code)

    @app.post("/api/depth", summary="Depth map of an image", openapi_extra=_DEPTH_OPENAPI)
    async def depth(request: Request, format: Literal["png16", "npy"] = "png16", model: str | None = None) -> Any:
        """Depth of the uploaded image as a 16-bit PNG (``format=png16``) or float32 ``.npy`` (``format=npy``)."""
        data = await _read_upload(request, limits)
        prediction = await run_in_threadpool(service.predict, data, model)
        body, media_type, filename, meta = await run_in_threadpool(encode, prediction, format)
        headers = {
            "X-Depth-Kind": meta["kind"],
            "X-Depth-Unit": meta["unit"] or "none",
            "X-Depth-Scale": repr(meta["scale"]),
            "X-Depth-Offset": repr(meta["offset"]),
            "X-Depth-Invalid": "none" if meta["invalid"] is None else str(meta["invalid"]),
            "X-Depth-Metadata": json.dumps(meta, separators=(",", ":")),  # ASCII (json escapes the rest)
            "Content-Disposition": f'attachment; filename="{filename}"',
        }
        return Response(body, media_type=media_type, headers=headers)

    @app.get("/api/info", summary="Models, limits and formats")
    def info() -> dict:
        return service.info()

    @app.get("/api/health", summary="Liveness")
    def health() -> dict:
        return {"status": "ok"}


async def _read_upload(request: Any, limits: Limits) -> bytes:
    """The uploaded image's bytes: a multipart file field (``image``, or the only file) or the raw body."""
    from starlette.datastructures import UploadFile

    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=16)
        try:
            upload = form.get("image")
            if upload is None:  # accept a single file under any field name
                upload = next((v for v in form.values() if isinstance(v, UploadFile)), None)
            if not isinstance(upload, UploadFile):
                raise InvalidParameterError(
                    f"expected the image as a file field 'image' (curl -F image=@photo.jpg), got fields "
                    f"{sorted(form.keys())}"
                )
            data = await upload.read(limits.max_upload_bytes + 1)
        finally:
            await form.close()
    else:
        data = await request.body()
    check_upload_size(len(data), limits)
    return data


def _mount_ui(app: Any, service: DepthService, workspace: Workspace, examples: list[Path] | None) -> Any:
    """``app`` with the Gradio page mounted at ``/``, serving files only from its cache under ``workspace``."""
    gr = _require("gradio")
    from .gradio_app import build_ui

    store = ResultStore(workspace.results_dir)
    demo = build_ui(service, store, examples=examples)
    demo.queue(default_concurrency_limit=1, max_size=service.max_pending)
    app = gr.mount_gradio_app(
        app,
        demo,
        path="/",
        allowed_paths=[],
        max_file_size=service.limits.max_upload_bytes,
        # Only gr.Error messages (the service's own) reach the browser: other exceptions can carry server paths.
        show_error=False,
        ssr_mode=False,
        mcp_server=False,
        run_history=False,
        footer_links=["gradio"],
    )
    # Gradio checks that a file path sent as an event input was uploaded (is in its cache) only once the Blocks
    # "has launched", which launch() records and mount_gradio_app() (gradio 6.31) does not: without this, an
    # API call with {"path": "/etc/passwd"} gets that file copied into the cache, from where it is served.
    # tests/app/test_api.py::test_forged_file_path_is_refused covers it.
    demo.has_launched = True
    app.state.result_store = store
    return app


# ------------------------------------------------------------------------------------------------------------
# Serving


class AppServer:
    """Run an ASGI app with uvicorn in a background thread; ``port=0`` takes any free port.

    Example::

        with Workspace() as ws, AppServer(create_app(service, ws)) as server:
            httpx.get(server.url + "/api/health")
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, *, log_level: str = "warning") -> None:
        uvicorn = _require("uvicorn")
        config = uvicorn.Config(
            app, host=host, port=port, log_level=log_level, lifespan="on", timeout_graceful_shutdown=5
        )
        self.server = uvicorn.Server(config)
        self.host = host
        self.workspace: Workspace | None = None  # set by running_app
        self._thread = threading.Thread(target=self.server.run, name="depth-anything-app", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout_s: float = 60.0) -> str:
        """Start and wait until the server accepts connections; returns the URL."""
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the app server stopped while starting (port in use?)")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the app server did not start within {timeout_s:g} s")
            time.sleep(0.02)
        return self.url

    def stop(self, timeout_s: float = 10.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout_s)

    def wait(self, stop: threading.Event | None = None) -> None:
        """Block until the server ends or ``stop`` is set (then stop it)."""
        while self._thread.is_alive():
            if stop is not None and stop.wait(0.2):
                self.stop()
                return
            if stop is None:
                self._thread.join(0.2)

    def __enter__(self) -> "AppServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running_app(
    service: DepthService,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    ui: bool = True,
    examples: list[Path] | None = None,
    workspace_parent: str | Path | None = None,
    log_level: str = "warning",
):
    """Context manager: a workspace, the app and its server (``server.workspace``), all torn down on exit (the
    workspace folder is deleted)."""
    with Workspace(workspace_parent) as ws:
        app = create_app(service, ws, ui=ui, examples=examples)
        with AppServer(app, host, port, log_level=log_level) as server:
            server.workspace = ws
            yield server


__all__ = [
    "API_FORMATS",
    "AppServer",
    "BodySizeLimitMiddleware",
    "Workspace",
    "create_app",
    "is_loopback",
    "running_app",
]
