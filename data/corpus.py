"""Document sources for tokenization: JSON-lines / text corpora and a built-in one.

Documents are streamed one at a time so a corpus never has to fit in memory.

- `*.jsonl[.xz|.gz|.bz2]`: one JSON object per line; the document is obj[text_key].
- `*.txt[.xz|.gz|.bz2]`: one document per non-empty line.
- `stdlib_corpus()`: a corpus that exists on every machine with Python: each
  `.py` file of the standard library is one document, in sorted path order.
  Its content depends on the Python version, so it is for demos and smoke
  tests, not for comparable numbers.
"""
from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import sysconfig
from pathlib import Path
from typing import Iterator

from golfpack.errors import FormatError, GolfpackError

_COMPRESSED = {".xz": lzma.open, ".gz": gzip.open, ".bz2": bz2.open}
_KINDS = (".jsonl", ".json", ".txt")


def corpus_kind_and_stem(path: str | os.PathLike) -> tuple[str, str]:
    """('jsonl' | 'txt', stem without the format/compression suffixes) of a corpus path."""
    name = Path(path).name
    for comp in _COMPRESSED:
        if name.endswith(comp):
            name = name[: -len(comp)]
            break
    for kind in _KINDS:
        if name.endswith(kind):
            return ("txt" if kind == ".txt" else "jsonl"), name[: -len(kind)]
    raise GolfpackError(
        f"{path}: unknown corpus format; expected .jsonl or .txt, optionally .xz/.gz/.bz2"
    )


def _open_text(path: Path) -> io.TextIOBase:
    opener = _COMPRESSED.get(path.suffix)
    if opener is None:
        return open(path, "rt", encoding="utf-8", newline="")
    return opener(path, "rt", encoding="utf-8", newline="")


def iter_documents(
    path: str | os.PathLike, *, text_key: str = "text", max_docs: int | None = None
) -> Iterator[str]:
    """Yield the documents of a corpus file in file order (at most max_docs)."""
    path = Path(path)
    kind, _ = corpus_kind_and_stem(path)
    if not path.is_file():
        raise GolfpackError(f"corpus not found: {path}")
    if max_docs is not None and max_docs <= 0:
        return
    n = 0
    try:
        with _open_text(path) as f:
            for lineno, line in enumerate(f, 1):
                if kind == "txt":
                    text = line.rstrip("\r\n")
                    if not text.strip():
                        continue
                else:
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise FormatError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
                    except (ValueError, RecursionError) as e:
                        # a 5000-digit integer (int conversion limit) or thousands of nested brackets:
                        # one line naming the place, not a traceback. The corpus text itself is not
                        # bounded further (golfpack.safe_json would also refuse lone surrogates, which
                        # real corpora may contain and the shard tests reproduce byte for byte).
                        what = "nested too deeply" if isinstance(e, RecursionError) else str(e).split(";")[0]
                        raise FormatError(f"{path}:{lineno}: invalid JSON ({what})") from None
                    if not isinstance(obj, dict) or text_key not in obj:
                        raise FormatError(f"{path}:{lineno}: no {text_key!r} field in JSON object")
                    text = obj[text_key]
                    if not isinstance(text, str):
                        raise FormatError(
                            f"{path}:{lineno}: field {text_key!r} is {type(text).__name__}, not a string"
                        )
                yield text
                n += 1
                if max_docs is not None and n >= max_docs:
                    return
    except UnicodeDecodeError as e:
        raise FormatError(f"{path}: not valid UTF-8 text ({e.reason} at byte {e.start})") from None
    except (lzma.LZMAError, EOFError, OSError) as e:
        if isinstance(e, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise
        raise FormatError(f"{path}: cannot decompress/read corpus ({e})") from None


def count_documents(path: str | os.PathLike, *, text_key: str = "text", max_docs: int | None = None) -> int:
    return sum(1 for _ in iter_documents(path, text_key=text_key, max_docs=max_docs))


def _stdlib_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise GolfpackError(f"Python standard library not found at {root}")
    skip_dirs = {"site-packages", "dist-packages", "__pycache__", "test", "tests", "idle_test"}
    files = []
    for p in root.rglob("*.py"):
        rel = p.relative_to(root)
        if any(part in skip_dirs for part in rel.parts[:-1]):
            continue  # third-party packages and test data (odd encodings, fixtures) stay out
        files.append(p)
    # Sort by the relative POSIX path so the order is the same on every filesystem.
    files.sort(key=lambda p: p.relative_to(root).as_posix())
    return files


def stdlib_corpus(*, max_docs: int | None = None, max_bytes: int | None = None) -> Iterator[str]:
    """Documents made from the Python standard library's own sources, deterministic order.

    Each `.py` file (outside site-packages and test folders) is one document.
    Files that are not valid UTF-8 are skipped. Stops after max_docs documents or
    once max_bytes UTF-8 bytes have been yielded (the document that crosses the
    cap is included whole).
    """
    n_docs = 0
    n_bytes = 0
    for p in _stdlib_files():
        if max_docs is not None and n_docs >= max_docs:
            return
        if max_bytes is not None and n_bytes >= max_bytes:
            return
        try:
            text = p.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if not text.strip():
            continue
        n_docs += 1
        n_bytes += len(text.encode("utf-8"))
        yield text
