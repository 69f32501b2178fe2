"""Token shards in the parameter-golf `fineweb_*.bin` layout.

Layout: 256 little-endian int32 header words ([0] = 20240520 magic, [1] = 1
version, [2] = token count n, the rest 0) followed by n little-endian uint16
token ids. A file whose size is not exactly 1024 + 2n is rejected, as the
challenge's `load_data_shard` does: a truncated download must never be read as
a shorter stream.
"""
from __future__ import annotations

import glob as _glob
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from golfpack.errors import FormatError, GolfpackError

SHARD_MAGIC = 20240520
SHARD_VERSION = 1
HEADER_WORDS = 256
HEADER_BYTES = HEADER_WORDS * 4

_HEADER_DTYPE = np.dtype("<i4")
_TOKEN_DTYPE = np.dtype("<u2")


def _parse_header(path: Path, raw: bytes, file_size: int) -> int:
    """Validate a shard header and the file size; return the token count."""
    if len(raw) < HEADER_BYTES:
        raise FormatError(
            f"{path}: not a token shard: {file_size} bytes is shorter than the "
            f"{HEADER_BYTES}-byte header"
        )
    header = np.frombuffer(raw[:HEADER_BYTES], dtype=_HEADER_DTYPE)
    if int(header[0]) != SHARD_MAGIC:
        raise FormatError(
            f"{path}: not a token shard: magic {int(header[0])} != {SHARD_MAGIC}"
        )
    if int(header[1]) != SHARD_VERSION:
        raise FormatError(
            f"{path}: unsupported shard version {int(header[1])} (expected {SHARD_VERSION})"
        )
    n = int(header[2])
    if n < 0:
        raise FormatError(f"{path}: negative token count {n} in shard header")
    expected = HEADER_BYTES + 2 * n
    if file_size != expected:
        raise FormatError(
            f"{path}: shard size mismatch: header says {n} tokens, so expected "
            f"{expected} bytes, but the file has {file_size} bytes"
        )
    return n


def shard_num_tokens(path: str | os.PathLike) -> int:
    """Token count of a shard, validated against the file size, without reading the body."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(HEADER_BYTES)
    return _parse_header(path, raw, size)


def read_shard(path: str | os.PathLike, *, mmap: bool = True) -> np.ndarray:
    """Tokens of one shard as a uint16 array.

    With mmap=True (default) the result is a read-only np.memmap, so a 100 M
    token shard costs no RAM until it is touched; mmap=False reads it into memory.
    """
    path = Path(path)
    if path.is_dir():
        raise GolfpackError(f"{path}: is a directory, expected a token shard file")
    n = shard_num_tokens(path)
    if n == 0:
        return np.zeros(0, dtype=np.uint16)
    if mmap:
        arr = np.memmap(path, dtype=_TOKEN_DTYPE, mode="r", offset=HEADER_BYTES, shape=(n,))
    else:
        with open(path, "rb") as f:
            f.seek(HEADER_BYTES)
            arr = np.fromfile(f, dtype=_TOKEN_DTYPE, count=n)
        if arr.size != n:  # the file shrank between stat and read
            raise FormatError(f"{path}: truncated while reading: got {arr.size} of {n} tokens")
    # '<u2' and np.uint16 are the same type on little-endian hosts; make it explicit elsewhere.
    return arr if arr.dtype == np.uint16 else arr.astype(np.uint16)


def write_shard(path: str | os.PathLike, tokens: Sequence[int] | np.ndarray) -> int:
    """Write tokens as a shard, atomically (temp file in the same folder + rename).

    Returns the number of bytes written. Tokens must be integers in [0, 65535].
    """
    path = Path(path)
    arr = np.asarray(tokens)
    if arr.ndim != 1:
        raise GolfpackError(f"write_shard: tokens must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise GolfpackError(f"write_shard: tokens must be integers, got dtype {arr.dtype}")
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 0xFFFF:
            raise GolfpackError(
                f"write_shard: token ids must fit uint16 [0, 65535], got range [{lo}, {hi}]"
            )
    if arr.size > np.iinfo(np.int32).max:
        raise GolfpackError(f"write_shard: {arr.size} tokens exceed the int32 header count")
    header = np.zeros(HEADER_WORDS, dtype=_HEADER_DTYPE)
    header[0], header[1], header[2] = SHARD_MAGIC, SHARD_VERSION, arr.size
    body = arr.astype(_TOKEN_DTYPE, copy=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    from golfpack.output import atomic_output

    with atomic_output(path) as f:
        f.write(header.tobytes())
        f.write(body.tobytes())
    return HEADER_BYTES + 2 * arr.size


class ShardWriter:
    """Streams tokens into a shard without holding them all in memory.

    The body goes to a temp file first; `close()` writes the header (whose count
    is only known at the end) and renames into place. On error the temp file is
    removed and the destination is untouched.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        from golfpack.output import atomic_output

        self._out = atomic_output(self.path)  # exclusive temp, fsync + rename on close, removed on abort
        self._f = self._out.__enter__()
        self._f.write(b"\0" * HEADER_BYTES)  # placeholder, rewritten on close
        self.num_tokens = 0

    def write(self, tokens: Sequence[int] | np.ndarray) -> None:
        arr = np.asarray(tokens, dtype=np.int64)
        if arr.size:
            lo, hi = int(arr.min()), int(arr.max())
            if lo < 0 or hi > 0xFFFF:
                raise GolfpackError(
                    f"token ids must fit uint16 [0, 65535], got range [{lo}, {hi}]"
                )
        self._f.write(arr.astype(_TOKEN_DTYPE).tobytes())
        self.num_tokens += int(arr.size)

    def close(self) -> int:
        if self.num_tokens > np.iinfo(np.int32).max:
            self.abort()
            raise GolfpackError(f"{self.num_tokens} tokens exceed the int32 header count")
        header = np.zeros(HEADER_WORDS, dtype=_HEADER_DTYPE)
        header[0], header[1], header[2] = SHARD_MAGIC, SHARD_VERSION, self.num_tokens
        self._f.seek(0)
        self._f.write(header.tobytes())
        out, self._out = self._out, None
        out.__exit__(None, None, None)
        return HEADER_BYTES + 2 * self.num_tokens

    def abort(self) -> None:
        out, self._out = self._out, None
        if out is not None:  # closes and removes the temp; the destination is untouched
            try:
                out.__exit__(GolfpackError, GolfpackError("aborted"), None)
            except GolfpackError:
                pass

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def resolve_shards(paths_or_glob: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Expand a glob / directory / list into a sorted list of shard paths.

    A directory means every `*.bin` in it. A glob that matches nothing is an error
    (a typo must not train on zero data).
    """
    if isinstance(paths_or_glob, (str, os.PathLike)):
        items = [paths_or_glob]
    else:
        items = list(paths_or_glob)
    out: list[Path] = []
    for item in items:
        s = os.fspath(item)
        p = Path(s)
        if p.is_dir():
            found = sorted(p.glob("*.bin"))
            if not found:
                raise GolfpackError(f"{p}: directory holds no *.bin shards")
            out.extend(found)
        elif any(ch in s for ch in "*?["):
            found = sorted(Path(m) for m in _glob.glob(s))
            if not found:
                raise GolfpackError(f"no shard matches {s!r}")
            out.extend(found)
        else:
            if not p.exists():
                raise GolfpackError(f"shard not found: {p}")
            out.append(p)
    if not out:
        raise GolfpackError("no shards given")
    return out


def read_shards(paths_or_glob: str | os.PathLike | Iterable[str | os.PathLike]) -> np.ndarray:
    """All tokens of the given shards (sorted glob order), concatenated in memory."""
    paths = resolve_shards(paths_or_glob)
    parts = [read_shard(p, mmap=True) for p in paths]
    if len(parts) == 1:
        return np.array(parts[0], dtype=np.uint16)
    return np.concatenate(parts).astype(np.uint16, copy=False)
