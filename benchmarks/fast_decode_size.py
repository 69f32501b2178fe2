"""Size cost of the fast-decode coder (rans_x32, csrc/RANS.md section 7) on an artifact's symbols (issue 19).

    python benchmarks/fast_decode_size.py ART [--json OUT]

For every symbols stream of ART: the bytes of v1 rans (the writer's auto precision and lanes),
rans_x32 and rans_rc (the stored stream when the writer chose rans_rc, else encoded here), the
coder the writer stored, and the coder `encode --fast-decode` would store (rans_x32 when it is
within 0.5% of the smallest allowed coder). Prints the totals and the per-stream spread of
rans_x32 vs v1 rans and vs rans_rc.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    from golfpack.codec.coders import FAST_DECODE_SLACK, StreamType, encode_stream
    from golfpack.codec.container import read_artifact
    from golfpack.codec.recode import stream_row_length

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("artifact")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    art = read_artifact(Path(a.artifact))
    rows = []
    for name, t in art.tensors.items():
        if "symbols" not in t.streams:
            continue
        s = t.streams["symbols"]
        q = t.symbols().reshape(-1)
        st = StreamType("int", s.type.count, s.type.bits, row_len=stream_row_length(t, "symbols"))
        sizes = {c: len(encode_stream(q, st, c)) for c in ("rans", "rans_x32")}
        if s.coder == "rans_rc":
            sizes["rans_rc"] = s.length
        elif st.offers("rans_rc"):
            sizes["rans_rc"] = len(encode_stream(q, st, "rans_rc"))
        fast = "rans_x32" if sizes["rans_x32"] <= s.length * (1 + FAST_DECODE_SLACK) else s.coder
        rows.append({"name": name, "count": int(q.size), "bits": s.type.bits, "stored": s.coder,
                     "stored_bytes": s.length, "fast_decode_pick": fast, **{f"{c}_bytes": v for c, v in sizes.items()}})
    tot = {k: sum(r.get(k, 0) for r in rows) for k in ("stored_bytes", "rans_bytes", "rans_x32_bytes", "rans_rc_bytes")}
    fast_total = sum(r["rans_x32_bytes"] if r["fast_decode_pick"] == "rans_x32" else r["stored_bytes"] for r in rows)
    vs_v1 = [r["rans_x32_bytes"] / r["rans_bytes"] - 1 for r in rows]
    vs_rc = [r["rans_x32_bytes"] / r["rans_rc_bytes"] - 1 for r in rows if r.get("rans_rc_bytes")]
    print(f"{len(rows)} symbols streams, {sum(r['count'] for r in rows):,} symbols; stored coders: "
          + ", ".join(f"{c} {sum(r['stored'] == c for r in rows)}" for c in sorted({r['stored'] for r in rows})))
    print("| coder | bytes | vs v1 rans |")
    print("|---|---:|---:|")
    for label, k in (("stored (writer's pick)", "stored_bytes"), ("v1 rans", "rans_bytes"), ("rans_x32", "rans_x32_bytes"),
                     ("rans_rc", "rans_rc_bytes")):
        print(f"| {label} | {tot[k]:,} | {tot[k] / tot['rans_bytes'] - 1:+.3%} |")
    print(f"| --fast-decode pick ({sum(r['fast_decode_pick'] == 'rans_x32' for r in rows)} streams rans_x32) | "
          f"{fast_total:,} | {fast_total / tot['rans_bytes'] - 1:+.3%} |")
    print(f"rans_x32 vs v1 rans per stream: median {statistics.median(vs_v1):+.3%}, min {min(vs_v1):+.3%}, "
          f"max {max(vs_v1):+.3%}")
    if vs_rc:
        print(f"rans_x32 vs rans_rc per stream: median {statistics.median(vs_rc):+.3%}, min {min(vs_rc):+.3%}, "
              f"max {max(vs_rc):+.3%}")
    if a.json:
        Path(a.json).write_text(json.dumps({"totals": tot, "fast_decode_total": fast_total, "streams": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
