"""Finding a function's source text by file and qualified name, without importing it."""

from __future__ import annotations

import hashlib
import os
import threading

# ast is imported by the functions that parse: a replay whose file did not change
# never needs it (see `current_source_hash`).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import ast
    from typing import Any, Union

    _Def = Union[ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef]


def _children(node: ast.AST) -> list[_Def]:
    import ast

    found: list[_Def] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.append(child)
        elif not isinstance(child, (ast.Lambda, ast.expr)):
            # a def inside if/try/with/for still belongs to the same scope
            found.extend(_children(child))
    return found


def find_definition(tree: ast.Module, qualname: str) -> _Def | None:
    """The def or class statement that `qualname` names in `tree` (the last one wins)."""
    scope: ast.AST = tree
    parts = [part for part in qualname.split(".") if part != "<locals>"]
    found: _Def | None = None
    for part in parts:
        matches = [node for node in _children(scope) if node.name == part]
        if not matches:
            return None
        found = matches[-1]
        scope = found
    return found


# CPython 3.11 before 3.11.9 can fail ast.parse run by two threads at once
# ("SystemError: AST constructor recursion depth mismatch"); threads that save
# their first checkpoint together parse their sources together.
_parsing = threading.Lock()


def _new_lock_in_child() -> None:
    global _parsing
    _parsing = threading.Lock()  # a fork while another thread parsed leaves it held


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_in_child)


def function_source(text: str, qualname: str) -> str | None:
    """The source of `qualname` in module text `text`, decorators included."""
    import ast

    try:
        with _parsing:
            tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    node = find_definition(tree, qualname)
    if node is None or not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return None
    first = min([node.lineno] + [d.lineno for d in node.decorator_list])
    lines = text.splitlines()
    return "\n".join(lines[first - 1 : node.end_lineno])


def source_hash(path: str, qualname: str) -> str | None:
    """A short hash of the function's source as it is in `path` now, or None."""
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except (OSError, UnicodeDecodeError):
        return None
    source = function_source(text, qualname)
    if source is None:
        return None
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def file_hash(path: str) -> str | None:
    """A short hash of a file's bytes, or None when it cannot be read."""
    try:
        with open(path, "rb") as stream:
            return hashlib.sha256(stream.read()).hexdigest()[:16]
    except OSError:
        return None


def current_source_hash(location: dict[str, Any]) -> str | None:
    """The hash of the function's source now, or None when it is not found.

    A file byte-for-byte as it was at capture is not parsed again.
    """
    filename = location.get("file")
    if not filename:
        return None
    if location.get("file_hash") and file_hash(filename) == location["file_hash"]:
        return location.get("source_hash")
    return source_hash(filename, location["qualname"])
