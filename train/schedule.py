"""Learning-rate multiplier: warmup, constant, then linear warmdown to zero.

Two budgets, either or both:
- steps N: warmdown covers the last `warmdown_steps` steps, mul = (N - step) / warmdown_steps;
- time budget B seconds: warmdown starts when elapsed reaches (1 - warmdown_frac) * B,
  mul = remaining / (warmdown_frac * B).
With both, the smaller multiplier wins (whichever budget runs out first drives
the decay). A warmdown longer than the step budget covers the whole run
(decaying from 1 at step 0). Warmup scales linearly from 1/warmup up to 1 over the first steps.
"""
from __future__ import annotations


def lr_multiplier(step: int, elapsed_s: float, *, total_steps: int = 0, budget_s: float = 0.0,
                  warmup_steps: int = 0, warmdown_steps: int = 0, warmdown_frac: float = 0.0) -> float:
    mul = 1.0
    if warmup_steps > 0 and step < warmup_steps:
        mul = (step + 1) / warmup_steps
    if total_steps > 0 and warmdown_steps > 0:
        start = max(total_steps - warmdown_steps, 0)
        if step >= start:
            mul = min(mul, max(total_steps - step, 0) / min(warmdown_steps, total_steps))
    if budget_s > 0 and warmdown_frac > 0:
        remaining = max(budget_s - elapsed_s, 0.0)
        span = warmdown_frac * budget_s
        if remaining < span:
            mul = min(mul, remaining / span)
    return mul


def progress(step: int, elapsed_s: float, *, total_steps: int = 0, budget_s: float = 0.0) -> float:
    """Fraction of the run done: the larger of the step and time fractions (0 when unbounded)."""
    p = 0.0
    if total_steps > 0:
        p = max(p, step / total_steps)
    if budget_s > 0:
        p = max(p, elapsed_s / budget_s)
    return min(p, 1.0)


def muon_momentum(step: int, start: float, end: float, warmup_steps: int) -> float:
    """The baseline's momentum warmup: linear from start to end over warmup_steps."""
    if warmup_steps <= 0:
        return end
    f = min(step / warmup_steps, 1.0)
    return (1.0 - f) * start + f * end
