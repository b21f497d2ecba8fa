"""``load_model``: every way of getting a ready ``DepthAnythingV2`` (``build_model`` builds an empty one)."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import torch

from ..configs import PUBLISHED_MODELS, PublishedModel, get_variant
from ..devices import resolve_device
from ..dpt import DepthAnythingV2, build_model  # build_model: also importable from here
from .checkpoints import (
    CheckpointError,
    StateDict,
    check_state_dict,
    hf_config_model_args,
    hf_to_reference,
    infer_encoder,
    is_hf_state_dict,
    read_checkpoint,
)

logger = logging.getLogger(__name__)


class ModelUnavailableError(FileNotFoundError):
    """A published model that is not in the Hugging Face cache and cannot be downloadable now (offline, no
    network, the Hub refused). The message names the model, the file and the ways out."""


def resolve_published(name: str, *, download: bool = True) -> Path:
    """Path of a published checkpoint in the Hugging Face cache, downloading it if allowed.

    Honours ``HF_HOME`` / ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE``. A cached file is used without touching the
    network. Otherwise one metadata request (``HF_HUB_ETAG_TIMEOUT``, no retries) decides: if the Hub cannot
    be reached the call fails at once, instead of ``hf_hub_download``'s retries (about 25 s with no network);
    if it can, the file is downloaded. ``download=False`` never goes to the network.

    Raises:
        ModelUnavailableError: not cached and not downloadable now.
    """
    pm = PUBLISHED_MODELS.get(name)
    if pm is None:
        raise ValueError(f"unknown model name {name!r}; expected one of {', '.join(PUBLISHED_MODELS)}")
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub.errors import LocalEntryNotFoundError

    logger.info("model %s: %s/%s (licence: %s)", name, pm.repo_id, pm.filename, pm.license)
    with contextlib.suppress(LocalEntryNotFoundError):
        return Path(hf_hub_download(pm.repo_id, pm.filename, local_files_only=True))
    if constants.HF_HUB_OFFLINE:
        raise _unavailable(pm, "HF_HUB_OFFLINE is set")
    if not download:
        raise _unavailable(pm, "this caller does not download models")
    try:  # one attempt: network and HTTP errors (no DNS, refused, 401, 404, ...) all mean "not available now"
        get_hf_file_metadata(hf_hub_url(pm.repo_id, pm.filename), timeout=constants.HF_HUB_ETAG_TIMEOUT)
    except Exception as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise _unavailable(pm, f"the Hugging Face Hub could not be reached ({reason})") from e
    return Path(hf_hub_download(pm.repo_id, pm.filename))


def _unavailable(pm: PublishedModel, why: str) -> ModelUnavailableError:
    return ModelUnavailableError(
        f"model {pm.name!r} needs {pm.filename} from https://huggingface.co/{pm.repo_id}, which is not in the "
        f"Hugging Face cache and {why}. Download it on a connected machine with "
        f"`hf download {pm.repo_id} {pm.filename}` (then copy the cache, HF_HUB_CACHE), or download the file "
        f"and pass its path instead (--weights PATH)."
    )


def max_depth_from_file_name(path: str | os.PathLike) -> float | None:
    """A published metric file's range (20 / 80 m), recognised by its file name from the published-model table
    (also when renamed ``... (1).pth``); ``None`` for any other name."""
    name = Path(path).name
    for m in PUBLISHED_MODELS.values():
        if m.is_metric and Path(m.filename).stem in name:
            return m.max_depth
    return None


def load_state_dict_any(source: str | os.PathLike) -> tuple[StateDict, dict]:
    """Reference-format state dict of any checkpoint file/directory, plus what the file tells about the model
    (``encoder``, and ``max_depth`` when known: from config.json or a published metric file name)."""
    path = Path(source)
    state_dict, hf_config, recorded = read_checkpoint(path)
    info: dict = {}
    if recorded is not None:  # a training checkpoint of this toolkit records encoder and max_depth
        info["encoder"] = infer_encoder(state_dict)
        if recorded.get("encoder") not in (None, info["encoder"]):
            raise CheckpointError(
                f"{path}: the checkpoint says encoder {recorded['encoder']!r}, but its tensors are {info['encoder']!r}"
            )
        info["max_depth"] = recorded.get("max_depth")
        return state_dict, info
    if hf_config is not None or is_hf_state_dict(state_dict):
        state_dict = hf_to_reference(state_dict)
        # The published -hf files may lack the unused mask token; it is never read, so zeros are exact.
        if "pretrained.mask_token" not in state_dict and "pretrained.cls_token" in state_dict:
            state_dict["pretrained.mask_token"] = torch.zeros_like(state_dict["pretrained.cls_token"][0])
        if hf_config is not None:
            info.update(hf_config_model_args(hf_config, state_dict))
    info.setdefault("encoder", infer_encoder(state_dict))
    if "max_depth" not in info:
        md = max_depth_from_file_name(path)
        if md is not None:
            info["max_depth"] = md
    return state_dict, info


def load_model(
    source: str | os.PathLike,
    *,
    encoder: str | None = None,
    max_depth: float | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> DepthAnythingV2:
    """Load a ready-to-run ``DepthAnythingV2`` (in eval mode) from any supported source.

    Args:
        source: a published model name (``"vits"``, ``"vitb"``, ``"vitl"``, ``"metric-hypersim-vits"``, ...,
            see ``depth_anything_v2.PUBLISHED_MODELS``), an official ``.pth``, a ``.safetensors`` with the same
            keys, a transformers-format directory (or its ``model.safetensors`` beside ``config.json``), or a
            training checkpoint.
        encoder: checked against the checkpoint when given; otherwise inferred from its tensor shapes.
        max_depth: ``None`` keeps what the source says (published name, ``config.json``, or a file named
            ``depth_anything_v2_metric_{hypersim,vkitti}_*.pth``: 20 / 80 m), else relative. A number makes a
            metric model. The weights cannot tell, so a metric ``.pth`` under another name needs it.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"`` or a ``torch.device``; default cpu.
        dtype: parameter dtype (default float32).

    Raises:
        CheckpointError: unreadable, unsafe or mismatching files, with expected vs found.
        FileNotFoundError: a missing path.
        ModelUnavailableError: a published model that is neither cached nor downloadable now.
    """
    name = os.fspath(source)
    published: PublishedModel | None = PUBLISHED_MODELS.get(name) if not Path(name).exists() else None
    if published is not None:
        if encoder is not None and encoder != published.encoder:
            raise ValueError(f"model {name!r} has encoder {published.encoder!r}, but encoder={encoder!r} was given")
        path = resolve_published(name)
        state_dict, info = load_state_dict_any(path)
        info["max_depth"] = published.max_depth
    else:
        if not Path(name).exists():
            raise FileNotFoundError(
                f"{name!r} is neither an existing file or directory nor a published model name "
                f"({', '.join(PUBLISHED_MODELS)})"
            )
        state_dict, info = load_state_dict_any(name)
    found = info["encoder"]
    if encoder is not None and encoder != found:
        raise CheckpointError(
            f"{name}: the checkpoint is for encoder {found!r} (embedding dim "
            f"{get_variant(found).encoder.embed_dim}), but encoder {encoder!r} was requested "
            f"(embedding dim {get_variant(encoder).encoder.embed_dim})"
        )
    check_state_dict(state_dict, found)
    if max_depth is None:
        max_depth = info.get("max_depth")
    with torch.device("meta"):
        model = build_model(found, max_depth, init=False)
    model.load_state_dict(state_dict, strict=True, assign=True)
    model = model.to(device=resolve_device(device) if device is not None else "cpu", dtype=dtype or torch.float32)
    logger.info(
        "loaded %s: encoder %s, %s", name, found, f"metric, max_depth {max_depth} m" if max_depth else "relative"
    )
    return model.eval()
