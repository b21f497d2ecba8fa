"""Web demo (Gradio) and HTTP API (FastAPI) for Depth Anything V2: ``depth-anything app``.

Modules: ``service`` (uploads -> depth, limits, the model lock, encoders; no web framework), ``views`` (colour bar,
summary, value readout), ``gradio_app`` (the page), ``api`` (the FastAPI app, the page mounted in it, the server).
Gradio, FastAPI and uvicorn are the ``app`` extra (``pip install 'depth-anything-v2[app]'``), imported only by
``gradio_app`` and ``api``; importing this package or ``service`` needs none of them.

    from depth_anything_v2.app.service import DepthService
    from depth_anything_v2.app.api import running_app

    service = DepthService.from_predictor(DepthPredictor.from_pretrained("vits"), "vits")
    with running_app(service, port=7860) as server:
        ...  # http://127.0.0.1:7860
"""
