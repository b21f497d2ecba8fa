"""Training: losses (this package's ``losses`` module) and, built on them, the trainer and pseudo-labelling.

Import from the submodules (``from depth_anything_v2.training.losses import DepthLoss``); this package keeps
``import depth_anything_v2.training`` light.
"""
