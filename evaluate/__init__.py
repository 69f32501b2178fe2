"""golfpack.evaluate: exact val_loss / val_bpb by the challenge's rules.

    evaluate(model, tokens, tables, seq_len=..., stride=None, doc_aware=False, ...) -> EvalResult
    plan_segments(...)   which rows each mode runs and which targets it scores (windows.py)

Modes: plain, sliding (exact_once | rescore_tail), document-aware (hard cut or
sliding within documents); single process or under torchrun. CLI: `golfpack eval`.
"""
from golfpack.evaluate.bpb import EvalResult, evaluate
from golfpack.evaluate.windows import Segments, plan_batches, plan_segments

__all__ = ["EvalResult", "evaluate", "Segments", "plan_segments", "plan_batches"]
