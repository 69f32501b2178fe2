"""Bounded reading of torch.save files (.pt/.pth/.bin) and the baseline's compressed .ptz.

What a hostile checkpoint can try, and what stops it:

- code in the pickle: torch's weights-only unpickler (`weights_only=True`); golfpack adds nothing to
  its allow-list;
- a storage claim larger than the file: only the zip format (torch >= 1.6) is read. Before torch sees
  the file, every zip entry must be STORED (torch.save never compresses entries) and lie inside the
  file, so no entry can expand. The file is then loaded with ``mmap=True``: storages are views of the
  file, not copies. The legacy format allocates each storage at the size its pickle claims before
  that claim can be checked, so it is refused by name;
- a view that claims more than its storage holds (a stride-0 view of 2^40 elements from a 4-byte
  storage costs 4 TiB when made contiguous), or a view that overlaps itself: every tensor's extent is
  checked against its storage and its strides must not overlap, before any copy;
- exotic tensors: meta, sparse, quantized, nested tensors and tensor subclasses are refused by name,
  as are dtypes outside golfpack's set;
- a decompression bomb in a .ptz: the stream is decompressed in 1 MiB steps into an unlinked temporary
  file, refused the moment it passes MAX_DECOMPRESSED (or if it does not start like a zip), so memory
  stays at a small constant however far it expands; the temporary file is then read as above.
"""
from __future__ import annotations

import contextlib
import lzma
import os
import tempfile
import warnings
import zipfile
import zlib
from pathlib import Path

import torch

from golfpack.errors import FormatError, GolfpackError
from golfpack.input_files import open_regular

MAX_DECOMPRESSED = 1 << 33  # 8 GiB: the format's 2^30 elements at 8 bytes each; far below a bomb's goal
_CHUNK = 1 << 20
XZ_MEMLIMIT = 1 << 27  # 128 MiB: xz -9's 64 MiB dictionary fits; a frame claiming 1.5 GiB does not
ZIP_MAGIC = b"PK\x03\x04"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
XZ_MAGIC = b"\xfd7zXZ\x00"

# dtypes a checkpoint tensor may have (the safetensors set: what golfpack stores and writes).
ALLOWED_DTYPES = frozenset({
    torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16,
    torch.int8, torch.uint8, torch.bool,
} | ({torch.float8_e4m3fn, torch.float8_e5m2} if hasattr(torch, "float8_e4m3fn") else set()))


def _first_line(e: BaseException) -> str:
    """The part of torch's message that says what was refused, never its advice to drop weights_only.

    torch's weights-only errors start with a paragraph on how to load the file anyway (weights_only=False,
    which runs the pickle's code); the line that names the refused global or op comes later."""
    text = str(e).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if "WeightsUnpickler error" in ln or "Unsupported" in ln:
            # torch goes on to say how to allow the global; golfpack never does, so stop before that
            return ln.replace("WeightsUnpickler error: ", "").split(" Please use")[0].split(" Check the")[0][:200]
    keep = [ln for ln in lines if "weights_only" not in ln and "trust" not in ln.lower() and "torch.load" not in ln]
    return (keep[0] if keep else type(e).__name__)[:200]


def check_zip(f, size: int, where: str) -> None:
    """Every entry STORED and inside the file, in a zip that Python's zipfile reads (torch's reader agrees)."""
    try:
        with zipfile.ZipFile(f) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError, NotImplementedError) as e:
        raise FormatError(f"{where}: not a readable torch.save zip ({str(e)[:120] or type(e).__name__})") from None
    total = 0
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED:
            raise FormatError(f"{where}: zip entry {info.filename[:80]!r} is compressed (method {info.compress_type}); "
                              "torch.save stores entries uncompressed")
        if info.file_size != info.compress_size or info.header_offset + info.file_size > size:
            raise FormatError(f"{where}: zip entry {info.filename[:80]!r} claims {info.file_size} bytes beyond the "
                              f"{size}-byte file")
        total += info.file_size
    if total > size:
        raise FormatError(f"{where}: zip entries claim {total} bytes in a {size}-byte file")


def _overlaps(sizes, strides) -> bool:
    """True if two different indices of a strided view can address the same element (stride 0 included)."""
    dims = sorted((st, sz) for sz, st in zip(sizes, strides) if sz > 1)
    need = 1
    for st, sz in dims:
        if st < need:
            return True
        need = st * sz
    return False


def check_tensor(t, name: str, where: str) -> None:
    """Refuse, by name, any tensor that is not a plain dense CPU tensor within its storage."""
    if type(t) not in (torch.Tensor, torch.nn.Parameter):
        raise FormatError(f"{where}: tensor {name!r} is a {type(t).__name__} (a tensor subclass); only plain tensors are read")
    if t.is_nested:
        raise FormatError(f"{where}: tensor {name!r} is a nested tensor; only dense tensors are read")
    if t.layout != torch.strided:
        raise FormatError(f"{where}: tensor {name!r} has layout {t.layout} (sparse); only dense tensors are read")
    if t.is_quantized:
        raise FormatError(f"{where}: tensor {name!r} is a torch quantized tensor ({t.dtype}); only plain dtypes are read")
    if t.device.type != "cpu":
        raise FormatError(f"{where}: tensor {name!r} is on device {t.device.type!r} (meta tensors hold no data)")
    if t.dtype not in ALLOWED_DTYPES:
        raise FormatError(f"{where}: tensor {name!r} has dtype {t.dtype}, not one golfpack reads")
    sizes, strides = list(t.shape), list(t.stride())
    if 0 in sizes:
        return
    if any(s < 0 for s in strides):
        raise FormatError(f"{where}: tensor {name!r} has negative strides {strides}")
    item = t.element_size()
    extent = (t.storage_offset() + sum((sz - 1) * st for sz, st in zip(sizes, strides)) + 1) * item
    have = t.untyped_storage().nbytes()
    if extent > have:
        raise FormatError(f"{where}: tensor {name!r} (shape {sizes}, stride {strides}) reaches byte {extent} of a "
                          f"{have}-byte storage")
    if _overlaps(sizes, strides):
        raise FormatError(f"{where}: tensor {name!r} is an overlapping view (shape {sizes}, stride {strides}): "
                          f"{t.numel()} elements from a {have}-byte storage")


def _load_zip_file(path: Path, where: str):
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        check_zip(f, size, where)
    try:
        # torch warns while unpickling some of what check_tensor then refuses (sparse CSR is "beta",
        # quantized and TypedStorage are "deprecated"): noise on stderr before the one error line, and
        # about torch, not the file. The refusal names the tensor and its kind.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # torch raises many types for bad pickles; report one clear line
        if "resize storage that is not resizable" in str(e):
            # a view that reaches past its storage: torch would grow the storage, which a mapped file cannot
            raise FormatError(f"{where}: a tensor's view reaches past the end of its storage (refused by the "
                              "weights-only torch loader, which maps storages from the file)") from None
        raise FormatError(f"{where}: refused by the weights-only torch loader ({_first_line(e)})") from None


def load_torch_file(path: Path):
    """The object a .pt/.pth/.bin file holds (see the module doc)."""

    with open_regular(path, "torch checkpoint") as (f, _size):
        magic = f.read(4)
    if magic != ZIP_MAGIC:
        raise FormatError(f"{path}: not a torch.save zip file; the legacy (pre-zip, torch < 1.6) format and plain "
                          "pickles are not read, since they allocate storages before their sizes can be checked "
                          "(re-save it with torch.save in a current torch)")
    return _load_zip_file(path, str(path))


def decompress_to_file(src, out, where: str, cap: int = MAX_DECOMPRESSED) -> int:
    """Stream-decompress the open file `src` (zlib, zstd or xz, by magic) into `out`, refusing past `cap` bytes.

    Memory stays at a few MiB whatever the ratio: output is taken at most 1 MiB per call (zlib and xz
    `max_length`, zstd's stream reader), input 64 KiB at a time. zstd's window is limited to the
    library default (128 MiB), which a frame cannot raise. The first bytes out must be a zip's (what
    torch.save writes), so a bomb of zeros is refused after one step, not after the cap."""
    head = src.read(6)
    src.seek(0)
    kind = "zstd" if head[:4] == ZSTD_MAGIC else "xz" if head[:6] == XZ_MAGIC else "zlib"
    total = 0

    def emit(chunk: bytes) -> None:
        nonlocal total
        if total == 0 and chunk and bytes(chunk[:4]) != ZIP_MAGIC[: len(chunk[:4])]:
            raise FormatError(f"{where}: decompressed {kind} data is not a torch.save zip "
                              f"(it starts with {bytes(chunk[:4])!r})")
        total += len(chunk)
        if total > cap:
            raise FormatError(f"{where}: decompresses to more than {cap} bytes (the cap); refused as a decompression bomb")
        out.write(chunk)

    if kind == "zstd":
        import zstandard

        try:
            with zstandard.ZstdDecompressor().stream_reader(src, read_size=1 << 16, closefd=False) as r:
                while True:
                    chunk = r.read(_CHUNK)
                    if not chunk:
                        break
                    emit(chunk)
        except zstandard.ZstdError as e:
            raise FormatError(f"{where}: not valid zstd-compressed data ({str(e)[:120]})") from None
    else:
        d = zlib.decompressobj() if kind == "zlib" else lzma.LZMADecompressor(memlimit=XZ_MEMLIMIT)
        err = zlib.error if kind == "zlib" else lzma.LZMAError
        try:
            while not d.eof:
                if kind == "zlib":
                    data = d.unconsumed_tail or src.read(1 << 16)
                    chunk = d.decompress(data, _CHUNK)
                else:
                    data = src.read(1 << 16) if d.needs_input else b""
                    chunk = d.decompress(data, max_length=_CHUNK)
                emit(chunk)
                if not data and not chunk:
                    break  # input exhausted and nothing pending: truncated
        except err as e:
            what = "not a zlib/zstd/xz-compressed checkpoint" if kind == "zlib" else f"not valid {kind}-compressed data"
            raise FormatError(f"{where}: {what} ({str(e)[:120]})") from None
        if not d.eof:
            raise FormatError(f"{where}: compressed data is truncated")
    if total < 4:
        raise FormatError(f"{where}: decompressed {kind} data is not a torch.save zip ({total} bytes)")
    return total


def load_compressed_file(path: Path, cap: int | None = None):
    """The object a .ptz (zlib/zstd/xz of torch.save) holds, decompressed through a temp file (module doc)."""

    cap = MAX_DECOMPRESSED if cap is None else cap
    fd, tmp = tempfile.mkstemp(prefix="golfpack-ptz-", suffix=".pt")
    try:
        with os.fdopen(fd, "w+b") as out:
            with open_regular(path, "compressed checkpoint") as (src, _size):
                try:
                    decompress_to_file(src, out, str(path), cap)
                except OSError as e:
                    raise GolfpackError(f"{path}: cannot decompress into {tmp}: {e.strerror}") from None
            out.flush()
        return _load_zip_file(Path(tmp), str(path))
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)  # mmap'ed storages keep the data alive until they are freed


__all__ = ["MAX_DECOMPRESSED", "ALLOWED_DTYPES", "check_tensor", "check_zip", "load_torch_file",
           "load_compressed_file", "decompress_to_file"]
