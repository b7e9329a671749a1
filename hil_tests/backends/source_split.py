"""Split a module's source into top-level definitions, without comments, to send one at a time."""

from __future__ import annotations

import ast
import io
import tokenize
from dataclasses import dataclass

_LAYOUT = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
           tokenize.ENDMARKER}


@dataclass(frozen=True)
class Chunk:
    """Source of one top-level class or function (or a run of simple statements)."""

    names: tuple[str, ...]
    code: str


def strip_comments(code: str) -> str:
    """`code` without comments, comment-only lines or blank lines (strings are left intact)."""
    lines = code.splitlines()
    keep: set[int] = set()
    cut: dict[int, int] = {}
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        if tok.type == tokenize.COMMENT:
            cut[tok.start[0]] = tok.start[1]
        elif tok.type not in _LAYOUT:
            keep.update(range(tok.start[0], tok.end[0] + 1))
    out = []
    for number in sorted(keep):
        line = lines[number - 1]
        if number in cut:
            line = line[: cut[number]]
        out.append(line.rstrip())
    return "\n".join(out) + "\n"


def _defined_names(node: ast.stmt) -> tuple[str, ...]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return (node.name,)
    names: list[str] = []
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
            names.append(sub.id)
        elif isinstance(sub, ast.alias):
            names.append((sub.asname or sub.name).split(".")[0])
    return tuple(names)


def _is_docstring(node: ast.stmt) -> bool:
    return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str))


def split_definitions(source: str) -> list[Chunk]:
    """Top-level classes and functions one per chunk; runs of other statements grouped.

    The module docstring is dropped (on a small board it would only cost heap).
    """
    tree = ast.parse(source)
    lines = source.splitlines()
    body = tree.body[1:] if tree.body and _is_docstring(tree.body[0]) else tree.body
    chunks: list[Chunk] = []
    pending: list[ast.stmt] = []

    def text_of(nodes: list[ast.stmt]) -> str:
        first = nodes[0]
        start = min([first.lineno] + [d.lineno for d in getattr(first, "decorator_list", [])])
        end = nodes[-1].end_lineno or nodes[-1].lineno
        return strip_comments("\n".join(lines[start - 1 : end]) + "\n")

    def flush() -> None:
        if pending:
            names = tuple(n for node in pending for n in _defined_names(node))
            chunks.append(Chunk(names, text_of(pending)))
            pending.clear()

    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            flush()
            chunks.append(Chunk(_defined_names(node), text_of([node])))
        else:
            pending.append(node)
    flush()
    return chunks
