"""Opening an input file a stranger may have planted: regular files only, sizes known up front.

`open_regular` opens without blocking (a FIFO would otherwise hang the open itself) and refuses
anything that is not a regular file: FIFOs, sockets, character devices such as /dev/zero (an
unbounded read), block devices and folders. The size it returns is the size that every later size
claim is checked against. `confined_file` adds the sharded-index rule: the file, after every
symlink is resolved, must live in the given folder.
"""
from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import BinaryIO, Iterator

from golfpack.errors import FormatError, GolfpackError


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a regular file"


@contextlib.contextmanager
def open_regular(path: str | os.PathLike, what: str = "input") -> Iterator[tuple[BinaryIO, int]]:
    """Yields (binary file, size in bytes) of a regular file, or raises a GolfpackError naming the file."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise GolfpackError(f"{path}: no such file or directory") from None
    except OSError as e:
        raise GolfpackError(f"{path}: cannot open {what}: {e.strerror or type(e).__name__}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FormatError(f"{path}: {what} must be a regular file, but it is {_kind(st.st_mode)}")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with f:
        yield f, st.st_size


def read_regular(path: str | os.PathLike, what: str = "input", limit: int | None = None) -> bytes:
    """The whole of a regular file, refused before reading if it is over `limit` bytes."""
    with open_regular(path, what) as (f, size):
        if limit is not None and size > limit:
            raise FormatError(f"{path}: {what} is {size} bytes, over the {limit}-byte limit")
        data = f.read(size + 1)
    if len(data) != size:
        raise FormatError(f"{path}: {what} changed size while being read")
    return data


def confined_file(folder: Path, name: object, what: str) -> Path:
    """`folder/name` where name is a plain file name and the file, symlinks resolved, is a regular file in folder."""
    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise FormatError(f"{what}: shard name {name!r} must be a plain file name next to the index")
    p = folder / name
    real = Path(os.path.realpath(p))
    if real.parent != Path(os.path.realpath(folder)):
        raise FormatError(f"{what}: shard {name!r} resolves to {real}, outside the index's folder")
    try:
        st = os.stat(real)
    except FileNotFoundError:
        raise FormatError(f"{what}: shard file {name!r} is missing") from None
    except OSError as e:
        raise FormatError(f"{what}: shard {name!r}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise FormatError(f"{what}: shard {name!r} must be a regular file, but it is {_kind(st.st_mode)}")
    return real


__all__ = ["open_regular", "read_regular", "confined_file"]
