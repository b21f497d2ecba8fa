"""Atomic file writing: the one helper every writer of the toolkit uses.

A file is written under a hidden temporary name in its destination folder and moved to its final name with
``os.replace`` only when complete, so a killed process never leaves a half-written file under the final name
(``--skip-existing`` and resumable training rely on this). On an exception the temporary file is removed.

Files and folders get the modes a plain ``open()`` / ``mkdir()`` gives (``0o666`` / ``0o777`` less the umask):
``tempfile.mkstemp``'s 0600 would survive the rename and hide the outputs from the group.

    from depth_anything_v2.io.atomic import atomic_write

    with atomic_write("out/x.json", "w") as f:        # streamed: write as much as you like
        json.dump(data, f)
    atomic_write_bytes("out/x.bin", data, fsync=True)  # fsync: survives a power cut once the call returns
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "AtomicFile",
    "atomic_directory",
    "atomic_files",
    "atomic_path",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "temp_path",
]

TEMP_MARKER = ".partial"  # temporary names: ".<stem>.<random>.partial<suffix>" (hidden; inputs skip them)


def temp_path(path: str | Path) -> Path:
    """Create an empty temporary file next to ``path`` (mode ``0o666 & ~umask``) and return its name.

    The name keeps ``path``'s suffix, for writers that choose the format from it (OpenCV's video writer).
    The caller moves it into place with ``os.replace`` or deletes it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.parent / f".{path.stem}.{secrets.token_hex(4)}{TEMP_MARKER}{path.suffix}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666))
            return tmp
        except FileExistsError:
            continue


def _fsync_directory(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; Windows cannot open folders and needs no such step)."""
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AtomicFile:
    """An open temporary file that becomes ``path`` on :meth:`commit` and disappears on :meth:`discard`.

    For writers that keep a file open across calls (shards); everything else uses :func:`atomic_write`.
    ``temp`` names the temporary file instead of a random hidden name (it is truncated if it exists).
    """

    def __init__(
        self,
        path: str | Path,
        mode: str = "wb",
        *,
        fsync: bool = False,
        encoding: str | None = None,
        temp: str | Path | None = None,
    ) -> None:
        if not mode.startswith("w"):
            raise ValueError(f"expected a write mode ('w', 'wb', ...), got {mode!r}")
        self.path = Path(path)
        self.fsync = fsync
        if temp is None:
            self.temp = temp_path(self.path)
        else:
            self.temp = Path(temp)
            self.path.parent.mkdir(parents=True, exist_ok=True)
        if encoding is None and "b" not in mode:
            encoding = "utf-8"
        self.file: IO[Any] = open(self.temp, mode, encoding=encoding)  # noqa: SIM115 - closed in commit/discard

    def commit(self) -> Path:
        """Close the file, optionally fsync it, and move it to its final name; returns that name."""
        try:
            self.file.flush()
            if self.fsync:
                os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.temp, self.path)
        except BaseException:
            self.discard()
            raise
        if self.fsync:
            _fsync_directory(self.path.parent)
        return self.path

    def discard(self) -> None:
        """Close and delete the temporary file; the final name is untouched."""
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(OSError):
            os.unlink(self.temp)


@contextlib.contextmanager
def atomic_write(
    path: str | Path, mode: str = "wb", *, fsync: bool = False, encoding: str | None = None
) -> Iterator[IO[Any]]:
    """``open(path, mode)`` written atomically: the file appears under ``path`` only if the block succeeds.

    ``fsync=True`` flushes the file and the folder to disk before returning (checkpoints, shards).
    Text modes default to UTF-8.
    """
    handle = AtomicFile(path, mode, fsync=fsync, encoding=encoding)
    try:
        yield handle.file
    except BaseException:
        handle.discard()
        raise
    handle.commit()


@contextlib.contextmanager
def atomic_path(path: str | Path, *, fsync: bool = False) -> Iterator[Path]:
    """A temporary file name for writers that take a name, not a file (``safetensors.torch.save_file``):
    write it inside the block; it becomes ``path`` (with the umask's mode, whatever the writer chose) when the
    block succeeds and is removed otherwise."""
    path = Path(path)
    tmp = temp_path(path)
    mode = os.stat(tmp).st_mode & 0o777  # what the umask gives
    try:
        yield tmp
        # Writers that replace the file get their own mode (safetensors' save_file makes it 0600): restore ours.
        os.chmod(tmp, mode)
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if fsync:
        _fsync_directory(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes, *, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_write(path, "wb", fsync=fsync) as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str, *, fsync: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    with atomic_write(path, "w", fsync=fsync) as f:
        f.write(text)
    return Path(path)


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """A new temporary folder next to ``path`` that becomes ``path`` when the block succeeds.

    ``path`` must not exist or be an empty folder (``FileExistsError`` otherwise). The folder gets the mode
    ``mkdir`` gives (``0o777 & ~umask``, not ``mkdtemp``'s 0700). On an exception it is removed whole.
    """
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(f"{path}: exists and is not an empty folder; expected a new or empty folder")
    tmp = _temp_folder(path)
    try:
        yield tmp
        if path.exists():
            path.rmdir()
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_files(path: str | Path) -> Iterator[Path]:
    """For writers that put several files side by side (``model.xml`` + ``model.bin``, ``x.onnx`` + ``x.onnx.data``,
    sidecars): yield a path with ``path``'s name inside a hidden temporary folder next to it. When the block
    succeeds every file written there moves next to ``path`` (with the umask's mode, whatever the writer chose);
    on an exception nothing is left under any final name."""
    path = Path(path)
    tmp = _temp_folder(path)
    try:
        yield tmp / path.name
        mode = 0o666 & ~_umask()
        for f in sorted(tmp.iterdir()):
            os.chmod(f, mode)
            os.replace(f, path.parent / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _temp_folder(path: Path) -> Path:
    """A new hidden folder ``.<name>.<random>.partial`` beside ``path`` (mode ``0o777 & ~umask``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}{TEMP_MARKER}"
        try:
            os.mkdir(tmp, 0o777)
            return tmp
        except FileExistsError:
            continue


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
