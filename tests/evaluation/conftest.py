"""Fixtures for the evaluation tests; the fixture writers live in ``eval_fixtures`` next to this file."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from eval_fixtures import make_da2k, make_diode  # noqa: F401  (pytest fixtures)


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread):
    """Every evaluation test runs on one thread (see tests/conftest.py)."""
