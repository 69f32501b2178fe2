"""Templates of the exported train_gpt.py (golfpack.export.script reads them as text).

They are not modules to import: each is a piece of one program, concatenated in the order of
script.RUNTIME_FILES, with `#if FLAG` / `#endif` blocks (golfpack.export.preprocess). This file
makes the folder a package, so an installed golfpack carries the templates with it.
"""
