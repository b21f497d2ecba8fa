"""Fixtures for the OAK tests; the synthetic session and the stand-in model live in ``oak_fixtures``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
