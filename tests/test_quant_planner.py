"""The quantization planner's building blocks: the int_groupscale and LQER low-rank format schemes
(codec/schemes.py through the container), --bits rules (codec/spec.py), the lower convex hull
(codec/candidates.py) and the multiple-choice knapsack solve (codec/planner.py)."""
import itertools
import json
import struct
import zlib

import numpy as np
import pytest
import torch
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from golfpack.codec import spec
from golfpack.codec.candidates import Candidate, Choice, lower_hull
from golfpack.codec.coders import CODERS, StreamType, encode_stream
from golfpack.codec.container import (
    HEADER,
    HEADER_SIZE,
    MANIFEST_RAW,
    TORCH_DTYPES,
    EncodedStream,
    EncodedTensor,
    build_artifact,
    parse_artifact,
)
from golfpack.codec.planner import Item, solve
from golfpack.codec.quant import ClipSpec
from golfpack.errors import FormatError, GolfpackError

from tests.test_container import bits_equal  # noqa: E402  (one definition of bit equality)

FLOAT_NP = {"float16": np.float16, "float32": np.float32}




# ----------------------------------------------------------------------------- format: streams by hand


def _stream(values: np.ndarray, st_: StreamType, coder: str, transform: str = "none") -> EncodedStream:
    if not st_.offers(coder):  # rans_rc codes int matrices only; the writer's fallback is rans
        coder = "rans"
    if st_.kind == "int" or coder == "raw":
        transform = "none"
    return EncodedStream(st_, coder, transform, encode_stream(values, st_, coder, transform))


def _symbols(rng, n: int, bits: int) -> np.ndarray:
    """Random b-bit symbols over the whole two's-complement range, both ends included when there is room."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    q = rng.integers(lo, hi + 1, size=n).astype(np.int8)
    if n >= 2:
        q[0], q[-1] = lo, hi
    return q


def _scales(rng, n: int, kind: str) -> np.ndarray:
    # any finite value is a legal scale (sign and magnitude included): the decoder just multiplies
    return (rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 1, n)).astype(FLOAT_NP[kind])


@st.composite
def stream_choices(draw):
    return dict(coder=draw(st.sampled_from(CODERS)), transform=draw(st.sampled_from(["none", "byteshuffle"])))


@st.composite
def grouped_tensors(draw):
    """An int_groupscale tensor: 1-D, 2-D or 3-D shapes (rows = 0 and cols = 0 included), groups that
    divide the columns, leave a partial last group, or exceed the row length."""
    ndim = draw(st.integers(1, 3))
    rows = draw(st.integers(0, 7))
    tail = [draw(st.integers(0, 9)) for _ in range(ndim - 1)]
    shape = (rows, *tail)
    cols = int(np.prod(tail)) if tail else 1
    group = draw(st.one_of(st.integers(1, 12), st.just(max(cols, 1)), st.integers(cols + 1, cols + 40)))
    return dict(shape=shape, cols=cols, group=group, bits=draw(st.integers(2, 8)),
                dtype=draw(st.sampled_from(list(TORCH_DTYPES))), scale_kind=draw(st.sampled_from(["float16", "float32"])),
                seed=draw(st.integers(0, 2**32 - 1)), sym=draw(stream_choices()), sc=draw(stream_choices()))


@given(grouped_tensors())
def test_groupscale_round_trip_equals_an_independent_reference(case):
    rng = np.random.default_rng(case["seed"])
    shape, rows, cols, g, bits = case["shape"], case["shape"][0], case["cols"], case["group"], case["bits"]
    numel = int(np.prod(shape))
    ng = -(-cols // g) if cols else 0  # ceil: the last group may be partial
    q = _symbols(rng, numel, bits)
    s = _scales(rng, rows * ng, case["scale_kind"])
    t = EncodedTensor("w", shape, case["dtype"], {"kind": "int_groupscale", "bits": bits, "group": g}, {
        "symbols": _stream(q, StreamType("int", numel, bits), **case["sym"]),
        "scales": _stream(s, StreamType(case["scale_kind"], s.size), **case["sc"]),
    })
    art = parse_artifact(build_artifact([t]))
    e = art.tensors["w"]
    # Reference, in numpy: float32(q) * float32(s)[row, col // group] over the flattened trailing dims,
    # then one cast to the tensor's dtype.
    col_group = np.arange(cols) // g
    s32 = s.astype(np.float32).reshape(rows, ng)
    ref = q.astype(np.float32).reshape(rows, cols) * s32[:, col_group]
    want = torch.from_numpy(np.ascontiguousarray(ref.reshape(shape))).to(TORCH_DTYPES[case["dtype"]])
    got = e.dequantize()
    assert bits_equal(got, want)
    assert e.group == g and e.rank == 0 and e.lowrank() is None
    assert tuple(e.scales().shape) == ((rows, ng) if rows else (0, 0))
    assert np.array_equal(e.symbols(), q.reshape(shape))
    # a group-scaled tensor has no QuantizedSource form: to_checkpoint keeps its exact decoded values
    assert bits_equal(art.to_checkpoint().state_dict()["w"], want)


@st.composite
def lowrank_tensors(draw):
    n, k = draw(st.integers(1, 9)), draw(st.integers(1, 12))
    base = draw(st.sampled_from(["int_rowscale", "int_groupscale"]))
    return dict(n=n, k=k, r=draw(st.integers(1, min(n, k))), base=base, group=draw(st.integers(1, 14)),
                bits=draw(st.integers(2, 8)), lr_bits=draw(st.integers(2, 8)),
                dtype=draw(st.sampled_from(list(TORCH_DTYPES))), scale_kind=draw(st.sampled_from(["float16", "float32"])),
                lr_scale_kind=draw(st.sampled_from(["float16", "float32"])), seed=draw(st.integers(0, 2**32 - 1)),
                coders=[draw(stream_choices()) for _ in range(6)])


@given(lowrank_tensors())
def test_lowrank_round_trip_equals_an_independent_reference(case):
    rng = np.random.default_rng(case["seed"])
    n, k, r, lb = case["n"], case["k"], case["r"], case["lr_bits"]
    q = _symbols(rng, n * k, case["bits"])
    scheme = {"kind": case["base"], "bits": case["bits"], "lowrank": {"rank": r, "bits": lb}}
    if case["base"] == "int_groupscale":
        scheme["group"] = case["group"]
        n_scales = n * -(-k // case["group"])
    else:
        n_scales = n
    s = _scales(rng, n_scales, case["scale_kind"])
    qa, qb = _symbols(rng, r * n, lb), _symbols(rng, r * k, lb)  # A^T [r, N] and B [r, K]
    sa, sb = _scales(rng, r, case["lr_scale_kind"]), _scales(rng, r, case["lr_scale_kind"])
    lk = case["lr_scale_kind"]
    roles = [("symbols", q, StreamType("int", q.size, case["bits"])), ("scales", s, StreamType(case["scale_kind"], s.size)),
             ("lowrank_a", qa, StreamType("int", qa.size, lb)), ("lowrank_a_scales", sa, StreamType(lk, r)),
             ("lowrank_b", qb, StreamType("int", qb.size, lb)), ("lowrank_b_scales", sb, StreamType(lk, r))]
    streams = {role: _stream(v, t, **c) for (role, v, t), c in zip(roles, case["coders"])}
    e = parse_artifact(build_artifact([EncodedTensor("w", (n, k), case["dtype"], scheme, streams)])).tensors["w"]
    # Reference: each factor row is float32(symbols) * float32(its scale); the base term as in the
    # scheme; the product in float32; the sum cast once to the tensor's dtype.
    a = (qa.astype(np.float32).reshape(r, n) * sa.astype(np.float32)[:, None]).T.copy()  # A [N, r]
    b = qb.astype(np.float32).reshape(r, k) * sb.astype(np.float32)[:, None]  # B [r, K]
    if case["base"] == "int_groupscale":
        g = case["group"]
        base = q.astype(np.float32).reshape(n, k) * s.astype(np.float32).reshape(n, -1)[:, np.arange(k) // g]
    else:
        base = q.astype(np.float32).reshape(n, k) * s.astype(np.float32)[:, None]
    fa, fb = e.lowrank()
    assert torch.equal(fa, torch.from_numpy(a)) and torch.equal(fb, torch.from_numpy(b))
    prod = torch.from_numpy(a) @ torch.from_numpy(b)
    # the float32 product is the float64 one up to float32 rounding of r terms
    assert np.allclose(prod.numpy(), a.astype(np.float64) @ b.astype(np.float64), rtol=1e-5,
                       atol=1e-5 * float(np.abs(a).max() * np.abs(b).max() * r) + 1e-30)
    want = (torch.from_numpy(base) + prod).to(TORCH_DTYPES[case["dtype"]])
    assert bits_equal(e.dequantize(), want)
    assert e.rank == r


# ----------------------------------------------------------------------------- format: hostile manifests


def _lowrank_artifact() -> bytes:
    """One valid [4, 6] int_groupscale tensor (group 4: a partial last group) with a rank-2 LQER term."""
    rng = np.random.default_rng(0)
    n, k, r = 4, 6, 2
    streams = {
        "symbols": _stream(_symbols(rng, n * k, 4), StreamType("int", n * k, 4), "raw"),
        "scales": _stream(_scales(rng, n * 2, "float16"), StreamType("float16", n * 2), "raw"),
        "lowrank_a": _stream(_symbols(rng, r * n, 6), StreamType("int", r * n, 6), "raw"),
        "lowrank_a_scales": _stream(_scales(rng, r, "float16"), StreamType("float16", r), "raw"),
        "lowrank_b": _stream(_symbols(rng, r * k, 6), StreamType("int", r * k, 6), "raw"),
        "lowrank_b_scales": _stream(_scales(rng, r, "float32"), StreamType("float32", r), "raw"),
    }
    scheme = {"kind": "int_groupscale", "bits": 4, "group": 4, "lowrank": {"rank": r, "bits": 6}}
    return build_artifact([EncodedTensor("w", (n, k), "float32", scheme, streams)])


def _manifest_and_payload(data: bytes):
    """(manifest JSON, payload bytes) of an artifact (as in test_container.py)."""
    art = parse_artifact(data)
    _, _, _, coding, _, _, stored, _, _ = HEADER.unpack(data[:HEADER_SIZE])
    body = data[HEADER_SIZE : HEADER_SIZE + stored]
    text = zstandard.ZstdDecompressor().decompress(body) if coding else body
    return json.loads(text), data[art.header_bytes :]


def _rebuild(manifest: dict, payload: bytes) -> bytes:
    """Hand-build an artifact with a raw manifest and a valid header CRC (as in test_container.py)."""
    raw = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    head = HEADER.pack(b"GOLFPACK", 1, 0, MANIFEST_RAW, 0, 0, len(raw), len(raw), 0)[:-4]
    return head + struct.pack("<I", zlib.crc32(raw, zlib.crc32(head))) + raw + payload


def _decode_all(data: bytes) -> None:
    for t in parse_artifact(data).tensors.values():
        t.dequantize()


def _scheme(m):
    return m["tensors"][0]["scheme"]


def _streams(m):
    return m["tensors"][0]["streams"]


def test_the_hand_rebuilt_lowrank_artifact_is_valid():
    # the mutations below must fail because of the mutation, not because of the rebuild
    _decode_all(_rebuild(*_manifest_and_payload(_lowrank_artifact())))


@pytest.mark.parametrize("mutate, message", [
    (lambda m: _scheme(m)["lowrank"].update(rank=5), r"low-rank rank 5 exceeds min\(4, 6\)"),
    (lambda m: _scheme(m)["lowrank"].update(rank=0), "lowrank rank must be a positive integer, got 0"),
    (lambda m: _scheme(m)["lowrank"].update(rank=-1), "lowrank rank must be a positive integer"),
    (lambda m: _scheme(m)["lowrank"].update(rank=True), "lowrank rank must be a positive integer"),
    (lambda m: _scheme(m)["lowrank"].update(rank=2.0), "lowrank rank must be a positive integer"),
    (lambda m: m["tensors"][0].update(shape=[4, 2, 3]), r"low-rank term needs a 2-D tensor, shape is \[4, 2, 3\]"),
    (lambda m: m["tensors"][0].update(shape=[24]), "low-rank term needs a 2-D tensor"),
    (lambda m: _streams(m)["lowrank_a"].update(count=7), "lowrank_a stream holds 7 values, the scheme needs 8"),
    (lambda m: _streams(m)["lowrank_b"].update(count=13), "lowrank_b stream holds 13 values, the scheme needs 12"),
    (lambda m: _streams(m)["lowrank_b_scales"].update(count=3), "lowrank_b_scales stream holds 3 values, the scheme needs 2"),
    (lambda m: _streams(m).pop("lowrank_b"), r"streams \[.*\] \(expected \[.*'lowrank_b'"),
    (lambda m: _scheme(m).pop("lowrank"), r"streams .* \(expected \['scales', 'symbols'\]\)"),
    (lambda m: _scheme(m)["lowrank"].update(bits=9), "lowrank bits must be 2..8, got 9"),
    (lambda m: _scheme(m)["lowrank"].update(bits=1), "lowrank bits must be 2..8, got 1"),
    (lambda m: _scheme(m)["lowrank"].update(bits=5), "lowrank_a stream must be 5-bit int"),
    (lambda m: _scheme(m)["lowrank"].update(extra=1), r"lowrank must be an object with keys \['bits', 'rank'\]"),
    (lambda m: _scheme(m).update(lowrank=[2, 6]), "lowrank must be an object"),
    (lambda m: _scheme(m).update(group=0), "group must be an integer in 1..1073741824, got 0"),
    (lambda m: _scheme(m).update(group=-4), "group must be an integer"),
    (lambda m: _scheme(m).update(group="4"), "group must be an integer"),
    (lambda m: _scheme(m).update(group=2**30 + 1), "group must be an integer"),
    (lambda m: _scheme(m).pop("group"), "scheme keys"),
    (lambda m: _scheme(m).update(unknown=1), r"scheme keys \['bits', 'group', 'kind', 'lowrank', 'unknown'\]"),
    (lambda m: _scheme(m).update(kind="int_tensorscale"), "scheme keys"),  # no lowrank, no group there
    (lambda m: _scheme(m).update(group=2), "scales stream holds 8 values, the scheme needs 12"),  # 3 groups a row
    (lambda m: _streams(m)["lowrank_a_scales"].update(type="bfloat16"), "lowrank_a_scales must be float16 or float32"),
    (lambda m: _streams(m)["lowrank_a"].update(type="float16"), "lowrank_a stream must be 6-bit int|keys"),
])
def test_hostile_lowrank_and_group_manifests_give_one_clear_error(mutate, message):
    man, payload = _manifest_and_payload(_lowrank_artifact())
    mutate(man)
    with pytest.raises(FormatError, match=message):
        _decode_all(_rebuild(man, payload))


# ----------------------------------------------------------------------------- --bits rules (codec/spec.py)


def test_a_bare_width_is_one_implicit_rule_for_everything_quantized():
    (r,) = spec.parse_rules("6")
    assert (r.pattern, r.bits, r.clip, r.mode, r.implicit) == ("*", 6, None, "quant", True)
    assert spec.rule_for("blocks.0.mlp.fc.weight", [r]) is r
    # ...but it does not force tensors the default policy keeps as floats (gains, mixes, scales)
    assert spec.rule_for("blocks.0.attn_scale", [r], default_quantized=False) is None
    assert spec.parse_rules("") == [] and spec.parse_rules(None) == [] and spec.parse_rules(" , ") == []


def test_group_aliases_match_their_tensors():
    rules = spec.parse_rules("mlp=5,attn=6,embed=8")
    want = {"blocks.0.mlp.fc.weight": 5, "blocks.3.mlp.proj.weight": 5, "blocks.1.attn.c_k.weight": 6,
            "blocks.0.attn.proj.weight": 6, "tok_emb.weight": 8, "bigram.embed.weight": 8, "ve_shared.embed.weight": 8}
    for name, bits in want.items():
        assert spec.rule_for(name, rules).bits == bits, name
    assert spec.rule_for("lm_head.weight", rules) is None
    assert spec.rule_for("blocks.0.attn_scale", rules, default_quantized=False) is None
    assert spec.rule_for("lm_head.weight", spec.parse_rules("head=7")).bits == 7
    single = {"q": "c_q", "k": "c_k", "v": "c_v", "o": "proj"}
    for alias, slot in single.items():
        r = spec.parse_rules(f"{alias}=3")
        assert spec.rule_for(f"blocks.2.attn.{slot}.weight", r).bits == 3
        assert spec.rule_for("blocks.2.mlp.fc.weight", r) is None


def test_clip_keep_and_float_values():
    (r,) = spec.parse_rules("attn=6:sdclip:13")
    assert r.bits == 6 and r.clip == ClipSpec("sdclip", 13.0) and str(r.clip) == "sdclip:13"
    (r,) = spec.parse_rules("embed=keep")
    assert (r.mode, r.bits, r.clip, r.implicit) == ("keep", None, None, False)
    (r,) = spec.parse_rules(" mlp = 4:mse ")  # whitespace around keys and values is ignored
    assert (r.pattern, r.bits, str(r.clip)) == ("mlp", 4, "mse")


def test_a_named_glob_overrides_the_default_policy():
    rules = spec.parse_rules("blocks.0.*=float")
    (r,) = rules
    assert r.mode == "float" and not r.implicit
    # named patterns do reach control tensors, unlike a bare value
    assert spec.rule_for("blocks.0.attn_scale", rules, default_quantized=False) is r
    assert spec.rule_for("blocks.0.mlp.fc.weight", rules) is r
    assert spec.rule_for("blocks.1.mlp.fc.weight", rules) is None
    rules = spec.parse_rules("6,blocks.0.*=7")
    assert spec.rule_for("blocks.0.resid_mix", rules, default_quantized=False).bits == 7


def test_later_rules_override_earlier_ones():
    name = "blocks.1.mlp.fc.weight"
    assert spec.rule_for(name, spec.parse_rules("6,mlp=5")).bits == 5
    assert spec.rule_for(name, spec.parse_rules("mlp=5,6")).bits == 6
    assert spec.rule_for(name, spec.parse_rules("mlp=5,blocks.1.*=keep")).mode == "keep"
    assert spec.rule_for(name, spec.parse_rules("blocks.1.*=keep,mlp=5")).bits == 5


@pytest.mark.parametrize("text, message", [
    ("mlp=9", r"bit width 9 outside 2..8 in 'mlp=9'"),
    ("1", "bit width 1 outside"),
    ("mlp=", r"cannot read 'mlp='"),
    ("=5", r"cannot read '=5'"),
    ("x=abc", r"'abc' is not a bit width"),
    ("mlp=5:nonsense", "clip"),
    ("mlp=5:sdclip:-1", "sdclip"),
])
def test_bad_rules_are_one_clear_error(text, message):
    with pytest.raises(GolfpackError, match=message):
        spec.parse_rules(text)


def test_the_default_quantization_policy():
    assert spec.quantizable("blocks.0.mlp.fc.weight", (64, 32), 256)
    assert not spec.quantizable("blocks.0.mlp.fc.weight", (64, 32))  # 2048 < the default 4096
    assert not spec.quantizable("blocks.0.attn_scale", (32,), 1)  # 1-D
    for control in ("blocks.0.resid_mix", "skip_weights", "blocks.0.attn.q_gain", "smear.gate",
                    "blocks.0.attn.attn_gate.weight", "vrl_scales.0", "bigram.scale"):
        assert spec.is_control(control), control
        assert not spec.quantizable(control, (64, 64), 1), control
    for weight in ("tok_emb.weight", "bigram.embed.weight", "bigram.proj.weight", "blocks.0.attn.proj.weight",
                   "ve_shared.embed.weight", "lm_head.weight"):
        assert not spec.is_control(weight), weight


# ----------------------------------------------------------------------------- lower convex hull


def _cand(b: int, d: float) -> Candidate:
    return Candidate(Choice("rtn", 4), float(d), 0.0, int(b))


def _brute_hull(pts: set[tuple[int, float]]) -> set[tuple[int, float]]:
    """Vertices of the lower-left convex hull: points neither dominated (another point with no more
    bytes and no more loss) nor on or above a chord between points strictly left and right of them."""
    out = set()
    for p in pts:
        if any(q != p and q[0] <= p[0] and q[1] <= p[1] for q in pts):
            continue
        below = False
        for a in pts:
            for c in pts:
                if a[0] < p[0] < c[0]:
                    t = (p[0] - a[0]) / (c[0] - a[0])
                    if a[1] + t * (c[1] - a[1]) <= p[1] + 1e-12:
                        below = True
        if not below:
            out.add(p)
    return out


@given(st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12)), min_size=1, max_size=14),
       st.booleans())
def test_lower_hull_equals_a_brute_force_hull(raw, shuffle):
    # small integer grids: duplicates, equal bytes, equal losses and collinear points are common
    cands = [_cand(b, d / 4) for b, d in raw]
    if shuffle:
        cands = cands[::-1]
    hull = lower_hull(cands)
    got = [(c.est_bytes, c.dloss) for c in hull]
    assert set(got) == _brute_hull({(b, d / 4) for b, d in raw})
    assert len(got) == len(set(got))
    # ordered by increasing bytes and strictly decreasing loss, with strictly increasing slopes
    assert all(a[0] < b[0] and a[1] > b[1] for a, b in zip(got, got[1:]))
    slopes = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(got, got[1:])]
    assert all(s1 < s2 for s1, s2 in zip(slopes, slopes[1:]))
    assert all(any(h is c for c in cands) for h in hull)  # the candidates themselves, not copies


# ----------------------------------------------------------------------------- multiple-choice knapsack


def _instance(rng, n_items=None, max_cands=5):
    items = []
    for i in range(n_items or int(rng.integers(3, 6))):
        cands = [Candidate(Choice("rtn", bits=2 + j), float(rng.random()), 0.0, int(rng.integers(1, 100)))
                 for j in range(int(rng.integers(2, max_cands + 1)))]
        items.append(Item(f"t{i}", (1,), "float32", cands, lower_hull(cands)))
    lo = sum(it.hull[0].est_bytes for it in items)
    hi = sum(max(c.est_bytes for c in it.cands) for it in items)
    return items, int(rng.integers(lo, hi + 1))


def _optimum(items, target):
    best = None
    for combo in itertools.product(*[it.cands for it in items]):
        if sum(c.est_bytes for c in combo) <= target:
            d = sum(c.dloss for c in combo)
            best = d if best is None or d < best else best
    return best


def _lagrangian(items, target):
    """The best hull-only Lagrangian solution: upgrades along every hull in one global order of
    decreasing dloss-per-byte, the longest prefix that fits (what a lambda sweep reaches)."""
    ups = []
    for i, it in enumerate(items):
        for j in range(len(it.hull) - 1):
            a, b = it.hull[j], it.hull[j + 1]
            ups.append(((a.dloss - b.dloss) / (b.est_bytes - a.est_bytes), i, j))
    ups.sort(key=lambda u: (-u[0], u[1], u[2]))
    sel = [0] * len(items)
    used = sum(it.hull[0].est_bytes for it in items)
    for _, i, j in ups:
        h = items[i].hull
        assert sel[i] == j  # hull slopes decrease along each hull, so upgrades come in order
        db = h[j + 1].est_bytes - h[j].est_bytes
        if used + db > target:
            break
        used += db
        sel[i] = j + 1
    return sum(it.hull[s].dloss for it, s in zip(items, sel))


def test_solve_fits_and_is_near_optimal_on_random_instances():
    rng = np.random.default_rng(12345)
    n, optimal = 200, 0
    for _ in range(n):
        items, target = _instance(rng)
        chosen = solve(items, target)
        assert len(chosen) == len(items)
        assert all(any(c is x for x in it.cands) for c, it in zip(chosen, items))
        assert sum(c.est_bytes for c in chosen) <= target
        d = sum(c.dloss for c in chosen)
        opt = _optimum(items, target)
        # never worse than the Lagrangian (hull greedy) solution it starts from ...
        assert d <= _lagrangian(items, target) + 1e-12
        # ... and so within one item's loss span of the optimum (the LP relaxation's gap bound)
        assert d <= opt + max(it.hull[0].dloss - it.hull[-1].dloss for it in items) + 1e-12
        optimal += d <= opt + 1e-12
    # Greedy + fill is not exact; measured: 189/200 optimal with this seed (93.5-95.5% over seeds 0..2).
    assert optimal / n >= 0.9, optimal


def test_solve_takes_the_best_candidates_when_everything_fits():
    rng = np.random.default_rng(7)
    for _ in range(50):
        items, _ = _instance(rng)
        big = sum(max(c.est_bytes for c in it.cands) for it in items)
        chosen = solve(items, big)
        assert sum(c.dloss for c in chosen) == pytest.approx(sum(min(c.dloss for c in it.cands) for it in items))


def test_solve_at_exactly_the_smallest_size_takes_every_hull_start():
    rng = np.random.default_rng(8)
    items, _ = _instance(rng)
    target = sum(it.hull[0].est_bytes for it in items)
    chosen = solve(items, target)
    assert sum(c.est_bytes for c in chosen) <= target


def test_solve_refuses_when_the_smallest_candidates_do_not_fit():
    rng = np.random.default_rng(9)
    items, _ = _instance(rng)
    smallest = sum(it.hull[0].est_bytes for it in items)
    with pytest.raises(GolfpackError, match=f"smallest configuration needs about {smallest:,} bytes, over the "
                                            f"{smallest - 1:,} available"):
        solve(items, smallest - 1)
