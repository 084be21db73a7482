"""A script's definitions, run without the rest of its top level (the pipeline it drives)."""

from __future__ import annotations

import ast
import builtins
import collections
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

# Calls that only build a value: an assignment made of literals, names, operators and
# these is a constant, and runs. Any other call may be the pipeline (or wandb.init).
SAFE_CALLS = frozenset({
    "bool", "bytes", "complex", "dict", "float", "frozenset", "int", "list", "range", "set",
    "str", "tuple", "Path", "pathlib.Path", "PurePath", "pathlib.PurePath", "os.getenv",
    "os.environ.get", "os.fspath", "logging.getLogger", "getLogger", "re.compile",
    "namedtuple", "collections.namedtuple", "TypeVar", "typing.TypeVar", "NewType",
    "typing.NewType",
})
# ...and these methods, of a value built in place ("a,b".split(","), Path(...).resolve()).
SAFE_METHODS = frozenset({
    "resolve", "absolute", "expanduser", "joinpath", "with_name", "with_suffix", "with_stem",
    "as_posix", "format", "join", "lower", "upper", "strip", "split", "replace",
})
_STATEMENT_BINDERS = (ast.Assign, ast.AnnAssign, ast.AugAssign)
_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
_KNOWN = frozenset(dir(builtins)) | {"__name__", "__file__", "__doc__", "__spec__",
                                      "__loader__", "__package__", "__builtins__", "__path__"}


class Plan(collections.namedtuple("Plan", "kept skipped")):
    """A script's top-level statements: those to run, and those skipped.

    The ``if __name__ == "__main__":`` block is in neither: it never runs on import.
    """

    __slots__ = ()
    kept: list[ast.stmt]
    skipped: list[ast.stmt]


def split(source: str | bytes, filename: str) -> Plan:
    """Sort a script's top-level statements into definitions, which run, and the rest.

    Imports, function and class definitions and constants run (and an `if` or `try`
    made only of them). A statement whose value a definition needs when it is made
    (a decorator's object, a default, a base class) runs too, however it is built;
    a constant built from a skipped statement's result is skipped.
    """
    body = [node for node in ast.parse(source, filename).body if not _is_main_guard(node)]
    future = any(isinstance(node, ast.ImportFrom) and node.module == "__future__" and
                 any(alias.name == "annotations" for alias in node.names) for node in body)
    order = _Order(body, future)
    for position, node in enumerate(body):
        if _is_required(node):
            order.keep(position)
        elif _is_constant(node) and order.satisfied(position):
            order.keep(position)
        else:
            order.skip(position)
    return Plan([node for index, node in enumerate(body) if index in order.kept],
                [node for index, node in enumerate(body) if index not in order.kept])


class _Order:
    """Which of a script's statements run, decided in order, with what each reads and binds."""

    def __init__(self, body: list[ast.stmt], future_annotations: bool) -> None:
        self.body, self.future = body, future_annotations
        self.reads: dict[int, set[str]] = {}  # worked out for the statements that may run
        self.writes = [binds(node) for node in body]
        self.kept: set[int] = set()
        self.kept_at: dict[str, int] = {}  # a name: the first statement that runs and binds it
        self.skipped_at: dict[str, list[int]] = {}  # a name: the skipped ones that bind it

    def unbound(self, position: int) -> Iterator[tuple[str, int]]:
        """The names the statement reads that only skipped statements before it bind."""
        if position not in self.reads:
            self.reads[position] = needs(self.body[position], self.future) - _KNOWN
        for name in self.reads[position]:
            if self.kept_at.get(name, position) < position:
                continue
            earlier = [at for at in self.skipped_at.get(name, ()) if at < position]
            if earlier:
                yield name, earlier[-1]

    def satisfied(self, position: int) -> bool:
        """Whether all the statement reads is bound by statements that run."""
        return next(self.unbound(position), None) is None

    def keep(self, position: int) -> None:
        """Run the statement, and what it needs: a definition needs it when it is made."""
        self._mark_kept(position)
        pending = [position]
        while pending:
            for _, binder in list(self.unbound(pending.pop())):
                if isinstance(self.body[binder], _STATEMENT_BINDERS) and binder not in self.kept:
                    for name in self.writes[binder]:
                        self.skipped_at[name].remove(binder)
                    self._mark_kept(binder)  # however it is built; and what it needs, too
                    pending.append(binder)

    def _mark_kept(self, position: int) -> None:
        self.kept.add(position)
        for name in self.writes[position]:
            self.kept_at[name] = min(self.kept_at.get(name, position), position)

    def skip(self, position: int) -> None:
        """Leave the statement out (a constant made from what the pipeline made, too)."""
        for name in self.writes[position]:
            self.skipped_at.setdefault(name, []).append(position)


def _is_main_guard(node: ast.stmt) -> bool:
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    test = node.test
    sides = [test.left, *test.comparators]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    mains = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return len(sides) == 2 and bool(names) and bool(mains) and isinstance(test.ops[0], ast.Eq)


def _is_required(node: ast.stmt) -> bool:
    return isinstance(node, (*_DEFINITIONS, ast.Import, ast.ImportFrom, ast.Pass)) or (
        isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))  # a docstring


def _is_constant(node: ast.stmt) -> bool:
    """An assignment of a constant, or an `if`/`try` made only of definitions and those."""
    if _is_required(node):
        return True
    if isinstance(node, _STATEMENT_BINDERS):
        return all(_builds_only(child) for child in ast.iter_child_nodes(node))
    if isinstance(node, ast.If):
        return _builds_only(node.test) and all(map(_is_constant, [*node.body, *node.orelse]))
    if isinstance(node, ast.Try):
        blocks = [*node.body, *node.orelse, *node.finalbody]
        handlers = node.handlers
        return all(map(_is_constant, blocks)) and all(
            (h.type is None or _builds_only(h.type)) and all(map(_is_constant, h.body))
            for h in handlers)
    return False


def _builds_only(expression: ast.AST) -> bool:
    """Whether evaluating `expression` only builds a value: no call with effects."""
    for node in _evaluated(expression):
        if isinstance(node, (ast.Await, ast.Yield, ast.YieldFrom)):
            return False
        if isinstance(node, ast.Call) and not _is_safe_call(node):
            return False
    return True


def _is_safe_call(call: ast.Call) -> bool:
    name = _dotted(call.func)
    if name in SAFE_CALLS or (name or "").startswith("os.path."):
        return True
    # a method of a value built right here, not of a module or object found by name
    func = call.func
    return (isinstance(func, ast.Attribute) and func.attr in SAFE_METHODS
            and _dotted(func.value) is None)


def _dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for a chain of names, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


def _evaluated(node: ast.AST) -> Iterator[ast.AST]:
    """`node` and what in it is evaluated where it stands: not the bodies of defs or lambdas."""
    pending = [node]
    while pending:
        current = pending.pop()
        yield current
        if isinstance(current, ast.Lambda):
            pending += [*current.args.defaults, *(d for d in current.args.kw_defaults if d)]
        elif isinstance(current, (ast.FunctionDef, ast.AsyncFunctionDef)):
            pending += [*current.decorator_list, *current.args.defaults,
                        *(d for d in current.args.kw_defaults if d)]
        else:
            pending += ast.iter_child_nodes(current)


def needs(node: ast.stmt, future_annotations: bool) -> set[str]:
    """The module-level names running the statement `node` reads."""
    parts: list[ast.AST] = [node]
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not future_annotations:
        arguments = node.args
        every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs,
                 *(a for a in (arguments.vararg, arguments.kwarg) if a)]
        parts += [a.annotation for a in every if a.annotation] + (
            [node.returns] if node.returns else [])
    loaded, own = set(), set()
    for part in parts:
        for found in _evaluated(part):
            if isinstance(found, ast.Name) and isinstance(found.ctx, ast.Load):
                loaded.add(found.id)
            elif isinstance(found, ast.comprehension):
                own |= {name.id for name in ast.walk(found.target) if isinstance(name, ast.Name)}
    return loaded - own


def binds(node: ast.AST) -> set[str]:
    """The module-level names the statement (or expression) `node` binds."""
    if isinstance(node, _DEFINITIONS):
        return {node.name}
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    if isinstance(node, ast.Name):
        return {node.id} if isinstance(node.ctx, ast.Store) else set()
    if isinstance(node, (ast.Lambda, *_COMPREHENSIONS)):
        return set()  # their names are their own
    found: set[str] = set()
    for child in ast.iter_child_nodes(node):
        found |= binds(child)
    return found


def globals_used(function: ast.AST) -> set[str]:
    """The names a function reads but never binds itself (nor takes as parameters)."""
    loaded: set[str] = set()
    bound: set[str] = set()
    for node in ast.walk(function):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    return loaded - bound


def line_ranges(nodes: list[ast.stmt], everything: list[ast.stmt]) -> str:
    """``lines 30-52`` (or ``line 7``, ``lines 3-4, 30-52``): where `nodes` are.

    Statements of `nodes` next to each other in `everything` are one run.
    """
    position = {id(node): index for index, node in enumerate(everything)}
    runs: list[list[ast.stmt]] = []
    for node in nodes:
        if runs and position[id(node)] == position[id(runs[-1][-1])] + 1:
            runs[-1].append(node)
        else:
            runs.append([node])
    spans = [(run[0].lineno, run[-1].end_lineno or run[-1].lineno) for run in runs]
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans[:4])
    more = ", ..." if len(spans) > 4 else ""
    single = len(spans) == 1 and spans[0][0] == spans[0][1]
    return f"{'line' if single else 'lines'} {text}{more}"


def unset_globals(plan: Plan, qualname: str) -> str | None:
    """A note naming the globals `qualname` reads that only skipped statements assign."""
    from ckpt.source import find_definition

    node = find_definition(ast.Module(body=plan.kept, type_ignores=[]), qualname)
    if node is None:
        return None
    assigned = set().union(*map(binds, plan.kept))
    lines: dict[str, int] = {}
    for statement in plan.skipped:
        for name in binds(statement) - assigned:
            lines.setdefault(name, statement.lineno)
    names = sorted(globals_used(node) & set(lines), key=lines.__getitem__)
    if not names:
        return None
    where = sorted({lines[name] for name in names})
    if len(where) == 1:
        what = f"only a skipped statement assigns (line {where[0]})"
    else:
        what = f"only skipped statements assign (lines {', '.join(map(str, where))})"
    return (f"note: {qualname} uses {', '.join(names)}, which {what}; "
            "--run-script-top-level runs it")


def describe_skipped(plan: Plan, path: str) -> str:
    """The banner's note on what was skipped."""
    count = len(plan.skipped)
    statements = "statement" if count == 1 else "statements"
    everything = sorted([*plan.kept, *plan.skipped], key=lambda node: node.lineno)
    return (f"note: skipped {count} top-level {statements} of {os.path.basename(path)} "
            f"({line_ranges(plan.skipped, everything)}): they are not definitions; "
            "--run-script-top-level runs them")
