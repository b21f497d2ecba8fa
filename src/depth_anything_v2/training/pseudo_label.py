"""Pseudo-labelling: a teacher's disparity for unlabeled images, written into tar shards; resumable, distributed.

    from depth_anything_v2 import DepthPredictor
    from depth_anything_v2.training.pseudo_label import pseudo_label

    teacher = DepthPredictor.from_pretrained("runs/teacher/final.pt", device="cuda")
    report = pseudo_label(teacher, ["unlabeled/"], "pseudo/", shard_size=1000)

**Plan.** Inputs are either image files (folders, files, globs, ``.txt`` lists, expanded and sorted as the
``predict`` command does) or existing tar shards of unlabeled images. Image inputs are chunked in order:
output shard ``i`` holds inputs ``i * shard_size .. (i + 1) * shard_size - 1``. Shard inputs map one to one:
output shard ``i`` labels input shard ``i``. The plan (inputs, shard size, encoding, input size) is recorded in
``OUT/pseudo_label_manifest.json``; a restart with another plan is refused instead of mixing two.

**Resumable, never partial, no duplicates.** Shard ``i`` is written to ``pseudo-<i>.tar.partial`` and renamed to
``pseudo-<i>.tar`` only when complete (:class:`~depth_anything_v2.data.shards.TarShard`); a shard that exists is
finished and is skipped by later runs; a killed run leaves at most a ``.partial`` file, which no reader matches
and the next run overwrites. Since the assignment of inputs to shards is fixed by the plan, every input lands in
exactly one shard, whatever was interrupted and whatever the number of processes. Per shard, a sidecar
``pseudo-<i>.json`` lists the inputs that could not be read (written before the shard is renamed).

**Distributed.** Under ``torchrun`` (``RANK``/``WORLD_SIZE``/``LOCAL_RANK``), rank ``r`` takes the shards
``i`` with ``i % WORLD_SIZE == r`` on ``cuda:LOCAL_RANK``; no process group is needed, so nodes can also be
launched independently with ``RANK``/``WORLD_SIZE`` set by any scheduler.

**Sample format** (:func:`~depth_anything_v2.data.shards.make_pseudo_label_sample`): the image's own file bytes
(no re-encoding), the disparity at the image's resolution as a 16-bit PNG quantised over the sample's own range
(``encoding="png16"``: max absolute error = range / 131068, i.e. 7.6e-6 of the sample's disparity range; or
``"f16"``: float16 ``.npy``, relative error <= 4.9e-4), and a JSON with the quantisation, the source and the
teacher.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "MANIFEST_NAME",
    "PseudoLabelError",
    "PseudoLabelReport",
    "WorkItem",
    "plan_image_inputs",
    "plan_shard_inputs",
    "pseudo_label",
    "shard_name",
]

MANIFEST_NAME = "pseudo_label_manifest.json"
MANIFEST_FORMAT = "depth_anything_v2.pseudo_label/1"
_PLAN_KEYS = (
    "format",
    "input_kind",
    "num_inputs",
    "num_shards",
    "shard_size",
    "inputs_sha256",
    "encoding",
    "input_size",
)


class PseudoLabelError(ValueError):
    """A pseudo-labelling job that cannot run as asked (bad inputs, an output folder holding another plan)."""


@dataclass(frozen=True)
class WorkItem:
    """One unlabeled image: its shard ``key``, where it comes from (a file path, or ``shard#key``), and how to
    get ``(file bytes, extension)``."""

    key: str
    source: str
    read: Callable[[], tuple[bytes, str]] = field(compare=False, repr=False)


@dataclass
class PseudoLabelReport:
    """What one process did. ``failures`` covers this process's shards, including those finished by earlier
    runs (read back from their sidecars), so a resumed job reports the same failures as an uninterrupted one."""

    out_dir: Path
    num_shards: int
    rank: int = 0
    world_size: int = 1
    written: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    remaining: list[int] = field(default_factory=list)
    samples_written: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.remaining


def shard_name(index: int) -> str:
    return f"pseudo-{index:06d}.tar"


def _escape_key(stem: str) -> str:
    # WebDataset splits key and field at the first dot of the member name; keep keys injective and dot-free.
    return stem.replace("%", "%25").replace(".", "%2E")


# -------------------------------------------------------------------------------------------------- plans
def plan_image_inputs(
    specs: list[str], shard_size: int, *, exclude: list[str | Path] = ()
) -> tuple[list[list[WorkItem]], list]:
    """Image INPUTs (folders, files, globs, lists) -> shards of :class:`WorkItem` (in order), plus entries that
    could not be expanded (``InputFailure``)."""
    from ..io.inputs import InputError, expand_inputs

    try:
        expanded = expand_inputs(specs, exclude=list(exclude))
    except InputError as e:
        raise PseudoLabelError(str(e)) from None
    others = [item.source for item in expanded.items if item.kind != "image"]
    if others:
        raise PseudoLabelError(f"expected images, got videos or streams: {others[:3]}")
    items = [WorkItem(_escape_key(item.stem), item.source, _file_reader(item.source)) for item in expanded.items]
    if not items:
        raise PseudoLabelError(f"no images found in {specs}")
    return [items[i : i + shard_size] for i in range(0, len(items), shard_size)], expanded.failures


def _file_reader(path: str) -> Callable[[], tuple[bytes, str]]:
    def read() -> tuple[bytes, str]:
        return Path(path).read_bytes(), Path(path).suffix.lower().lstrip(".")

    return read


def plan_shard_inputs(specs: list[str]) -> list[str]:
    """Input shard paths (lists, globs, brace ranges, directories, ``.txt`` lists) in order."""
    from ..data.shards import expand_shards

    shards = expand_shards(list(specs))
    missing = [s for s in shards if not os.path.isfile(s)]
    if missing:
        raise PseudoLabelError(f"input shard(s) not found: {missing[:3]}")
    if not shards:
        raise PseudoLabelError(f"no input shards match {specs}")
    return shards


def _iter_shard_items(shard: str) -> Iterator[WorkItem]:
    from ..data.shards import IMAGE_EXTS, ShardDataset

    source = ShardDataset([shard], rank=0, world_size=1, decode=False, on_error="raise")
    for raw in source:
        ext = next((e for e in IMAGE_EXTS if e in raw), None)
        key = raw["__key__"]
        if ext is None:
            data = b""

            def read(k=key) -> tuple[bytes, str]:
                raise ValueError(f"sample {k} has no image field (one of {IMAGE_EXTS})")

        else:
            data = raw[ext]

            def read(d=data, e=ext) -> tuple[bytes, str]:
                return d, e

        yield WorkItem(key, f"{shard}#{key}", read)


def _inputs_digest(lines: Iterable[str]) -> str:
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode() + b"\n")
    return h.hexdigest()


def _check_manifest(out_dir: Path, manifest: dict[str, Any]) -> None:
    from .checkpointing import atomic_write_text

    path = out_dir / MANIFEST_NAME
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise PseudoLabelError(
                f"{path}: unreadable manifest ({e}); remove it only if the folder is empty"
            ) from None
        changed = [k for k in _PLAN_KEYS if old.get(k) != manifest.get(k)]
        if changed:
            details = ", ".join(f"{k}: {old.get(k)!r} -> {manifest.get(k)!r}" for k in changed if k != "inputs_sha256")
            if "inputs_sha256" in changed:
                details = (details + ", " if details else "") + "the list of inputs differs"
            raise PseudoLabelError(
                f"{out_dir} holds pseudo labels of another plan ({details}); resume with the same inputs and "
                "options, or use a new --out folder"
            )
        if old.get("teacher") != manifest.get("teacher"):
            log.warning(
                "%s was started with teacher %s; continuing with %s", out_dir, old.get("teacher"), manifest["teacher"]
            )
        return
    # Every rank may get here at once; they write identical content, each atomically.
    atomic_write_text(path, json.dumps(manifest, indent=2) + "\n")


# ----------------------------------------------------------------------------------------------- running
def _prefetch(items: Iterable[WorkItem], workers: int, ahead: int) -> Iterator[tuple[WorkItem, Any]]:
    """``(item, (bytes, ext, rgb) or Exception)`` in order, read and decoded by a thread pool ``ahead`` items
    in advance (image decoding releases the GIL)."""
    from ..data.shards import decode_field
    from ..io.images import read_image

    def load(item: WorkItem) -> Any:
        try:
            data, ext = item.read()
            if os.path.isfile(item.source):
                rgb = read_image(item.source, data=data)  # the project's decoder: EXIF, 16-bit, CMYK, limits
            else:
                rgb = decode_field(ext, data)
                if not isinstance(rgb, np.ndarray) or rgb.ndim != 3:
                    raise ValueError(f"field {ext!r} is not a colour image")
            return data, ext, rgb
        except (OSError, ValueError) as e:
            return e

    if workers <= 0:
        for item in items:
            yield item, load(item)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        queue: deque[tuple[WorkItem, Future]] = deque()
        for item in items:
            queue.append((item, pool.submit(load, item)))
            if len(queue) > ahead:
                it, fut = queue.popleft()
                yield it, fut.result()
        while queue:
            it, fut = queue.popleft()
            yield it, fut.result()


_EXT_ALIASES = {"jpe": "jpg", "jfif": "jpg", "tif": "tiff"}


def _write_shard(
    predictor: Any,
    items: Iterable[WorkItem],
    path: Path,
    *,
    batch_size: int,
    encoding: str,
    teacher: str,
    read_workers: int,
    on_sample: Callable[[], None] | None,
) -> tuple[int, list[tuple[str, str]]]:
    from ..data.shards import IMAGE_EXTS, TarShard, make_pseudo_label_sample
    from .checkpointing import atomic_write_text

    failures: list[tuple[str, str]] = []
    pending: dict[str, tuple[WorkItem, bytes | np.ndarray, str]] = {}
    seen: set[str] = set()

    def decoded() -> Iterator[tuple[str, np.ndarray]]:
        for item, loaded in _prefetch(items, read_workers, ahead=max(2 * batch_size, 8)):
            if isinstance(loaded, Exception):
                failures.append((item.source, str(loaded)))
                log.warning("skipping %s: %s", item.source, loaded)
                continue
            if item.key in seen:
                failures.append((item.source, f"duplicate key {item.key!r} in this shard"))
                continue
            seen.add(item.key)
            data, ext, rgb = loaded
            ext = _EXT_ALIASES.get(ext, ext)
            # The file's own bytes when every shard reader decodes its format; else the pixels, as PNG.
            pending[item.key] = (item, data, ext) if ext in IMAGE_EXTS else (item, rgb, "png")
            yield item.key, rgb

    shard = TarShard(path)
    count = 0
    try:
        for key, result in predictor.predict_iter(decoded(), batch_size=batch_size):
            item, image, ext = pending.pop(key)
            sample = make_pseudo_label_sample(
                key,
                image,
                result.depth,
                image_ext=ext,
                encoding=encoding,  # type: ignore[arg-type]
                meta={"source": item.source, "teacher": teacher, "kind": "disparity"},
            )
            shard.write(sample)
            count += 1
            if on_sample is not None:
                on_sample()
        # The sidecar first: a shard that exists always has its report.
        atomic_write_text(
            path.with_suffix(".json"),
            json.dumps({"samples": count, "failures": [list(f) for f in failures]}, indent=1) + "\n",
        )
        shard.close()
    except BaseException:
        shard.abort()
        raise
    return count, failures


def pseudo_label(
    predictor: Any,
    inputs: list[str],
    out_dir: str | Path,
    *,
    shard_size: int = 1000,
    batch_size: int = 8,
    encoding: str = "png16",
    input_kind: str = "auto",
    teacher: str = "",
    rank: int | None = None,
    world_size: int | None = None,
    max_shards: int | None = None,
    read_workers: int = 4,
    progress: bool = False,
) -> PseudoLabelReport:
    """Label ``inputs`` with ``predictor`` (a relative :class:`~depth_anything_v2.inference.predictor.DepthPredictor`)
    into shards under ``out_dir`` (see the module docstring).

    Args:
        inputs: image INPUTs or shard specs.
        shard_size: images per output shard (image inputs; shard inputs keep their grouping).
        batch_size: images per forward pass (images sharing a working size are batched).
        encoding: ``"png16"`` (default) or ``"f16"``.
        input_kind: ``"images"``, ``"shards"`` or ``"auto"`` (shards when every spec ends in ``.tar``).
        teacher: a description recorded with each sample (name or path of the weights).
        rank, world_size: this process's share (default: the torchrun environment).
        max_shards: stop after writing this many shards (a time-boxed job; rerun to continue).
        read_workers: threads reading and decoding images ahead of the model.
        progress: a tqdm bar.

    Raises:
        PseudoLabelError: no inputs, a metric teacher, or an output folder holding another plan.
    """
    from ..distributed import env_rank

    if shard_size < 1 or batch_size < 1:
        raise PseudoLabelError(f"expected shard_size >= 1 and batch_size >= 1, got {shard_size} and {batch_size}")
    if encoding not in ("png16", "f16"):
        raise PseudoLabelError(f"expected encoding 'png16' or 'f16', got {encoding!r}")
    if input_kind not in ("auto", "images", "shards"):
        raise PseudoLabelError(f"expected input kind auto, images or shards, got {input_kind!r}")
    if getattr(predictor, "is_metric", False):
        raise PseudoLabelError(
            "expected a relative (disparity) teacher, got a metric model: pseudo labels are affine-invariant disparity"
        )
    if not inputs:
        raise PseudoLabelError("expected at least one input")
    env_r, env_w, _ = env_rank()
    rank = env_r if rank is None else rank
    world_size = env_w if world_size is None else world_size
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    if input_kind == "auto":
        input_kind = "shards" if all(str(s).endswith(".tar") for s in inputs) else "images"
    failures_plan: list = []
    if input_kind == "images":
        chunks, failures_plan = plan_image_inputs(list(inputs), shard_size, exclude=[out])
        num_shards = len(chunks)
        digest = _inputs_digest(f"{it.key}\t{it.source}" for chunk in chunks for it in chunk)
        num_inputs = sum(len(c) for c in chunks)
        size_field: int | None = shard_size
    else:
        input_shards = plan_shard_inputs(list(inputs))
        num_shards = len(input_shards)
        digest = _inputs_digest(os.path.abspath(s) for s in input_shards)
        num_inputs = num_shards
        size_field = None
    manifest = {
        "format": MANIFEST_FORMAT,
        "input_kind": input_kind,
        "num_inputs": num_inputs,
        "num_shards": num_shards,
        "shard_size": size_field,
        "inputs_sha256": digest,
        "encoding": encoding,
        "input_size": getattr(predictor, "input_size", None),
        "teacher": teacher,
        "disparity_precision": (
            "png16: uint16 over each sample's own range, max abs error = range / 131068"
            if encoding == "png16"
            else "f16: float16, relative error <= 4.9e-4"
        ),
    }
    _check_manifest(out, manifest)

    report = PseudoLabelReport(out, num_shards, rank, world_size)
    report.failures.extend((f.source, f.reason) for f in failures_plan if rank == 0)
    mine = [i for i in range(num_shards) if i % world_size == rank]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        total = sum(len(chunks[i]) for i in mine) if input_kind == "images" else None
        bar = tqdm(total=total, desc=f"pseudo-label rank {rank}", unit="img", dynamic_ncols=True)
    try:
        for i in mine:
            path = out / shard_name(i)
            if path.is_file():
                report.skipped.append(i)
                report.failures.extend(_sidecar_failures(path))
                if bar is not None and input_kind == "images":
                    bar.update(len(chunks[i]))
                continue
            if max_shards is not None and len(report.written) >= max_shards:
                report.remaining.append(i)
                continue
            items: Iterable[WorkItem] = chunks[i] if input_kind == "images" else _iter_shard_items(input_shards[i])
            count, failed = _write_shard(
                predictor,
                items,
                path,
                batch_size=batch_size,
                encoding=encoding,
                teacher=teacher,
                read_workers=read_workers,
                on_sample=(lambda: bar.update(1)) if bar is not None else None,
            )
            report.written.append(i)
            report.samples_written += count
            report.failures.extend(failed)
            log.info("wrote %s (%d samples, %d failed)", path, count, len(failed))
    finally:
        if bar is not None:
            bar.close()
    return report


def _sidecar_failures(shard_path: Path) -> list[tuple[str, str]]:
    side = shard_path.with_suffix(".json")
    try:
        return [tuple(f) for f in json.loads(side.read_text()).get("failures", [])]  # type: ignore[misc]
    except (OSError, json.JSONDecodeError, AttributeError):
        return []
