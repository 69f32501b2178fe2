"""An estimate of golfpack's whole decode + run source, compressed (`python -m golfpack.codec.code_bytes`).

Note: `--code-bytes auto` no longer uses this module. It reserves the exact size of the record
script `golfpack export` writes (golfpack.export.plan.reserve; issue 22), which carries only what
one artifact needs and runs without golfpack. What follows counts golfpack's own package source
(Python and C++) the same way, as a reference for what a record that shipped golfpack would cost.

The challenge limit is code bytes + compressed model bytes <= 16,000,000. The
code that counts is the source that must ship with the artifact to use it.
Competitors count a self-extracting form of their training/eval script: the
source minified, compressed (brotli-11 or LZMA), base85-encoded (+25%) and
wrapped in a two-line exec stub (e.g. 157,868 B of source -> 31,999 B counted).
`--code-bytes auto` counts golfpack the same way.

What is counted
---------------
The source that *decoding an artifact and running the model* needs, i.e. the
path from artifact bytes to a model that produces logits, dense
(`golfpack.model.load.load`) or bit-packed
(`golfpack.evaluate.packed_model.load_packed`):

* Python, `RUNTIME_SOURCES` (package-relative, in this order): the golfpack
  package root and its error / bounded-JSON helpers, the checkpoint reader
  (`read_checkpoint` turns an artifact into a Checkpoint for the dense loader;
  it imports the safetensors reader unconditionally), the container parser,
  the stream coders and dequantization schemes, the model (config, layers,
  GPT, loader, packed layers) and `evaluate/packed_model.py`. The list is
  explicit; tests/test_code_bytes.py checks it against the golfpack modules a
  fresh interpreter actually loads when it reads an artifact, builds both
  models and runs them, and against every golfpack import statement (lazy
  ones included) in the listed files, so it cannot silently go stale.
* C++, `NATIVE_SOURCES`: every source of the native extension `golfpack._C`
  (csrc/core/*.{cpp,h}, the kernels without Python, and csrc/py/*.{cpp,h}, the pybind11 glue:
  bit-packing and rANS for decoding, the
  dequant-matmul for packed layers, the encoder's GPTQ column loop, module.cpp). All of them are compiled into
  the one extension the runtime imports. The CUDA kernels (csrc/core/cuda/) are
  counted only with `include_cuda=True`.

What is not counted, and why
----------------------------
* The evaluator (val_loss / val_bpb scoring: evaluate/bpb.py, windows.py,
  distributed.py, and the tokenizer byte tables data/bytes.py). Every
  competitor's script carries the challenge's eval harness too, but what
  golfpack adds to a submission, and what we count, is decode + run.
  `include_eval=True` adds those files (and evaluate/__init__.py, whose only
  content is re-exports of them) for users who want to count them.
  Note: `import golfpack.evaluate.packed_model` executes evaluate/__init__.py,
  which imports the scoring modules; they are loaded but not needed, and the
  staleness test checks the runtime list with that package __init__ bypassed.
* The encoder, planner, quantizers, training, data preparation and the CLIs.
* Third-party code (torch, numpy, zstandard, brotli, pybind11) and the build
  files (CMakeLists.txt, pyproject.toml).

How it is counted
-----------------
1. Minify. Python: parse with `ast`, drop docstrings (a string constant as the
   first statement of a module, class or function, and any string statement
   right after it; a body left empty becomes `pass`) and `ast.unparse` (which also drops comments and normalizes
   layout). Nothing is renamed. C++: `//` and `/* */` comments removed (a
   block comment becomes one space, as in translation phase 3) by a small
   state machine that leaves string, character and raw-string literals
   intact, then trailing whitespace and blank lines are dropped.
2. Concatenate, in list order (Python first, then C++): for each file a
   header line `#--- <path>\\n` and its minified text (ending in a newline).
   Python paths are package-relative (`codec/container.py`), C++ paths are
   `csrc/<name>`, whatever the install layout.
3. Compress the UTF-8 bytes with brotli, quality 11, lgwin 24, and encode
   with `base64.b85encode`.
4. Add the bytes of `STUB`, a fixed two-line self-extractor that decodes the
   payload and writes the files back out (`self_extracting_script` builds the
   whole thing; running it in a directory recreates every minified file).

    total = len(b85(brotli(archive))) + len(STUB without its payload slot)

`code_bytes_auto()` returns a `CodeBytes` with the breakdown (raw source
bytes, minified archive bytes, brotli bytes, base85 bytes, stub bytes, files).
The result is deterministic for a given golfpack source, Python version
(`ast.unparse` output) and brotli version. `python -m golfpack.codec.code_bytes`
prints it.

Where the C++ sources come from
-------------------------------
An installed golfpack (`pip install .`) carries them in `golfpack/_csrc/`
(CMakeLists.txt installs csrc/ there); an editable install reads the checkout's
`csrc/` (`Path(golfpack.__file__).parents[2] / "csrc"`). If neither exists
this raises GolfpackError.
"""
from __future__ import annotations

import ast
import base64
import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from golfpack.errors import GolfpackError

# Decode + run: artifact bytes -> logits, dense or packed (see the module docstring).
RUNTIME_SOURCES: tuple[str, ...] = (
    "__init__.py",
    "errors.py",
    "safe_json.py",
    "codec/__init__.py",
    "codec/schemes.py",
    "codec/rans_rc.py",
    "codec/coders.py",
    "codec/container.py",
    "safetensors_io.py",
    "input_files.py",  # the bounded readers (issue 20) every input path goes through
    "torch_reader.py",
    "output.py",  # atomic writes; container.write_artifact uses it
    "checkpoint.py",
    "model/config.py",
    "model/layers.py",
    "model/gpt.py",
    "model/load.py",
    "model/__init__.py",
    "model/packed.py",
    "evaluate/packed_model.py",
)

# The val_loss / val_bpb scoring code, counted only with include_eval=True.
EVAL_SOURCES: tuple[str, ...] = (
    "evaluate/distributed.py",
    "evaluate/windows.py",
    "evaluate/bpb.py",
    "evaluate/__init__.py",
    "data/bytes.py",
)

# The native extension golfpack._C: every csrc/core/*.{h,cpp} (the kernels, no Python) and
# csrc/py/*.{h,cpp} (the pybind11 glue), all compiled into it.
NATIVE_SOURCES: tuple[str, ...] = (
    "csrc/core/common.h",
    "csrc/core/cpu.cpp",
    "csrc/core/bitpack.h",
    "csrc/core/bitpack.cpp",
    "csrc/core/rans.h",
    "csrc/core/rans.cpp",
    "csrc/core/rans_avx2.cpp",
    "csrc/core/rans_avx512.cpp",
    "csrc/core/rans_rows.h",
    "csrc/core/rans_rows.cpp",
    "csrc/core/rans_ctx.h",
    "csrc/core/rans_ctx.cpp",
    "csrc/core/rans_x32.h",
    "csrc/core/rans_x32.cpp",
    "csrc/core/rans_x32_avx2.cpp",
    "csrc/core/rans_x32_avx512.cpp",
    "csrc/core/rans_x32_rows.cpp",
    "csrc/core/rows_slot.h",
    "csrc/core/crc32.h",
    "csrc/core/crc32.cpp",
    "csrc/core/gptq.h",
    "csrc/core/gptq.cpp",
    "csrc/core/qmatmul.h",
    "csrc/core/qgemm.h",
    "csrc/core/qmatmul.cpp",
    "csrc/core/qmatmul_small.h",
    "csrc/py/byteview.h",
    "csrc/py/batch_results.h",
    "csrc/py/arena.h",
    "csrc/py/bitpack_py.cpp",
    "csrc/py/rans_py.cpp",
    "csrc/py/rans_rows_py.cpp",
    "csrc/py/rans_ctx_py.cpp",
    "csrc/py/rans_x32_py.cpp",
    "csrc/py/crc32_py.cpp",
    "csrc/py/gptq_py.cpp",
    "csrc/py/qmatmul_py.cpp",
    "csrc/py/module.cpp",
)

# CUDA kernels, counted only with include_cuda=True.
CUDA_SOURCES: tuple[str, ...] = (
    "csrc/core/cuda/qmatmul.cuh",
    "csrc/core/cuda/qmatmul.cu",
)

# The self-extractor: two lines; the base85 payload goes where {payload} is (the b85
# alphabet has no quote or backslash, so it sits in the bytes literal unescaped).
STUB = (
    "import brotli,base64,os,re\n"
    "for p,s in re.findall(r'(?ms)^#--- (\\S+)\\n(.*?)(?=^#--- |\\Z)',brotli.decompress(base64.b85decode(b'{payload}')).decode()):"
    "os.makedirs(os.path.dirname(p)or'.',exist_ok=1);open(p,'w').write(s)\n"
)
_SLOT = "{payload}"
STUB_BYTES = len(STUB.replace(_SLOT, "").encode())

BROTLI_QUALITY = 11
BROTLI_LGWIN = 24


@dataclass(frozen=True)
class CodeBytes:
    """The counted code bytes and their breakdown.

    total             compressed_bytes + stub_bytes: what --code-bytes auto counts
    raw_bytes         the source files as they are on disk, summed
    minified_bytes    the concatenated minified archive (headers included)
    compressed_bytes  base85 text of the brotli-11 archive
    stub_bytes        the two-line self-extracting stub around it
    files             the files counted, in archive order
    brotli_bytes      the brotli-11 archive before base85
    """

    total: int
    raw_bytes: int
    minified_bytes: int
    compressed_bytes: int
    stub_bytes: int
    files: list[str]
    brotli_bytes: int = 0


# ---------------------------------------------------------------- minifiers


def minify_python(source: str, filename: str = "<source>") -> str:
    """Docstrings and comments dropped, layout normalized by ast.unparse; nothing renamed."""
    from golfpack.export.minify import strip_docstrings

    out = ast.unparse(strip_docstrings(ast.parse(source, filename)))
    return out + "\n" if out else ""


_RAW_PREFIXES = ("R", "u8R", "uR", "UR", "LR")
_NL = "\x00"  # stands for a newline inside a literal while lines are cleaned up


def _ident_before(src: str, i: int) -> str:
    """The identifier / number token (letters, digits, _, ', .) that ends just before src[i]."""
    j = i
    while j > 0 and (src[j - 1].isalnum() or src[j - 1] in "_'."):
        j -= 1
    return src[j:i]


def _skip_quoted(src: str, i: int, quote: str) -> int:
    """Index just past the literal opened by src[i] == quote (escapes honoured).

    An unterminated literal ends at the end of its line (e.g. an apostrophe in an
    #error message), so one stray quote cannot swallow the rest of the file.
    """
    j, n = i + 1, len(src)
    while j < n:
        c = src[j]
        if c == "\\":
            j += 2
        elif c == quote:
            return j + 1
        elif c == "\n":
            return j
        else:
            j += 1
    return n


def strip_cpp_comments(source: str) -> str:
    """C/C++/CUDA source without // and /* */ comments, trailing blanks and blank lines.

    String, character and raw-string literals are copied untouched (a "//" or "/*"
    inside one is not a comment); a digit separator (1'000) is not a character
    literal; a // comment continued by backslash-newline extends to the next line;
    a block comment becomes one space. A blank line that a backslash-newline
    continues onto is kept, so macro definitions keep their extent.
    """
    if _NL in source:
        raise GolfpackError("C++ source contains a NUL character")
    out: list[str] = []
    i, n = 0, len(source)
    while i < n:
        c = source[i]
        two = source[i:i + 2]
        if two == "//":
            j = i + 2
            while j < n and source[j] != "\n":
                if source[j] == "\\" and source[j + 1:j + 2] == "\n":
                    j += 2
                elif source[j] == "\\" and source[j + 1:j + 3] == "\r\n":
                    j += 3
                else:
                    j += 1
            i = j  # the newline itself is kept
        elif two == "/*":
            j = source.find("*/", i + 2)
            if j < 0:
                raise GolfpackError("C++ source has an unterminated /* comment")
            out.append(" ")
            i = j + 2
        elif c == '"':
            if _ident_before(source, i) in _RAW_PREFIXES:
                k = source.find("(", i + 1)
                end = source.find(")" + source[i + 1:k] + '"', k + 1) if k >= 0 else -1
                if end < 0:
                    raise GolfpackError("C++ source has an unterminated raw string literal")
                j = end + (k - i) + 1
            else:
                j = _skip_quoted(source, i, '"')
            out.append(source[i:j].replace("\n", _NL))
            i = j
        elif c == "'":
            token = _ident_before(source, i)
            if token[:1].isdigit():  # digit separator: 1'000'000, 0xFF'FF
                out.append(c)
                i += 1
            else:
                j = _skip_quoted(source, i, "'")
                out.append(source[i:j].replace("\n", _NL))
                i = j
        else:
            out.append(c)
            i += 1
    kept: list[str] = []
    for line in "".join(out).split("\n"):
        line = line.rstrip()
        if not line and not (kept and kept[-1].endswith("\\")):
            continue
        kept.append(line)
    return ("\n".join(kept) + "\n").replace(_NL, "\n") if kept else ""


# ---------------------------------------------------------------- locating sources


def _package_dir() -> Path:
    """The directory of golfpack/__init__.py (site-packages/golfpack or src/golfpack)."""
    import golfpack

    return Path(golfpack.__file__).resolve().parent


def find_csrc() -> Path:
    """Directory holding the native sources: golfpack/_csrc (installed), else the checkout's csrc/."""
    pkg = _package_dir()
    candidates = [pkg / "_csrc"]
    if len(pkg.parents) > 1:
        candidates.append(pkg.parents[1] / "csrc")  # editable: <checkout>/src/golfpack -> <checkout>/csrc
    for c in candidates:
        if (c / "py" / "module.cpp").is_file():
            return c
    raise GolfpackError(
        "cannot find golfpack's C++ sources for --code-bytes auto (looked in "
        + ", ".join(str(c) for c in candidates)
        + "); reinstall golfpack (pip install .) or pass --code-bytes N"
    )


def _python_path(rel: str) -> Path:
    """File of a package-relative Python source, found through the import system (no module is run)."""
    parts = rel.split("/")
    pkg = ".".join(["golfpack", *parts[:-1]])
    try:
        spec = importlib.util.find_spec(pkg)
    except (ImportError, AttributeError, ValueError):  # a parent is a module, not a package
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise GolfpackError(f"cannot find golfpack source {rel} (no package {pkg})")
    for d in spec.submodule_search_locations:
        p = Path(d) / parts[-1]
        if p.is_file():
            return p
    raise GolfpackError(f"cannot find golfpack source {rel}")


def source_files(include_eval: bool = False, include_cuda: bool = False) -> list[tuple[str, Path]]:
    """(archive path, file) of every counted source, in archive order."""
    py = list(RUNTIME_SOURCES) + (list(EVAL_SOURCES) if include_eval else [])
    native = list(NATIVE_SOURCES) + (list(CUDA_SOURCES) if include_cuda else [])
    csrc = find_csrc()
    files = [(rel, _python_path(rel)) for rel in py]
    for rel in native:
        p = csrc / rel[len("csrc/"):]
        if not p.is_file():
            raise GolfpackError(f"cannot find golfpack's C++ source {rel} in {csrc}")
        files.append((rel, p))
    return files


# ---------------------------------------------------------------- the count


def _archive(include_eval: bool, include_cuda: bool) -> tuple[bytes, int, list[str]]:
    chunks, raw, names = [], 0, []
    for rel, path in source_files(include_eval, include_cuda):
        data = path.read_bytes()
        raw += len(data)
        text = data.decode("utf-8")
        mini = minify_python(text, str(path)) if rel.endswith(".py") else strip_cpp_comments(text)
        chunks.append(f"#--- {rel}\n{mini}")
        names.append(rel)
    return "".join(chunks).encode("utf-8"), raw, names


@functools.lru_cache(maxsize=None)
def _measure(include_eval: bool, include_cuda: bool) -> tuple[CodeBytes, bytes]:
    import brotli

    archive, raw, names = _archive(include_eval, include_cuda)
    packed = brotli.compress(archive, quality=BROTLI_QUALITY, lgwin=BROTLI_LGWIN)
    payload = base64.b85encode(packed)
    cb = CodeBytes(
        total=len(payload) + STUB_BYTES,
        raw_bytes=raw,
        minified_bytes=len(archive),
        compressed_bytes=len(payload),
        stub_bytes=STUB_BYTES,
        files=names,
        brotli_bytes=len(packed),
    )
    return cb, payload


def code_bytes_auto(include_eval: bool = False, include_cuda: bool = False) -> CodeBytes:
    """The counted code bytes of golfpack's decode + run source (see the module docstring).

    Cached per arguments for the life of the process.
    """
    cb, _ = _measure(bool(include_eval), bool(include_cuda))
    return CodeBytes(cb.total, cb.raw_bytes, cb.minified_bytes, cb.compressed_bytes, cb.stub_bytes,
                     list(cb.files), cb.brotli_bytes)


def self_extracting_script(include_eval: bool = False, include_cuda: bool = False) -> bytes:
    """The counted form itself: STUB with the payload in place; len() == code_bytes_auto().total."""
    _, payload = _measure(bool(include_eval), bool(include_cuda))
    head, tail = STUB.split(_SLOT)
    return head.encode() + payload + tail.encode()


def parse_code_bytes(text: str) -> int | str:
    """`--code-bytes` value: "auto" or a byte count (golfpack.codec.cli.parse_bytes, the one parser)."""
    from golfpack.codec.cli import parse_bytes

    if isinstance(text, str) and text.strip().lower() == "auto":
        return "auto"
    return parse_bytes(text, "--code-bytes")


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m golfpack.codec.code_bytes",
                                 description="Print what --code-bytes auto counts.")
    ap.add_argument("--include-eval", action="store_true")
    ap.add_argument("--include-cuda", action="store_true")
    ap.add_argument("--files", action="store_true", help="list the files counted")
    a = ap.parse_args()
    cb = code_bytes_auto(a.include_eval, a.include_cuda)
    print(f"code bytes: {cb.total:,} = {cb.compressed_bytes:,} base85 ({cb.brotli_bytes:,} brotli-11) "
          f"+ {cb.stub_bytes} stub; source {cb.raw_bytes:,} raw, {cb.minified_bytes:,} minified, "
          f"{len(cb.files)} files")
    if a.files:
        print("\n".join(cb.files))


if __name__ == "__main__":
    main()
