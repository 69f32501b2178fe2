"""Submission export: a record folder that runs where only torch, numpy and sentencepiece exist.

    golfpack export ART -o DIR      the record: train_gpt.py + the artifact + submission.json + README
    golfpack submit SRC -o DIR      plan/encode with the exact code bytes, export, score once
    golfpack check DIR              what a reviewer checks before trusting a record

Modules, one job each:
    runtime/      the exported script's source (templates with `#if FLAG` blocks)
    needs.py      which runtime blocks an artifact (or a plan) needs
    preprocess.py keeps the `#if` blocks a set of flags selects
    minify.py     AST minifier: no docstrings or comments, short names, one-space indents
    script.py     builds the self-extracting train_gpt.py (minified, LZMA, base85, exec stub)
    record.py     writes the record folder (and recodes an artifact the script cannot read)
    check.py      `golfpack check`: bytes, score-before-update, validation leakage
    cli.py        the subcommands
"""
