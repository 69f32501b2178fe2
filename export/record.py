"""Write a record folder: the challenge's layout, every byte accounted for.

    DIR/train_gpt.py      the self-extracting eval script (golfpack.export.script): code bytes
    DIR/model.gp          the golfpack artifact (FORMAT.md, LZMA manifest): model bytes
    DIR/submission.json   bytes_total = bytes_code + bytes_model, val_loss / val_bpb once measured
    DIR/README.md         what each file and byte is, how to run it

An artifact the script cannot read as it is (a zstd manifest, zstd or brotli streams) is written
again first: the same tensors bit for bit, its streams in raw / rans / rans_rc and its manifest in
LZMA (`shippable`). The bytes counted are those of the files written.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from golfpack.errors import GolfpackError
from golfpack.output import write_bytes, write_text
from golfpack.export import needs as _needs
from golfpack.export.script import Settings, build_script

ARTIFACT_NAME = "model.gp"
SCRIPT_NAME = "train_gpt.py"
CAP = 16_000_000


def shippable(data: bytes) -> bytes:
    """The artifact as the exported script reads it: streams in runtime coders, LZMA manifest."""
    from golfpack.codec.container import (MANIFEST_LZMA, EncodedStream, EncodedTensor, build_artifact,
                                          parse_artifact)
    from golfpack.codec.recode import recode

    art = parse_artifact(data)
    coders = {s.coder for t in art.tensors.values() for s in t.streams.values()}
    if coders - set(_needs.RUNTIME_CODERS):
        return recode(art, _needs.RUNTIME_CODERS, manifest_coding=MANIFEST_LZMA)
    if data[12] == MANIFEST_LZMA:
        return bytes(data)
    tensors = [EncodedTensor(n, tuple(t.shape), t.dtype, t.scheme,
                             {r: EncodedStream(s.type, s.coder, s.transform, t.stream_bytes(r)) for r, s in t.streams.items()},
                             dict(t.meta)) for n, t in art.tensors.items()]
    return build_artifact(tensors, config=art.config, source=art.source, manifest_coding=MANIFEST_LZMA)


def model_config(art) -> tuple[dict, bool]:
    """(GPTConfig dict, whether the script must carry it): the stored config, else inferred from shapes.
    The artifact's tensor names must be the GPT's own."""
    from golfpack.model import GPT
    from golfpack.model.load import as_config, infer_config

    if art.config is not None:
        cfg = as_config(art.config)
    else:
        cfg = infer_config({n: torch.empty(t.shape, device="meta") for n, t in art.tensors.items()})
    with torch.device("meta"):
        want = {k: tuple(v.shape) for k, v in GPT(cfg).state_dict().items()}
    have = {n: tuple(t.shape) for n, t in art.tensors.items()}
    if want != have:
        diff = sorted(set(want) ^ set(have)) or sorted(k for k in want if want[k] != have[k])
        raise GolfpackError(f"the artifact's tensors are not those of its GPT ({diff[:4]}); the exported script "
                            "needs the model's own tensor names and shapes")
    d = cfg.to_dict()
    return d, art.config != d


def ttt_settings(method: str | None, config_path: str | None, seq_len: int | None, stride: int | None) -> dict | None:
    """The resolved TTTConfig the script runs (golfpack eval's rules: --seq-len = context, --stride = chunk)."""
    if method is None:
        if config_path is not None:
            raise GolfpackError("--ttt-config needs --ttt lora")
        return None
    from golfpack.evaluate.ttt_config import TTTConfig

    _needs.run_flags("sliding", method)  # refuses a variant the runtime does not have
    over = {}
    if config_path is not None:
        p = Path(config_path)
        if not p.is_file():
            raise GolfpackError(f"TTT config not found: {p}")
        over = TTTConfig.from_json(p.read_bytes(), what=str(p), method=method).to_dict()
    if seq_len is not None:
        over["context"] = seq_len
    if stride is not None:
        over["chunk"] = stride
    return TTTConfig.for_method(method, over).to_dict()


def settings_for(eval_mode: str, seq_len: int | None, stride: int | None, ttt: dict | None, config: dict | None):
    if eval_mode not in _needs.EVAL_MODES:
        raise GolfpackError(f"--eval must be one of {', '.join(_needs.EVAL_MODES)}, got {eval_mode!r}")
    L = seq_len or 1024
    S = None if eval_mode == "plain" else (stride if stride is not None else (64 if eval_mode == "sliding" else None))
    if L < 1 or (S is not None and not 1 <= S <= L):
        raise GolfpackError(f"need 1 <= --stride <= --seq-len (got {S}, {L})")
    return Settings(artifact=ARTIFACT_NAME, eval_mode=eval_mode, seq_len=L, stride=S, ttt=ttt, config=config)


def plan_record(data: bytes, *, eval_mode: str = "sliding", ttt: str | None = None, ttt_config: str | None = None,
                seq_len: int | None = None, stride: int | None = None, train_script: bytes | None = None,
                flags=None, native: bool = True):
    """(artifact bytes as shipped, script bytes, flags, settings) without writing anything.

    `flags` (a planner's superset, needs.for_plan) replaces the artifact's own needs, so the script
    is the one whose size the planner reserved; it must cover what the artifact needs. native=False
    leaves out the C rANS loop (the script then always decodes with numpy)."""
    from golfpack.codec.container import parse_artifact

    data = shippable(data)
    art = parse_artifact(data)
    cfg, carry = model_config(art)
    settings = settings_for(eval_mode, seq_len, stride, ttt_settings(ttt, ttt_config, seq_len, stride),
                            cfg if carry else None)
    own = _needs.for_artifact(art, cfg, eval_mode, ttt, native)
    if flags is None:
        flags = own
    elif not own <= frozenset(flags):
        raise GolfpackError(f"the planned script lacks {sorted(own - frozenset(flags))}, which the artifact needs")
    return data, build_script(flags, settings, train_script), frozenset(flags), settings


README = """# {name}

A Parameter Golf record written by `golfpack export` (golfpack {version}). It runs with the
challenge's dependencies only (torch, numpy, sentencepiece; no golfpack, no pip install).

## Files and bytes

| file | bytes | what |
|---|---:|---|
| `{script}` | {code:,} | code: the self-extracting evaluation script |
| `{artifact}` | {model:,} | model: the golfpack artifact (FORMAT.md of golfpack, LZMA-coded manifest) |
| **total** | **{total:,}** | code + model (the cap is 16,000,000) |

`submission.json` and this README are not counted.

`{script}` is one line: `import lzma,base64;exec(lzma.decompress(base64.b85decode(b'...')))`. The
payload is the evaluation program, minified (no docstrings or comments, short names) and
LZMA-compressed, in base85. Its code carries only what this artifact needs: {flags}.
It decodes `{artifact}` from beside itself ({decoder}), builds the model in torch and scores
it by golfpack's rules ({mode}).

The artifact holds {tensors} tensors, {params:,} parameters ({bpp:.3f} bits per parameter):
a 28-byte header, a {manifest:,}-byte manifest (names, shapes, schemes, stream offsets and
checksums) and {payload:,} bytes of entropy-coded streams ({coders}).

## Run

```bash
DATA_PATH=./data/datasets/fineweb10B_sp1024 TOKENIZER_PATH=./data/tokenizers/fineweb_1024_bpe.model \\
    python {script}                       # or: torchrun --nproc_per_node=8 {script}
```

Environment: `DATA_PATH` (a folder holding `fineweb_val_*.bin`), `TOKENIZER_PATH`, `VAL_SEQ_LEN`
(default {seq_len}), `EVAL_STRIDE` (default {stride}), `EVAL_MAX_TOKENS` (score only the first N
targets), `EVAL_MODE` (plain | sliding | doc-aware, among those the script carries), `EVAL_DEVICE`
(cpu | cuda), `EVAL_PRECISION` (auto = bf16 autocast on CUDA | fp32 | bf16), `EVAL_BATCH`
(windows per forward pass, default 16), `EVAL_NATIVE=0` (decode with numpy, no compiler),
`EVAL_DUMP` (write the per-target losses as .npy, for
`golfpack check`). The last line of the output is `val_loss:<float> val_bpb:<float>`; an error is
one line on stderr and exit status 2.
"""


def write_record(out: str | os.PathLike, data: bytes, script: bytes, flags, settings: Settings,
                 extra: dict | None = None, force: bool = False) -> dict:
    """Write the folder; returns submission.json's content."""
    import golfpack
    from golfpack.codec.container import parse_artifact

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GolfpackError(f"output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise GolfpackError(f"output folder {out} is not empty (pass --force to replace its record files)")
    out.mkdir(parents=True, exist_ok=True)
    art = parse_artifact(data)
    sub = {
        "name": (extra or {}).get("name") or "golfpack export",
        "blurb": f"golfpack artifact ({len(art.tensors)} tensors) scored by golfpack's exported evaluator "
                 f"({settings.ttt['method'] + ' TTT' if settings.ttt else settings.eval_mode})",
        "bytes_total": len(script) + len(data),
        "bytes_code": len(script),
        "bytes_model": len(data),
        "val_loss": None,
        "val_bpb": None,
        "golfpack": {
            "version": golfpack.__version__,
            "script": SCRIPT_NAME,
            "artifact": ARTIFACT_NAME,
            "eval": settings.eval_mode,
            "seq_len": settings.seq_len,
            "stride": settings.stride,
            "ttt": settings.ttt,
            "flags": sorted(flags),
            "planner": art.source.get("planner") if isinstance(art.source, dict) else None,
        },
    }
    if extra:
        sub["golfpack"].update({k: v for k, v in extra.items() if k != "name"})
    params = sum(t.numel for t in art.tensors.values())
    coders = sorted({s.coder for t in art.tensors.values() for s in t.streams.values()})
    readme = README.format(
        name=sub["name"], version=golfpack.__version__, script=SCRIPT_NAME, artifact=ARTIFACT_NAME,
        code=len(script), model=len(data), total=sub["bytes_total"], flags=", ".join(sorted(flags)),
        decoder=("rANS streams by a C loop the script compiles with the system's `cc` at run time, or by a "
                 "vectorized numpy decoder where there is no compiler" if "native" in flags else
                 "rANS streams by a vectorized numpy decoder; no compiler is needed"),
        mode=(f"{settings.ttt['method']} test-time training, context {settings.ttt['context']}, chunk "
              f"{settings.ttt['chunk']}" if settings.ttt else f"{settings.eval_mode} evaluation"),
        tensors=len(art.tensors), params=params,
        bpp=8 * len(data) / max(params, 1), manifest=art.header_bytes - 28, payload=len(data) - art.header_bytes,
        coders=", ".join(coders), seq_len=settings.seq_len, stride=settings.stride)
    for name, blob in ((SCRIPT_NAME, script), (ARTIFACT_NAME, data), ("README.md", readme.encode()),
                       ("submission.json", (json.dumps(sub, indent=2) + "\n").encode())):
        write_bytes(out / name, blob)
    return sub


def update_submission(out: str | os.PathLike, **fields) -> dict:
    p = Path(out) / "submission.json"
    sub = json.loads(p.read_text())
    sub.update(fields)
    write_text(p, json.dumps(sub, indent=2) + "\n")
    return sub


__all__ = ["ARTIFACT_NAME", "SCRIPT_NAME", "CAP", "shippable", "plan_record", "write_record", "update_submission"]
