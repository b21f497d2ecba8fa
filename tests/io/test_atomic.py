"""The one atomic-write helper (io.atomic): modes like open()/mkdir() give, cleanup on failure, fsync."""

import os
import stat

import pytest

from depth_anything_v2.io import atomic


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield 0o027
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_files_and_folders_get_the_umask_mode(tmp_path, umask_027):
    atomic.atomic_write_bytes(tmp_path / "a.bin", b"x")
    atomic.atomic_write_text(tmp_path / "sub" / "b.txt", "é")
    with atomic.atomic_path(tmp_path / "c.bin") as tmp:
        tmp.write_bytes(b"c")
        os.chmod(tmp, 0o600)  # what safetensors' save_file does to the file it writes
    with atomic.atomic_directory(tmp_path / "d") as folder:
        (folder / "x").write_text("x")
    assert {p.name: _mode(p) for p in (tmp_path / "a.bin", tmp_path / "c.bin", tmp_path / "d")} == {
        "a.bin": 0o640, "c.bin": 0o640, "d": 0o750,
    }  # fmt: skip  # 0o666/0o777 & ~0o027, not mkstemp's 0o600 / mkdtemp's 0o700
    assert (tmp_path / "sub" / "b.txt").read_text(encoding="utf-8") == "é"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "c.bin", "d", "sub"]  # no temporaries


@pytest.mark.parametrize("kind", ["write", "path", "directory"])
def test_failure_keeps_the_old_file_and_removes_the_temporary(tmp_path, kind):
    target = tmp_path / "out"
    if kind == "directory":
        target.mkdir()
    else:
        target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"):
        if kind == "write":
            with atomic.atomic_write(target) as f:
                f.write(b"half a file")
                raise RuntimeError("boom")
        elif kind == "path":
            with atomic.atomic_path(target) as tmp:
                tmp.write_bytes(b"half a file")
                raise RuntimeError("boom")
        else:
            with atomic.atomic_directory(target) as folder:
                (folder / "half").write_bytes(b"x")
                raise RuntimeError("boom")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert list(target.iterdir()) == [] if kind == "directory" else target.read_bytes() == b"old"


def test_atomic_directory_refuses_a_folder_with_files(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep").write_text("x")
    with (
        pytest.raises(FileExistsError, match="exists and is not an empty folder"),
        atomic.atomic_directory(tmp_path / "d"),
    ):
        pass


def test_fsync_flushes_file_and_folder_only_when_asked(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(stat.S_ISDIR(os.fstat(fd).st_mode)) or real_fsync(fd))
    atomic.atomic_write_bytes(tmp_path / "a", b"a")
    assert synced == []
    atomic.atomic_write_bytes(tmp_path / "b", b"b", fsync=True)
    with atomic.atomic_path(tmp_path / "c", fsync=True) as tmp:
        tmp.write_bytes(b"c")
    assert synced == [False, True, False, True]  # the file, then the folder holding the new name


def test_atomic_file_commit_and_discard(tmp_path):
    f = atomic.AtomicFile(tmp_path / "x.tar", temp=tmp_path / "x.tar.partial")
    f.file.write(b"data")
    assert f.commit() == tmp_path / "x.tar" and (tmp_path / "x.tar").read_bytes() == b"data"
    g = atomic.AtomicFile(tmp_path / "y.tar")
    g.file.write(b"data")
    g.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.tar"]
    with pytest.raises(ValueError, match="expected a write mode"):
        atomic.AtomicFile(tmp_path / "z", "rb")


def test_a_group_of_files_appears_together_or_not_at_all(tmp_path, umask_027):
    with atomic.atomic_files(tmp_path / "model.xml") as xml:
        xml.write_text("<net/>")
        xml.with_suffix(".bin").write_bytes(b"w")
        os.chmod(xml.with_suffix(".bin"), 0o600)
        assert not (tmp_path / "model.xml").exists()  # nothing under a final name before the block ends
    assert {p.name: _mode(p) for p in tmp_path.iterdir()} == {"model.xml": 0o640, "model.bin": 0o640}
    with pytest.raises(RuntimeError), atomic.atomic_files(tmp_path / "other.xml") as xml:
        xml.write_text("<net/>")
        raise RuntimeError("validation failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin", "model.xml"]
