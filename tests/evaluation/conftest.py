"""Fixtures for the evaluation tests; the fixture writers live in ``eval_fixtures`` next to this file."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from eval_fixtures import make_da2k, make_diode  # noqa: F401  (pytest fixtures)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny convolutions gain nothing from threads, and on a busy 2-core runner thread contention makes them
    ~50x slower; one thread also matches each torchrun worker (OMP_NUM_THREADS=1) bit for bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
