"""``python -m depth_anything_v2.cli COMMAND ...`` (e.g. under torchrun), the same as ``depth-anything``."""

import sys

from . import main

sys.exit(main())
