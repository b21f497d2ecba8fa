"""Training data plumbing: datasets from config entries, and loaders whose position is exactly resumable.

Two kinds of training data, both deterministic functions of ``(seed, position)`` so that a resumed run sees
exactly the batches an uninterrupted one would, on any number of ranks and DataLoader workers:

* **map-style** readers (synthetic scenes, Hypersim, ...; concatenated): :class:`EpochSampler` shuffles the
  indices with ``seed + epoch`` (the same permutation on every rank), drops the tail so each rank gets
  ``len // world_size`` indices, and gives rank ``r`` the strided slice ``r::world_size`` (as
  ``DistributedSampler``), so the union of the ranks' micro-batches at a step is what one process would see
  with the same global batch. Every sample's augmentation is seeded with ``(seed, epoch, index)``, so it does
  not depend on the worker or rank that loads it. Resuming skips to ``(epoch, offset)`` without loading
  anything.
* **streamed shards** (pseudo labels): :class:`ShardBatches` reads D's :class:`~depth_anything_v2.data.shards.
  ShardDataset` (split across ranks and workers, shuffled deterministically, cycling epochs) as raw bytes and
  has each worker build whole micro-batches of ``micro_batch`` *raw* samples (corrupt ones are dropped from
  their batch, logged). Each worker's position (:class:`ShardCursor`: epoch, shard, byte offset, the shuffle
  buffer's sample references and RNG state) travels with its batches into the checkpoint; resuming seeks
  there, re-reading only the shuffle buffer's samples, and :func:`iterate_batches` restores the round-robin
  order of the workers' batches, so the sequence continues where it stopped.
"""

from __future__ import annotations

import logging
import random
import tarfile
from collections import deque
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, IterableDataset, Sampler, Subset, get_worker_info
from torch.utils.data._utils.collate import default_collate

from .config import ConfigError, TrainConfig

log = logging.getLogger(__name__)

__all__ = [
    "EpochSampler",
    "MapBatches",
    "SeededDataset",
    "ShardBatches",
    "ShardCursor",
    "StreamBatches",
    "build_dataset",
    "build_train_batches",
    "build_val_dataset",
    "mix_seed",
]


def mix_seed(*parts: int) -> int:
    """A well-mixed non-negative 63-bit seed from integers (numpy ``SeedSequence``)."""
    words = np.random.SeedSequence([int(p) % (1 << 32) for p in parts]).generate_state(2, np.uint32)
    return int((int(words[0]) << 31) ^ int(words[1]))


# ------------------------------------------------------------------------------------------------ datasets
def _reader_classes() -> dict[str, type]:
    from ..data import datasets as ds

    return {
        "hypersim": ds.Hypersim,
        "vkitti2": ds.VirtualKITTI2,
        "tartanair": ds.TartanAir,
        "irs": ds.IRS,
        "blendedmvs": ds.BlendedMVS,
        "folder": ds.ImageDepthFolder,
    }


def build_dataset(
    entry: dict[str, Any],
    *,
    where: str,
    target: str,
    transform: Any = None,
    min_depth: float = 1e-3,
    max_depth: float | None = None,
    on_error: str = "skip",
) -> Dataset:
    """One map-style dataset from a config entry ``{type: ..., limit: N?, **reader arguments}``.

    ``where`` names the entry in errors (``data.train[0]``). Unknown arguments, missing folders and empty
    datasets raise :class:`ConfigError`.
    """
    spec = dict(entry)
    kind = spec.pop("type")
    limit = spec.pop("limit", None)
    try:
        if kind == "synthetic":
            from ..data.synthetic import SceneConfig, SyntheticScenes

            scene = spec.pop("scene", None)
            if "n" not in spec:
                raise ConfigError(f"{where}: a synthetic dataset needs n (number of scenes)")
            size = spec.pop("size", (192, 256))
            dataset: Dataset = SyntheticScenes(
                int(spec.pop("n")),
                size if isinstance(size, int) else tuple(size),
                int(spec.pop("seed", 0)),
                target=target,
                transform=transform,
                config=SceneConfig(**scene) if scene else None,
                max_depth=max_depth,
                **spec,
            )
        elif kind == "shards":
            raise ConfigError(f"{where}: shards are streamed; build them with build_train_batches")
        else:
            classes = _reader_classes()
            if kind not in classes:
                raise ConfigError(f"{where}.type: expected one of {['synthetic', 'shards', *classes]}, got {kind!r}")
            if "root" not in spec:
                raise ConfigError(f"{where}: a {kind} dataset needs root (the folder it was extracted into)")
            spec.setdefault("on_error", on_error)
            dataset = classes[kind](
                spec.pop("root"), target=target, transform=transform, min_depth=min_depth, max_depth=max_depth, **spec
            )
    except ConfigError:
        raise
    except TypeError as e:
        raise ConfigError(f"{where}: bad arguments for a {kind!r} dataset ({e})") from None
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None
    if limit is not None:
        if not isinstance(limit, int) or limit < 1:
            raise ConfigError(f"{where}.limit: expected a positive integer, got {limit!r}")
        dataset = Subset(dataset, range(min(limit, len(dataset))))  # type: ignore[arg-type]
    return dataset


def build_val_dataset(config: TrainConfig) -> Dataset | None:
    """The held-out set (ground-truth depth in metres, native resolution), or None without ``data.val``."""
    if not config.data.val:
        return None
    parts = [
        build_dataset(
            e,
            where=f"data.val[{i}]",
            target="depth",
            min_depth=config.val.min_depth,
            max_depth=config.val.max_depth,
            on_error="skip",
        )
        for i, e in enumerate(config.data.val)
    ]
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)


# ------------------------------------------------------------------------------------------ map-style
class SeededDataset(Dataset):
    """Items are ``dataset[index]`` computed under ``torch.manual_seed(mix_seed(seed, epoch, index))`` (the global
    generator is restored afterwards): augmentation depends only on the sample and the epoch."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, item: tuple[int, int]) -> Any:
        epoch, index = item
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(mix_seed(self.seed, epoch, index))
            return self.dataset[index]


class EpochSampler(Sampler):
    """``(epoch, index)`` pairs of this rank for one epoch, from position ``start`` (see the module docstring)."""

    def __init__(self, size: int, rank: int, world_size: int, seed: int, shuffle: bool = True) -> None:
        self.size, self.rank, self.world_size, self.seed, self.shuffle = size, rank, world_size, seed, shuffle
        self.per_rank = size // world_size
        self.epoch, self.start = 0, 0

    def set_position(self, epoch: int, start: int) -> None:
        self.epoch, self.start = epoch, start

    def indices(self, epoch: int) -> list[int]:
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(mix_seed(self.seed, epoch))
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        return order[: self.per_rank * self.world_size][self.rank :: self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter([(self.epoch, i) for i in self.indices(self.epoch)[self.start :]])

    def __len__(self) -> int:
        return self.per_rank - self.start


class MapBatches:
    """Endless micro-batches of a map-style dataset for one rank; ``position`` counts micro-batches consumed."""

    def __init__(
        self,
        dataset: Dataset,
        *,
        micro_batch: int,
        rank: int,
        world_size: int,
        seed: int,
        num_workers: int,
        pin_memory: bool,
        position: int = 0,
    ) -> None:
        size = len(dataset)  # type: ignore[arg-type]
        self.micro_batch = micro_batch
        self.sampler = EpochSampler(size, rank, world_size, seed)
        self.batches_per_epoch = self.sampler.per_rank // micro_batch
        if self.batches_per_epoch < 1:
            raise ConfigError(
                f"data.train: {size} samples are fewer than one batch of {micro_batch} per rank on {world_size} "
                f"rank(s); expected at least {micro_batch * world_size}"
            )
        self.loader = DataLoader(
            SeededDataset(dataset, seed),
            batch_size=micro_batch,
            sampler=self.sampler,
            num_workers=num_workers,
            drop_last=True,
            pin_memory=pin_memory,
            persistent_workers=num_workers > 0,
        )
        self.position = position

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            epoch, offset = divmod(self.position, self.batches_per_epoch)
            self.sampler.set_position(epoch, offset * self.micro_batch)
            for batch in self.loader:
                self.position += 1
                yield batch

    def state(self) -> dict[str, int]:
        return {"position": self.position}


# ------------------------------------------------------------------------------------------- shards
class ShardCursor:
    """One worker's raw samples, epoch after epoch, in the order of :class:`~depth_anything_v2.data.shards.
    ShardDataset` (its shard split and shuffle buffer), with a position that can be saved and seeked to.

    :meth:`state` is plain data: the epoch, the shard (index in this worker's list) and the byte offset of the
    next sample in it, the shuffle buffer as ``(shard id, byte offset)`` references, the buffer's RNG state and
    the number of samples yielded. ``ShardCursor(..., state=s)`` continues exactly there, reading again only the
    samples of the shuffle buffer (``reads`` counts the samples read from disk).
    """

    def __init__(self, source: Any, rank: int, worker: int, state: dict[str, Any] | None = None) -> None:
        self.source, self.rank, self.worker = source, rank, worker
        self.size = source.shuffle_buffer if source.shuffle_buffer > 1 else 0
        s = state or {"epoch": source.epoch, "shard": 0, "offset": 0, "draining": False, "buffer": [], "count": 0}
        self.epoch, self.shard, self.offset, self.draining = s["epoch"], s["shard"], s["offset"], s["draining"]
        self.count, self.reads = s["count"], 0
        if self.offset is None:  # the shard was read to its end
            self.shard, self.offset = self.shard + 1, 0
        self.rng = self._rng()
        if s.get("rng") is not None:
            version, internal, gauss = s["rng"]
            self.rng.setstate((version, tuple(internal), gauss))
        self.buffer = [(sid, offset, self._read_one(sid, offset)) for sid, offset in s["buffer"]]

    def _rng(self) -> random.Random:
        return random.Random(f"{self.source.seed}-{self.epoch}-{self.rank}-{self.worker}")  # as ShardDataset

    def state(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "shard": self.shard,
            "offset": self.offset,
            "draining": self.draining,
            "buffer": [[sid, offset] for sid, offset, _ in self.buffer],
            "rng": self.rng.getstate() if self.size else None,
            "count": self.count,
        }

    def _read_one(self, sid: int, offset: int) -> dict[str, Any]:
        from ..data.shards import _iter_tar

        shard = self.source.shards[sid]
        with closing(_iter_tar(shard, offset)) as samples:
            key, fields, _, _ = next(samples)
        self.reads += 1
        return {"__key__": key, "__shard__": shard, **fields}

    def _samples(self, shard: str) -> Iterator[tuple[int, dict[str, Any]]]:
        from ..data.shards import _iter_tar

        try:
            for key, fields, offset, next_offset in _iter_tar(shard, self.offset):
                self.offset = next_offset
                self.reads += 1
                yield offset, {"__key__": key, "__shard__": shard, **fields}
        except (tarfile.TarError, OSError, EOFError) as e:
            self.source._fail(shard, None, f"unreadable shard ({e})")

    def __iter__(self) -> Iterator[dict[str, Any]]:
        ids = {path: i for i, path in enumerate(self.source.shards)}
        while True:
            shards = self.source.assigned_shards(self.epoch)
            while self.shard < len(shards):
                for offset, raw in self._samples(shards[self.shard]):
                    entry = (ids[shards[self.shard]], offset, raw)
                    if not self.size:
                        out = entry
                    elif len(self.buffer) < self.size:
                        self.buffer.append(entry)
                        continue
                    else:
                        i = self.rng.randrange(self.size)
                        out, self.buffer[i] = self.buffer[i], entry
                    self.count += 1
                    yield out[2]
                self.shard, self.offset = self.shard + 1, 0
            if not self.draining:
                self.rng.shuffle(self.buffer)
                self.draining = True
            while self.buffer:
                self.count += 1
                yield self.buffer.pop(0)[2]
            self.epoch, self.shard, self.offset, self.draining = self.epoch + 1, 0, 0, False
            self.rng = self._rng()


class ShardBatches(IterableDataset):
    """Whole micro-batches built inside each DataLoader worker from streamed pseudo-label shards.

    Each batch dict carries ``"__worker__"`` and ``"__cursor__"``, the worker's :meth:`ShardCursor.state` after
    it. Resuming with ``cursors`` (the last state of each worker) seeks there; without them, worker ``w`` of
    ``num_workers`` reads and drops the raw samples of the ``skip_batches(w)`` batches it produced before the
    resume point (a checkpoint of another worker count).
    """

    def __init__(
        self,
        shards: Any,
        *,
        transform: Any,
        micro_batch: int,
        seed: int,
        rank: int,
        world_size: int,
        shuffle_buffer: int,
        consumed_batches: int = 0,
        cursors: list[dict[str, Any] | None] | None = None,
    ) -> None:
        from ..data.shards import ShardDataset

        self.source = ShardDataset(
            shards,
            shuffle_shards=True,
            shuffle_buffer=shuffle_buffer,
            seed=seed,
            rank=rank,
            world_size=world_size,
            decode=False,
            repeat=True,
        )
        self.transform, self.micro_batch, self.seed, self.rank = transform, micro_batch, seed, rank
        self.consumed_batches, self.cursors = consumed_batches, cursors

    @property
    def num_shards(self) -> int:
        return len(self.source.shards)

    def skip_batches(self, worker: int, num_workers: int) -> int:
        c = self.consumed_batches
        return c // num_workers + (1 if worker < c % num_workers else 0)

    def _decode(self, raw: dict[str, Any], index: int, worker: int) -> dict[str, Any]:
        from ..data.shards import decode_field, pseudo_label_to_training

        decoded = {f: (v if f.startswith("__") else decode_field(f, v)) for f, v in raw.items()}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(mix_seed(self.seed, self.rank, worker, index))
            return pseudo_label_to_training(decoded, self.transform)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        seek = self.cursors is not None and len(self.cursors) == num_workers
        cursor = ShardCursor(self.source, self.rank, worker, self.cursors[worker] if seek else None)
        skip = 0 if seek else self.skip_batches(worker, num_workers) * self.micro_batch
        batch: list[dict[str, Any]] = []
        for raw in cursor:
            index = cursor.count - 1
            if index < skip:
                continue
            try:
                batch.append(self._decode(raw, index, worker))
            except (ValueError, KeyError, OSError) as e:
                log.warning("skipping pseudo-label sample %s in %s: %s", raw.get("__key__"), raw.get("__shard__"), e)
            if (index + 1) % self.micro_batch == 0 and batch:
                out = default_collate(batch)
                out["__worker__"], out["__cursor__"] = worker, cursor.state()
                yield out
                batch = []


def iterate_batches(loader: DataLoader, num_workers: int, consumed: int) -> Iterator[dict[str, Any]]:
    """Batches of a :class:`ShardBatches` loader in the order of an uninterrupted run: worker
    ``(consumed + j) % num_workers`` supplies the ``j``-th batch (the DataLoader restarts at worker 0)."""
    if num_workers <= 1:
        yield from loader
        return
    pending: dict[int, deque] = {w: deque() for w in range(num_workers)}
    turn = consumed % num_workers
    for batch in loader:
        pending[int(batch["__worker__"])].append(batch)
        while pending[turn]:
            yield pending[turn].popleft()
            turn = (turn + 1) % num_workers


class StreamBatches:
    """Endless micro-batches of streamed shards for one rank; ``position`` counts micro-batches consumed and
    ``cursors`` holds each worker's :class:`ShardCursor` state after its last consumed batch (None before it)."""

    def __init__(
        self,
        dataset: ShardBatches,
        *,
        world_size: int,
        num_workers: int,
        pin_memory: bool,
        position: int = 0,
        cursors: list[dict[str, Any] | None] | None = None,
    ) -> None:
        if dataset.num_shards < world_size:
            raise ConfigError(
                f"data.train: {dataset.num_shards} shard(s) for {world_size} ranks; expected at least one shard per "
                "rank (write smaller shards with --shard-size)"
            )
        # Every worker must own a shard, or the DataLoader's round-robin order would depend on exhausted workers.
        self.num_workers = min(num_workers, dataset.num_shards // world_size)
        if self.num_workers < num_workers:
            log.info("using %d DataLoader workers (one per shard of this rank at most)", self.num_workers)
        workers = max(self.num_workers, 1)
        if cursors is not None and len(cursors) != workers:
            log.warning("the checkpoint's stream position is for %d worker(s): replaying to the position", len(cursors))
            cursors = None
        dataset.consumed_batches, dataset.cursors = position, cursors
        self.dataset = dataset
        self.loader = DataLoader(
            dataset,
            batch_size=None,
            num_workers=self.num_workers,
            pin_memory=pin_memory,
            persistent_workers=False,
        )
        self.position = position
        self.cursors: list[dict[str, Any] | None] = list(cursors) if cursors is not None else [None] * workers

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in iterate_batches(self.loader, self.num_workers, self.position):
            self.cursors[int(batch["__worker__"])] = batch.pop("__cursor__")
            self.position += 1
            yield batch


def build_train_batches(
    config: TrainConfig,
    *,
    micro_batch: int,
    rank: int,
    world_size: int,
    pin_memory: bool,
    position: int = 0,
    cursors: list[dict[str, Any] | None] | None = None,
) -> MapBatches | StreamBatches:
    """The training micro-batch stream of this rank for ``config`` (see the module docstring); ``cursors``:
    the saved :attr:`StreamBatches.cursors` of this rank (streamed shards)."""
    from ..data.transforms import train_transform

    d = config.data
    transform = train_transform(config.crop_hw, flip=d.flip, color_jitter=d.color_jitter, blur=d.blur)
    metric = config.stage == "metric"
    if d.train[0]["type"] == "shards":
        if metric:
            raise ConfigError(
                "data.train: the metric stage needs ground-truth depth; shards hold relative pseudo labels"
            )
        specs: list[Any] = []
        for i, e in enumerate(d.train):
            extra = sorted(set(e) - {"type", "shards"})
            if "shards" not in e or extra:
                raise ConfigError(f"data.train[{i}]: expected {{type: shards, shards: PATTERN or list}}, got {e!r}")
            specs.extend(e["shards"] if isinstance(e["shards"], list) else [e["shards"]])
        try:
            stream = ShardBatches(
                specs,
                transform=transform,
                micro_batch=micro_batch,
                seed=config.seed,
                rank=rank,
                world_size=world_size,
                shuffle_buffer=d.shuffle_buffer,
            )
        except FileNotFoundError as e:
            raise ConfigError(f"data.train: {e}") from None
        return StreamBatches(
            stream,
            world_size=world_size,
            num_workers=d.num_workers,
            pin_memory=pin_memory,
            position=position,
            cursors=cursors,
        )
    parts = [
        build_dataset(
            e,
            where=f"data.train[{i}]",
            target="depth" if metric else "disparity",
            transform=transform,
            min_depth=config.loss.min_depth,
            max_depth=config.model.max_depth,
        )
        for i, e in enumerate(d.train)
    ]
    dataset = parts[0] if len(parts) == 1 else ConcatDataset(parts)
    return MapBatches(
        dataset,
        micro_batch=micro_batch,
        rank=rank,
        world_size=world_size,
        seed=config.seed,
        num_workers=d.num_workers,
        pin_memory=pin_memory,
        position=position,
    )
