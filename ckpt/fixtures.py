"""The marker a failing test's builtin pytest fixture is saved as: "make a fresh one on replay"."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# pytest's own fixtures whose values belong to the run that made them (a capture of
# that process's streams, a temporary directory of that run, patches to undo): the
# replay makes each afresh (see the runner's `fixtures` module) instead of unpickling
# a placeholder. Only the fixture pytest itself defines is marked, never a project's
# own fixture of the same name.
RECREATED = frozenset({
    "capsys", "capsysbinary", "capteesys", "capfd", "capfdbinary", "caplog",
    "tmp_path", "tmp_path_factory", "tmpdir", "tmpdir_factory", "monkeypatch", "recwarn",
    "request", "record_property", "record_xml_attribute", "record_testsuite_property",
})


class Fixture:
    """Stands in for the value of one of pytest's builtin fixtures (`capsys`, `tmp_path`...).

    Attributes:
        name: the fixture's name.
        type: the value's type at capture, as ``module.QualName``.
        facts: what a replay may want to know of it (for `request`: the test's
            node id and name, its parameter).
    """

    def __init__(self, name: str, type: str, facts: dict[str, Any] | None = None) -> None:
        self.name = name
        self.type = type
        self.facts = facts or {}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Fixture) and vars(self) == vars(other)

    def __hash__(self) -> int:
        return hash((self.name, self.type))

    def __repr__(self) -> str:
        return f"<pytest fixture {self.name}: made fresh on replay>"
