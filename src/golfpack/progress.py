"""Progress bars for long stages (tqdm), in the shapes golfpack's callbacks use.

golfpack's stages report progress through plain callbacks, so the library never prints by
itself: the evaluator calls `progress(done, total)` per batch, the planner
`progress(stage, done, total)` per tensor. These helpers turn such callbacks into tqdm bars on
stderr (tqdm handles terminals and log files alike). `enabled=False` gives None, which every
callback site accepts as "no progress".
"""
from __future__ import annotations

import sys

from tqdm.auto import tqdm


def bar(total: int | None, desc: str, enabled: bool = True, unit: str = "it", leave: bool = True):
    """A tqdm bar on stderr (disabled: a no-op bar with the same methods)."""
    return tqdm(total=total, desc=desc, unit=unit, leave=leave, disable=not enabled, file=sys.stderr,
                dynamic_ncols=True, mininterval=0.5)


def counter(desc: str, enabled: bool = True, unit: str = "batch", leave: bool = False):
    """`progress(done, total)` for golfpack.evaluate.evaluate and similar loops: one bar, created on the
    first call and closed when done == total."""
    if not enabled:
        return None
    state: dict = {}

    def progress(done: int, total: int) -> None:
        b = state.get("bar")
        if b is None:
            b = state["bar"] = bar(total, desc, unit=unit, leave=leave)
        b.update(done - b.n)
        if done >= total:
            b.close()
            state.pop("bar", None)
    return progress


def staged(desc: str, enabled: bool = True, unit: str = "tensor"):
    """`progress(stage, done, total)` for the planner's candidate stages: one bar per stage."""
    if not enabled:
        return None
    state: dict = {}

    def progress(stage: str, done: int, total: int) -> None:
        if state.get("stage") != stage:
            if state.get("bar") is not None:
                state["bar"].close()
            state["stage"] = stage
            state["bar"] = bar(total, f"{desc}: {stage}", unit=unit, leave=False)
        b = state["bar"]
        b.update(done - b.n)
        if done >= total:
            b.close()
            state["bar"] = None
    return progress
