"""Which tensors get quantized, and the user's per-tensor overrides (`--bits`).

A rule list such as ``"mlp=5,attn=6,embed=8"`` maps tensors to fixed choices;
later rules override earlier ones, and a rule without ``=`` applies to every
quantized tensor. Keys are group aliases or glob patterns on the tensor name:

    embed   tok_emb.weight and every other embedding table (*embed*.weight)
    head    lm_head.weight
    attn    *.attn.*          q, k, v, o   *.attn.c_q / c_k / c_v / proj
    mlp     *.mlp.*           fc, mproj    *.mlp.fc / *.mlp.proj
    GLOB    any fnmatch pattern, e.g. "blocks.0.*" or "*c_q.weight"

Values:

    B            bits B (2..8); the planner still chooses the clip, LQER rank and pruning
    B:CLIP       bits and clip fixed, CLIP as codec.quant.ClipSpec.parse ("sdclip:12.85", "mse", "absmax")
    keep         keep the source exactly (its own integer symbols, or its floats)
    float        store the tensor as float (its source dtype), not quantized

Rules quantize tensors of two or more dimensions only (a 1-D tensor would need a
scale per element); a pattern that also matches 1-D tensors leaves those as floats.

`quantizable` is the default policy: float tensors of >= 2 dims and at least
`min_numel` elements, except control tensors (gains, scales, mixes: the
baseline keeps them in fp32), are quantized; the rest are stored as floats.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from golfpack.errors import GolfpackError

GROUP_PATTERNS = {
    "embed": ("tok_emb.weight", "*embed*.weight"),
    "head": ("lm_head.weight",),
    "attn": ("*.attn.*",),
    "mlp": ("*.mlp.*",),
    "q": ("*.attn.c_q.weight",),
    "k": ("*.attn.c_k.weight",),
    "v": ("*.attn.c_v.weight",),
    "o": ("*.attn.proj.weight",),
    "fc": ("*.mlp.fc.weight",),
    "mproj": ("*.mlp.proj.weight",),
}
# Names the baseline exports as fp32 passthrough (its CONTROL_TENSOR_NAME_PATTERNS) plus the
# records' other scalar controls.
CONTROL_PATTERNS = ("attn_scale", "mlp_scale", "resid_mix", "q_gain", "skip_weight", "smear", "gate",
                    "scale", "vrl_", "ln_")
DEFAULT_MIN_NUMEL = 4096


@dataclass(frozen=True)
class Rule:
    pattern: str  # the alias or glob as written
    bits: int | None  # None with mode keep/float
    clip: object | None  # codec.quant.ClipSpec or None (planner's choice)
    mode: str  # "quant" | "keep" | "float"
    implicit: bool = False  # a bare VALUE: applies to the tensors the default policy quantizes

    def matches(self, name: str) -> bool:
        pats = GROUP_PATTERNS.get(self.pattern, (self.pattern,))
        return any(fnmatch.fnmatchcase(name, p) for p in pats)


def parse_rules(text: str | None) -> list[Rule]:
    """Parse a --bits spec (see module docstring). Empty or None gives no rules."""
    from golfpack.codec.quant import ClipSpec

    rules: list[Rule] = []
    if not text:
        return rules
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, val = part.partition("=")
        implicit = not sep
        if implicit:
            key, val = "*", part
        key, val = key.strip(), val.strip()
        if not key or not val:
            raise GolfpackError(f"--bits: cannot read {part!r} (expected KEY=VALUE or VALUE)")
        if val in ("keep", "float"):
            rules.append(Rule(key, None, None, val, implicit))
            continue
        b, _, clip_text = val.partition(":")
        try:
            bits = int(b)
        except ValueError:
            raise GolfpackError(f"--bits: {val!r} is not a bit width (2..8), 'keep' or 'float'") from None
        if not 2 <= bits <= 8:
            raise GolfpackError(f"--bits: bit width {bits} outside 2..8 in {part!r}")
        clip = ClipSpec.parse(clip_text) if clip_text else None
        rules.append(Rule(key, bits, clip, "quant", implicit))
    return rules


def rule_for(name: str, rules: list[Rule], default_quantized: bool = True) -> Rule | None:
    """The last rule that matches name, or None. A bare VALUE (implicit "*") only covers tensors
    the default policy quantizes; named patterns override the policy."""
    hit = None
    for r in rules:
        if r.implicit and not default_quantized:
            continue
        if r.matches(name):
            hit = r
    return hit


def is_control(name: str) -> bool:
    leaf = name.rsplit(".", 2)
    tail = ".".join(leaf[-2:])
    return any(p in tail for p in CONTROL_PATTERNS) and not tail.endswith(("embed.weight", "proj.weight"))


def quantizable(name: str, shape: tuple[int, ...], min_numel: int = DEFAULT_MIN_NUMEL) -> bool:
    """Default policy: >= 2-D, at least min_numel elements, not a control tensor."""
    numel = 1
    for d in shape:
        numel *= d
    return len(shape) >= 2 and numel >= min_numel and not is_control(name)
