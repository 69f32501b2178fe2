"""`golfpack data ...`: tokenize corpora into shards, train a tokenizer, inspect shards."""
from __future__ import annotations

import argparse
import json
import sys

from golfpack.errors import GolfpackError


def add_subcommands(subparsers) -> None:
    p = subparsers.add_parser("data", help="tokenize corpora into shards, train a tokenizer, inspect shards")
    sub = p.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    sub.required = True

    t = sub.add_parser(
        "tokenize",
        help="tokenize a corpus into <stem>_{train,val}_sp<V>.bin shards",
        description=(
            "Each document becomes BOS + sp.encode(raw text), no EOS, in corpus order. "
            "The last --val-docs documents (or the last --val-frac fraction) go to the val "
            "shard, the rest to the train shard; a split with no documents writes no file."
        ),
    )
    _add_source_args(t)
    t.add_argument("--tokenizer", required=True, help="SentencePiece .model file")
    t.add_argument("--out", required=True, help="output directory")
    g = t.add_mutually_exclusive_group()
    g.add_argument(
        "--val-docs",
        default="0",
        help="number of LAST documents that form the val shard, or 'all' (default 0: no val shard)",
    )
    g.add_argument(
        "--val-frac",
        type=float,
        default=None,
        help="fraction of LAST documents for val: train keeps the first int((1-F)*N) "
        "(0.1 reproduces the shared enwiki split; needs one extra pass to count documents)",
    )
    t.add_argument("--json", action="store_true", help="print the summary as JSON")
    t.set_defaults(func=_cmd_tokenize)

    tt = sub.add_parser(
        "train-tokenizer",
        help="train a SentencePiece BPE tokenizer (challenge conventions: pad 0 bos 1 eos 2 unk 3, byte fallback)",
    )
    _add_source_args(tt)
    tt.add_argument("--vocab", type=int, default=1024, help="vocabulary size (default 1024)")
    tt.add_argument("--out", required=True, help="output .model path")
    tt.add_argument(
        "--max-input-bytes",
        type=int,
        default=4_000_000,
        help="train on the first this many bytes of text lines (default 4,000,000; a few seconds)",
    )
    tt.add_argument("--json", action="store_true")
    tt.set_defaults(func=_cmd_train_tokenizer)

    i = sub.add_parser("inspect", help="summarize token shards (tokens, documents, bytes)")
    i.add_argument("shards", nargs="+", help="shard files, directories or globs")
    i.add_argument("--tokenizer", help="SentencePiece .model: also count bpb bytes")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=_cmd_inspect)


def _add_source_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("corpus", nargs="?", help="corpus .jsonl / .txt, optionally .xz/.gz/.bz2")
    p.add_argument(
        "--stdlib",
        action="store_true",
        help="use the built-in corpus: the Python standard library's .py files, one document each",
    )
    p.add_argument("--text-key", default="text", help="JSON field holding the text (default: text)")
    p.add_argument("--max-docs", type=int, default=None, help="read at most this many documents")
    p.add_argument(
        "--max-bytes", type=int, default=None, help="with --stdlib: stop after about this many bytes"
    )


def _source(args):
    """(stem, factory of a fresh document iterator)."""
    from golfpack.data import corpus

    if args.max_docs is not None and args.max_docs <= 0:
        raise GolfpackError(f"--max-docs must be positive, got {args.max_docs}")
    if args.stdlib == (args.corpus is not None):
        raise GolfpackError("give exactly one of CORPUS or --stdlib")
    if args.stdlib:
        return "stdlib", lambda: corpus.stdlib_corpus(max_docs=args.max_docs, max_bytes=args.max_bytes)
    if args.max_bytes is not None:
        raise GolfpackError("--max-bytes applies to --stdlib only; use --max-docs for a corpus file")
    _, stem = corpus.corpus_kind_and_stem(args.corpus)
    return stem, lambda: corpus.iter_documents(args.corpus, text_key=args.text_key, max_docs=args.max_docs)


def _parse_val_docs(s: str):
    if s == "all":
        return "all"
    try:
        n = int(s)
    except ValueError:
        raise GolfpackError(f"--val-docs must be an integer or 'all', got {s!r}") from None
    if n < 0:
        raise GolfpackError(f"--val-docs must be >= 0, got {n}")
    return n


def _cmd_tokenize(args) -> int:
    from golfpack.data.tokenize import tokenize_documents

    stem, make_docs = _source(args)
    if args.val_frac is not None:
        if not 0.0 <= args.val_frac <= 1.0:
            raise GolfpackError(f"--val-frac must be in [0, 1], got {args.val_frac}")
        n = sum(1 for _ in make_docs())
        val_docs = n - int((1.0 - args.val_frac) * n)
    else:
        val_docs = _parse_val_docs(args.val_docs)
    res = tokenize_documents(make_docs(), args.tokenizer, args.out, stem, val_docs=val_docs)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"tokenizer: {args.tokenizer} (vocab {res['vocab_size']})")
    for split in ("train", "val"):
        s = res[split]
        if s["path"] is None:
            print(f"{split:5s}: no documents, no file")
            continue
        tpb = s["tokens"] / s["bpb_bytes"] if s["bpb_bytes"] else float("nan")
        print(
            f"{split:5s}: {s['path']}  docs {s['docs']:,}  tokens {s['tokens']:,}  "
            f"text bytes {s['text_bytes']:,}  bpb bytes {s['bpb_bytes']:,}  tokens/byte {tpb:.4f}"
        )
    return 0


def _cmd_train_tokenizer(args) -> int:
    from golfpack.data.tokenizer_train import train_tokenizer

    _, make_docs = _source(args)
    res = train_tokenizer(make_docs(), args.out, vocab_size=args.vocab, max_bytes=args.max_input_bytes)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(
            f"wrote {res['path']}: vocab {res['vocab_size']}, trained on "
            f"{res['input_bytes']:,} bytes in {res['input_lines']:,} lines"
        )
    return 0


def _cmd_inspect(args) -> int:
    import numpy as np

    from golfpack.data.bytes import build_byte_tables, count_stream_bytes
    from golfpack.data.shards import read_shard, resolve_shards

    tables = None
    bos = 1  # the challenge tokenizers' BOS; a given tokenizer is asked instead
    if args.tokenizer:
        from golfpack.data.bytes import load_sentencepiece

        sp = load_sentencepiece(args.tokenizer)
        tables = build_byte_tables(sp)
        bos = int(sp.bos_id())
    rows = []
    for p in resolve_shards(args.shards):
        t = read_shard(p)
        row = {"path": str(p), "tokens": int(t.size)}
        if t.size:
            row["max_id"] = int(t.max())
            row["docs"] = int(np.count_nonzero(t == bos))
            if tables is not None:
                if row["max_id"] >= tables.vocab_size:
                    raise GolfpackError(
                        f"{p}: token id {row['max_id']} outside the tokenizer's {tables.vocab_size} pieces"
                    )
                row["bpb_bytes"] = count_stream_bytes(t, tables)
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        extra = f"  bpb bytes {r['bpb_bytes']:,} (targets 1..N-1)" if "bpb_bytes" in r else ""
        print(f"{r['path']}: tokens {r['tokens']:,}  docs {r.get('docs', 0):,}  max id {r.get('max_id', '-')}{extra}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    from golfpack.cli import main

    sys.exit(main(["data", *sys.argv[1:]]))
