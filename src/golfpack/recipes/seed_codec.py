"""Encode a checkpoint with a seed's own compression recipe (a CodecRecipe), no search.

Every tensor gets exactly what the seed's recipe says: the bits of its class (codec.spec rules),
the recipe's quantizer (RTN or GPTQ) and clip, magnitude pruning of a fixed fraction of its
symbols, LQER on the `lqer_top` tensors of largest predicted loss increase, float16 passthrough
where the rules say "float16", and the recipe's coders only. Tensors no rule names follow golfpack's
default policy (small, 1-D and control tensors stay float32). The selection goes through the
planner's encoder (codec.planner.plan with budget None and one candidate per tensor), so the
artifact is an ordinary golfpack artifact and its report has the same fields as a planned one.
"""
from __future__ import annotations

import torch

from golfpack.errors import GolfpackError


def _rules(text: str):
    """(codec.spec rules, indices of the rules written as float16)."""
    from golfpack.codec import spec

    parts = [p.strip() for p in text.split(",") if p.strip()]
    half = {i for i, p in enumerate(parts) if p.partition("=")[2].strip() == "float16"}
    rules = spec.parse_rules(",".join(p.replace("float16", "float") for p in parts))
    return rules, half


def _rule_index(name: str, rules, quant_default: bool):
    hit = None
    for i, r in enumerate(rules):
        if r.implicit and not quant_default:
            continue
        if r.matches(name):
            hit = i
    return hit


def encode_seed(ck, codec, calib=None, code_bytes: int = 0, device: str | None = None):
    """PlanResult (artifact bytes + report) of `ck` under CodecRecipe `codec`."""
    from golfpack.codec import spec
    from golfpack.codec.candidates import Candidate, Choice, TensorCandidates, lower_hull
    from golfpack.codec.planner import Item, PlannerConfig, _item_dtype, _kappa, _keep_bytes, _source_tensor, plan
    from golfpack.codec.quant import ClipSpec

    if codec.method not in ("rtn", "gptq"):
        raise GolfpackError(f"codec method must be rtn or gptq, got {codec.method!r}")
    if codec.method == "gptq" and calib is None:
        raise GolfpackError("the seed recipe quantizes with GPTQ, which needs calibration statistics")
    clip = str(ClipSpec.parse(codec.clip))
    rules, half = _rules(codec.bits)
    cfg = PlannerConfig(method=codec.method, coders=tuple(codec.coders), min_numel=codec.min_numel,
                        lqer_ranks=(), prune_rel=(), clip_mults=(1.0,), ecsq_betas=(), float16_floats=False,
                        device=device)
    items: list[Item] = []
    gens: list[tuple[int, TensorCandidates, int]] = []
    for name in ck.order:
        w = _source_tensor(ck, name)
        dtype = _item_dtype(ck, name)
        default_q = w.is_floating_point() and spec.quantizable(name, tuple(w.shape), codec.min_numel) and w.numel() > 0
        k = _rule_index(name, rules, default_q)
        rule = None if k is None else rules[k]
        quant = default_q if rule is None else (rule.mode == "quant" and w.is_floating_point() and w.dim() >= 2
                                                and w.numel() > 0)
        if rule is not None and rule.mode == "quant" and rule.bits is None:
            quant = False
        if not quant:
            if k in half and w.is_floating_point() and name not in ck.quantized:
                c = Candidate(Choice("float16"), 0.0, 0.0, 2 * w.numel())
            else:
                c = Candidate(Choice("keep"), 0.0, 0.0, _keep_bytes(ck, name))
            items.append(Item(name, tuple(w.shape), dtype, [c], [c], fixed=True))
            continue
        if rule is None:
            raise GolfpackError(f"seed recipe {codec.bits!r} gives no bit width for {name} (add a bare default, e.g. '6')")
        stats = None if calib is None else calib.stats.get(name)
        g = TensorCandidates(name, w, stats, gptq_cfg=cfg.gptq_config())
        items.append(Item(name, tuple(w.shape), dtype, []))
        gens.append((len(items) - 1, g, rule.bits))
    kappa = _kappa([g for _, g, _ in gens])
    chosen: dict[int, Candidate] = {}
    for i, g, bits in gens:
        if g.stats is None:
            g.kappa = kappa
        use_gptq = codec.method == "gptq" and g.stats is not None and g.stats.H is not None
        c = g.add_gptq_many([(bits, clip, 1.0)], device=device)[0] if use_gptq else g.add_quantized("rtn", bits, clip)
        if codec.prune > 0:
            c = g.add_pruned(c, codec.prune)
        chosen[i] = c
    if codec.lqer_rank and codec.lqer_top:
        ranked = sorted((x for x in gens if len(x[1].shape) == 2), key=lambda x: -chosen[x[0]].dloss)
        for i, g, _ in ranked[: codec.lqer_top]:
            lq = g.add_lqer(chosen[i], (codec.lqer_rank,), codec.lqer_bits)
            if lq:
                chosen[i] = lq[0]
    for i, c in chosen.items():
        items[i].cands = [c]
        items[i].hull = lower_hull([c])
    return plan(ck, None, calib, cfg, (), code_bytes, items=items)
