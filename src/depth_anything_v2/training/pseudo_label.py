"""Pseudo-labelling: a teacher's disparity for unlabeled images, written into tar shards; resumable, distributed.

    from depth_anything_v2 import DepthPredictor
    from depth_anything_v2.training.pseudo_label import pseudo_label

    teacher = DepthPredictor.from_pretrained("runs/teacher/final.pt", device="cuda")
    report = pseudo_label(teacher, ["unlabeled/"], "pseudo/", shard_size=1000)

**Plan.** Three kinds of inputs:

- ``images``: image files (folders, files, globs, ``.txt`` lists), expanded and sorted as the ``predict``
  command does, then chunked in order: output shard ``i`` holds inputs ``i * shard_size .. (i + 1) *
  shard_size - 1``. Every process lists every input: for jobs up to a few million images.
- ``lists``: an image list split into parts (``inputs/part-{000..099}.txt``, a glob, or a folder of ``.txt``
  parts; one image path per line, relative to the part's folder). Part ``p`` is streamed line by line and cut
  into output shards ``pseudo-<p>-<j>.tar`` of ``shard_size`` lines; a process holds one shard's lines at a
  time, whatever the number of inputs. The scale of the paper (tens of millions of images).
- ``shards``: existing tar shards of unlabeled images, streamed; output shard ``i`` labels input shard ``i``.

The plan (kind, inputs or parts, shard size, encoding, input size) is recorded in
``OUT/pseudo_label_manifest.json``; a restart with another plan is refused instead of mixing two.

**Resumable, never partial, no duplicates.** Shard ``i`` is written to ``pseudo-<i>.tar.partial`` and renamed to
``pseudo-<i>.tar`` only when complete (:class:`~depth_anything_v2.data.shards.TarShard`); a shard that exists is
finished and is skipped by later runs; a killed run leaves at most a ``.partial`` file, which no reader matches
and the next run overwrites. Since the assignment of inputs to shards is fixed by the plan, every input lands in
exactly one shard, whatever was interrupted and whatever the number of processes. Per shard, a sidecar
``pseudo-<i>.json`` lists the inputs that could not be read (written before the shard is renamed); for list
parts it also holds the digest of the shard's lines, and a resume refuses a part whose lines changed.

**Distributed.** Under ``torchrun`` (``RANK``/``WORLD_SIZE``/``LOCAL_RANK``), rank ``r`` takes the images
chunks, input shards or list parts ``i`` with ``i % WORLD_SIZE == r`` on ``cuda:LOCAL_RANK``; no process group
is needed, so nodes can also be launched independently with ``RANK``/``WORLD_SIZE`` set by any scheduler. Each
rank reports its throughput (``PseudoLabelReport.images_per_second``) and can show its own progress bar.

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
import time
from collections.abc import Callable, Iterable, Iterator
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
    "plan_list_parts",
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
    """What one process did. ``written``, ``skipped`` (finished by earlier runs) and ``remaining`` (left by
    ``max_shards``) are output shard file names. ``failures`` covers this process's shards, including those
    finished by earlier runs (read back from their sidecars), so a resumed job reports the same failures as an
    uninterrupted one. ``num_shards`` is None for list parts (not known before they are read)."""

    out_dir: Path
    num_shards: int | None
    rank: int = 0
    world_size: int = 1
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    remaining: list[str] = field(default_factory=list)
    samples_written: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return not self.remaining

    @property
    def images_per_second(self) -> float:
        """Samples written per second of this call's wall time (reading past finished shards included)."""
        return self.samples_written / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Job:
    """One output shard of this rank: its file name, its inputs (streamed, or at most one shard's worth), their
    number when known, and for list parts the digest of its lines (checked against the sidecar on resume)."""

    name: str
    items: Iterable[WorkItem]
    size: int | None = None
    digest: str | None = None


@dataclass
class _Plan:
    """This rank's jobs (lazy) and the plan's manifest fields."""

    fields: dict[str, Any]
    jobs: Iterator[_Job]
    num_shards: int | None
    failures: list = field(default_factory=list)


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


def plan_list_parts(specs: list[str]) -> list[str]:
    """List part paths (brace ranges ``part-{000..099}.txt``, globs, folders of ``.txt`` parts, files) in
    order; only their names are held, never their lines."""
    import glob

    from ..data.shards import _BRACE, _expand_braces

    parts: list[str] = []
    for spec in map(str, specs):
        if os.path.isdir(spec):
            parts.extend(sorted(str(p) for p in Path(spec).glob("*.txt")))
        elif _BRACE.search(spec):
            parts.extend(_expand_braces(spec))
        elif any(c in spec for c in "*?["):
            parts.extend(sorted(glob.glob(spec)))
        else:
            parts.append(spec)
    missing = [p for p in parts if not os.path.isfile(p)]
    if missing:
        raise PseudoLabelError(f"input list part(s) not found: {missing[:3]}")
    if not parts:
        raise PseudoLabelError(f"no input list parts match {specs}")
    return parts


def _part_jobs(index: int, part: str, shard_size: int) -> Iterator[_Job]:
    """The output shards of list part ``index``, read line by line: ``shard_size`` lines at a time in memory."""
    base = os.path.dirname(part)
    chunk: list[WorkItem] = []
    j = 0
    with open(part, encoding="utf-8") as f:
        lines = (ln.strip() for ln in f)
        for n, line in enumerate(ln for ln in lines if ln and not ln.startswith("#")):
            path = line if os.path.isabs(line) else os.path.join(base, line)
            chunk.append(WorkItem(f"{index:06d}-{n:09d}", path, _file_reader(path)))
            if len(chunk) == shard_size:
                yield _chunk_job(index, j, chunk)
                chunk, j = [], j + 1
    if chunk:
        yield _chunk_job(index, j, chunk)


def _chunk_job(part: int, j: int, chunk: list[WorkItem]) -> _Job:
    digest = _inputs_digest(it.source for it in chunk)
    return _Job(f"pseudo-{part:06d}-{j:06d}.tar", chunk, len(chunk), digest)


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
def _load(item: WorkItem) -> tuple[bytes, str, np.ndarray]:
    """``(file bytes, extension, RGB)`` of one input (run by :func:`~depth_anything_v2.inference.prefetch.
    prefetch_map`'s threads: image decoding releases the GIL)."""
    from ..data.shards import decode_field
    from ..io.images import read_image

    data, ext = item.read()
    if os.path.isfile(item.source):
        return data, ext, read_image(item.source, data=data)  # the project's decoder: EXIF, 16-bit, CMYK, limits
    rgb = decode_field(ext, data)
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3:
        raise ValueError(f"field {ext!r} is not a colour image")
    return data, ext, rgb


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
    digest: str | None = None,
) -> tuple[int, list[tuple[str, str]]]:
    from ..data.shards import IMAGE_EXTS, TarShard, make_pseudo_label_sample
    from ..inference.prefetch import prefetch_map
    from .checkpointing import atomic_write_text

    failures: list[tuple[str, str]] = []
    pending: dict[str, tuple[WorkItem, bytes | np.ndarray, str]] = {}
    seen: set[str] = set()

    def decoded() -> Iterator[tuple[str, np.ndarray]]:
        ahead = max(2 * batch_size, 8)
        for item, loaded in prefetch_map(_load, items, workers=read_workers, ahead=ahead, catch=(OSError, ValueError)):
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
                result.prediction,
                image_ext=ext,
                encoding=encoding,  # type: ignore[arg-type]
                meta={"source": item.source, "teacher": teacher, "kind": "disparity"},
            )
            shard.write(sample)
            count += 1
            if on_sample is not None:
                on_sample()
        # The sidecar first: a shard that exists always has its report.
        side: dict[str, Any] = {"samples": count, "failures": [list(f) for f in failures]}
        if digest is not None:
            side["inputs_sha256"] = digest
        atomic_write_text(path.with_suffix(".json"), json.dumps(side, indent=1) + "\n")
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
        inputs: image INPUTs, list parts or shard specs.
        shard_size: images per output shard (image and list inputs; shard inputs keep their grouping).
        batch_size: images per forward pass (images sharing a working size are batched).
        encoding: ``"png16"`` (default) or ``"f16"``.
        input_kind: ``"images"``, ``"lists"``, ``"shards"`` or ``"auto"`` (shards when every spec ends in
            ``.tar``, else images).
        teacher: a description recorded with each sample (name or path of the weights).
        rank, world_size: this process's share (default: the torchrun environment).
        max_shards: stop after writing this many shards (a time-boxed job; rerun to continue).
        read_workers: threads reading and decoding images ahead of the model.
        progress: a tqdm bar for this rank (one line per local rank).

    Raises:
        PseudoLabelError: no inputs, a metric teacher, or an output folder holding another plan.
    """
    from ..distributed import env_rank

    if input_kind == "auto":
        input_kind = "shards" if inputs and all(str(s).endswith(".tar") for s in inputs) else "images"
    _check_arguments(predictor, inputs, shard_size, batch_size, encoding, input_kind)
    env_r, env_w, local = env_rank()
    rank = env_r if rank is None else rank
    world_size = env_w if world_size is None else world_size
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plan = _plan(input_kind, list(inputs), shard_size, out, rank, world_size)
    _check_manifest(out, _manifest(plan, input_kind, encoding, predictor, teacher))
    report = PseudoLabelReport(out, plan.num_shards, rank, world_size)
    report.failures.extend((f.source, f.reason) for f in plan.failures if rank == 0)
    bar = _progress_bar(plan, rank, world_size, local) if progress else None
    write = dict(batch_size=batch_size, encoding=encoding, teacher=teacher, read_workers=read_workers)
    try:
        _run_jobs(predictor, plan.jobs, out, report, max_shards=max_shards, bar=bar, **write)
    finally:
        if bar is not None:
            bar.close()
    return report


def _check_arguments(
    predictor: Any, inputs: list[str], shard_size: int, batch_size: int, encoding: str, input_kind: str
) -> None:
    if shard_size < 1 or batch_size < 1:
        raise PseudoLabelError(f"expected shard_size >= 1 and batch_size >= 1, got {shard_size} and {batch_size}")
    if encoding not in ("png16", "f16"):
        raise PseudoLabelError(f"expected encoding 'png16' or 'f16', got {encoding!r}")
    if input_kind not in ("images", "lists", "shards"):
        raise PseudoLabelError(f"expected input kind auto, images, lists or shards, got {input_kind!r}")
    if getattr(predictor, "is_metric", False):
        raise PseudoLabelError(
            "expected a relative (disparity) teacher, got a metric model: pseudo labels are affine-invariant disparity"
        )
    if not inputs:
        raise PseudoLabelError("expected at least one input")


def _plan(kind: str, inputs: list[str], shard_size: int, out: Path, rank: int, world_size: int) -> _Plan:
    """This rank's output shards: unit ``i`` (images chunk, input shard or list part) goes to rank
    ``i % world_size``. Only image inputs are listed in full; shards and parts are known by name only."""
    if kind == "images":
        chunks, failures = plan_image_inputs(inputs, shard_size, exclude=[out])
        fields = {
            "num_inputs": sum(len(c) for c in chunks),
            "num_shards": len(chunks),
            "shard_size": shard_size,
            "inputs_sha256": _inputs_digest(f"{it.key}\t{it.source}" for chunk in chunks for it in chunk),
        }
        jobs = (_Job(shard_name(i), c, len(c)) for i, c in enumerate(chunks) if i % world_size == rank)
        return _Plan(fields, jobs, len(chunks), failures)
    units = plan_shard_inputs(inputs) if kind == "shards" else plan_list_parts(inputs)
    fields = {
        "num_inputs": len(units),  # input shards or list parts
        "num_shards": len(units) if kind == "shards" else None,
        "shard_size": None if kind == "shards" else shard_size,
        "inputs_sha256": _inputs_digest(os.path.abspath(u) for u in units),
    }
    mine = ((i, u) for i, u in enumerate(units) if i % world_size == rank)
    if kind == "shards":
        return _Plan(fields, (_Job(shard_name(i), _iter_shard_items(u)) for i, u in mine), len(units))
    return _Plan(fields, (job for i, u in mine for job in _part_jobs(i, u, shard_size)), None)


def _manifest(plan: _Plan, kind: str, encoding: str, predictor: Any, teacher: str) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "input_kind": kind,
        **plan.fields,
        "encoding": encoding,
        "input_size": getattr(predictor, "input_size", None),
        "teacher": teacher,
        "disparity_precision": (
            "png16: uint16 over each sample's own range, max abs error = range / 131068"
            if encoding == "png16"
            else "f16: float16, relative error <= 4.9e-4"
        ),
    }


def _progress_bar(plan: _Plan, rank: int, world_size: int, local_rank: int) -> Any:
    from tqdm.auto import tqdm

    total = None
    if plan.fields["num_shards"] is not None and plan.fields["shard_size"] is not None:  # image inputs: known
        num, size = plan.fields["num_inputs"], plan.fields["shard_size"]
        total = sum(min(size, num - i * size) for i in range(rank, plan.fields["num_shards"], world_size))
    return tqdm(total=total, desc=f"pseudo-label rank {rank}", unit="img", position=local_rank, dynamic_ncols=True)


def _run_jobs(
    predictor: Any,
    jobs: Iterable[_Job],
    out: Path,
    report: PseudoLabelReport,
    *,
    max_shards: int | None,
    bar: Any,
    **write: Any,
) -> None:
    """Write this rank's shards that do not exist yet (up to ``max_shards``), into ``report``."""
    start = time.perf_counter()
    for job in jobs:
        path = out / job.name
        if path.is_file():
            report.skipped.append(job.name)
            report.failures.extend(_finished_failures(path, job))
            if bar is not None and job.size is not None:
                bar.update(job.size)
            continue
        if max_shards is not None and len(report.written) >= max_shards:
            report.remaining.append(job.name)
            continue
        count, failed = _write_shard(
            predictor,
            job.items,
            path,
            on_sample=(lambda: bar.update(1)) if bar is not None else None,
            digest=job.digest,
            **write,
        )
        report.written.append(job.name)
        report.samples_written += count
        report.failures.extend(failed)
        report.seconds = time.perf_counter() - start
        log.info("wrote %s (%d samples, %d failed; %.2f images/s)", path, count, len(failed), report.images_per_second)
    report.seconds = time.perf_counter() - start


def _finished_failures(shard_path: Path, job: _Job) -> list[tuple[str, str]]:
    """The failures recorded by a finished shard's sidecar; refuses a list part whose lines changed since."""
    side = shard_path.with_suffix(".json")
    try:
        recorded = json.loads(side.read_text())
    except (OSError, json.JSONDecodeError):
        return []
    if not isinstance(recorded, dict):
        return []
    if job.digest is not None and recorded.get("inputs_sha256") not in (None, job.digest):
        raise PseudoLabelError(
            f"{shard_path} was written from other input lines than its list part holds now; restore the part, "
            "or use a new --out folder"
        )
    return [tuple(f) for f in recorded.get("failures", [])]  # type: ignore[misc]
