"""The one way golfpack writes an output file: exclusively created temp, fsync, atomic rename.

`atomic_output(path, inputs=...)` yields a binary file object. What it guarantees:

- the output never overwrites an input (`decode X.tmp -o X.tmp` is refused; `decode X.tmp -o X` is
  fine: the temp name is fresh and created with O_EXCL, so it is never an existing file, input or not);
- nothing is written through a symlink: the temp is opened with O_EXCL | O_NOFOLLOW, and the final
  rename replaces a symlink at `path` rather than following it;
- readers see the old file or the whole new one: data is fsync'ed before the rename, and the folder
  after it;
- on any failure (an exception while writing, a full disk, a signal turned into KeyboardInterrupt)
  the temp is removed and `path` is untouched;
- every OSError becomes one GolfpackError line naming the path and the reason.
"""
from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from golfpack.errors import GolfpackError

_TEMP_PREFIX = ".golfpack-tmp-"  # short: a 255-byte output name must still leave room for a temp name


def oserror_line(e: OSError, path: str | os.PathLike | None = None) -> str:
    """One line for an OSError: '<path>: <reason>' (errno's text, not Python's repr)."""
    where = e.filename if e.filename is not None else path
    reason = e.strerror or type(e).__name__
    return f"{where}: {reason}" if where is not None else reason


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output_path(path: str | os.PathLike, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Refuse, before any work, an output that is an input, a folder, or under a missing folder."""
    out = Path(path)
    if not out.name or out.name in (".", ".."):
        raise GolfpackError(f"output {out}: not a file name")
    if len(os.fsencode(out.name)) > 255:  # before any stat: those fail with ENAMETOOLONG
        raise GolfpackError(f"output {str(out)[:120]}...: file name longer than 255 bytes")
    for src in inputs:
        src = Path(src)
        if _same_file(src, out) or os.path.abspath(src) == os.path.abspath(out):
            raise GolfpackError(f"output {out} would overwrite the input {src}; choose another path")
    if out.is_dir() and not out.is_symlink():
        raise GolfpackError(f"output {out} is a directory; give a file path")
    parent = out.parent
    if not parent.exists():
        raise GolfpackError(f"output directory {parent} does not exist")
    if not parent.is_dir():
        raise GolfpackError(f"output directory {parent} is not a directory")
    return out


def _create_temp(parent: Path) -> tuple[int, Path]:
    for _ in range(16):
        tmp = parent / (_TEMP_PREFIX + secrets.token_hex(8))
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o666)
            return fd, tmp
        except FileExistsError:
            continue  # a name taken by anything (a file, a planted symlink): draw another
    raise GolfpackError(f"{parent}: cannot create a fresh temporary file")


def _fsync_dir(parent: Path) -> None:
    try:
        fd = os.open(parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # some filesystems do not open folders; the rename itself is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, inputs: Iterable[str | os.PathLike] = ()) -> Iterator[BinaryIO]:
    """Write `path` atomically (module doc); yields the temp file opened for binary writing."""
    out = check_output_path(path, inputs)
    tmp = None
    try:
        fd, tmp = _create_temp(out.parent)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
        tmp = None
        _fsync_dir(out.parent)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise GolfpackError(f"cannot write {out}: no space left on the device") from None
        raise GolfpackError(f"cannot write {out}: {oserror_line(e, out)}") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def write_bytes(path: str | os.PathLike, data: bytes | bytearray | memoryview,
                inputs: Iterable[str | os.PathLike] = ()) -> int:
    """atomic_output for a whole buffer; returns the bytes written."""
    with atomic_output(path, inputs) as f:
        f.write(data)
    return len(data)


def write_text(path: str | os.PathLike, text: str, inputs: Iterable[str | os.PathLike] = ()) -> int:
    return write_bytes(path, text.encode("utf-8"), inputs)


__all__ = ["atomic_output", "check_output_path", "oserror_line", "write_bytes", "write_text"]
