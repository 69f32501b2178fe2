"""Which blocks of the runtime an exported script carries (the `#if` flags of runtime/*.py).

    coders     raw, rans, rans_rc            the coders the artifact's streams use (rans_rc needs
                                             rans: its side streams are v1 rANS streams)
    native                                   a C rANS loop compiled at run time (the numpy decoder
                                             is always there, for machines without a compiler)
    shuffle                                  some float stream is byte-shuffled
    schemes    tensorscale, groupscale, lowrank   (int_rowscale and float are always there)
    model      bigram, smear, xsa, vres, ve, recur, parallel, gate, leaky, untied, softcap, ntk
    eval       plain, sliding, doc            the evaluation mode(s) the script can run
    ttt        lora, sgd, phased             score-first test-time training: lora (per-document LoRA),
                                             sgd (full-parameter SGD on dense deltas: --ttt sgd and q),
                                             phased (lora + sgd + the phase schedule)

`for_artifact` reads them off an artifact; `for_plan` gives the superset a planner may produce
with a set of allowed coders, so the code bytes it reserves before encoding are the size of a
script that can decode whatever it writes.
"""
from __future__ import annotations

from golfpack.errors import GolfpackError

RUNTIME_CODERS = ("raw", "rans", "rans_rc")
EVAL_MODES = {"plain": "plain", "sliding": "sliding", "doc-aware": "doc"}
# --ttt method -> the runtime blocks it needs (sgd and q share the full-parameter SGD block)
TTT_FLAGS = {"lora": ("lora",), "sgd": ("sgd",), "q": ("sgd",), "phased": ("lora", "sgd", "phased")}
MODEL_FLAGS = ("bigram", "smear", "xsa", "vres", "ve", "recur", "parallel", "gate", "leaky", "untied", "softcap",
               "ntk")
ALL_FLAGS = frozenset(RUNTIME_CODERS + ("native", "shuffle", "tensorscale", "groupscale", "lowrank") + MODEL_FLAGS
                      + tuple(EVAL_MODES.values()) + ("lora", "sgd", "phased"))


def model_flags(cfg: dict) -> set[str]:
    """The model blocks a GPTConfig (as a dict) switches on."""
    on = {
        "bigram": bool(cfg.get("bigram_buckets")),
        "smear": bool(cfg.get("smear_gate")),
        "xsa": bool(cfg.get("xsa")),
        "vres": bool(cfg.get("value_residual")),
        "ve": bool(cfg.get("ve_layers")),
        "recur": cfg.get("recur_start") is not None and int(cfg.get("recur_repeats", 1)) > 1,
        "parallel": cfg.get("parallel_residual_start") is not None,
        "gate": bool(cfg.get("gated_attention")),
        "leaky": cfg.get("activation") == "leaky_relu2",
        "untied": not cfg.get("tie_embeddings", True),
        "softcap": bool(cfg.get("logit_softcap")),
        "ntk": cfg.get("rope_train_seq_len") is not None,
    }
    return {k for k, v in on.items() if v}


def run_flags(eval_mode: str, ttt: str | None) -> set[str]:
    if eval_mode not in EVAL_MODES:
        raise GolfpackError(f"--eval must be one of {', '.join(EVAL_MODES)}, got {eval_mode!r}")
    out = {EVAL_MODES[eval_mode]}
    if ttt is not None:
        if ttt not in TTT_FLAGS:
            raise GolfpackError(f"--ttt must be one of {', '.join(TTT_FLAGS)}, got {ttt!r}")
        out.update(TTT_FLAGS[ttt])
    return out


def for_artifact(art, cfg: dict, eval_mode: str, ttt: str | None, native: bool = True) -> frozenset[str]:
    """Exactly what this parsed artifact (golfpack.codec.container.Artifact) needs."""
    flags = set(model_flags(cfg)) | run_flags(eval_mode, ttt)
    for t in art.tensors.values():
        for s in t.streams.values():
            if s.coder not in RUNTIME_CODERS:
                raise GolfpackError(f"tensor {t.name!r} uses coder {s.coder}, which the exported script cannot decode "
                                    "(export recodes it)")
            flags.add(s.coder)
            if s.transform == "byteshuffle":
                flags.add("shuffle")
        kind = t.scheme["kind"]
        flags |= {"int_tensorscale": {"tensorscale"}, "int_groupscale": {"groupscale"}}.get(kind, set())
        if "lowrank" in t.scheme:
            flags.add("lowrank")
    return _closed(flags, native)


def _closed(flags: set[str], native: bool) -> frozenset[str]:
    """rans_rc's side streams need the v1 decoder; any rANS decoder gets the C loop unless refused."""
    if "rans_rc" in flags:
        flags.add("rans")
    if native and "rans" in flags:
        flags.add("native")
    return frozenset(flags)


def for_plan(cfg: dict, coders, lqer: bool, eval_mode: str, ttt: str | None, native: bool = True) -> frozenset[str]:
    """Everything a planner with these coders (and LQER on or off) may write: its code-bytes bound."""
    bad = [c for c in coders if c not in RUNTIME_CODERS]
    if bad:
        raise GolfpackError(f"coders {bad} cannot be decoded by the exported script (allowed: {', '.join(RUNTIME_CODERS)})")
    flags = set(model_flags(cfg)) | run_flags(eval_mode, ttt) | set(coders) | {"shuffle"}
    if lqer:
        flags.add("lowrank")
    return _closed(flags, native)
