"""A replayed test's builtin pytest fixtures, made afresh (from `ckpt.fixtures.Fixture` markers).

A test's `capsys`, `tmp_path` or `monkeypatch` belonged to the run that failed: a
capture of that process's streams, a directory of that run, patches undone since.
The plugin saved each as a marker; here each becomes a fresh one of its kind, as
pytest would make it, started just before the mode runs the test and torn down
when the replay ends. pytest is imported only when a checkpoint holds a marker.

Output captured on replay is also passed through (as pytest's `capteesys` does), so
the replay's own report, a debugger and a shell stay visible; ``capsys.readouterr()``
returns only what the test itself wrote. `capfd` captures at the level of
`sys.stdout`/`sys.stderr` here, not of file descriptors 1 and 2.
"""

from __future__ import annotations

import atexit
import sys
from types import SimpleNamespace

from ckpt.display import printable
from ckpt.fixtures import Fixture

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Generator
    from types import FrameType
    from typing import Any

    from ckpt.checkpoint import Checkpoint


class Fresh:
    """The fixtures made for this replay: what starts them and what tears them down."""

    def __init__(self, test_code: Any = None) -> None:
        self.test_code = test_code  # what runs as the test: its output is what capsys keeps
        self.starters: list[Callable[[], Any]] = []
        self.finalizers: list[Callable[[], Any]] = []
        self.notes: list[str] = []
        self._base: str | None = None

    def base(self) -> str:
        """A private temporary directory for this replay's `tmp_path` and its kin."""
        if self._base is None:
            import shutil
            import tempfile

            self._base = tempfile.mkdtemp(prefix="ckpt-replay-")
            self.finalizers.insert(0, lambda: shutil.rmtree(str(self._base), ignore_errors=True))
        return self._base

    def start(self) -> None:
        """Start capturing (output, logs, warnings): just before the mode runs the test."""
        for starter in self.starters:
            starter()

    def close(self) -> None:
        """Tear every fixture down, the last made first; one that fails spoils no other."""
        while self.finalizers:
            try:
                self.finalizers.pop()()
            except Exception:  # noqa: S110 (the replay is over: nothing left to tell)
                pass


def recreate(checkpoint: Checkpoint, function: Callable[..., Any]) -> Fresh:
    """Put a fresh fixture in place of each marker among the arguments of `function`'s call."""
    fresh = Fresh(getattr(function, "__code__", None))
    made = []
    for name, value in list(checkpoint.arguments.items()):
        maker = _MAKERS.get(value.name) if isinstance(value, Fixture) else None
        if maker is not None:
            checkpoint.arguments[name] = maker(value, fresh)
            made.append(name)
    if made:
        atexit.register(fresh.close)
        where = f" (temporary files in {fresh._base})" if fresh._base else ""
        notes = [f"pytest fixtures made fresh for this replay: {', '.join(made)}{where}",
                 *fresh.notes]
        for note in notes:
            print(printable(f"note: {note}"), file=sys.stderr)
    return fresh


# -- the makers, one per fixture ------------------------------------------------------


def _capture(binary: bool) -> Callable[[Fixture, Fresh], Any]:
    def make(marker: Fixture, fresh: Fresh) -> Any:
        from _pytest.capture import CaptureFixture

        if marker.name.startswith("capfd"):
            fresh.notes.append(f"{marker.name} captures sys.stdout and sys.stderr in a replay, "
                               "not what subprocesses or C code write to file descriptors 1 and 2")
        kind = _replay_capture_class(binary, fresh.test_code)
        capture = CaptureFixture(kind, None, _ispytest=True)  # type: ignore[arg-type]
        capture.disabled = _disabled(capture)  # type: ignore[method-assign]
        fresh.starters.append(capture._start)
        fresh.finalizers.append(capture.close)
        return capture

    return make


def _replay_capture_class(binary: bool, code: Any) -> Any:
    """A SysCapture of pytest, teed, keeping only what the test itself writes.

    Everything still reaches the terminal; the buffer the test reads holds only
    what was written while the test's own frame was running (or by a thread), not
    the replay's banner, a debugger's prompts or the shell's echo.
    """
    from _pytest.capture import CaptureIO, SysCapture, SysCaptureBinary, TeeCaptureIO

    class TestsOwn(TeeCaptureIO):
        def write(self, s: str) -> int:
            if _running(code):
                CaptureIO.write(self, s)
            return int(self._other.write(s))

    base = SysCaptureBinary if binary else SysCapture

    class ReplaySysCapture(base):  # type: ignore[valid-type,misc]
        def __init__(self, fd: int) -> None:
            super().__init__(fd, TestsOwn(getattr(sys, "stdout" if fd == 1 else "stderr")))

    return ReplaySysCapture


def _running(code: Any) -> bool:
    """Whether the frame of `code` is on this thread's stack (another thread's: yes)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return True  # a thread the test started
    frame: FrameType | None = sys._getframe(2)
    while frame is not None:
        if frame.f_code is code:
            return True
        frame = frame.f_back
    return False


def _disabled(capture: Any) -> Callable[[], Any]:
    import contextlib

    @contextlib.contextmanager
    def disabled() -> Generator[None, None, None]:
        """Capture nothing inside the block (a replay has no capture manager)."""
        capture._suspend()
        try:
            yield
        finally:
            capture._resume()

    return disabled


def _caplog(marker: Fixture, fresh: Fresh) -> Any:
    import pytest
    from _pytest.logging import (
        LogCaptureFixture,
        LogCaptureHandler,
        caplog_handler_key,
        caplog_records_key,
        catching_logs,
    )

    handler = LogCaptureHandler()
    node = SimpleNamespace(stash=pytest.Stash())
    node.stash[caplog_handler_key] = handler
    node.stash[caplog_records_key] = {"setup": [], "call": handler.records, "teardown": []}
    caplog = LogCaptureFixture(node, _ispytest=True)  # type: ignore[arg-type]
    catching = catching_logs(handler)
    fresh.starters.append(catching.__enter__)
    fresh.finalizers.append(lambda: catching.__exit__(None, None, None))
    fresh.finalizers.append(caplog._finalize)
    return caplog


def _tmp_path(marker: Fixture, fresh: Fresh) -> Any:
    from pathlib import Path

    path = Path(fresh.base()) / "tmp_path"
    path.mkdir()
    if marker.name == "tmpdir":
        from _pytest.compat import legacy_path

        return legacy_path(path)
    return path


def _tmp_path_factory(marker: Fixture, fresh: Fresh) -> Any:
    from pathlib import Path

    from _pytest.tmpdir import TempPathFactory

    factory = TempPathFactory(Path(fresh.base()) / "basetemp", 3, "all",
                              lambda *args: None, _ispytest=True)
    if marker.name == "tmpdir_factory":
        from _pytest.legacypath import TempdirFactory

        return TempdirFactory(factory, _ispytest=True)
    return factory


def _monkeypatch(marker: Fixture, fresh: Fresh) -> Any:
    import pytest

    patch = pytest.MonkeyPatch()
    fresh.finalizers.append(patch.undo)
    return patch


def _recwarn(marker: Fixture, fresh: Fresh) -> Any:
    import warnings

    from _pytest.recwarn import WarningsRecorder

    recorder = WarningsRecorder(_ispytest=True)

    def start() -> None:
        recorder.__enter__()
        warnings.simplefilter("default")

    fresh.starters.append(start)
    fresh.finalizers.append(lambda: recorder.__exit__(None, None, None))
    return recorder


def _recorder(marker: Fixture, fresh: Fresh) -> Any:
    recorded: list[tuple[str, Any]] = []

    def record(name: str, value: Any) -> None:
        """Note a property, as pytest's would for its report (kept in `.recorded`)."""
        recorded.append((name, value))

    record.recorded = recorded  # type: ignore[attr-defined]
    return record


class ReplayedRequest:
    """What a replayed test's `request` still knows: its node id and name, its fixtures.

    The run it belonged to (its config, session, other fixtures) is gone.
    """

    def __init__(self, facts: dict[str, Any]) -> None:
        self.nodeid = str(facts.get("nodeid", ""))
        self.fixturenames = list(facts.get("fixturenames", []))
        self.keywords = dict.fromkeys(facts.get("keywords", []), True)
        self.node = SimpleNamespace(nodeid=self.nodeid, name=str(facts.get("name", "")),
                                    keywords=self.keywords)

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"request.{name} is not available in a replay: only "
                             "request.node (name, nodeid), nodeid, fixturenames and keywords")


def _request(marker: Fixture, fresh: Fresh) -> Any:
    return ReplayedRequest(marker.facts)


_MAKERS: dict[str, Callable[[Fixture, Fresh], Any]] = {
    "capsys": _capture(binary=False), "capteesys": _capture(binary=False),
    "capfd": _capture(binary=False), "capsysbinary": _capture(binary=True),
    "capfdbinary": _capture(binary=True), "caplog": _caplog,
    "tmp_path": _tmp_path, "tmpdir": _tmp_path,
    "tmp_path_factory": _tmp_path_factory, "tmpdir_factory": _tmp_path_factory,
    "monkeypatch": _monkeypatch, "recwarn": _recwarn, "request": _request,
    "record_property": _recorder, "record_xml_attribute": _recorder,
    "record_testsuite_property": _recorder,
}
