"""atheris (libFuzzer for Python) entry point for one target of fuzz/targets.py.

    python fuzz/fuzz.py TARGET [libFuzzer flags] [CORPUS_DIR ...]
    python fuzz/fuzz.py rans -runs=100000 fuzz/corpus/rans

golfpack's Python modules are instrumented for coverage; the native decoders in
golfpack._C are exercised but not coverage-instrumented (gcc build): the
coverage-guided, sanitized C++ harnesses are in fuzz/native/. Run under the
ASan+UBSan build (fuzz/run.py --asan), a memory error in golfpack._C aborts
the run like any crash. fuzz/run.py runs every target and summarizes.
"""
import os
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

with atheris.instrument_imports(include=["golfpack", "targets"]):
    import targets


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in targets.TARGETS:
        sys.exit(f"usage: fuzz.py TARGET [libFuzzer args]; TARGET one of {', '.join(targets.TARGETS)}")
    fn = targets.TARGETS[sys.argv[1]]
    atheris.Setup([sys.argv[0]] + sys.argv[2:], lambda data: fn(bytes(data)))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
