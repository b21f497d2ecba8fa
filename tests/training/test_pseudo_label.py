"""Pseudo-labelling: label precision, resume after an interrupted run, rank split, plan checks, bad inputs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from training_fixtures import live_teacher, write_images

from depth_anything_v2.cli import main
from depth_anything_v2.data.shards import ShardDataset, decode_disparity, pseudo_label_to_training
from depth_anything_v2.inference.predictor import DepthPredictor
from depth_anything_v2.training.pseudo_label import MANIFEST_NAME, PseudoLabelError, _plan, pseudo_label, shard_name
from depth_anything_v2.weights.checkpoints import save_reference

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _teacher() -> DepthPredictor:
    return DepthPredictor(live_teacher(), input_size=56, device="cpu")


def _samples(out: Path, decode: bool = True) -> list[dict]:
    return list(ShardDataset(str(out), rank=0, world_size=1, decode=decode, on_error="raise"))


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.endswith((".partial", ".tmp")))


def test_labels_are_the_teachers_disparity_within_the_stated_precision(tmp_path: Path, monkeypatch) -> None:
    paths = write_images(tmp_path / "in", 7)
    teacher = _teacher()
    reads = Counter()
    read_bytes, pil_open = Path.read_bytes, PIL.Image.open
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.update([self.name]) or read_bytes(self))

    def counting_open(fp, *args, **kwargs):
        if isinstance(fp, (str, os.PathLike)):  # a file opened by name (bytes in memory do not count)
            reads.update([Path(fp).name])
        return pil_open(fp, *args, **kwargs)

    monkeypatch.setattr(PIL.Image, "open", counting_open)
    report = pseudo_label(teacher, [str(tmp_path / "in")], tmp_path / "out", shard_size=3, batch_size=2, read_workers=2)
    assert report.written == [shard_name(i) for i in range(3)] and report.samples_written == 7 and not report.failures
    assert reads == Counter(p.name for p in paths)  # each image file read once (and decoded from those bytes)
    monkeypatch.undo()
    samples = _samples(tmp_path / "out")
    assert [s["__key__"] for s in samples] == [p.stem for p in paths]
    for s, path in zip(samples, paths, strict=True):
        expected = teacher.predict(str(path)).depth
        disparity, valid = decode_disparity(s["disparity.png"], s["json"]["disparity"])
        span = float(expected.max() - expected.min())
        assert valid.all() and disparity.shape == expected.shape == (42, 56)
        # png16: quantised over the sample's own range, error at most half a step = range / 131068 (plus float32
        # rounding of the decoded value and of batched vs single-image inference).
        assert np.abs(disparity - expected).max() <= span / 131068 + 4 * np.spacing(np.float32(expected.max()))
        assert s["json"]["source"] == str(path) and s["json"]["kind"] == "disparity"
    raw = _samples(tmp_path / "out", decode=False)
    assert raw[0]["png"] == paths[0].read_bytes()  # the image's own bytes, not re-encoded
    # The trainer's reader turns a sample into the common training dict.
    item = pseudo_label_to_training(samples[0])
    assert item["image"].shape == (3, 42, 56) and bool(item["valid_mask"].all())


def test_an_interrupted_job_resumes_with_exactly_one_copy_of_each_sample(tmp_path: Path, monkeypatch) -> None:
    write_images(tmp_path / "in", 8)
    out = tmp_path / "out"
    teacher = _teacher()
    # Run 1: a time-boxed job writes one shard and stops.
    first = pseudo_label(teacher, [str(tmp_path / "in")], out, shard_size=3, max_shards=1, read_workers=0)
    assert (first.written, first.remaining) == ([shard_name(0)], [shard_name(1), shard_name(2)])
    done = (out / "pseudo-000000.tar").stat().st_mtime_ns
    # Run 2 dies in the middle of shard 1 (after one image): the unfinished shard is discarded.
    real = DepthPredictor.predict_iter

    def dying(self, items, batch_size=1):
        for n, result in enumerate(real(self, items, batch_size=batch_size)):
            if n == 1:
                raise KeyboardInterrupt
            yield result

    monkeypatch.setattr(DepthPredictor, "predict_iter", dying)
    with pytest.raises(KeyboardInterrupt):
        pseudo_label(teacher, [str(tmp_path / "in")], out, shard_size=3, read_workers=0)
    monkeypatch.undo()
    assert not (out / "pseudo-000001.tar").exists() and _leftovers(out) == []
    # What a SIGKILL leaves behind instead: a half-written temporary shard and a sidecar.
    (out / "pseudo-000001.tar.partial").write_bytes(b"half a tar")
    (out / "pseudo-000001.json").write_text('{"samples": 99, "failures": []}')
    # Run 3 finishes: shard 0 is not redone, shards 1 and 2 are written; nothing is duplicated or left over.
    last = pseudo_label(teacher, [str(tmp_path / "in")], out, shard_size=3, read_workers=0)
    assert (last.skipped, last.written, last.remaining) == ([shard_name(0)], [shard_name(1), shard_name(2)], [])
    assert (out / "pseudo-000000.tar").stat().st_mtime_ns == done
    counts = Counter(s["__key__"] for s in _samples(out))
    assert counts == Counter(f"img_{i:03d}" for i in range(8))
    assert _leftovers(out) == []
    assert sorted(p.name for p in out.glob("*.tar")) == ["pseudo-000000.tar", "pseudo-000001.tar", "pseudo-000002.tar"]


def test_a_killed_process_is_finished_by_rerunning_the_same_command(tmp_path: Path, capsys) -> None:
    write_images(tmp_path / "in", 24)
    teacher = tmp_path / "teacher.pth"
    save_reference(live_teacher().state_dict(), teacher)
    out = tmp_path / "out"
    args = ["--teacher", str(teacher), "--input", str(tmp_path / "in"), "--out", str(out), "--shard-size", "2",
            "--batch-size", "1", "--input-size", "518", "--device", "cpu", "--workers", "0", "--no-progress"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "depth_anything_v2.cli.pseudo_label", *args], env=env)
    try:
        deadline = time.monotonic() + 120
        while not (out / "pseudo-000000.tar").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        proc.kill()  # SIGKILL: no clean-up code runs
        proc.wait()
    finished = sorted(p.name for p in out.glob("*.tar"))
    assert "pseudo-000000.tar" in finished
    assert main(["pseudo-label", *args]) == 0
    assert f"{len(finished)} already done" in capsys.readouterr().out
    counts = Counter(s["__key__"] for s in _samples(out))
    assert counts == Counter(f"img_{i:03d}" for i in range(24))
    assert _leftovers(out) == [] and len(list(out.glob("*.tar"))) == 12


def test_ranks_take_disjoint_shards_that_cover_every_input(tmp_path: Path) -> None:
    write_images(tmp_path / "in", 7)
    teacher = _teacher()
    r0 = pseudo_label(teacher, [str(tmp_path / "in")], tmp_path / "out", shard_size=2, rank=0, world_size=2)
    r1 = pseudo_label(teacher, [str(tmp_path / "in")], tmp_path / "out", shard_size=2, rank=1, world_size=2)
    assert (r0.written, r1.written) == ([shard_name(0), shard_name(2)], [shard_name(1), shard_name(3)])
    counts = Counter(s["__key__"] for s in _samples(tmp_path / "out"))
    assert counts == Counter(f"img_{i:03d}" for i in range(7))


def test_another_plan_in_the_same_folder_is_refused(tmp_path: Path, capsys) -> None:
    write_images(tmp_path / "in", 4)
    teacher = _teacher()
    pseudo_label(teacher, [str(tmp_path / "in")], tmp_path / "out", shard_size=3)
    with pytest.raises(PseudoLabelError, match=r"another plan \(shard_size: 3 -> 2\)"):
        pseudo_label(teacher, [str(tmp_path / "in")], tmp_path / "out", shard_size=2)
    write_images(tmp_path / "in", 5)  # one more image
    with pytest.raises(PseudoLabelError, match="the list of inputs differs"):
        pseudo_label(teacher, [str(tmp_path / "in")], tmp_path / "out", shard_size=3)
    assert (tmp_path / "out" / MANIFEST_NAME).is_file()
    with pytest.raises(PseudoLabelError, match="expected a relative"):
        pseudo_label(
            DepthPredictor(live_teacher(max_depth=20.0), input_size=56), [str(tmp_path / "in")], tmp_path / "x"
        )
    with pytest.raises(PseudoLabelError, match="no images found"):
        (tmp_path / "empty").mkdir()
        pseudo_label(teacher, [str(tmp_path / "empty")], tmp_path / "y")


def test_cli_reports_unreadable_images_and_relabels_shard_inputs(tmp_path: Path, capsys) -> None:
    write_images(tmp_path / "in", 5)
    (tmp_path / "in" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    teacher = tmp_path / "teacher.pth"
    save_reference(live_teacher().state_dict(), teacher)
    argv = ["pseudo-label", "--teacher", str(teacher), "--input", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
            "--shard-size", "4", "--input-size", "56", "--device", "cpu", "--no-progress"]  # fmt: skip
    assert main(argv) == 1  # one input failed; the others are labelled
    captured = capsys.readouterr()
    assert "broken.jpg" in captured.err and "2 shard(s) written (5 samples)" in captured.out
    assert main(argv) == 1  # the rerun skips both shards and still reports the failure (from the sidecar)
    captured = capsys.readouterr()
    assert "0 shard(s) written" in captured.out and "2 already done" in captured.out and "broken.jpg" in captured.err
    # Shard inputs: output shard i labels input shard i, same keys, same labels for the same teacher.
    shards = sorted(str(p) for p in (tmp_path / "out").glob("*.tar"))
    assert main([*argv[:4], *shards, "--out", str(tmp_path / "again"), *argv[7:]]) == 0
    first, again = _samples(tmp_path / "out", decode=False), _samples(tmp_path / "again", decode=False)
    assert [s["__key__"] for s in first] == [s["__key__"] for s in again]
    assert all(a["disparity.png"] == b["disparity.png"] for a, b in zip(first, again, strict=True))
    capsys.readouterr()
    assert main([*argv[:7], "--shard-size", "0"]) == 2
    assert main(["pseudo-label", "--teacher", str(tmp_path / "nope.pth"), "--input", "x", "--out", "y"]) == 2


# ------------------------------------------------------------------------------------------- list parts
def test_list_parts_are_split_by_part_across_ranks_resumed_and_checked(tmp_path: Path, capsys) -> None:
    images = write_images(tmp_path / "in", 7)
    parts = tmp_path / "lists"
    parts.mkdir()
    (parts / "part-000.txt").write_text("".join(f"../in/{p.name}\n" for p in images[:4]))
    (parts / "part-001.txt").write_text("# comment\n" + "".join(f"{p}\n" for p in images[4:]))  # absolute paths
    spec = str(parts / "part-{000..001}.txt")
    teacher = _teacher()
    r0 = pseudo_label(teacher, [spec], tmp_path / "out", shard_size=3, input_kind="lists", rank=0, world_size=2)
    r1 = pseudo_label(teacher, [spec], tmp_path / "out", shard_size=3, input_kind="lists", rank=1, world_size=2)
    # Part p goes to rank p % 2 and is cut into shards of 3 lines named by part.
    assert r0.written == ["pseudo-000000-000000.tar", "pseudo-000000-000001.tar"]
    assert r1.written == ["pseudo-000001-000000.tar"] and r1.num_shards is None
    assert r0.samples_written + r1.samples_written == 7 and r0.images_per_second > 0
    sources = Counter(s["json"]["source"] for s in _samples(tmp_path / "out"))
    assert sorted(map(os.path.realpath, sources)) == sorted(str(p.resolve()) for p in images)
    assert set(sources.values()) == {1}
    # A rerun (one process, folder of parts) finds all done; a part changed under a finished shard is refused.
    argv = ["pseudo-label", "--teacher", str(tmp_path / "t.pth"), "--input", spec, "--input-format", "lists",
            "--out", str(tmp_path / "out"), "--shard-size", "3", "--input-size", "56", "--device", "cpu",
            "--no-progress"]  # fmt: skip
    save_reference(live_teacher().state_dict(), tmp_path / "t.pth")
    assert main(argv) == 0 and "3 already done" in capsys.readouterr().out
    (parts / "part-001.txt").write_text("".join(f"{p}\n" for p in images[3:]))
    with pytest.raises(PseudoLabelError, match="other input lines"):
        pseudo_label(teacher, [spec], tmp_path / "out", shard_size=3, input_kind="lists")
    with pytest.raises(PseudoLabelError, match="not found"):
        pseudo_label(teacher, [str(parts / "part-{000..002}.txt")], tmp_path / "x", input_kind="lists")


def _planned_bytes(parts: list[str], rank: int, world_size: int) -> tuple[int, int]:
    """Peak traced memory of planning and walking rank's jobs (its inputs, one shard at a time), and the count."""
    import tracemalloc

    tracemalloc.start()
    try:
        plan = _plan("lists", parts, 1000, Path("unused"), rank, world_size)
        seen = sum(len(list(job.items)) for job in plan.jobs)
        return tracemalloc.get_traced_memory()[1], seen
    finally:
        tracemalloc.stop()


def test_memory_per_rank_is_flat_in_the_number_of_inputs(tmp_path: Path) -> None:
    (tmp_path / "warm.txt").write_text("a.jpg\n")
    _planned_bytes([str(tmp_path / "warm.txt")], rank=0, world_size=1)  # imports happen outside the measurement
    peaks = {}
    for n in (10_000, 100_000):
        folder = tmp_path / str(n)
        folder.mkdir()
        lines = [f"images/{i // 1000:04d}/{i:09d}.jpg\n" for i in range(n)]  # entries only, never read
        per = n // 10
        for p in range(10):
            (folder / f"part-{p:03d}.txt").write_text("".join(lines[p * per : (p + 1) * per]))
        peak, seen = _planned_bytes([str(folder)], rank=1, world_size=4)  # parts 1, 5, 9
        assert seen == 3 * per
        peaks[n] = peak
    # Ten times the inputs, the same memory (one shard of 1000 entries at a time): not 10x.
    assert peaks[100_000] < 1.5 * peaks[10_000], peaks
