"""Tests for ``depth_anything_v2.io.inputs``: expanding INPUT arguments and collision-free output names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from depth_anything_v2.io.inputs import InputError, InputItem, expand_inputs, stream_stem


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "photos"
    for rel in ["b.jpg", "a.PNG", "sub/c.jpeg", "sub/deeper/d.webp", "z/e.tif"]:
        _touch(root / rel)
    _touch(root / "notes.txt")  # inside a folder: not an image, skipped (lists only count when given directly)
    _touch(root / "readme.md")
    _touch(root / ".hidden.jpg")
    _touch(root / ".cache" / "f.jpg")
    _touch(root / "sub" / ".x.jpg.abc123.partial")
    (root / "emptydir").mkdir()
    return tmp_path


def _stems(result) -> list[str]:
    return [item.stem for item in result.items]


def test_folder_recursive_sorted_images_only(tree):
    result = expand_inputs([str(tree / "photos")])
    assert _stems(result) == ["a", "b", "sub/c", "sub/deeper/d", "z/e"]
    assert all(item.kind == "image" for item in result.items)
    assert result.base == tree / "photos"
    assert result.items[0].output_path("out", "_color.png") == Path("out/a_color.png")
    assert result.items[2].output_paths("out", ["npy", "png16"]) == {
        "npy": Path("out/sub/c.npy"),
        "png16": Path("out/sub/c_depth16.png"),
    }


def test_output_folder_inside_input_is_excluded(tree):
    _touch(tree / "photos" / "depth" / "a_color.png")
    result = expand_inputs([str(tree / "photos")], exclude=[tree / "photos" / "depth"])
    assert "depth/a_color" not in _stems(result)
    assert "depth/a_color" in _stems(expand_inputs([str(tree / "photos")]))


def test_same_named_files_in_two_folders_do_not_collide(tmp_path):
    _touch(tmp_path / "cam1" / "img.jpg")
    _touch(tmp_path / "cam2" / "img.jpg")
    result = expand_inputs([str(tmp_path / "cam1"), str(tmp_path / "cam2")])
    assert _stems(result) == ["cam1/img", "cam2/img"]
    files = expand_inputs([str(tmp_path / "cam1" / "img.jpg"), str(tmp_path / "cam2" / "img.jpg")])
    assert _stems(files) == ["cam1/img", "cam2/img"]
    assert _stems(expand_inputs([str(tmp_path / "cam1" / "img.jpg")])) == ["img"]  # a single file: its name


def test_same_stem_different_extension_keeps_extension(tmp_path):
    _touch(tmp_path / "x.jpg")
    _touch(tmp_path / "x.png")
    _touch(tmp_path / "y.png")
    assert _stems(expand_inputs([str(tmp_path)])) == ["x.jpg", "x.png", "y"]


def test_readme_documents_the_extension_rule_as_it_behaves(tmp_path):
    for name in ("x.jpg", "x.png", "y.jpg"):
        _touch(tmp_path / name)
    out = Path("OUT")
    names = [
        i.output_path(out, suffix).as_posix()
        for i in expand_inputs([str(tmp_path)]).items
        for suffix in (".npy", "_color.png")
    ]
    assert names == ["OUT/x.jpg.npy", "OUT/x.jpg_color.png", "OUT/x.png.npy", "OUT/x.png_color.png",
                     "OUT/y.npy", "OUT/y_color.png"]  # fmt: skip
    readme = " ".join((Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8").split())
    assert "`x.jpg` and `x.png` become `OUT/x.jpg.npy`, `OUT/x.jpg_color.png` and `OUT/x.png.npy`" in readme
    assert "a lone `y.jpg` stays `OUT/y.npy`" in readme


def test_duplicates_processed_once(tree):
    photos = tree / "photos"
    result = expand_inputs([str(photos / "b.jpg"), str(photos), str(photos / "sub" / ".." / "b.jpg")])
    assert [Path(i.source).name for i in result.items].count("b.jpg") == 1
    assert _stems(result)[0] == "b"


def test_txt_list_relative_comments_blank_and_missing(tree, monkeypatch):
    lists = tree / "lists"
    lists.mkdir()
    (lists / "todo.txt").write_text(
        "# my images\n\n../photos/b.jpg\n   ../photos/sub   \n"
        + str(tree / "photos" / "z" / "e.tif")
        + "\nmissing.jpg\n"
    )
    monkeypatch.chdir(tree / "photos" / "sub")  # relative entries resolve against the list's folder, not the cwd
    result = expand_inputs([str(lists / "todo.txt")])
    assert [Path(i.source).name for i in result.items] == ["b.jpg", "c.jpeg", "d.webp", "e.tif"]
    assert result.base == tree  # the list's folder is a root too
    assert _stems(result) == ["photos/b", "photos/sub/c", "photos/sub/deeper/d", "photos/z/e"]
    # A bad entry names the list and the line (as compilers do), then the entry.
    assert [(f.source, f.reason) for f in result.failures] == [
        (f"{lists / 'todo.txt'}:6: missing.jpg", "no such file or folder")
    ]


def test_nested_lists_and_self_reference_terminate(tmp_path):
    _touch(tmp_path / "a.jpg")
    (tmp_path / "inner.txt").write_text("a.jpg\n")
    (tmp_path / "outer.txt").write_text("inner.txt\nouter.txt\n")
    result = expand_inputs([str(tmp_path / "outer.txt")])
    assert _stems(result) == ["a"]
    assert any(
        "nested more than" in f.reason and f.source.startswith(f"{tmp_path / 'outer.txt'}:2: ") for f in result.failures
    )


def test_glob_patterns(tree, monkeypatch):
    monkeypatch.chdir(tree)
    result = expand_inputs(["photos/**/*.jp*g"])
    assert _stems(result) == ["b", "sub/c"]  # relative to the glob's wildcard-free folder, 'photos'
    assert all(os.path.isabs(i.source) for i in result.items)
    with pytest.raises(InputError, match=r"^photos/\*\.gif: no files match this pattern$"):
        expand_inputs(["photos/*.gif"])


def test_missing_input_is_input_error(tmp_path):
    with pytest.raises(InputError, match=r"nope\.jpg: no such file or folder"):
        expand_inputs([str(tmp_path / "nope.jpg")])


def test_explicit_non_image_file_is_tried_as_image(tmp_path):
    _touch(tmp_path / "weird.xyz")
    result = expand_inputs([str(tmp_path / "weird.xyz")])
    assert [(i.kind, i.stem) for i in result.items] == [("image", "weird")]


def test_videos_and_streams(tmp_path):
    _touch(tmp_path / "clips" / "walk.mp4")
    _touch(tmp_path / "clips" / "pic.jpg")
    result = expand_inputs([str(tmp_path / "clips" / "walk.mp4"), "0", "rtsp://10.0.0.2:554/live/main", "2"])
    assert [(i.kind, i.stem) for i in result.items] == [
        ("video", "walk"),
        ("stream", "camera0"),
        ("stream", "stream_10.0.0.2_554_live_main"),
        ("stream", "camera2"),
    ]
    # Folders pick up images only (videos must be named explicitly or through a list/glob).
    assert [i.kind for i in expand_inputs([str(tmp_path / "clips")]).items] == ["image"]
    assert stream_stem("http://cam.local/video?x=1") == "stream_cam.local_video_x_1"


def test_input_item_paths():
    item = InputItem("image", "/data/a/b.jpg", "a/b")
    assert item.path == Path("/data/a/b.jpg")
    assert item.output_path("/out", "_align.json") == Path("/out/a/b_align.json")
    assert item.output_paths("/out", ["color", "ply"]) == {
        "color": Path("/out/a/b_color.png"),
        "ply": Path("/out/a/b.ply"),
    }
