"""The one device resolver and precision table."""

from __future__ import annotations

import pytest
import torch

from depth_anything_v2.devices import precision_dtype, resolve_device


def test_auto_and_explicit_devices_on_a_cpu_machine(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == resolve_device(None) == resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto", local_rank=3) == torch.device("cpu")
    with pytest.raises(ValueError, match="'cuda:1' requested, but CUDA is not available here"):
        resolve_device("cuda:1")
    with pytest.raises(ValueError, match="'mps' requested, but MPS is not available here"):
        resolve_device("mps")
    with pytest.raises(ValueError, match="expected device auto, cpu, cuda, cuda:N or mps, got 'tpu'"):
        resolve_device("tpu")


def test_a_bare_cuda_under_torchrun_takes_the_local_rank(monkeypatch):
    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    assert resolve_device("auto", local_rank=5) == torch.device("cuda", 1)
    assert resolve_device("cuda:2", local_rank=5) == torch.device("cuda", 2)
    assert resolve_device("cuda") == torch.device("cuda")  # one process: no rank, no set_device
    assert chosen == [torch.device("cuda", 1), torch.device("cuda", 2)]


def test_precision_names():
    assert precision_dtype("bf16") is torch.bfloat16 and precision_dtype("fp16") is torch.float16
    with pytest.raises(ValueError, match="expected precision one of \\['bf16', 'fp16', 'fp32'\\], got 'int4'"):
        precision_dtype("int4")
