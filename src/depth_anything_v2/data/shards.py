"""WebDataset-style tar shards: atomic writing, and streaming reading split across DDP ranks and workers.

Large unlabeled and pseudo-labelled collections (the paper's 62M images) live in tar *shards* of a few thousand
samples each, read sequentially, so nothing ever lists millions of files. The format is WebDataset's: plain
(uncompressed) POSIX tar files whose members are ``<key>.<field>``; consecutive members sharing a key form one
sample. The key is everything up to the first dot of the member's base name (it may contain ``/``); the field
is the rest (``jpg``, ``json``, ``disparity.png``, ...). Files written here read with the ``webdataset``
package too, and vice versa; this module needs only the standard library, numpy, OpenCV and Pillow.

Writing (:class:`ShardWriter`, :class:`TarShard`): a shard is written under a temporary name
(``<name>.tar.partial``) and renamed into place only when complete (after ``fsync``), so a killed job leaves no
partial ``.tar`` behind, only a ``.partial`` file that no reader pattern matches and that the next run
overwrites. An exception inside a ``with`` block discards the unfinished shard.

Pseudo-label samples (what ``depth-anything pseudo-label`` writes, :func:`make_pseudo_label_sample`):

* ``<key>.jpg`` (or ``.png``/``.webp``...): the image, the source file's bytes;
* ``<key>.disparity.png``: the teacher's disparity quantised to uint16 (:func:`encode_disparity_png16`): 0 marks
  invalid pixels, ``q >= 1`` means ``disparity = offset + scale * (q - 1)`` with ``offset``/``scale`` (the
  sample's min and range / 65534) in the JSON. Max absolute error = ``scale / 2`` = range / 131068 (7.6e-6 of
  the sample's disparity range) — far below the teacher's own error. (``encoding="f16"``, float16 ``.npy``,
  is offered too: relative error <= 2**-11 = 4.9e-4, invalid = NaN.)
* ``<key>.json``: ``{"disparity": {"encoding", "offset", "scale"}, ...}`` plus whatever metadata the caller adds.

Reading (:class:`ShardDataset`, :func:`iter_shards`): an ``IterableDataset`` over shard paths given as a list,
a glob, a WebDataset brace range (``data/train-{000000..000127}.tar``), a directory, or a text file listing
shards. Shards are split across ``torch.distributed`` ranks and DataLoader workers (global worker ``g`` of
``G`` reads shards ``g, g + G, ...`` of the epoch's shard order), optionally shuffled per epoch (same order
on every rank) and through a sample shuffle buffer. A corrupt shard or sample is logged and skipped
(``on_error="warn"``) and counted in the ``errors`` of the iterating process.

Example::

    with ShardWriter("out/pseudo-%06d.tar", max_count=1000) as sink:
        for key, image_bytes, disparity in ...:
            sink.write(make_pseudo_label_sample(key, image_bytes, disparity, image_ext="jpg"))

    dataset = ShardDataset("out/pseudo-*.tar", shuffle_buffer=1000, map=pseudo_label_to_training)
    loader = torch.utils.data.DataLoader(dataset, batch_size=8, num_workers=4)
"""

from __future__ import annotations

import glob
import io
import json
import logging
import os
import random
import re
import tarfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from ..io.atomic import AtomicFile
from ..io.images import PORTABLE_IMAGE_EXTENSIONS

log = logging.getLogger(__name__)

__all__ = [
    "ShardDataset",
    "ShardWriter",
    "TarShard",
    "decode_disparity",
    "decode_field",
    "encode_disparity",
    "encode_disparity_png16",
    "encode_field",
    "expand_shards",
    "iter_shards",
    "make_pseudo_label_sample",
    "pseudo_label_to_training",
    "sample_key",
    "split_shards",
    "write_image_shards",
]

IMAGE_EXTS = tuple(e[1:] for e in PORTABLE_IMAGE_EXTENSIONS)  # field names: "jpg", "png", ...
_PARTIAL = ".partial"


# ----------------------------------------------------------------------------------------------- keys
def sample_key(path: str | Path, root: str | Path | None = None) -> str:
    """A stable, tar-safe key for a file: its path relative to ``root`` without the suffix, in POSIX form, with
    ``%`` and ``.`` percent-escaped (WebDataset splits key and field at the first dot). Injective."""
    rel = Path(path).relative_to(root) if root is not None else Path(path)
    key = rel.with_suffix("").as_posix()
    return key.replace("%", "%25").replace(".", "%2E")


def _check_key(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise ValueError(f"expected a non-empty str __key__, got {key!r}")
    base = key.rsplit("/", 1)[-1]
    if "." in base or not base or key.startswith("/") or ".." in key.split("/"):
        raise ValueError(f"expected a key without '.' in its last component and no absolute/.. parts, got {key!r}")
    return key


# -------------------------------------------------------------------------------------------- encoding
def encode_field(field: str, value: Any) -> bytes:
    """Encode one sample field by its extension: bytes as is; ``str`` UTF-8; ``json`` dicts/lists; ``npy``
    arrays; ``png``/``jpg``/``webp`` numpy images (RGB (H, W, 3) uint8, or (H, W) uint8/uint16); ints as text."""
    ext = field.rsplit(".", 1)[-1].lower()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if ext == "json":
        return json.dumps(value, sort_keys=True).encode()
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool | int | float):
        return str(value).encode()
    if isinstance(value, np.ndarray):
        if ext == "npy":
            buf = io.BytesIO()
            np.save(buf, value, allow_pickle=False)
            return buf.getvalue()
        if ext in IMAGE_EXTS:
            import cv2

            array = value[..., ::-1] if value.ndim == 3 else value  # RGB -> OpenCV's BGR
            params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext in ("jpg", "jpeg") else []
            ok, buf = cv2.imencode(f".{ext}", np.ascontiguousarray(array), params)
            if not ok:
                raise ValueError(f"cannot encode an array of {value.dtype} {value.shape} as {ext}")
            return buf.tobytes()
    raise TypeError(
        f"cannot encode field {field!r}: expected bytes, str, json-able or numpy, got {type(value).__name__}"
    )


def decode_field(field: str, data: bytes) -> Any:
    """Inverse of :func:`encode_field` by extension. Colour images decode to RGB uint8 (H, W, 3) with the EXIF
    orientation applied (as :func:`depth_anything_v2.io.images.read_image`); single-channel PNGs keep their dtype
    (uint8/uint16). Unknown extensions stay bytes."""
    ext = field.rsplit(".", 1)[-1].lower()
    if ext == "json":
        return json.loads(data)
    if ext in ("txt", "text"):
        return data.decode()
    if ext in ("cls", "index", "idx"):
        return int(data)
    if ext == "npy":
        return np.load(io.BytesIO(data), allow_pickle=False)
    if ext in IMAGE_EXTS:
        if ext == "png":
            import cv2

            array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
            if array is None:
                raise ValueError(f"field {field!r}: not a decodable PNG")
            if array.ndim == 2:
                return array
            if array.dtype != np.uint8:
                array = (array / 257).round().astype(np.uint8)
            return np.ascontiguousarray(
                cv2.cvtColor(array, cv2.COLOR_BGRA2RGB if array.shape[2] == 4 else cv2.COLOR_BGR2RGB)
            )
        from PIL import Image, ImageOps, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(data)) as im:
                return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
        except (UnidentifiedImageError, OSError, SyntaxError) as e:
            raise ValueError(f"field {field!r}: not a decodable image ({e})") from None
    return data


_PNG16_LEVELS = 65534  # q = 1 .. 65535 carry values; 0 marks invalid pixels


def encode_disparity_png16(disparity: np.ndarray, valid_mask: np.ndarray | None = None) -> tuple[bytes, dict[str, Any]]:
    """Quantise a (H, W) disparity map to a 16-bit PNG over its own valid range.

    Returns ``(png_bytes, meta)`` with ``meta = {"encoding": "png16", "offset": min, "scale": range / 65534}``.
    Invalid pixels (``valid_mask`` False, or not finite) are stored as 0. Max absolute error ``scale / 2``.
    """
    import cv2

    d = np.asarray(disparity, np.float64)
    if d.ndim != 2:
        raise ValueError(f"expected a (H, W) disparity map, got shape {d.shape}")
    valid = np.isfinite(d) if valid_mask is None else (np.asarray(valid_mask, bool) & np.isfinite(d))
    if valid.any():
        lo, hi = float(d[valid].min()), float(d[valid].max())
    else:
        lo, hi = 0.0, 0.0
    scale = (hi - lo) / _PNG16_LEVELS if hi > lo else 1.0
    q = np.zeros(d.shape, np.uint16)
    q[valid] = (1 + np.clip(np.round((d[valid] - lo) / scale), 0, _PNG16_LEVELS)).astype(np.uint16)
    ok, buf = cv2.imencode(".png", q)
    if not ok:  # pragma: no cover - OpenCV always encodes uint16 2-D arrays
        raise ValueError("cannot encode the disparity as PNG")
    return buf.tobytes(), {"encoding": "png16", "offset": lo, "scale": scale}


def encode_disparity(
    disparity: np.ndarray, valid_mask: np.ndarray | None = None, encoding: Literal["png16", "f16"] = "png16"
) -> tuple[str, bytes, dict[str, Any]]:
    """Encode a disparity map for a shard: returns ``(field, bytes, meta)``, field ``"disparity.png"`` (png16)
    or ``"disparity.npy"`` (float16, NaN = invalid)."""
    if encoding == "png16":
        data, meta = encode_disparity_png16(disparity, valid_mask)
        return "disparity.png", data, meta
    if encoding == "f16":
        d = np.asarray(disparity, np.float32)
        if valid_mask is not None:
            d = np.where(valid_mask, d, np.nan)
        return "disparity.npy", encode_field("npy", d.astype(np.float16)), {"encoding": "f16"}
    raise ValueError(f"expected encoding 'png16' or 'f16', got {encoding!r}")


def decode_disparity(stored: np.ndarray, meta: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Decoded ``disparity.png`` / ``disparity.npy`` array + its meta -> ``(disparity float32, valid bool)``."""
    encoding = meta.get("encoding")
    if encoding == "png16":
        if stored.dtype != np.uint16 or stored.ndim != 2:
            raise ValueError(f"expected a (H, W) uint16 png16 disparity, got {stored.dtype} {stored.shape}")
        valid = stored > 0
        d = meta["offset"] + meta["scale"] * (stored.astype(np.float64) - 1)
        return np.where(valid, d, 0.0).astype(np.float32), valid
    if encoding == "f16":
        d = stored.astype(np.float32)
        valid = np.isfinite(d)
        return np.where(valid, d, 0.0).astype(np.float32), valid
    raise ValueError(f"unknown disparity encoding {encoding!r} (expected 'png16' or 'f16')")


def make_pseudo_label_sample(
    key: str,
    image: bytes | np.ndarray,
    disparity: np.ndarray,
    valid_mask: np.ndarray | None = None,
    *,
    image_ext: str = "jpg",
    encoding: Literal["png16", "f16"] = "png16",
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build a pseudo-label sample dict for :meth:`ShardWriter.write` (format in the module docstring).

    ``image`` is the source file's bytes (preferred: no re-encoding) or an RGB uint8 array (encoded as
    ``image_ext``); ``disparity`` is the teacher's (H, W) output at the image's resolution.
    """
    field, data, disp_meta = encode_disparity(disparity, valid_mask, encoding)
    info = dict(meta or {})
    info["disparity"] = disp_meta
    info.setdefault("height", int(disparity.shape[0]))
    info.setdefault("width", int(disparity.shape[1]))
    return {"__key__": key, image_ext: image, field: data, "json": info}


# --------------------------------------------------------------------------------------------- writing
class TarShard:
    """One shard written atomically: members go to ``<path>.partial``; :meth:`close` fsyncs and renames it to
    ``path``; :meth:`abort` (or an exception in a ``with`` block) deletes it. Member metadata is fixed (mtime
    0, mode 0644, no owner) so the same samples give byte-identical shards."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.suffix != ".tar":
            raise ValueError(f"expected a shard path ending in .tar, got {self.path}")
        self.tmp_path = self.path.with_name(self.path.name + _PARTIAL)
        self._atomic = AtomicFile(self.path, fsync=True, temp=self.tmp_path)
        self._file = self._atomic.file
        self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.USTAR_FORMAT)  # noqa: SIM115
        self.count = 0
        self.size = 0
        self._keys: set[str] = set()

    def write(self, sample: dict[str, Any]) -> None:
        """Add one sample: ``{"__key__": key, field: value, ...}`` (values encoded by :func:`encode_field`)."""
        key = _check_key(sample.get("__key__"))
        if key in self._keys:
            raise ValueError(f"duplicate key {key!r} in shard {self.path}")
        fields = [(f, v) for f, v in sample.items() if not f.startswith("__")]
        if not fields:
            raise ValueError(f"sample {key!r} has no fields besides the key")
        for field, value in fields:
            if not field or field.startswith(".") or "/" in field:
                raise ValueError(f"sample {key!r}: bad field name {field!r}")
            data = encode_field(field, value)
            info = tarfile.TarInfo(f"{key}.{field}")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            self._tar.addfile(info, io.BytesIO(data))
            self.size += len(data)
        self._keys.add(key)
        self.count += 1

    def close(self) -> Path:
        """Finish the shard and move it into place; returns its path."""
        self._tar.close()
        return self._atomic.commit()

    def abort(self) -> None:
        """Discard the unfinished shard."""
        try:
            self._tar.close()
        finally:
            self._atomic.discard()

    def __enter__(self) -> TarShard:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class ShardWriter:
    """Write samples into consecutive shards ``pattern % index`` (e.g. ``"out/train-%06d.tar"``), starting a
    new shard after ``max_count`` samples or ``max_bytes`` bytes. Each shard is a :class:`TarShard` (atomic).

    ``pattern`` may also be a prefix without ``%`` (``"out/train"`` -> ``out/train-000000.tar``). ``start_index``
    numbers the first shard. ``shards`` lists the completed shards. On an exception inside ``with`` the
    current unfinished shard is discarded (completed ones stay).
    """

    def __init__(
        self,
        pattern: str | Path,
        *,
        max_count: int = 1000,
        max_bytes: int | None = None,
        start_index: int = 0,
    ) -> None:
        pattern = str(pattern)
        if "%" not in pattern:
            pattern = pattern + "-%06d.tar"
        try:
            pattern % 0
        except (TypeError, ValueError):
            raise ValueError(
                f"expected a shard pattern with one integer field like 'out-%06d.tar', got {pattern!r}"
            ) from None
        if max_count < 1:
            raise ValueError(f"expected max_count >= 1, got {max_count}")
        self.pattern, self.max_count, self.max_bytes = pattern, max_count, max_bytes
        self.index = start_index
        self.shards: list[Path] = []
        self.total = 0
        self._current: TarShard | None = None

    def write(self, sample: dict[str, Any]) -> None:
        if self._current is None:
            self._current = TarShard(self.pattern % self.index)
        self._current.write(sample)
        self.total += 1
        full = self._current.count >= self.max_count
        if self.max_bytes is not None and self._current.size >= self.max_bytes:
            full = True
        if full:
            self._finish()

    def _finish(self) -> None:
        if self._current is not None:
            self.shards.append(self._current.close())
            log.info("wrote shard %s (%d samples)", self.shards[-1], self._current.count)
            self._current = None
            self.index += 1

    def close(self) -> list[Path]:
        """Finish the last shard; returns all completed shard paths."""
        self._finish()
        return self.shards

    def abort(self) -> None:
        if self._current is not None:
            self._current.abort()
            self._current = None

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_image_shards(
    paths: Iterable[str | Path],
    pattern: str | Path,
    *,
    root: str | Path | None = None,
    max_count: int = 1000,
) -> list[Path]:
    """Pack image files (their bytes, unchanged) into shards of unlabeled samples ``{key}.{ext}``, keys from
    :func:`sample_key` relative to ``root``. Returns the shard paths. Images are not decoded here; whoever reads
    them reports undecodable ones."""
    with ShardWriter(pattern, max_count=max_count) as sink:
        for path in paths:
            path = Path(path)
            ext = path.suffix.lower().lstrip(".") or "jpg"
            sink.write({"__key__": sample_key(path, root), ext: path.read_bytes()})
    return sink.shards


# --------------------------------------------------------------------------------------------- reading
_BRACE = re.compile(r"\{(\d+)\.\.(\d+)\}")


def _expand_braces(spec: str) -> list[str]:
    match = _BRACE.search(spec)
    if not match:
        return [spec]
    lo, hi = match.group(1), match.group(2)
    width = len(lo) if lo.startswith("0") or len(lo) == len(hi) else 0
    out = []
    for i in range(int(lo), int(hi) + 1):
        out.extend(_expand_braces(spec[: match.start()] + str(i).zfill(width) + spec[match.end() :]))
    return out


def expand_shards(spec: str | Path | Sequence[str | Path]) -> list[str]:
    """Shard paths from a list, a brace range (``train-{000000..000009}.tar``, no listing), a glob pattern
    (sorted), a directory (its ``*.tar``, sorted) or a ``.txt`` file with one shard per line (relative paths
    resolve against the file's folder). ``.partial`` files are never returned."""
    if isinstance(spec, list | tuple):
        return [p for s in spec for p in expand_shards(s)]
    spec = str(spec)
    if spec.endswith(".txt") and os.path.isfile(spec):
        base = os.path.dirname(spec)
        lines = [ln.strip() for ln in Path(spec).read_text().splitlines()]
        return [ln if os.path.isabs(ln) else os.path.join(base, ln) for ln in lines if ln and not ln.startswith("#")]
    if os.path.isdir(spec):
        return sorted(str(p) for p in Path(spec).glob("*.tar"))
    if _BRACE.search(spec):
        return _expand_braces(spec)
    if any(c in spec for c in "*?["):
        return sorted(p for p in glob.glob(spec) if not p.endswith(_PARTIAL))
    return [spec]


def _dist_info(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is not None and world_size is not None:
        return rank, world_size
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        r, w = torch.distributed.get_rank(), torch.distributed.get_world_size()
    else:
        r, w = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    return (r if rank is None else rank), (w if world_size is None else world_size)


def split_shards(
    shards: Sequence[str], rank: int, world_size: int, worker_id: int = 0, num_workers: int = 1
) -> list[str]:
    """The shards global worker ``rank * num_workers + worker_id`` of ``world_size * num_workers`` reads."""
    if not 0 <= rank < world_size:
        raise ValueError(f"expected 0 <= rank < world_size, got rank {rank}, world_size {world_size}")
    total = world_size * num_workers
    return list(shards[rank * num_workers + worker_id :: total])


def _iter_tar(path: str, start: int = 0) -> Iterator[tuple[str, dict[str, bytes], int, int | None]]:
    """Stream ``(key, {field: bytes}, offset, next_offset)`` from a tar, grouping consecutive members by key.

    ``offset`` is where the sample's first member starts in the (uncompressed) tar stream, ``next_offset`` where
    the next sample starts (None after the last one). ``start=offset`` begins at that sample: a plain tar is
    seeked to it, a compressed one is read through up to it.
    """
    current_key: str | None = None
    fields: dict[str, bytes] = {}
    first = 0
    with open(path, "rb") as f:
        base = start if f.read(512)[257:262] == b"ustar" else 0  # every POSIX/GNU tar header holds "ustar"
        f.seek(base)
        with tarfile.open(fileobj=f, mode="r|*") as tar:
            for member in tar:
                offset = base + member.offset
                if offset < start or not member.isfile():
                    continue
                directory, _, name = member.name.rpartition("/")
                if "." not in name:
                    continue
                stem, field = name.split(".", 1)
                key = f"{directory}/{stem}" if directory else stem
                fh = tar.extractfile(member)
                data = fh.read() if fh is not None else b""
                if key != current_key:
                    if current_key is not None:
                        yield current_key, fields, first, offset
                    current_key, fields, first = key, {}, offset
                fields[field] = data
            if current_key is not None:
                yield current_key, fields, first, None


class ShardDataset(IterableDataset):
    """Stream samples from tar shards, split across DDP ranks and DataLoader workers.

    Args:
        shards: anything :func:`expand_shards` accepts.
        shuffle_shards: shuffle the shard order each epoch (seeded by ``seed + epoch``, same on every rank).
        shuffle_buffer: size of the sample shuffle buffer (0: file order).
        seed: base seed of both shuffles.
        rank, world_size: this process's place in distributed training; default from ``torch.distributed``
            (if initialised) or the ``RANK``/``WORLD_SIZE`` environment variables, else 0 of 1.
        decode: decode fields by extension (:func:`decode_field`); False yields raw bytes.
        map: optional function applied to each decoded sample (e.g. :func:`pseudo_label_to_training`).
        repeat: cycle forever (each pass a new epoch: reshuffled), for step-based training where every rank
            must keep producing batches.
        on_error: ``"warn"`` (log and skip a corrupt shard/sample) or ``"raise"``.

    Each yielded sample is a dict ``{"__key__", "__shard__", field: value, ...}`` (after ``map``, whatever it
    returns). Call :meth:`set_epoch` before each epoch (as with ``DistributedSampler``) when not repeating.
    ``errors`` lists ``(shard, key or None, message)`` seen by the iterating process.
    """

    def __init__(
        self,
        shards: str | Path | Sequence[str | Path],
        *,
        shuffle_shards: bool = False,
        shuffle_buffer: int = 0,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        decode: bool = True,
        map: Callable[[dict[str, Any]], Any] | None = None,
        repeat: bool = False,
        on_error: Literal["warn", "raise"] = "warn",
    ) -> None:
        super().__init__()
        self.shards = expand_shards(shards)
        if not self.shards:
            raise FileNotFoundError(f"no shards match {shards!r}")
        missing = [p for p in self.shards if not os.path.isfile(p)]
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise FileNotFoundError(f"{len(missing)} of {len(self.shards)} shards do not exist: {missing[:3]}{more}")
        if on_error not in ("warn", "raise"):
            raise ValueError(f"expected on_error 'warn' or 'raise', got {on_error!r}")
        if shuffle_buffer < 0:
            raise ValueError(f"expected shuffle_buffer >= 0, got {shuffle_buffer}")
        self.shuffle_shards, self.shuffle_buffer, self.seed = shuffle_shards, shuffle_buffer, seed
        self.rank, self.world_size = rank, world_size
        self.decode, self.map, self.repeat, self.on_error = decode, map, repeat, on_error
        self.epoch = 0
        self.errors: list[tuple[str, str | None, str]] = []
        self._warned_idle = False

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def epoch_order(self, epoch: int) -> list[str]:
        """All shards in the order of ``epoch`` (before splitting)."""
        order = list(self.shards)
        if self.shuffle_shards:
            random.Random(f"{self.seed}-{epoch}").shuffle(order)
        return order

    def assigned_shards(self, epoch: int | None = None) -> list[str]:
        """The shards this process (and, inside a DataLoader worker, this worker) reads in ``epoch``."""
        rank, world_size = _dist_info(self.rank, self.world_size)
        info = get_worker_info()
        worker_id, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        mine = split_shards(
            self.epoch_order(self.epoch if epoch is None else epoch), rank, world_size, worker_id, num_workers
        )
        if not mine and not self._warned_idle:
            self._warned_idle = True
            log.warning(
                "rank %d worker %d gets no shard: %d shards for %d ranks x %d workers; use more, smaller shards",
                rank,
                worker_id,
                len(self.shards),
                world_size,
                num_workers,
            )
        return mine

    def _fail(self, shard: str, key: str | None, message: str) -> None:
        self.errors.append((shard, key, message))
        if self.on_error == "raise":
            raise ValueError(f"{shard}{'' if key is None else ' ' + key}: {message}")
        log.warning("skipping %s%s: %s", shard, "" if key is None else f" sample {key}", message)

    def _samples(self, epoch: int) -> Iterator[Any]:
        for shard in self.assigned_shards(epoch):
            try:
                for key, raw, *_ in _iter_tar(shard):
                    sample: dict[str, Any] = {"__key__": key, "__shard__": shard}
                    try:
                        for field, data in raw.items():
                            sample[field] = decode_field(field, data) if self.decode else data
                        yield self.map(sample) if self.map is not None else sample
                    except (ValueError, KeyError, OSError) as e:
                        self._fail(shard, key, str(e))
            except (tarfile.TarError, OSError, EOFError) as e:
                self._fail(shard, None, f"unreadable shard ({e})")

    def __iter__(self) -> Iterator[Any]:
        rank, _ = _dist_info(self.rank, self.world_size)
        info = get_worker_info()
        worker_id = info.id if info is not None else 0
        epoch = self.epoch
        while True:
            stream = self._samples(epoch)
            if self.shuffle_buffer > 1:
                stream = _shuffled(
                    stream, self.shuffle_buffer, random.Random(f"{self.seed}-{epoch}-{rank}-{worker_id}")
                )
            yield from stream
            if not self.repeat:
                return
            epoch += 1


def _shuffled(stream: Iterable[Any], size: int, rng: random.Random) -> Iterator[Any]:
    buffer: list[Any] = []
    for item in stream:
        if len(buffer) < size:
            buffer.append(item)
            continue
        i = rng.randrange(size)
        yield buffer[i]
        buffer[i] = item
    rng.shuffle(buffer)
    yield from buffer


def iter_shards(shards: str | Path | Sequence[str | Path], **kwargs: Any) -> ShardDataset:
    """Shorthand for :class:`ShardDataset` (``iter_shards("out/*.tar", shuffle_buffer=1000)``)."""
    return ShardDataset(shards, **kwargs)


def pseudo_label_to_training(
    sample: dict[str, Any], transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Decoded pseudo-label shard sample -> the common training sample dict (``"image"``, ``"disparity"``,
    ``"valid_mask"``, ``"key"``), optionally through ``transform`` (numpy stage).

    Usable as ``ShardDataset(..., map=functools.partial(pseudo_label_to_training, transform=t))``.
    """
    from .datasets import to_tensors

    image = next((sample[e] for e in IMAGE_EXTS if e in sample), None)
    if image is None:
        raise KeyError(f"sample {sample.get('__key__')!r} has no image field (one of {IMAGE_EXTS})")
    meta = sample.get("json") or {}
    if "disparity.png" in sample:
        stored = sample["disparity.png"]
    elif "disparity.npy" in sample:
        stored = sample["disparity.npy"]
    else:
        raise KeyError(f"sample {sample.get('__key__')!r} has no disparity.png / disparity.npy field")
    if "disparity" not in meta:
        raise KeyError(f"sample {sample.get('__key__')!r}: json lacks the 'disparity' encoding entry")
    disparity, valid = decode_disparity(stored, meta["disparity"])
    if disparity.shape != image.shape[:2]:
        raise ValueError(f"disparity {disparity.shape} does not match the image {image.shape[:2]}")
    out: dict[str, Any] = {"image_rgb": image, "disparity": disparity, "valid_mask": valid}
    if transform is not None:
        out = transform(out)
    return to_tensors(out, sample.get("__key__"))
