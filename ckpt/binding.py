"""Binding saved arguments to a function's parameters as they are today, by name."""

from __future__ import annotations

import collections

from .values import short_repr

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import CodeType
    from typing import Any

# Read from the code object, not with inspect: importing inspect would slow every replay.
_EMPTY: Any = object()  # a parameter without a default
_POSITIONAL = ("positional_only", "positional_or_keyword")
_VARIADIC = ("var_positional", "var_keyword")
_CO_VARARGS, _CO_VARKEYWORDS = 0x04, 0x08
_MAX_WRAPPERS = 100  # a __wrapped__ chain longer than this is a loop


class Parameter(collections.namedtuple("Parameter", "name kind default")):
    """One parameter of a function now: its name, kind and default (or `_EMPTY`)."""

    __slots__ = ()
    name: str
    kind: str
    default: Any


def parameters(function: Callable[..., Any]) -> list[Parameter] | None:
    """`function`'s parameters as `inspect.signature` orders them; None when it has no code.

    A decorator's wrapper (``functools.wraps`` sets ``__wrapped__``) is seen through,
    as `inspect.signature` does; a bound method's first parameter is bound already.
    """
    inner = function
    for _ in range(_MAX_WRAPPERS):
        wrapped = getattr(inner, "__wrapped__", None)
        if wrapped is None:
            break
        inner = wrapped
    code = getattr(inner, "__code__", None)
    if code is None or isinstance(inner, type):
        return None
    defaults = getattr(inner, "__defaults__", None) or ()
    keyword_defaults = getattr(inner, "__kwdefaults__", None) or {}
    first_default = code.co_argcount - len(defaults)
    found = []
    for index, (name, kind) in enumerate(code_parameters(code)):
        default = _EMPTY
        if kind in _POSITIONAL and index >= first_default:  # positional ones come first
            default = defaults[index - first_default]
        elif kind == "keyword_only":
            default = keyword_defaults.get(name, _EMPTY)
        found.append(Parameter(name, kind, default))
    bound_self = getattr(function, "__self__", None) is not None and hasattr(function, "__func__")
    return found[1:] if bound_self and found and found[0].kind in _POSITIONAL else found


def code_parameters(code: CodeType) -> list[tuple[str, str]]:
    """The names and kinds of the parameters `code` declares, as `inspect.signature` orders them."""
    names, count = code.co_varnames, code.co_argcount
    found = [(name, "positional_only" if index < code.co_posonlyargcount
              else "positional_or_keyword") for index, name in enumerate(names[:count])]
    keyword_only = names[count : count + code.co_kwonlyargcount]
    rest = count + code.co_kwonlyargcount
    if code.co_flags & _CO_VARARGS:
        found.append((names[rest], "var_positional"))
        rest += 1
    found += [(name, "keyword_only") for name in keyword_only]
    if code.co_flags & _CO_VARKEYWORDS:
        found.append((names[rest], "var_keyword"))
    return found


_STORES = ("STORE_FAST", "STORE_DEREF", "DELETE_FAST", "DELETE_DEREF", "STORE_NAME",
           "STORE_FAST_STORE_FAST", "STORE_FAST_LOAD_FAST")


def assigned_parameters(code: CodeType) -> list[str]:
    """The parameters that `code` assigns to (or deletes) anywhere in its body, sorted.

    Read from its bytecode: an assignment, `+=`, a `for`, `with ... as` or
    `except ... as` target, `del`. Whether one ran before a given line is not known.
    """
    return sorted(parameter_assignments(code))


def parameter_assignments(code: CodeType) -> dict[str, list[int]]:
    """Each parameter `code` assigns to (or deletes), with the lines that do.

    A function nested in it that assigns one (``nonlocal``) counts too.
    """
    declared = {name for name, _ in code_parameters(code)}
    found: dict[str, list[int]] = {}
    for name, line in _stores(code, declared):
        if line not in found.setdefault(name, []):
            found[name].append(line)
    return found


def _stores(code: CodeType, names: set[str]) -> Iterator[tuple[str, int]]:
    """(name, line) of each store to one of `names` in `code` and the functions nested in it.

    In a nested function only a store to a free variable (``nonlocal``) is the outer's.
    """
    import dis

    line = code.co_firstlineno
    for instruction in dis.get_instructions(code):
        number = getattr(instruction, "line_number", None)  # 3.13; before: starts_line
        starts = instruction.starts_line
        if isinstance(number, int):
            line = number
        elif isinstance(starts, int) and not isinstance(starts, bool):  # a bool from 3.13
            line = starts
        if instruction.opname in _STORES:
            stored = instruction.argval if isinstance(instruction.argval, tuple) else (
                instruction.argval,)
            if instruction.opname == "STORE_FAST_LOAD_FAST":
                stored = stored[:1]  # its second name is loaded, not stored
            for name in stored:
                if name in names:
                    yield name, line
    for const in code.co_consts:
        if isinstance(const, type(code)):
            yield from _stores(const, names & set(const.co_freevars))


def positional(values: dict[str, Any], kinds: dict[str, str]) -> tuple[Any, ...]:
    """The positional values of a call as captured (the signature of capture time)."""
    found: list[Any] = []
    for name, value in values.items():
        kind = kinds.get(name, "positional_or_keyword")
        if kind in _POSITIONAL:
            found.append(value)
        elif kind == "var_positional":
            found.extend(value)
    return tuple(found)


def keywords(values: dict[str, Any], kinds: dict[str, str]) -> dict[str, Any]:
    """The keyword values of a call as captured (the signature of capture time)."""
    found: dict[str, Any] = {}
    for name, value in values.items():
        kind = kinds.get(name)
        if kind == "keyword_only":
            found[name] = value
        elif kind == "var_keyword":
            found.update(value)
    return found


class Binding(collections.namedtuple("Binding", "args kwargs changes missing")):
    """Saved values bound to today's parameters.

    Attributes:
        args: the values to pass by position (positional-only parameters, and all
            positional ones when saved ``*args`` values must follow them).
        kwargs: the values to pass by keyword: every other parameter, by its name.
        changes: one line per parameter added, removed or renamed since capture.
        missing: required parameters that have no saved value (the call would fail).
    """

    __slots__ = ()
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    changes: list[str]
    missing: list[str]

    def refusal(self, name: str) -> str:
        """Why the function `name` cannot be called with these values."""
        listed = ", ".join(repr(parameter) for parameter in self.missing)
        if len(self.missing) == 1:
            return (f"{name} cannot be called with the saved arguments: its parameter "
                    f"{listed} has no saved value and no default")
        return (f"{name} cannot be called with the saved arguments: its parameters "
                f"{listed} have no saved values and no defaults")


def bind(values: dict[str, Any], kinds: dict[str, str],
         function: Callable[..., Any]) -> Binding:
    """Bind saved `values` (name to value, with their `kinds` at capture) to `function` now.

    Each value goes to the parameter of its name, whatever its position now; a
    parameter added since takes its default; a value whose parameter is gone is
    left out (into ``**kwargs`` if there is one); a parameter renamed at the same
    place, with no default, takes the old name's value. `changes` says all of it.
    """
    today = parameters(function)
    if today is None:  # a builtin, a partial, a class: called as it was captured
        return Binding(positional(values, kinds), keywords(values, kinds), [], [])
    named = {name: value for name, value in values.items() if kinds.get(name) not in _VARIADIC}
    extra_args = positional({n: v for n, v in values.items()
                             if kinds.get(n) == "var_positional"}, kinds)
    extra_kwargs = keywords({n: v for n, v in values.items()
                             if kinds.get(n) == "var_keyword"}, kinds)
    changes = _rename(named, today)
    pool = {**extra_kwargs, **named}
    if extra_args and not named and not _has(today, "var_positional"):
        # captured without a signature: its positional values fill the parameters in order
        free = [p.name for p in today if p.kind in _POSITIONAL and p.name not in pool]
        pool.update(zip(free, extra_args))
        extra_args = extra_args[len(free):]
    if named:  # (captured without a signature, every parameter would look added)
        changes += [f"added {p.name}: its default {short_repr(p.default)} is used"
                    if p.default is not _EMPTY else f"added {p.name}: it has no default"
                    for p in today if p.kind not in _VARIADIC and p.name not in pool]
    return _assign(today, pool, extra_args, changes, set(named))


def _has(today: list[Parameter], kind: str) -> bool:
    return any(parameter.kind == kind for parameter in today)


def _rename(named: dict[str, Any], today: list[Parameter]) -> list[str]:
    """Take a removed name's value for a new required parameter at the same place."""
    now = [p for p in today if p.kind not in _VARIADIC]
    then = list(named)
    names_now = {p.name for p in now}
    changes = []
    for index, old in enumerate(then):
        if old in names_now or index >= len(now):
            continue
        new = now[index]
        if new.name not in named and new.default is _EMPTY:
            named[new.name] = named.pop(old)
            changes.append(f"renamed {old} to {new.name}? the value saved for {old} is "
                           f"passed as {new.name}")
    return changes


def _assign(today: list[Parameter], pool: dict[str, Any], extra_args: tuple[Any, ...],
            changes: list[str], named: set[str]) -> Binding:
    """Each parameter's value, by position or by keyword; what is left over or missing."""
    # Saved *args values can only follow the positional parameters, passed by position.
    by_position = bool(extra_args) and _has(today, "var_positional")
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    missing: list[str] = []
    for parameter in today:
        name, kind = parameter.name, parameter.kind
        if kind == "var_positional":
            args.extend(extra_args)
        elif kind != "var_keyword":
            if name in pool:
                value = pool.pop(name)
            elif parameter.default is _EMPTY:
                missing.append(name)
                value = None
            elif kind == "positional_only" or (by_position and kind in _POSITIONAL):
                value = parameter.default  # a later value needs this place taken
            else:
                continue
            if kind == "positional_only" or (by_position and kind in _POSITIONAL):
                args.append(value)
            else:
                kwargs[name] = value
    keywords_now = next((p.name for p in today if p.kind == "var_keyword"), None)
    for name, value in pool.items():  # values no parameter has the name of now
        if keywords_now:
            kwargs[name] = value
        if name in named:
            where = f"is passed in **{keywords_now}" if keywords_now else "is not passed"
            changes.append(f"removed {name}: its saved value {short_repr(value)} {where}")
        elif not keywords_now:
            changes.append(f"removed **kwargs: the saved {name}={short_repr(value)} "
                           "is not passed")
    if extra_args and not by_position:
        changes.append(f"removed *args: the saved values {short_repr(extra_args)} are not passed")
    return Binding(tuple(args), kwargs, changes, missing)
