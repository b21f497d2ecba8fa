"""Weights: every checkpoint format (``checkpoints``: reading, key conversion, checks, saving) and building or
loading a ready model (``loading``: ``build_model``, ``load_model``, published names via the Hugging Face cache)."""
