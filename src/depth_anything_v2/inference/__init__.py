"""Inference: the reference's pre/post-processing (``transforms``), ``DepthPredictor`` (``predictor``), the
folder pipeline (``pipeline``) and streaming video and cameras (``video``)."""
