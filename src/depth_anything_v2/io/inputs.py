"""Expand command-line INPUT arguments into work items, and name their outputs.

An INPUT is any of:

- an image file (any extension: a file named explicitly is always tried as an image unless it is a video);
- a folder: searched recursively for images (by extension, see ``io.IMAGE_EXTENSIONS``), sorted by path;
  sub-folders, non-images, hidden files and folders (names starting with ``.``, which includes the writers'
  ``.*.partial`` temporaries) and anything under an excluded folder (the output folder) are skipped;
  symbolic links to folders are not followed (no loops);
- a ``.txt`` list: one INPUT per line (files, folders, globs, videos, streams, nested lists); relative paths are
  resolved against the list's folder; blank lines and lines starting with ``#`` are ignored;
- a glob pattern (quoted so the shell leaves it alone), ``**`` for any depth: ``"shots/**/*.jpg"``;
- a video file (by extension, ``video.VIDEO_EXTENSIONS``);
- a stream: a webcam index (``0``) or a URL (``rtsp://...``, ``http://...``).

Output naming: every file item gets an output *stem*, its path relative to the *base folder* without its
extension, where the base folder is the deepest folder containing every INPUT's root (a folder INPUT is its own
root, a file's root is its folder, a glob's root is its wildcard-free leading folder, a list's root is the
list's folder) and every item found. Each format then writes ``OUT/<stem><suffix>`` (suffixes in
``outputs.FORMATS``: ``.npy``, ``_depth16.png``, ``_color.png``, ...). So

- ``predict photos --out out``: ``photos/a/x.jpg`` -> ``out/a/x_color.png``;
- ``predict cam1 cam2 --out out``: ``cam1/x.jpg``, ``cam2/x.jpg`` -> ``out/cam1/x_color.png``, ``out/cam2/x_color.png``;
- ``predict a.jpg --out out``: -> ``out/a_color.png``.

Two inputs in one folder that differ only by extension (``x.jpg``, ``x.png``) keep the extension in the stem
(``x.jpg_color.png``, ``x.png_color.png``). Files reached twice are processed once. Streams get the stem
``camera<N>`` (webcam N) or ``stream_<host>_<path>`` (URL, non-alphanumerics replaced by ``_``), at the top of OUT.
"""

from __future__ import annotations

import glob
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .images import IMAGE_EXTENSIONS
from .outputs import FORMATS

logger = logging.getLogger(__name__)

ItemKind = Literal["image", "video", "stream"]
_GLOB_CHARS = re.compile(r"[*?\[]")
_MAX_LIST_DEPTH = 8


class InputError(ValueError):
    """An INPUT argument that cannot be used at all (missing path, glob without matches): a usage error."""


@dataclass(frozen=True)
class InputItem:
    """One unit of work: an image or video file, or a stream.

    Attributes:
        kind: ``"image"``, ``"video"`` or ``"stream"``.
        source: the file path (as found) or the stream spec (``"0"``, ``"rtsp://..."``).
        stem: the output stem, a relative POSIX path without suffix (``"sub/photo"``).
    """

    kind: ItemKind
    source: str
    stem: str

    @property
    def path(self) -> Path:
        return Path(self.source)

    def output_path(self, out_dir: str | Path, suffix: str) -> Path:
        """``out_dir / (stem + suffix)``, e.g. suffix ``"_color.png"``."""
        return Path(out_dir) / (self.stem + suffix)

    def output_paths(self, out_dir: str | Path, formats: Iterable[str]) -> dict[str, Path]:
        """Format name -> output path, for the formats in ``outputs.FORMATS`` (others are ignored here)."""
        return {fmt: self.output_path(out_dir, FORMATS[fmt]) for fmt in formats if fmt in FORMATS}


@dataclass(frozen=True)
class InputFailure:
    """An entry that could not become an item (missing file in a list, unreadable folder); reported, skipped."""

    source: str
    reason: str


@dataclass
class ExpandedInputs:
    items: list[InputItem] = field(default_factory=list)
    failures: list[InputFailure] = field(default_factory=list)
    base: Path | None = None  # the folder that stems are relative to (None without file items)

    def count(self, kind: ItemKind) -> int:
        return sum(item.kind == kind for item in self.items)


def _is_video(path: str | Path) -> bool:
    from ..inference import video

    return video.is_video_path(path)


def _is_stream(spec: str) -> bool:
    from ..inference import video

    return video.is_stream_source(spec)


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _is_under(path: Path, folders: Sequence[Path]) -> bool:
    return any(path == f or f in path.parents for f in folders)


def _glob_root(pattern: str) -> Path:
    """The leading folder of ``pattern`` that has no wildcard in it."""
    parts = Path(pattern).parts
    root: list[str] = []
    for part in parts[:-1]:
        if _GLOB_CHARS.search(part):
            break
        root.append(part)
    return Path(*root) if root else Path(".")


def stream_stem(spec: str) -> str:
    """Output stem of a stream: ``camera0`` for webcam 0, ``stream_host_554_live`` for ``rtsp://host:554/live``."""
    spec = spec.strip()
    if spec.isdigit():
        return f"camera{int(spec)}"
    rest = spec.split("://", 1)[-1]
    name = re.sub(r"[^A-Za-z0-9.]+", "_", rest).strip("_.")
    return f"stream_{name[:80]}" if name else "stream"


class _Collector:
    def __init__(self, exclude: Sequence[Path]) -> None:
        self.exclude = [Path(os.path.abspath(p)) for p in exclude]
        self.files: list[tuple[ItemKind, Path]] = []  # absolute, in discovery order
        self.seen: set[Path] = set()
        self.roots: list[Path] = []
        self.streams: list[str] = []
        self.failures: list[InputFailure] = []

    def add_file(self, kind: ItemKind, path: Path) -> None:
        path = Path(os.path.abspath(path))
        if path not in self.seen:
            self.seen.add(path)
            self.files.append((kind, path))

    def add_spec(
        self, spec: str, *, relative_to: Path | None, depth: int, strict: bool, where: str | None = None
    ) -> None:
        """Add one INPUT. ``strict``: a missing path/empty glob raises ``InputError`` (command line) rather than
        being recorded as a failure (entries of a list). ``where``: ``"list.txt:LINE"`` for an entry of a list,
        so a failure names the list and the line."""
        spec_name = spec if where is None else f"{where}: {spec}"
        if depth > _MAX_LIST_DEPTH:
            self._fail(spec_name, f"lists nested more than {_MAX_LIST_DEPTH} deep", strict)
            return
        if not spec:
            return
        path = Path(spec).expanduser()
        if relative_to is not None and not path.is_absolute():
            path = relative_to / path
        if path.is_dir():
            self.roots.append(Path(os.path.abspath(path)))
            self._scan_folder(path)
        elif path.is_file():
            if path.suffix.lower() == ".txt":
                self._read_list(path, depth)
            else:
                self.roots.append(Path(os.path.abspath(path.parent)))
                self.add_file("video" if _is_video(path) else "image", path)
        elif _is_stream(spec):
            self.streams.append(spec)
        elif _GLOB_CHARS.search(str(path)):
            matches = sorted(glob.glob(str(path), recursive=True))
            files = [Path(m) for m in matches if Path(m).is_file() and not _is_hidden(Path(m).name)]
            if not files:
                self._fail(spec_name, "no files match this pattern", strict)
                return
            self.roots.append(Path(os.path.abspath(_glob_root(str(path)))))
            for f in files:
                self.add_file("video" if _is_video(f) else "image", f)
        elif path.exists() or path.is_symlink():
            self._fail(spec_name, "not a regular file or folder (broken link?)", strict)
        else:
            self._fail(spec_name, "no such file or folder", strict)

    def _fail(self, spec: str, reason: str, strict: bool) -> None:
        if strict:
            raise InputError(f"{spec}: {reason}")
        self.failures.append(InputFailure(spec, reason))

    def _scan_folder(self, folder: Path) -> None:
        found: list[Path] = []

        def on_error(e: OSError) -> None:
            self.failures.append(InputFailure(str(e.filename or folder), f"cannot list folder ({e.strerror})"))

        for dirpath, dirnames, filenames in os.walk(folder, onerror=on_error):
            here = Path(os.path.abspath(dirpath))
            dirnames[:] = [d for d in dirnames if not _is_hidden(d) and not _is_under(here / d, self.exclude)]
            for name in filenames:
                if _is_hidden(name) or Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                    continue
                found.append(here / name)
        if not found:
            logger.warning("%s: no images found in this folder", folder)
        for f in sorted(found, key=lambda p: p.parts):
            self.add_file("image", f)

    def _read_list(self, path: Path, depth: int) -> None:
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as e:
            self.failures.append(InputFailure(str(path), f"cannot read list ({e})"))
            return
        folder = path.parent
        self.roots.append(Path(os.path.abspath(folder)))
        for number, line in enumerate(text.splitlines(), start=1):
            entry = line.strip()
            if entry and not entry.startswith("#"):
                self.add_spec(entry, relative_to=folder, depth=depth + 1, strict=False, where=f"{path}:{number}")


def _common_base(paths: Sequence[Path]) -> Path:
    try:
        return Path(os.path.commonpath([str(p) for p in paths]))
    except ValueError:  # different drives (Windows): no common folder
        return Path(paths[0].anchor)


def expand_inputs(specs: Sequence[str], *, exclude: Sequence[str | Path] = ()) -> ExpandedInputs:
    """Expand INPUT arguments (see the module docstring) into items with collision-free output stems.

    Args:
        specs: the INPUT arguments, in order.
        exclude: folders whose contents are never picked up from folder scans (pass the output folder).

    Returns:
        ``ExpandedInputs``: items (files in argument order, folders sorted, then streams), failures (entries of
        lists that do not exist, folders that cannot be listed), and the base folder of the stems.

    Raises:
        InputError: an INPUT given directly that does not exist or a glob that matches nothing.
    """
    collector = _Collector([Path(p) for p in exclude])
    for spec in specs:
        collector.add_spec(spec, relative_to=None, depth=0, strict=True)
    result = ExpandedInputs(failures=collector.failures)
    if collector.files:
        base = _common_base(collector.roots + [p.parent for _, p in collector.files])
        result.base = base
        rel = [p.relative_to(base) for _, p in collector.files]
        stems = [r.with_suffix("").as_posix() for r in rel]
        # Same folder, same name, different extension: keep the extension so neither overwrites the other.
        counts: dict[str, int] = {}
        for s in stems:
            counts[s] = counts.get(s, 0) + 1
        stems = [r.as_posix() if counts[s] > 1 else s for s, r in zip(stems, rel, strict=True)]
        result.items = [
            InputItem(kind, str(path), stem) for (kind, path), stem in zip(collector.files, stems, strict=True)
        ]
    used: set[str] = {item.stem for item in result.items}
    for spec in collector.streams:
        stem = stream_stem(spec)
        n = 1
        while stem in used:
            n += 1
            stem = f"{stream_stem(spec)}_{n}"
        used.add(stem)
        result.items.append(InputItem("stream", spec, stem))
    return result
