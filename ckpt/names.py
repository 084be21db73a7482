"""How a name typed on the command line finds a checkpoint: by a suffix of its name, or a hint.

A checkpoint is filed under a qualified name (``ModelStep.fit``) or a test's node
id (``tests/test_x.py::TestThing::test_method[1]``). Any trailing part of it
designates it too: ``fit``, ``TestThing::test_method`` (or ``TestThing.test_method``),
``test_method[1]``, ``test_method``. A name that matches nothing gets the closest
names as a hint.
"""

from __future__ import annotations

from .errors import NotFoundError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from .store import Entry


def short_names(name: str) -> set[str]:
    """Every shorter name that designates `name`: its trailing parts, with or without params."""
    stem, bracket, parameters = name.partition("[")
    parts = stem.split("::")
    found = {"::".join(parts[i:]) for i in range(1, len(parts))}
    found |= {".".join(parts[i:]) for i in range(1, len(parts))}  # TestThing.test_method
    dotted = parts[-1].split(".")
    found |= {".".join(dotted[i:]) for i in range(1, len(dotted))}  # ModelStep.fit -> fit
    if bracket:
        found = found | {short + bracket + parameters for short in found} | {stem}
    found.discard(name)
    found.discard("")
    return found


def _base(name: str) -> str:
    """The name without its parameters: ``test_y[1]`` and ``test_y[2]`` are one test."""
    return name.partition("[")[0]


def pick(given: str, matches: Sequence[Entry]) -> Entry:
    """The newest of the checkpoints a short name matched, if they are of one function.

    Raises:
        NotFoundError: it matches the checkpoints of several functions (or tests).
    """
    bases = sorted({_base(entry.name) for entry in matches})
    if len(bases) > 1:
        listed = ", ".join(repr(base) for base in bases[:5])
        more = f" and {len(bases) - 5} more" if len(bases) > 5 else ""
        raise NotFoundError(f"{given!r} could mean checkpoints of {len(bases)} names: "
                            f"{listed}{more}",
                            hint="give more of the name (or an id); `cdip info` lists them")
    return matches[-1]


def did_you_mean(given: str, names: Iterable[str]) -> str | None:
    """'did you mean 'ModelStep.fit'?' for the names closest to `given`, or None."""
    import difflib

    by_candidate: dict[str, str] = {}
    for name in dict.fromkeys(names):
        for candidate in (name, *short_names(name)):
            by_candidate.setdefault(candidate.lower(), name)
    wanted = given.lower()
    close = difflib.get_close_matches(wanted, list(by_candidate), n=5, cutoff=0.6)
    if len(wanted) >= 3:  # a part of a name: `spread` for `test_spread[values0-1]`
        close += [candidate for candidate in by_candidate if wanted in candidate]
    suggested = list(dict.fromkeys(by_candidate[candidate] for candidate in close))[:3]
    if not suggested:
        return None
    return f"did you mean {' or '.join(repr(name) for name in suggested)}?"
