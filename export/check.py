"""`golfpack check DIR`: what a reviewer checks before trusting a record, in one table.

1. bytes      code (every .py file of the folder) + model (the artifact submission.json names)
              recomputed from the files: <= the cap (16,000,000), and equal to what
              submission.json claims.
2. causal     score-before-update: the record's script is run twice on a prefix of the
              validation shard (EVAL_DUMP writes its per-target losses), the second time with every
              token after position t changed (BOS positions kept, so documents and batches keep
              their shapes). A loss recorded for a target <= t must not change: if it does, the
              evaluation (or its test-time training) used tokens it had not scored yet.
3. leakage    no 64-token window of a validation document appears in the training shards given
              (the challenge's audit found entries training on most validation documents through a
              data-prep default). Windows are compared by a 64-bit polynomial hash; documents
              shorter than 64 tokens are counted as not checked.
Any FAIL makes the exit status non-zero.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from golfpack.errors import GolfpackError
from golfpack.export.record import ARTIFACT_NAME, CAP

WINDOW = 64
_B = np.uint64(0x9E3779B97F4A7C15)  # odd, so invertible mod 2^64


@dataclass
class Row:
    name: str
    ok: bool | None  # None = skipped
    detail: str

    @property
    def status(self) -> str:
        return "SKIP" if self.ok is None else ("PASS" if self.ok else "FAIL")


def check_bytes(folder: Path, cap: int = CAP) -> Row:
    sub_p = folder / "submission.json"
    sub = {}
    if sub_p.is_file():
        try:
            sub = json.loads(sub_p.read_text())
        except ValueError:
            return Row("bytes", False, f"{sub_p} is not JSON")
    art = folder / ((sub.get("golfpack") or {}).get("artifact") or ARTIFACT_NAME)
    if not art.is_file():
        return Row("bytes", False, f"artifact {art.name} not found")
    code_files = sorted(p for p in folder.iterdir() if p.suffix == ".py" and p.is_file())
    if not code_files:
        return Row("bytes", False, "no .py file in the folder")
    code = sum(p.stat().st_size for p in code_files)
    model = art.stat().st_size
    total = code + model
    detail = f"code {code:,} ({', '.join(p.name for p in code_files)}) + model {model:,} = {total:,} of {cap:,}"
    if total > cap:
        return Row("bytes", False, detail + f": {total - cap:,} byte(s) over the cap")
    for key, val in (("bytes_total", total), ("bytes_code", code), ("bytes_model", model)):
        if key in sub and sub[key] != val:
            return Row("bytes", False, detail + f"; submission.json says {key} {sub[key]:,}, the files give {val:,}")
    return Row("bytes", True, detail)


def _shard(path: Path, tokens: np.ndarray) -> None:
    head = np.zeros(256, "<i4")
    head[:3] = (20240520, 1, tokens.size)
    path.write_bytes(head.tobytes() + tokens.astype("<u2").tobytes())


def changed_after(tokens: np.ndarray, t: int, pieces: int, bos: int) -> np.ndarray:
    """tokens with every token after position t replaced by another piece; BOS positions kept."""
    out = tokens.astype(np.int64).copy()
    idx = np.flatnonzero((np.arange(out.size) > t) & (out != bos))
    new = (out[idx] + 1) % pieces
    new[new == bos] = (bos + 1) % pieces
    out[idx] = new
    return out.astype(np.uint16)


def probe_positions(tokens: np.ndarray, sub: dict, bos: int) -> list[int]:
    """Where to cut: inside the first chunk of a document that TTT trains on, and mid-stream."""
    from golfpack.evaluate.windows import document_spans

    n = tokens.size
    out = {n // 2}
    ttt = (sub.get("golfpack") or {}).get("ttt")
    if ttt:
        c = int(ttt["chunk"])
        starts, counts = document_spans(tokens, bos)
        for s, k in zip(starts, counts):
            if k > 2 * c and s + c < n - 1:
                out.add(int(s + c // 2))
                break
    return sorted(out)


def check_causal(folder: Path, val: Path, tokenizer: Path, prefix: int = 4096, tol: float = 1e-7,
                 python: str | None = None, env: dict | None = None) -> Row:
    from golfpack.data.bytes import load_sentencepiece
    from golfpack.data.shards import read_shard
    from golfpack.export.run import run_record

    sub_p = folder / "submission.json"
    sub = json.loads(sub_p.read_text()) if sub_p.is_file() else {}
    pieces = int(load_sentencepiece(tokenizer).get_piece_size())
    tok = np.asarray(read_shard(val)[: prefix + 1])
    bos = 1
    with tempfile.TemporaryDirectory(prefix="golfpack-check-") as tmp:
        tmp = Path(tmp)

        def losses(tokens, tag):
            shard, dump = tmp / f"{tag}.bin", tmp / f"{tag}.npy"
            _shard(shard, tokens)
            r = run_record(folder, shard, tokenizer, env={**(env or {}), "EVAL_DUMP": dump}, python=python)
            if r.val_bpb is None or not dump.is_file():
                err = (r.stderr.strip().splitlines() or ["no output"])[-1]
                raise GolfpackError(f"the record's script failed: {err}")
            return np.load(dump)

        base = losses(tok, "base")
        for t in probe_positions(tok, sub, bos):
            other = losses(changed_after(tok, t, pieces, bos), f"cut{t}")
            d = np.abs(base[1:t + 1] - other[1:t + 1])
            if d.size and float(d.max()) > tol:
                k = int(np.argmax(d)) + 1
                return Row("causal", False,
                           f"target {k} (<= t = {t}) scored {base[k]:.6f}, then {other[k]:.6f} once the tokens after "
                           f"{t} changed: the evaluation used tokens it had not scored yet (train-before-score)")
        return Row("causal", True, f"losses of targets <= t unchanged when the tokens after t change "
                                   f"(t in {probe_positions(tok, sub, bos)}, prefix {tok.size - 1} targets)")


def _window_hashes(tokens: np.ndarray, w: int = WINDOW) -> np.ndarray:
    """64-bit hash of every w-token window (position i covers tokens[i:i+w])."""
    n = tokens.size - w + 1
    if n <= 0:
        return np.zeros(0, np.uint64)
    t = tokens.astype(np.uint64) + np.uint64(1)
    with np.errstate(over="ignore"):
        h = np.zeros(n, np.uint64)
        for j in range(w):  # h = sum_j t[i+j] * B^(w-1-j), mod 2^64, one vector op per offset
            h = h * _B + t[j:j + n]
    return h


def check_leakage(val: Path, train: list[Path], bos: int = 1) -> Row:
    from golfpack.data.shards import read_shard
    from golfpack.evaluate.windows import document_spans

    tok = np.asarray(read_shard(val))
    starts, counts = document_spans(tok, bos)
    h = _window_hashes(tok)
    # windows inside one document: they start at s and end at or before the document's last target
    doc_of = np.repeat(np.arange(starts.size), counts)[: h.size]
    first = starts[doc_of]
    i = np.arange(h.size)
    inside = (i > first) & (i + WINDOW - 1 < first + counts[doc_of])  # the document's own tokens, not its BOS
    vh, vdoc = h[inside], doc_of[inside]
    short = int((counts - 1 < WINDOW).sum())
    hit = np.zeros(vh.size, bool)
    for p in train:
        th = np.unique(_window_hashes(np.asarray(read_shard(p))))
        hit |= np.isin(vh, th)
    docs_hit = np.unique(vdoc[hit])
    where = ", ".join(p.name for p in train)
    if docs_hit.size:
        return Row("leakage", False, f"{docs_hit.size} of {starts.size} validation documents ({int(hit.sum()):,} "
                                     f"{WINDOW}-token windows) appear in the training shards ({where})")
    return Row("leakage", True, f"no {WINDOW}-token window of the {starts.size} validation documents appears in "
                                f"{where}" + (f" ({short} documents shorter than {WINDOW} tokens not checked)" if short else ""))


def check_record(folder, *, val=None, tokenizer=None, train=(), cap: int = CAP, prefix: int = 4096,
                 python: str | None = None) -> list[Row]:
    folder = Path(folder)
    if not folder.is_dir():
        raise GolfpackError(f"record folder not found: {folder}")
    rows = [check_bytes(folder, cap)]
    if val is not None and tokenizer is not None:
        try:
            rows.append(check_causal(folder, Path(val), Path(tokenizer), prefix, python=python))
        except GolfpackError as e:
            rows.append(Row("causal", False, str(e)))
    else:
        rows.append(Row("causal", None, "needs --val and --tokenizer"))
    if val is not None and train:
        rows.append(check_leakage(Path(val), [Path(p) for p in train]))
    else:
        rows.append(Row("leakage", None, "needs --val and --train"))
    return rows


def format_rows(rows: list[Row]) -> str:
    w = max(len(r.name) for r in rows)
    return "\n".join(f"{r.name:<{w}}  {r.status}  {r.detail}" for r in rows)
