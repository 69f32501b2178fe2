"""A small AST minifier for the exported script (pyminify is not a dependency).

    minify(source) -> source with the same AST up to names, smaller:
      1. docstrings dropped (`strip_docstrings`), comments and layout gone (`ast.unparse`);
      2. names renamed (`rename`): every identifier the script binds itself gets a short name, the
         most frequent the shortest; the map is global (one new name per old name in every scope),
         so a name means the same thing wherever it appears and scoping cannot break;
      3. one space per indent level and no spaces a tokenizer does not need (`squeeze`).

What is never renamed: attribute names (obj.attr: torch modules' state-dict names and methods
live there), names bound by imports, builtins, dunders, any name that some call passes as a
keyword argument (f(x, dim=1) must keep a parameter called dim), and names assigned or defined
directly in a class body (they are attributes). Each step is checked: the result must parse to
the AST of its input (step 3), or to it with the renaming applied (step 2).
"""
from __future__ import annotations

import ast
import builtins
import io
import keyword
import tokenize
from collections import Counter

from golfpack.errors import GolfpackError


def strip_docstrings(tree: ast.AST) -> ast.AST:
    """Drop every docstring (and a string statement right after one); an emptied body gets `pass`."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            while (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                   and isinstance(body[0].value.value, str)):
                del body[0]
            if not body and not isinstance(node, ast.Module):
                body.append(ast.Pass())
    return tree


def _kept_names(tree: ast.AST) -> set[str]:
    kept = set(dir(builtins)) | set(keyword.kwlist) | set(keyword.softkwlist)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for a in node.names:
                kept.add((a.asname or a.name).split(".")[0])
        elif isinstance(node, ast.keyword) and node.arg:
            kept.add(node.arg)
        elif isinstance(node, ast.ClassDef):
            for st in node.body:
                if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    kept.add(st.name)
                for t in ast.walk(st) if isinstance(st, (ast.Assign, ast.AnnAssign, ast.AugAssign)) else ():
                    if isinstance(t, ast.Name):
                        kept.add(t.id)
    return kept


def _short_names(kept: set[str]):
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    chars = letters + "0123456789_"
    width = 1
    while True:
        for i in range(len(letters) * len(chars) ** (width - 1)):
            name, rest = letters[i % len(letters)], i // len(letters)
            for _ in range(width - 1):
                name += chars[rest % len(chars)]
                rest //= len(chars)
            if name not in kept and not name.startswith("__"):
                yield name
        width += 1


class _Renamer(ast.NodeTransformer):
    def __init__(self, table: dict[str, str]):
        self.t = table

    def visit_Name(self, node):
        node.id = self.t.get(node.id, node.id)
        return node

    def visit_arg(self, node):
        node.arg = self.t.get(node.arg, node.arg)
        self.generic_visit(node)
        return node

    def visit_FunctionDef(self, node):
        node.name = self.t.get(node.name, node.name)
        self.generic_visit(node)
        return node

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        node.name = self.t.get(node.name, node.name)
        self.generic_visit(node)
        return node

    def visit_ExceptHandler(self, node):
        if node.name:
            node.name = self.t.get(node.name, node.name)
        self.generic_visit(node)
        return node

    def visit_Global(self, node):
        node.names = [self.t.get(n, n) for n in node.names]
        return node

    visit_Nonlocal = visit_Global


def rename(tree: ast.AST) -> ast.AST:
    """Short names for the identifiers the script binds (see the module docstring)."""
    kept = _kept_names(tree)
    uses: Counter = Counter()
    for node in ast.walk(tree):
        for name in ((node.id,) if isinstance(node, ast.Name) else (node.arg,) if isinstance(node, ast.arg)
                     else (node.name,) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                     else (node.name,) if isinstance(node, ast.ExceptHandler) and node.name else ()):
            if name not in kept and not name.startswith("__"):
                uses[name] += 1
    gen = _short_names(kept | set(uses))
    table = {}
    for name, _ in sorted(uses.items(), key=lambda kv: (-kv[1], kv[0])):
        new = next(gen)
        table[name] = new if len(new) < len(name) else name
    return _Renamer(table).visit(tree)


def squeeze(source: str) -> str:
    """One space per indent level, and a space between two tokens only where they would merge."""
    out: list[str] = []
    depth, line_start, prev = 0, True, None
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        kind, text = tok.type, tok.string
        if kind == tokenize.INDENT:
            depth += 1
            continue
        if kind == tokenize.DEDENT:
            depth -= 1
            continue
        if kind in (tokenize.NEWLINE, tokenize.NL):
            if not line_start:
                out.append("\n")
            line_start, prev = True, None
            continue
        if kind in (tokenize.COMMENT, tokenize.ENDMARKER):
            continue
        if line_start:
            out.append(" " * depth)
            line_start = False
        elif prev is not None and (prev[-1].isalnum() or prev[-1] == "_") and (text[0].isalnum() or text[0] in "_'\""):
            out.append(" ")
        out.append(text)
        prev = text
    return "".join(out)


def minify(source: str, filename: str = "<runtime>") -> str:
    """The minified source (see the module docstring); GolfpackError if a step changed its meaning."""
    tree = rename(strip_docstrings(ast.parse(source, filename)))
    text = ast.unparse(tree)
    want = ast.dump(ast.parse(text))
    small = squeeze(text)
    if ast.dump(ast.parse(small)) != want:
        raise GolfpackError(f"{filename}: the whitespace squeeze changed the program (a minifier bug)")
    return small + "\n"
