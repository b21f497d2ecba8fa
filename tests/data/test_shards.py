import logging
import tarfile
from collections import Counter
from functools import partial

import numpy as np
import pytest
from torch.utils.data import DataLoader

from depth_anything_v2.data.shards import (
    ShardDataset,
    ShardWriter,
    TarShard,
    decode_disparity,
    decode_field,
    encode_disparity,
    encode_disparity_png16,
    expand_shards,
    iter_shards,
    make_pseudo_label_sample,
    pseudo_label_to_training,
    sample_key,
    split_shards,
    write_image_shards,
)
from depth_anything_v2.data.transforms import RandomCrop


def _write(tmp_path, n, per_shard, prefix="s"):
    with ShardWriter(tmp_path / f"{prefix}-%06d.tar", max_count=per_shard) as sink:
        for i in range(n):
            sink.write({"__key__": f"k{i:04d}", "txt": f"sample {i}", "json": {"i": i}})
    return sink.shards


def _collate_keys(batch):
    return [b["__key__"] for b in batch]


def test_writer_rolls_over_and_round_trips(tmp_path):
    shards = _write(tmp_path, 7, 3)
    assert [p.name for p in shards] == ["s-000000.tar", "s-000001.tar", "s-000002.tar"]
    with tarfile.open(shards[0]) as tar:
        assert tar.getnames() == ["k0000.txt", "k0000.json", "k0001.txt", "k0001.json", "k0002.txt", "k0002.json"]
    items = list(ShardDataset(tmp_path / "s-*.tar"))
    assert [s["__key__"] for s in items] == [f"k{i:04d}" for i in range(7)]
    assert items[4]["txt"] == "sample 4" and items[4]["json"] == {"i": 4}
    assert items[4]["__shard__"].endswith("s-000001.tar")
    # Byte-identical on rewrite (fixed member metadata): reproducible shards.
    first = shards[0].read_bytes()
    _write(tmp_path, 7, 3)
    assert shards[0].read_bytes() == first


def test_killed_writer_leaves_no_partial_shard(tmp_path):
    shard = TarShard(tmp_path / "p-000000.tar")
    shard.write({"__key__": "a", "txt": "x"})
    # "Killed" before close: only the .partial file exists, which no pattern matches.
    assert not (tmp_path / "p-000000.tar").exists()
    assert (tmp_path / "p-000000.tar.partial").exists()
    assert expand_shards(str(tmp_path / "p-*")) == []
    assert expand_shards(tmp_path) == []
    shard.abort()
    assert list(tmp_path.iterdir()) == []
    # An exception inside `with` keeps completed shards and drops the unfinished one.
    with pytest.raises(RuntimeError), ShardWriter(tmp_path / "q-%06d.tar", max_count=2) as sink:
        for i in range(3):
            sink.write({"__key__": f"k{i}", "txt": "x"})
        raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q-000000.tar"]


def test_bad_keys_and_fields_are_refused(tmp_path):
    with TarShard(tmp_path / "x.tar") as shard:
        for bad in ("a.b", "", "/abs", "../up"):
            with pytest.raises(ValueError, match="key"):
                shard.write({"__key__": bad, "txt": "x"})
        shard.write({"__key__": "dir/ok", "txt": "x"})
        with pytest.raises(ValueError, match="duplicate key"):
            shard.write({"__key__": "dir/ok", "txt": "y"})
        with pytest.raises(TypeError, match="cannot encode"):
            shard.write({"__key__": "z", "bin": object()})
    assert [s["__key__"] for s in ShardDataset(tmp_path / "x.tar")] == ["dir/ok"]
    assert sample_key("data/img.001.jpg", "data") == "img%2E001"
    assert sample_key("a/50%.png") == "a/50%25"
    with pytest.raises(ValueError, match="pattern"):
        ShardWriter("out-%s-%s.tar")


def test_png16_disparity_precision_and_f16():
    rng = np.random.default_rng(0)
    disparity = (rng.random((64, 80)) * 3.7 + 0.05).astype(np.float32)
    valid = rng.random((64, 80)) > 0.1
    data, meta = encode_disparity_png16(disparity, valid)
    decoded, dvalid = decode_disparity(decode_field("disparity.png", data), meta)
    assert np.array_equal(dvalid, valid)
    err = np.abs(decoded - disparity)[valid].max()
    bound = (disparity[valid].max() - disparity[valid].min()) / 65534 / 2
    assert err <= bound * 1.01 + 1e-7  # quantisation: half a step of range / 65534
    assert err < 3e-5
    assert np.all(decoded[~valid] == 0)
    field, data16, meta16 = encode_disparity(disparity, valid, "f16")
    assert field == "disparity.npy"
    d16, v16 = decode_disparity(decode_field(field, data16), meta16)
    assert np.array_equal(v16, valid)
    rel = (np.abs(d16 - disparity) / disparity)[valid].max()
    assert rel <= 2**-11
    # Constant or empty maps survive.
    const, _ = decode_disparity(
        decode_field("disparity.png", encode_disparity_png16(np.full((4, 4), 2.5))[0]),
        encode_disparity_png16(np.full((4, 4), 2.5))[1],
    )
    assert np.all(const == 2.5)
    empty_png, empty_meta = encode_disparity_png16(np.ones((4, 4)), np.zeros((4, 4), bool))
    assert not decode_disparity(decode_field("disparity.png", empty_png), empty_meta)[1].any()


def test_pseudo_label_samples_to_training(tmp_path):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    disparity = rng.random((24, 32)).astype(np.float32)
    with ShardWriter(tmp_path / "pl", max_count=10) as sink:
        sink.write(make_pseudo_label_sample("img0", image, disparity, image_ext="png", meta={"teacher": "vitl"}))
    assert sink.shards[0].name == "pl-000000.tar"
    raw = next(iter(ShardDataset(tmp_path / "pl-000000.tar")))
    assert raw["json"]["teacher"] == "vitl" and raw["json"]["height"] == 24
    assert np.array_equal(raw["png"], image)
    item = next(iter(ShardDataset(tmp_path, map=partial(pseudo_label_to_training, transform=RandomCrop(16)))))
    assert item["key"] == "img0"
    assert item["image"].shape == (3, 16, 16) and item["disparity"].shape == (16, 16)
    assert item["valid_mask"].all()


def test_split_across_ranks_and_workers_reads_each_sample_once(tmp_path):
    _write(tmp_path, 24, 3)  # 8 shards
    shards = expand_shards(str(tmp_path / "s-{000000..000007}.tar"))
    assert len(shards) == 8 and shards == expand_shards(str(tmp_path / "s-*.tar"))
    parts = [split_shards(shards, r, 2, w, 2) for r in range(2) for w in range(2)]
    assert sorted(p for part in parts for p in part) == shards and all(len(p) == 2 for p in parts)
    seen = Counter()
    for rank in range(2):
        ds = ShardDataset(shards, rank=rank, world_size=2, shuffle_shards=True, shuffle_buffer=4, seed=3)
        loader = DataLoader(ds, batch_size=5, num_workers=2, collate_fn=_collate_keys)
        for keys in loader:
            seen.update(keys)
    assert seen == Counter(f"k{i:04d}" for i in range(24))  # every sample exactly once over ranks x workers
    # Shuffling is deterministic per (seed, epoch) and changes with the epoch.
    ds = ShardDataset(shards, shuffle_shards=True, shuffle_buffer=5, seed=1)
    a = [s["__key__"] for s in ds]
    assert a == [s["__key__"] for s in ds] and sorted(a) == [f"k{i:04d}" for i in range(24)]
    assert a != sorted(a)
    ds.set_epoch(1)
    assert [s["__key__"] for s in ds] != a
    # repeat=True keeps producing (every rank must keep stepping in DDP).
    stream = iter(iter_shards(shards[:1], repeat=True))
    assert [next(stream)["__key__"] for _ in range(7)] == ["k0000", "k0001", "k0002"] * 2 + ["k0000"]


def test_corrupt_shards_and_samples_are_skipped(tmp_path, caplog):
    shards = _write(tmp_path, 6, 2)
    shards[1].write_bytes(shards[1].read_bytes()[:700])  # truncated mid-way
    with TarShard(tmp_path / "s-000003.tar") as shard:
        shard.write({"__key__": "bad", "json": b"{not json"})
        shard.write({"__key__": "good", "txt": "fine"})
    ds = ShardDataset(tmp_path / "s-*.tar")
    with caplog.at_level(logging.WARNING):
        keys = [s["__key__"] for s in ds]
    assert "k0000" in keys and "k0001" in keys and "k0004" in keys and "good" in keys and "bad" not in keys
    assert any(key == "bad" for _, key, _ in ds.errors)
    assert any(shard.endswith("s-000001.tar") and key is None for shard, key, _ in ds.errors)
    assert "s-000001.tar" in caplog.text
    with pytest.raises(ValueError):
        list(ShardDataset(tmp_path / "s-*.tar", on_error="raise"))
    with pytest.raises(FileNotFoundError, match="no shards"):
        ShardDataset(tmp_path / "none-*.tar")
    with pytest.raises(FileNotFoundError, match="1 of 2 shards do not exist"):
        ShardDataset([shards[0], tmp_path / "s-000007.tar"])


def test_image_shards_and_list_file(tmp_path):
    import cv2

    (tmp_path / "imgs" / "sub").mkdir(parents=True)
    image = np.random.default_rng(2).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "imgs" / "sub" / "a.jpg"), image[..., ::-1])
    cv2.imwrite(str(tmp_path / "imgs" / "b.png"), image[..., ::-1])
    paths = sorted((tmp_path / "imgs").rglob("*.*"))
    shards = write_image_shards(paths, tmp_path / "out" / "u-%03d.tar", root=tmp_path / "imgs", max_count=1)
    (tmp_path / "out" / "list.txt").write_text("\n".join(p.name for p in shards) + "\n")
    items = list(ShardDataset(tmp_path / "out" / "list.txt"))
    assert [s["__key__"] for s in items] == ["b", "sub/a"]
    assert np.array_equal(items[0]["png"], image)
    assert items[1]["jpg"].shape == (10, 12, 3)
