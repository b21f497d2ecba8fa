"""Former path of :mod:`depth_anything_v2.io.outputs`, kept so that existing imports work (the same module object)."""

import sys

from .io import outputs as _module

sys.modules[__name__] = _module
