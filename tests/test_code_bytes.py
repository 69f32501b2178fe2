"""golfpack.codec.code_bytes: what --code-bytes auto counts, and how."""
import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from golfpack.codec import code_bytes as cbm
from golfpack.codec.code_bytes import (
    CUDA_SOURCES,
    EVAL_SOURCES,
    NATIVE_SOURCES,
    RUNTIME_SOURCES,
    CodeBytes,
    code_bytes_auto,
    minify_python,
    parse_code_bytes,
    self_extracting_script,
    strip_cpp_comments,
)
from golfpack.errors import GolfpackError

SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _rel_of_module(name: str, is_pkg: bool) -> str:
    parts = name.split(".")[1:]
    return "/".join(parts + ["__init__.py"]) if is_pkg else "/".join(parts) + ".py"


# ---------------------------------------------------------------- the runtime list is what runs


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    """A tiny artifact with row-quantized linears (packed path) and float tensors (dense path)."""
    from golfpack.checkpoint import Checkpoint, QuantizedSource
    from golfpack.codec.encode import encode_lossless
    from golfpack.model import GPT, GPTConfig

    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=40, num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1)
    model = GPT(cfg)
    ck = Checkpoint(config=cfg.to_dict(), source_format="test")
    linears = {n + ".weight" for n in model.linear_names} | {"tok_emb.weight"}
    for name, t in model.state_dict().items():
        t = t + torch.randn_like(t) * 0.05
        if name in linears:
            scale = (t.abs().amax(dim=1) / 7).clamp_min(1e-3).to(torch.float16)
            q = torch.round(t / scale.float()[:, None]).clamp(-7, 7).to(torch.int8)
            ck.quantized[name] = QuantizedSource(q, scale, torch.float32)
        else:
            ck.floats[name] = t.contiguous()
        ck.order.append(name)
    p = tmp_path_factory.mktemp("code_bytes") / "tiny.golfpack"
    p.write_bytes(encode_lossless(ck, jobs=1))
    return p


RUN_SCRIPT = r"""
import importlib.util, json, sys, types
path, bypass = sys.argv[1], sys.argv[2] == "bypass"
if bypass:
    # Load golfpack.evaluate.packed_model without running evaluate/__init__.py, whose only
    # content is re-exports of the scoring code (bpb, windows): what decode + run needs.
    import golfpack
    spec = importlib.util.find_spec("golfpack.evaluate")
    pkg = types.ModuleType("golfpack.evaluate")
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules["golfpack.evaluate"] = pkg
    golfpack.evaluate = pkg
import torch
from golfpack.evaluate.packed_model import load_packed
from golfpack.model.load import load
from golfpack.codec.container import read_artifact
art = read_artifact(path)
art.verify()
art.state_dict()
x = torch.arange(12).remainder(40)[None]
with torch.no_grad():
    a = load_packed(path)(x)
    b = load(path)(x)
assert a.shape[-1] == 40 and torch.allclose(a, b, atol=1e-4, rtol=1e-4)
mods = {k: hasattr(m, "__path__") for k, m in sys.modules.items() if k == "golfpack" or k.startswith("golfpack.")}
print(json.dumps(mods))
"""


def _loaded_modules(artifact: Path, mode: str) -> dict[str, bool]:
    r = subprocess.run([sys.executable, "-c", RUN_SCRIPT, str(artifact), mode], capture_output=True,
                       text=True, env=SUBPROCESS_ENV, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_runtime_sources_are_exactly_the_modules_decode_and_run_load(artifact):
    mods = _loaded_modules(artifact, "bypass")
    mods.pop("golfpack._C")  # the native extension: counted as its C++ sources
    mods.pop("golfpack.evaluate")  # the stand-in package above
    loaded = {_rel_of_module(name, is_pkg) for name, is_pkg in mods.items()}
    assert loaded - set(RUNTIME_SOURCES) == set(), "loaded by decode + run but not counted"
    assert set(RUNTIME_SOURCES) - loaded == set(), "counted but not loaded by decode + run"


def test_the_plain_import_adds_only_the_scoring_code(artifact):
    mods = _loaded_modules(artifact, "plain")
    mods.pop("golfpack._C")
    loaded = {_rel_of_module(name, is_pkg) for name, is_pkg in mods.items()}
    extra = loaded - set(RUNTIME_SOURCES)
    assert "evaluate/__init__.py" in extra
    assert extra <= set(EVAL_SOURCES), extra - set(EVAL_SOURCES)


def _golfpack_imports(path: Path) -> set[str]:
    """Every golfpack module an import statement of `path` names, lazy imports included."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.split(".")[0] == "golfpack"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.split(".")[0] == "golfpack":
            names.add(node.module)
            for a in node.names:  # `from golfpack import safetensors_io` names a module
                sub = f"{node.module}.{a.name}"
                if _module_rel(sub) is not None:
                    names.add(sub)
    return names


def _module_rel(name: str) -> str | None:
    for is_pkg in (False, True):
        rel = _rel_of_module(name, is_pkg)
        try:
            cbm._python_path(rel)
            return rel
        except GolfpackError:
            pass
    return None


@pytest.mark.parametrize("with_eval", [False, True])
def test_every_import_statement_of_a_counted_file_names_a_counted_module(with_eval):
    counted = list(RUNTIME_SOURCES) + (list(EVAL_SOURCES) if with_eval else [])
    for rel in counted:
        for name in _golfpack_imports(cbm._python_path(rel)):
            if name == "golfpack._C":
                continue
            assert _module_rel(name) in counted, f"{rel} imports {name}, which is not counted"


def test_native_lists_cover_the_extension_sources():
    csrc = cbm.find_csrc()
    # Everything compiled into golfpack._C: the core and the Python glue (csrc/tests/ is not).
    compiled = {f"csrc/{d}/{p.name}" for d in ("core", "py") for p in (csrc / d).iterdir()
                if p.suffix in (".cpp", ".h")}
    assert set(NATIVE_SOURCES) == compiled
    assert not [p for p in csrc.iterdir() if p.suffix in (".cpp", ".h")], "sources outside core/ and py/"
    cuda = {f"csrc/core/cuda/{p.name}" for p in (csrc / "core" / "cuda").iterdir() if p.suffix in (".cu", ".cuh")}
    assert set(CUDA_SOURCES) == cuda


# ---------------------------------------------------------------- the count


def test_total_is_base85_payload_plus_stub_and_far_below_raw():
    cb = code_bytes_auto()
    assert isinstance(cb, CodeBytes)
    assert cb.files == list(RUNTIME_SOURCES) + list(NATIVE_SOURCES)
    assert cb.stub_bytes == len(cbm.STUB.replace("{payload}", "").encode()) > 0
    assert cb.total == cb.compressed_bytes + cb.stub_bytes
    assert cb.compressed_bytes == 5 * (cb.brotli_bytes // 4) + (cb.brotli_bytes % 4 + 1 if cb.brotli_bytes % 4 else 0)
    assert 0 < cb.total < 0.4 * cb.raw_bytes
    assert cb.brotli_bytes < cb.minified_bytes < cb.raw_bytes
    assert len(self_extracting_script()) == cb.total
    assert len(cbm.STUB.splitlines()) == 2


def test_options_add_their_files():
    base = code_bytes_auto()
    ev = code_bytes_auto(include_eval=True)
    cu = code_bytes_auto(include_cuda=True)
    assert ev.files == list(RUNTIME_SOURCES) + list(EVAL_SOURCES) + list(NATIVE_SOURCES)
    assert cu.files == list(RUNTIME_SOURCES) + list(NATIVE_SOURCES) + list(CUDA_SOURCES)
    assert ev.total > base.total and cu.total > base.total


def test_deterministic():
    a = code_bytes_auto()
    b = code_bytes_auto()
    assert a == b and a is not b
    s1 = self_extracting_script()
    cbm._measure.cache_clear()
    assert code_bytes_auto() == a
    assert self_extracting_script() == s1


def test_the_self_extracting_script_recreates_the_minified_files(tmp_path):
    script = tmp_path / "x" / "code.py"
    script.parent.mkdir()
    script.write_bytes(self_extracting_script(include_cuda=True))
    r = subprocess.run([sys.executable, script.name], cwd=script.parent, capture_output=True, text=True,
                       env=SUBPROCESS_ENV, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    files = code_bytes_auto(include_cuda=True).files
    for rel, src in cbm.source_files(include_cuda=True):
        out = (script.parent / rel).read_text()
        if rel.endswith(".py"):
            assert out == minify_python(src.read_text()), rel
            compile(out, rel, "exec")
        else:
            assert out == strip_cpp_comments(src.read_text()), rel
    n = sum(1 for p in script.parent.rglob("*") if p.is_file()) - 1
    assert n == len(files)


# ---------------------------------------------------------------- Python minifier


def _top_level_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                names |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
        else:
            names |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    return names


@pytest.mark.parametrize("rel", list(RUNTIME_SOURCES) + list(EVAL_SOURCES))
def test_minified_python_compiles_and_defines_the_same_names(rel):
    src = cbm._python_path(rel).read_text()
    mini = minify_python(src)
    compile(mini, rel, "exec")
    assert _top_level_names(ast.parse(mini)) == _top_level_names(ast.parse(src))
    assert not any(line.lstrip().startswith("#") for line in mini.splitlines())  # comments dropped
    assert len(mini) <= len(src)


def test_minify_python_drops_docstrings_and_comments_only():
    src = '''"""MODDOC."""
from __future__ import annotations
import math  # COMMENT1

X = "kept: not a docstring"


class A:
    """CLSDOC."""

    def f(self, x: int) -> int:
        """FNDOC."""
        "a second string goes too (it would become the docstring)"
        y = x + 1  # COMMENT2
        "a later string stays"
        return y


def only_doc():
    """ONLYDOC."""


async def g():
    """ASYNCDOC."""
    return math.pi
'''
    mini = minify_python(src)
    for gone in ("MODDOC", "CLSDOC", "FNDOC", "ONLYDOC", "ASYNCDOC", "COMMENT"):
        assert gone not in mini
    assert "kept: not a docstring" in mini and "a later string stays" in mini and "second" not in mini
    assert mini.startswith("from __future__ import annotations")
    ns: dict = {}
    exec(compile(mini, "<mini>", "exec"), ns)
    assert ns["A"]().f(2) == 3 and ns["only_doc"]() is None
    assert ns["A"].__doc__ is None and ns["A"].f.__doc__ is None
    assert minify_python('"""only a docstring"""\n') == ""
    assert minify_python(mini) == mini  # idempotent


# ---------------------------------------------------------------- C++ comment stripper


@pytest.mark.parametrize("src,want", [
    ('const char* s = "// not a comment"; // real\n', 'const char* s = "// not a comment";\n'),
    ('const char* s = "/* not */ a"; /* real */\n', 'const char* s = "/* not */ a";\n'),
    ("int c = '/*'; int d = '*'; // x\nint e = '/';\n", "int c = '/*'; int d = '*';\nint e = '/';\n"),
    ("char q = '\\''; // c\nchar b = '\\\\'; /* c */\n", "char q = '\\'';\nchar b = '\\\\';\n"),
    ('auto s = "esc \\" // still string"; // gone\n', 'auto s = "esc \\" // still string";\n'),
    ('auto s = "\\\\"; // gone\n', 'auto s = "\\\\";\n'),
    ("/* outer /* inner */ int x; /* c */\n", "  int x;\n"),
    ("int a; /* a\n * multi-line\n */ int b;\n", "int a;   int b;\n"),
    ("int/**/x;\n", "int x;\n"),
    ("a = b / c; d = e /f; // div\n", "a = b / c; d = e /f;\n"),
    ("// a line comment \\\ncontinued\nint z;\n", "int z;\n"),
    ("int n = 1'000'000; char c = 'x'; // c\n", "int n = 1'000'000; char c = 'x';\n"),
    ("auto h = 0xFF'FF; auto w = u8'a'; // c\n", "auto h = 0xFF'FF; auto w = u8'a';\n"),
    ('auto r = R"x(/* not */ // not )" still)x"; // gone\n', 'auto r = R"x(/* not */ // not )" still)x";\n'),
    ('auto r = R"(line1 // no\n\n   \nline4)"; // gone\n', 'auto r = R"(line1 // no\n\n   \nline4)";\n'),
    ("\n\n  int x;   \n\n\t\n// only\n/* only */\nint y;\n", "  int x;\nint y;\n"),
    ("#define M(x) \\\n  // inside\nint after;\n", "#define M(x) \\\n\nint after;\n"),
    ('#include "a.h" // why\n#include <b>\n', '#include "a.h"\n#include <b>\n'),
    ("", ""),
])
def test_strip_cpp_comments(src, want):
    assert strip_cpp_comments(src) == want


def test_strip_cpp_comments_refuses_an_unterminated_block_comment():
    with pytest.raises(GolfpackError, match="unterminated"):
        strip_cpp_comments("int x; /* never closed\n")


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ to compare against its comment removal")
@pytest.mark.parametrize("rel", list(NATIVE_SOURCES) + list(CUDA_SOURCES))
def test_strip_cpp_comments_agrees_with_gcc_on_the_real_sources(rel):
    path = cbm.find_csrc() / rel[len("csrc/"):]
    r = subprocess.run(["g++", "-x", "c++", "-fpreprocessed", "-dD", "-E", "-P", str(path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    ours = strip_cpp_comments(path.read_text()).replace("#pragma once", "")
    assert "".join(ours.split()) == "".join(r.stdout.split())


# ---------------------------------------------------------------- where the C++ comes from


@pytest.fixture
def fresh_cache():
    cbm._measure.cache_clear()
    yield
    cbm._measure.cache_clear()


def _copy_csrc(dst: Path) -> None:
    shutil.copytree(cbm.find_csrc(), dst, ignore=shutil.ignore_patterns("*.o", "*.so"))


def test_installed_layout_finds_golfpack_csrc(tmp_path, monkeypatch, fresh_cache):
    real = code_bytes_auto(include_cuda=True)
    pkg = tmp_path / "site-packages" / "golfpack"
    pkg.mkdir(parents=True)
    _copy_csrc(pkg / "_csrc")
    cbm._measure.cache_clear()
    monkeypatch.setattr(cbm, "_package_dir", lambda: pkg)
    assert cbm.find_csrc() == pkg / "_csrc"
    assert code_bytes_auto(include_cuda=True) == real


def test_checkout_layout_finds_csrc(tmp_path, monkeypatch, fresh_cache):
    pkg = tmp_path / "checkout" / "src" / "golfpack"
    pkg.mkdir(parents=True)
    _copy_csrc(tmp_path / "checkout" / "csrc")
    monkeypatch.setattr(cbm, "_package_dir", lambda: pkg)
    assert cbm.find_csrc() == tmp_path / "checkout" / "csrc"


def test_missing_csrc_is_a_clear_error(tmp_path, monkeypatch, fresh_cache):
    pkg = tmp_path / "site-packages" / "golfpack"
    pkg.mkdir(parents=True)
    monkeypatch.setattr(cbm, "_package_dir", lambda: pkg)
    with pytest.raises(GolfpackError, match="cannot find golfpack's C\\+\\+ sources"):
        code_bytes_auto()
    (pkg / "_csrc" / "py").mkdir(parents=True)
    (pkg / "_csrc" / "py" / "module.cpp").write_text("int main() {}\n")
    with pytest.raises(GolfpackError, match="common.h"):
        code_bytes_auto()


# ---------------------------------------------------------------- --code-bytes values


@pytest.mark.parametrize("text,want", [
    ("auto", "auto"), (" AUTO ", "auto"), ("0", 0), ("31999", 31999), ("12_000", 12000),
    ("1.2e4", 12000), ("1e6", 1_000_000), ("+5", 5), ("48168.0", 48168), (" 7 ", 7),
])
def test_parse_code_bytes_accepts(text, want):
    got = parse_code_bytes(text)
    assert got == want and type(got) is type(want)


@pytest.mark.parametrize("text", [
    "", " ", "-1", "-1e3", "1.5", "1.2e0", "nan", "inf", "-inf", "Infinity", "0x10", "ten",
    "auto2", "12__000", "_12", "1e400", "1,000", "True",
])
def test_parse_code_bytes_refuses(text):
    with pytest.raises(GolfpackError, match="--code-bytes"):
        parse_code_bytes(text)


def test_parse_code_bytes_refuses_non_strings():
    with pytest.raises(GolfpackError, match="--code-bytes"):
        parse_code_bytes(12)  # type: ignore[arg-type]
