"""Write the ~15 MB int6 test artifact of the fast-decode benchmark (issue 8).

    python benchmarks/make_decode_artifact.py -o /tmp/decode_11x512.gp [--layers 11] [--dim 512]
        [--vocab 1024] [--mlp-mult 3] [--df 6] [--seed 0]

A seed-class model (default 11 layers x 512, vocab 1024, MLP x3, 26.5 M parameters) with
synthetic weights: every 2-D matrix gets Student-t(df) entries (trained weights are heavier-tailed
than Gaussian; df=6 lands the int6 artifact near 15 MB), each row with its own std (log-normal
spread, as trained rows differ in scale), the matrix scaled like its init. 1-D and small tensors
keep their init values. The checkpoint is then encoded with the plain recipe of the records:

    golfpack encode CKPT -o OUT --bits 6 --method rtn --calib none --clip absmax --coders raw,rans

(RTN per row at absmax/31). --coders raw,rans by default: on these i.i.d. synthetic rows brotli-11
and rANS tie within ~0.5%, so with every coder allowed the writer picks brotli for a coin-flip
third of the symbol streams, and brotli's ~300 MB/s decode would then measure brotli, not the
golfpack decoder (issue 8 is about the latter). The artifact itself is not committed: rerun this
script.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch


def synthetic_state_dict(cfg, df: float, seed: int) -> dict[str, torch.Tensor]:
    from golfpack.model import GPT

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = GPT(cfg)
    sd = {}
    for name, t in model.state_dict().items():
        t = t.detach().to(torch.float32).clone()
        if t.dim() == 2 and t.numel() > 65536:
            rows, cols = t.shape
            # Trained-weight-like magnitude: ~1/sqrt(fan_in), row stds spread log-normally.
            std = (1.0 / np.sqrt(cols)) * np.exp(rng.normal(0.0, 0.25, (rows, 1)))
            w = rng.standard_t(df, (rows, cols)) / np.sqrt(df / (df - 2.0)) * std
            t = torch.from_numpy(w.astype(np.float32))
        sd[name] = t
    return sd


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--output", required=True, help="artifact path to write")
    ap.add_argument("--layers", type=int, default=11)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--mlp-mult", type=float, default=3.0)
    ap.add_argument("--df", type=float, default=6.0, help="Student-t degrees of freedom of the weights")
    ap.add_argument("--bits", default="6")
    ap.add_argument("--coders", default="raw,rans", help="coders the writer may use (default raw,rans)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.df <= 2:
        ap.error("--df must be > 2 (finite variance)")

    from golfpack.cli import main as gp_main
    from golfpack.model.config import GPTConfig

    cfg = GPTConfig(vocab_size=args.vocab, num_layers=args.layers, model_dim=args.dim, mlp_mult=args.mlp_mult)
    sd = synthetic_state_dict(cfg, args.df, args.seed)
    n = sum(t.numel() for t in sd.values())
    print(f"model: {args.layers}x{args.dim}, vocab {args.vocab}, mlp x{args.mlp_mult}: {n:,} parameters",
          file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "synthetic.pt"
        from dataclasses import asdict

        torch.save({"state_dict": sd, "config": asdict(cfg)}, ckpt)
        rc = gp_main(["encode", str(ckpt), "-o", args.output, "--bits", args.bits, "--method", "rtn",
                      "--calib", "none", "--clip", "absmax", "--coders", args.coders, "--quiet"])
    if rc == 0:
        print(f"wrote {args.output}: {os.path.getsize(args.output):,} bytes", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
