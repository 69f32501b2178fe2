"""The exported script's minifier and template preprocessor."""
import ast

import pytest

from golfpack.errors import GolfpackError
from golfpack.export.minify import minify
from golfpack.export.needs import ALL_FLAGS
from golfpack.export.preprocess import flags_used, select
from golfpack.export.script import Settings, runtime_source, script_source

PROGRAM = '''
"""module docstring"""
import math as m
from collections import Counter


class Thing:
    """doc"""
    size = 3  # a class attribute: read as obj.size, never renamed

    def __init__(self, width, height=2):
        self.width = width
        self.height = height

    def area(self):
        return self.width * self.height * self.size


def compute(values, scale=1.0, *, offset=0):
    total = 0
    for value in values:
        try:
            total += m.sqrt(value) * scale
        except ValueError as problem:
            total -= len(str(problem))
    counter = Counter(int(v) for v in values)
    squares = [t * t for t in range(3)]
    return total + offset + sum(squares) + len(counter) + Thing(2, height=5).area()


def outer():
    acc = []

    def inner(x):
        nonlocal acc
        acc = acc + [x]
        return f"{x!r}:{len(acc)}"
    return [inner(i) for i in range(3)]


globals()['RESULT'] = (compute([1, 4, 9, -1], scale=2.0, offset=1), outer())  # a string key survives
'''


def _run(src):
    ns = {}
    exec(compile(src, "p", "exec"), ns)
    return ns


def test_minified_program_behaves_the_same():
    small = minify(PROGRAM)
    assert len(small) < 0.7 * len(PROGRAM)
    assert _run(small)["RESULT"] == _run(PROGRAM)["RESULT"]
    assert "docstring" not in small and "class attribute" not in small
    assert "scale=" in small and "offset=" in small  # keyword-passed parameters keep their names
    assert ".size" in small and ".area(" in small  # attributes and methods untouched


def test_minified_runtime_parses_and_is_smaller():
    src = script_source(ALL_FLAGS, Settings())
    small = minify(src)
    ast.parse(small)
    assert len(small) < 0.75 * len(src)


def test_select_keeps_only_chosen_blocks():
    src = "a = 1\n#if x\nb = 2\n#if y\nc = 3\n#else\nc = 4\n#endif\n#endif\n#if x|z\nd = 5\n#endif\n"
    assert select(src, {"x"}) == "a = 1\nb = 2\nc = 4\nd = 5\n"
    assert select(src, {"x", "y"}) == "a = 1\nb = 2\nc = 3\nd = 5\n"
    assert select(src, {"z"}) == "a = 1\nd = 5\n"
    assert select(src, set()) == "a = 1\n"
    assert flags_used(src) == {"x", "y", "z"}
    for bad in ("#if x\n", "#endif\n", "#else\n"):
        with pytest.raises(GolfpackError):
            select(bad, set())


def test_templates_name_only_known_flags():
    assert flags_used(runtime_source()) <= ALL_FLAGS
    with pytest.raises(GolfpackError, match="unknown runtime flags"):
        script_source({"nope"}, Settings())
