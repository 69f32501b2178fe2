"""Artifact (or pre-quantized checkpoint) -> GPT whose linear layers stay bit-packed.

Every linear slot of the GPT (GPT.linear_names) whose weight is stored as
integer symbols with one scale per row becomes a golfpack.model.packed
PackedLinear built straight from those symbols: the dense float weight of such
a layer is never created. The skeleton's linear and embedding weights are on
the meta device (golfpack.model.layers.weights_on_meta), so no float weights
are allocated for the packed slots even transiently. The other
tensors (embeddings, norms' gains, scalar controls, and any linear stored as
floats or with a single tensor scale) are dequantized one by one and assigned.
The token table (and tied head) is packed too, as a PackedEmbedding. A linear
with an LQER low-rank term becomes a PackedLinear with the decoded factors
(A [N, r], B [r, K]) applied as (x . B^T) . A^T; a table with one, or any
tensor with group scales, stays dense (dequantized exactly as `decode` does).

Sources: a golfpack artifact (symbols, scales and bits from the container,
decoded stream by stream), or any checkpoint golfpack.checkpoint reads that
already holds integer symbols (the baseline's int8 .ptz: 8-bit rows).

Numerics: W_hat = symbols * fp32(scale), the same values the dense loader
produces for float32 layers, so results differ from the dense path only by
matmul accumulation order (a layer whose original dtype is bf16/fp16 is rounded
to it by the dense loader but not here).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from golfpack.errors import FormatError, GolfpackError


def _no_timer(stage: str):
    return contextlib.nullcontext()


_HUGE = 1 << 21  # 2 MiB: a transparent huge page


def _file_bytes(path: Path) -> bytes | memoryview:
    """The file's bytes, read into memory. Not mapped: mapping (MAP_POPULATE) measured ~2.5 ms less
    per load on 15 MB artifacts, but a file truncated in place by another process during the load
    would then end this one with SIGBUS instead of a FormatError naming the file, and golfpack
    never crashes on bad input (benchmarks/RESULTS.md, issue 19, "The Python half of the load").

    From 2 MiB up the bytes are read into anonymous memory advised MADV_HUGEPAGE (only the
    buffer is mapped, never the file: a file that shrinks meanwhile just reads short, and the
    parser names what is missing): a fresh 15 MB buffer of 4 KiB pages took ~3,800 page faults
    per load (issue 19, "Decode at every width: arena")."""
    with open(path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        if size < _HUGE:
            return f.read()
        from golfpack import _C

        view = memoryview(_C.huge_buffer(size))
        got = 0
        while got < size:
            n = f.readinto(view[got:])
            if not n:
                break
            got += n
        rest = f.read()  # the file changed size meanwhile: keep exactly what read_bytes would have read
        if got < size or rest:
            return bytes(view[:got]) + rest
        return view


class _Source:
    """Per-tensor access: row-quantized (symbols, scales, bits) or a dequantized float tensor."""

    def __init__(self, path: Path, timer=_no_timer):
        from golfpack.checkpoint import is_artifact

        self.path = path
        self._packed: dict[str, np.ndarray] = {}
        if is_artifact(path):
            from golfpack.codec.container import parse_artifact

            with timer("read"):
                buf = _file_bytes(path)
            with timer("manifest"):
                try:
                    art = parse_artifact(buf)
                except FormatError as e:
                    raise FormatError(f"{path}: {e}") from None
            self.config = art.config
            self._entries = art.tensors
            self.kind = "artifact"
        else:
            from golfpack.checkpoint import read_checkpoint

            ck = read_checkpoint(path)
            self.config = ck.config
            self._ck = ck
            self.kind = ck.source_format or "checkpoint"
        self.names = list(self._entries) if self.kind == "artifact" else list(self._ck.order)

    def shape(self, name: str) -> tuple[int, ...]:
        if self.kind == "artifact":
            return tuple(self._entries[name].shape)
        if name in self._ck.quantized:
            return tuple(self._ck.quantized[name].symbols.shape)
        return tuple(self._ck.floats[name].shape)

    def row_quantized(self, name: str) -> tuple[np.ndarray, torch.Tensor, int] | None:
        """(symbols int8 [N, K], scales [N], bits) when the tensor is a per-row-scaled 2-D grid.

        A tensor with an LQER low-rank term is included; `lowrank(name)` gives its factors."""
        if self.kind == "artifact":
            e = self._entries[name]
            if not e.is_quantized or e.kind != "int_rowscale" or len(e.shape) != 2:
                return None
            return e.symbols(), e.scales(), int(e.bits)
        q = self._ck.quantized.get(name)
        if q is None or q.scale.ndim != 1 or q.symbols.ndim != 2:
            return None
        sym = q.symbols.numpy()
        return sym, q.scale, _bits_for(sym)

    def prefetch_packed(self, names: list[str], threads: int, timer=_no_timer) -> None:
        """Decode the rANS symbols of these row-quantized tensors straight into packed rows, all in
        one native call (several streams interleaved per core, `threads` cores); `packed(name)`
        then serves them. Tensors that cannot take this path are skipped (they decode as before)."""
        if self.kind != "artifact":
            return
        from golfpack.codec.container import packed_rows

        entries = [self._entries[n] for n in names if self._entries[n].packs_directly]
        with timer("crc+rans+pack"):
            rows = packed_rows(entries, threads)
        self._packed.update((e.name, r) for e, r in zip(entries, rows))

    def packed(self, name: str) -> tuple[np.ndarray, torch.Tensor, int] | None:
        """(packed rows, scales [N], bits) of a prefetched tensor, else None."""
        rows = self._packed.get(name)
        if rows is None:
            return None
        e = self._entries[name]
        return rows, e.scales(), int(e.bits)

    def lowrank_rank(self, name: str) -> int:
        """Rank of the tensor's LQER low-rank term, 0 for none (nothing is decoded)."""
        return self._entries[name].rank if self.kind == "artifact" else 0

    def lowrank(self, name: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """float32 LQER factors (A [N, r], B [r, K]) exactly as decoding computes them, or None."""
        if self.kind != "artifact":
            return None
        return self._entries[name].lowrank()

    def dtype(self, name: str) -> torch.dtype:
        """The dtype the source gives this tensor when dequantized."""
        if self.kind == "artifact":
            from golfpack.codec.container import TORCH_DTYPES

            return TORCH_DTYPES[self._entries[name].dtype]
        q = self._ck.quantized.get(name)
        return q.dtype if q is not None else self._ck.cast.get(name, self._ck.floats[name].dtype)

    def dequantize(self, name: str) -> torch.Tensor:
        if self.kind == "artifact":
            return self._entries[name].dequantize()
        if name in self._ck.quantized:
            return self._ck.quantized[name].dequantize()
        t = self._ck.floats[name]
        return t.to(self._ck.cast[name]) if name in self._ck.cast else t


def _bits_for(symbols: np.ndarray) -> int:
    """Smallest two's-complement width (>= 2) holding every symbol."""
    if symbols.size == 0:
        return 2
    lo, hi = int(symbols.min()), int(symbols.max())
    b = 2
    while not (-(1 << (b - 1)) <= lo and hi <= (1 << (b - 1)) - 1):
        b += 1
    return b


def _scales_f32(scales: torch.Tensor, n: int, name: str) -> torch.Tensor:
    """Row scales as PackedLinear keeps them, checked by the same rule as pack_linear_weights."""
    from golfpack.model.packed import row_scales

    try:
        return torch.from_numpy(row_scales(scales.to(torch.float32), n))  # (numpy has no bfloat16)
    except GolfpackError as e:
        raise GolfpackError(f"{name}: {e}") from None


def load_packed(
    path: str | os.PathLike,
    config: Any = None,
    device: str | torch.device = "cpu",
    threads: int = 1,
    fused: bool = True,
    timer=_no_timer,
):
    """GPT with PackedLinear layers for every row-quantized linear weight of `path`.

    Config precedence as golfpack.model.load: the argument, the stored config,
    then inference from the tensor shapes. Returns the model in eval mode.

    fused (default): the rANS symbols of the packed layers are decoded straight into packed
    rows in one native call (golfpack.codec.container.packed_rows; `threads` cores), their row
    scales widened in one pass (container.row_scales_f32) and the layers built without
    nn.Module's generic registration (PackedLinear.from_packed_rows).
    fused=False: the per-tensor path (decode int8 symbols, then pack, through PackedLinear's
    ordinary constructor), the same weights bit for bit; the decode benchmark measures it as its
    baseline. `timer(stage)` is a context-manager factory the benchmark passes to time the stages
    (read, manifest, model skeleton, crc+rans+pack, scales, packed layers, other tensors, ...).
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise GolfpackError(f"threads must be a positive integer, got {threads!r}")
    path = Path(path)
    if not path.exists():
        raise GolfpackError(f"{path}: no such file")
    return _load_packed(path, config, device, threads, fused, timer)


def _load_packed(path: Path, config, device, threads: int, fused: bool, timer):
    """load_packed's body (arguments checked)."""
    from golfpack.model import GPT
    from golfpack.model.layers import weights_on_meta
    from golfpack.model.load import as_config, infer_config, strip_wrapper_prefixes
    from golfpack.model.packed import PackedEmbedding, PackedLinear

    src = _Source(path, timer)
    with timer("names and config"):
        # Names as the model sees them (wrapper prefixes such as "module." stripped).
        shapes = {src_name: src.shape(src_name) for src_name in src.names}
        stripped = strip_wrapper_prefixes(shapes)
        renamed = dict(zip(stripped.keys(), src.names)) if len(stripped) == len(shapes) else None
        if renamed is None:
            raise GolfpackError(f"{path}: tensor names collide after stripping wrapper prefixes")
        if config is not None:
            cfg = as_config(config)
        elif src.config is not None:
            cfg = as_config(src.config)
        else:
            # not checked there: the names and shapes are checked against the model built below
            cfg = infer_config({k: torch.empty(v, device="meta") for k, v in stripped.items()}, check=False)

    with timer("model skeleton"), weights_on_meta():
        # Linear and embedding weights on meta (no data: they are packed or assigned below), the
        # small parameters real; every one of them is replaced from the artifact.
        model = GPT(cfg)
    with timer("names and config"):
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        missing = sorted(set(expected) - set(renamed))
        unexpected = sorted(set(renamed) - set(expected))
        if missing or unexpected:
            raise GolfpackError(
                f"{path}: tensors do not match the model: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
            )
        for name, want in expected.items():
            if want != shapes[renamed[name]]:
                raise GolfpackError(f"{path}: {name} has shape {list(shapes[renamed[name]])}, model expects {list(want)}")

    emb_key = "tok_emb.weight"
    entries = src._entries if src.kind == "artifact" else None

    def packable(key: str, module: torch.nn.Module | None) -> bool:
        """Whether the weight `key` of this slot is served packed (else it is dequantized dense)."""
        if module is not None and getattr(module, "bias", None) is not None:
            return False  # golfpack linears are bias-free; keep anything else dense
        name = renamed[key]
        if entries is not None and not entries[name].is_rowscale_matrix:
            return False
        if src.lowrank_rank(name) and (key == emb_key or src.dtype(name) != torch.float32):
            # a table with an LQER term stays dense; a linear one whose dense loader rounds
            # W_hat + A.B to a narrower dtype too (stay exact)
            return False
        return True

    with timer("packed layers"):
        modules = dict(model.named_modules())
        slots = [(n, n + ".weight", modules[n]) for n in model.linear_names if n + ".weight" in renamed]
        packed_keys = [k for _, k, mod in slots if packable(k, mod)]
        table_packed = packable(emb_key, None)
    layers: dict[str, PackedLinear] = {}
    if fused and entries is not None:
        # Exactly the weights packed below, prefetched together so that the native decoder
        # interleaves their streams (and spreads them on threads). A weight that ends up dense is
        # not prefetched: its packed rows would be decoded and then discarded.
        src.prefetch_packed([renamed[k] for k in packed_keys + ([emb_key] if table_packed else [])], threads, timer)
        plain = [k for k in packed_keys + ([emb_key] if table_packed else [])
                 if renamed[k] in src._packed and not src.lowrank_rank(renamed[k])]
        with timer("scales"):
            from golfpack.codec.container import row_scales_f32

            scales = row_scales_f32([entries[renamed[k]] for k in plain])
        with timer("packed layers"):
            for k, s in zip(plain, scales):
                name = renamed[k]
                layers[k] = PackedLinear.from_packed_rows(torch.from_numpy(src._packed[name]), s,
                                                          int(entries[name].bits), shapes[name][1])

    def build(key: str, **lowrank) -> "PackedLinear | None":
        """PackedLinear of a row-quantized weight: from prefetched packed rows, else from symbols."""
        name = renamed[key]
        pre = src.packed(name)
        if pre is not None:
            with timer("scales"):
                rows, scales, bits = pre
                s = _scales_f32(scales, rows.shape[0], name)
            with timer("packed layers"):
                return PackedLinear(torch.from_numpy(rows), s, bits, src.shape(name)[1], **lowrank)
        with timer("decode (unfused)"):
            rq = src.row_quantized(name)
        if rq is None:
            return None
        symbols, scales, bits = rq
        with timer("pack (unfused)"):
            return PackedLinear.from_symbols(symbols, scales.to(torch.float32), bits, **lowrank)

    def layer_of(key: str) -> "PackedLinear | None":
        if key in layers:
            return layers[key]
        lr = src.lowrank(renamed[key])
        a, b = lr if lr is not None else (None, None)
        return build(key, lowrank_a=a, lowrank_b=b)

    consumed: set[str] = set()
    set_of_packed = set(packed_keys)
    n_packed = 0
    with timer("packed layers"):
        for slot in (n for n, k, _ in slots if k in set_of_packed):
            layer = layer_of(slot + ".weight")
            if layer is not None:
                parent_name, _, attr = slot.rpartition(".")
                # the slot is a registered submodule: swapping the entry is what setattr does
                modules[parent_name]._modules[attr] = layer
                consumed.add(slot + ".weight")
                n_packed += 1
        # The token table (and tied head) stays packed too, rounded to its source dtype.
        if table_packed:
            table = layer_of(emb_key)
            if table is not None:
                model._modules["tok_emb"] = PackedEmbedding(table, source_dtype=src.dtype(renamed[emb_key]))
                consumed.add(emb_key)
    with timer("other tensors"):
        for name in expected:
            if name in consumed:
                continue
            t = src.dequantize(renamed[name])
            if not t.is_floating_point():
                raise GolfpackError(f"{path}: {name} has dtype {t.dtype}; expected floats")
            owner, _, attr = name.rpartition(".")
            mod = modules[owner]
            old = mod._parameters.get(attr)
            if old is not None:  # what load_state_dict(assign=True) puts there
                mod._parameters[attr] = torch.nn.Parameter(t.to(old.dtype).contiguous(), requires_grad=old.requires_grad)
            elif mod._buffers.get(attr) is not None:
                mod._buffers[attr] = t.to(mod._buffers[attr].dtype).contiguous()
            else:  # every state-dict name is a parameter or a buffer: a bug, not a user error
                raise RuntimeError(f"load_packed: {name} is neither a parameter nor a buffer")
    with timer("model assign"):
        still_meta = [n for m in model.modules() for n, t in list(m._parameters.items()) + list(m._buffers.items())
                      if t is not None and t.is_meta]
        if still_meta:  # a slot neither packed nor loaded: a bug, not a user error
            raise RuntimeError(f"load_packed left tensors unmaterialized: {still_meta[:5]}")
        model.packed_layers = n_packed
        if torch.device(device).type != "cpu":  # everything was built on the CPU
            model = model.to(device)
        model.eval()
    with timer("release"):  # the parsed artifact and its mapping (timed: a load includes its clean-up)
        del src, entries, modules, slots, layers
    return model


def packed_summary(model) -> Mapping[str, int]:
    """Counts and bytes of the packed vs dense parts of a load_packed model."""
    from golfpack.model.packed import PackedEmbedding, PackedLinear

    packed = [m for m in model.modules() if isinstance(m, PackedLinear)]
    n_tables = sum(isinstance(m, PackedEmbedding) for m in model.modules())
    packed_ids = {id(t) for m in packed for t in m.buffers()}
    dense = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers())
                if id(t) not in packed_ids)
    return {
        "packed_layers": len(packed),  # PackedLinear modules, the packed token table's included
        "packed_tables": n_tables,
        "packed_bytes": sum(m.nbytes_packed for m in packed),
        "dense_bytes": dense,
    }
