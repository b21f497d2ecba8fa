"""Former path of :mod:`depth_anything_v2.align.metric`, kept so that existing imports work (the same module object)."""

import sys

from .align import metric as _module

sys.modules[__name__] = _module
