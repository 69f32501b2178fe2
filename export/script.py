"""The self-extracting `train_gpt.py` of a record.

    runtime templates --select(flags)--> one Python source --minify--> --LZMA--> --base85--> stub

The stub is one line, `import lzma,base64;exec(lzma.decompress(base64.b85decode(b'...')))`:
LZMA and base85 are in Python's standard library, so the script runs where only torch, numpy and
sentencepiece are installed. The bytes counted are the file's bytes: `script_bytes(...)` builds
the script and measures it, so a planner that reserves `len(build_script(...))` reserves exactly
what the record ships.
"""
from __future__ import annotations

import base64
import lzma
from dataclasses import dataclass
from importlib import resources

from golfpack.errors import GolfpackError
from golfpack.export import minify as _minify
from golfpack.export.needs import ALL_FLAGS
from golfpack.export.preprocess import flags_used, select

# Concatenated in this order into one module.
RUNTIME_FILES = ("decode.py", "model.py", "evaluate.py", "ttt.py", "main.py")
STUB = "import lzma,base64;exec(lzma.decompress(base64.b85decode(b'{}')))\n"
# With --train-script the eval side runs in a namespace of its own, after the user's code.
STUB_APPENDED = ("import lzma,base64;exec(lzma.decompress(base64.b85decode(b'{}')),"
                 "{{'__file__':__file__,'__name__':'__main__'}})\n")
LZMA_FILTERS = [{"id": lzma.FILTER_LZMA1, "preset": 9 | lzma.PRESET_EXTREME, "lc": 1, "lp": 0, "pb": 0}]


@dataclass(frozen=True)
class Settings:
    """What the script does besides decoding: defaults the environment can override."""

    artifact: str = "model.gp"  # file name, beside the script
    eval_mode: str = "sliding"  # plain | sliding | doc-aware (EVAL_MODE)
    seq_len: int = 1024  # VAL_SEQ_LEN
    stride: int | None = 64  # EVAL_STRIDE (sliding / doc-aware sliding)
    ttt: dict | None = None  # the resolved TTTConfig of --ttt lora, or None
    config: dict | None = None  # a GPTConfig dict when the artifact carries none


def runtime_source(patch=None) -> str:
    """Every runtime template, concatenated (all blocks; `patch(text)` edits it, for tests)."""
    pkg = resources.files("golfpack.export") / "runtime"
    text = "".join((pkg / f).read_text(encoding="utf-8") + "\n" for f in RUNTIME_FILES)
    return patch(text) if patch else text


def script_source(flags, settings: Settings, patch=None) -> str:
    """The runtime as one Python program for these flags and settings, before minifying."""
    flags = frozenset(flags)
    unknown = flags - ALL_FLAGS
    if unknown:
        raise GolfpackError(f"unknown runtime flags {sorted(unknown)}")
    text = runtime_source(patch)
    stray = flags_used(text) - ALL_FLAGS
    if stray:  # a template names a flag nothing sets: a typo would silently drop a block
        raise GolfpackError(f"runtime templates use unknown flags {sorted(stray)}")
    consts = (f"ARTIFACT={settings.artifact!r}\nMODE={settings.eval_mode!r}\nSEQ={int(settings.seq_len)!r}\n"
              f"STRIDE={settings.stride!r}\nTTT={settings.ttt!r}\nCFG={settings.config!r}\n")
    return consts + select(text, flags, "runtime")


def payload(source: str) -> bytes:
    """base85 of the LZMA (raw LZMA1, literal context 1 bit) stream of the minified source."""
    packed = lzma.compress(_minify.minify(source).encode("utf-8"), format=lzma.FORMAT_ALONE,
                           filters=LZMA_FILTERS)
    return base64.b85encode(packed)


def build_script(flags, settings: Settings, train_script: bytes | None = None, patch=None) -> bytes:
    """The bytes of train_gpt.py: the stub around the payload, after the user's script if given."""
    body = payload(script_source(flags, settings, patch)).decode("ascii")
    if train_script is None:
        return STUB.format(body).encode("ascii")
    head = train_script if train_script.endswith(b"\n") else train_script + b"\n"
    return head + STUB_APPENDED.format(body).encode("ascii")


def script_bytes(flags, settings: Settings, train_script: bytes | None = None) -> int:
    """len(build_script(...)): the code bytes a record with these needs counts."""
    return len(build_script(flags, settings, train_script))
