"""The guest never changes the program: signals, -W error, recursion, shutdown, fork, odd values.

Process-level behaviour runs in real subprocesses (the programs are in
tests/samples/guest); what a save does with one value is tested in-process.
"""

from __future__ import annotations

import os
import sys
import time
import warnings

import pytest
from conftest import SAMPLES, run_python

import ckpt
import ckpt.values

GUEST = SAMPLES / "guest"


def guest_program(name: str, *args: str, flags: tuple[str, ...] = (),
                  env: dict[str, str] | None = None):
    return run_python(*flags, str(GUEST / name), *args, env=env)


# -- signals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["alarm-call", "alarm-error"])
def test_a_deadline_that_fires_during_a_save_reaches_the_program(store, mode):
    result = guest_program("signals.py", mode)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # as without ckpt: the handler's exception, at once, chained to theirs when it
    # interrupted the save of their error
    context = "ValueError" if mode == "alarm-error" else None
    assert lines[0] == f"interrupted by TimeoutError context={context}"
    assert lines[1].startswith("ran=['at_error']" if mode == "alarm-error" else "ran=[]")
    assert float(lines[1].rpartition("=")[2]) < 0.9  # not after the save: when it fired
    assert "could not save" not in result.stderr
    # the interrupted save left nothing behind, not even a temporary file
    assert lines[-1] == "files []"


@pytest.mark.parametrize("mode", ["sigint-call", "sigint-error"])
def test_ctrl_c_during_a_save_reaches_the_program_and_leaves_no_partial_checkpoint(store, mode):
    result = guest_program("signals.py", mode)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    context = "ValueError" if mode == "sigint-error" else None
    assert lines[0] == f"interrupted by KeyboardInterrupt context={context}"
    assert not [line for line in lines if line.startswith("checkpoint")]
    assert lines[-1] == "files []"


# -- warnings turned into errors ---------------------------------------------------------------


def test_a_failed_save_under_w_error_warns_and_keeps_their_exception(store):
    store.write_text("a file, not a store")
    result = guest_program("werror.py", flags=("-W", "error"))
    assert result.returncode == 1
    assert result.stdout.splitlines() == ["returned 4"]
    assert result.stderr.count("CkptWarning: ckpt: could not save checkpoint 'step'") == 2
    assert result.stderr.rstrip().endswith("ValueError: theirs")
    assert "werror.py:" in result.stderr  # the warning points at their line, not ours


def test_pytest_ckpt_with_w_error_reports_the_failing_test_not_an_internal_error(store, tmp_path):
    store.write_text("a file, not a store")
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_one.py").write_text("def test_fails():\n    assert 1 == 2\n")
    result = run_python("-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error", "--ckpt",
                        cwd=project)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "INTERNALERROR" not in result.stdout + result.stderr
    assert "1 failed" in result.stdout
    assert "could not save checkpoint 'test_one.py::test_fails'" in result.stdout


def test_a_failed_save_in_process_with_an_error_filter_does_not_raise(store):
    store.write_text("a file, not a store")
    sentinel = ValueError("theirs")

    @ckpt.ckpt
    def fail():
        raise sentinel

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("error")
        with pytest.raises(ValueError) as raised:
            fail()
    assert raised.value is sentinel
    assert [str(w.message) for w in caught if w.category is ckpt.CkptWarning]


# -- recursion ---------------------------------------------------------------------------------


def test_a_deep_recursion_saves_its_error_once_in_linear_time(store):
    result = guest_program("recursion.py", "deep", "400", "error")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # the innermost call saved the error; the 400 calls around it did not save it again
    assert lines[1] == "checkpoints 1 errors 1"
    assert lines[2] == "innermost n=0"
    assert float(lines[0].split()[1]) < 1.5  # 4.6 s when every level saved every frame below it


def test_a_deep_active_recursion_saves_each_call_and_the_error_once(store):
    result = guest_program("recursion.py", "deep", "300", "active")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1] == "checkpoints 301 errors 1"
    assert lines[2] == "innermost n=0"
    assert float(lines[0].split()[1]) < 3.0


def test_their_recursion_error_is_not_replaced_by_ours(store):
    result = guest_program("recursion.py", "limit")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "caught maximum recursion depth exceeded"
    # in their function, or where our wrapper calls it: not in ckpt's saving code
    assert lines[1] in ("raised in recursion.py forever", "raised in decorator.py wrapper")
    assert int(lines[2].split()[1]) >= 1  # an outer call, with room to spare, saved it


@pytest.mark.parametrize("failure", [RecursionError, MemoryError])
def test_a_save_out_of_stack_or_memory_is_dropped_with_a_warning(store, monkeypatch, failure):
    import ckpt.capture

    def exhausted(*args, **kwargs):
        raise failure()

    sentinel = ValueError("theirs")

    @ckpt.ckpt(active=False)
    def fail():
        raise sentinel

    monkeypatch.setattr(ckpt.capture, "save_error", exhausted)
    with pytest.warns(ckpt.CkptWarning, match="could not save"):
        with pytest.raises(ValueError) as raised:
            fail()
    assert raised.value is sentinel
    assert raised.value.__context__ is None


# -- interpreter shutdown ----------------------------------------------------------------------


@pytest.mark.parametrize("saved_before", [False, True], ids=["first-save", "later-save"])
def test_a_call_during_shutdown_keeps_their_exception(store, saved_before):
    result = guest_program("shutdown.py", "del", *(["saved-before"] if saved_before else []))
    assert result.stdout.strip() == "main done"
    assert "ValueError: theirs from __del__" in result.stderr
    assert "ImportError" not in result.stderr
    assert "CkptWarning" not in result.stderr


def test_a_call_from_an_atexit_handler_keeps_their_exception_and_is_saved(store):
    result = guest_program("shutdown.py", "atexit")
    assert "ValueError: theirs from atexit" in result.stderr
    assert "ImportError" not in result.stderr
    assert [entry.name for entry in ckpt.checkpoints(directory=store)] == ["fail"]


# -- fork --------------------------------------------------------------------------------------


def test_a_fork_while_another_thread_saves_never_hangs_the_child(store):
    result = guest_program("forks.py", "saving", "3")
    assert result.returncode == 0, result.stderr
    forks, hung = (int(word) for word in result.stdout.split()[1::2])
    assert forks > 20
    assert hung == 0, result.stderr[-3000:]


def test_a_fork_while_the_first_save_imports_never_hangs_the_child(store):
    result = guest_program("forks.py", "importing")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "forks 1 hung 0", result.stderr[-3000:]


def test_a_child_forked_inside_a_save_is_not_saving(store):
    result = guest_program("forks.py", "inside")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["child exit 0", "forks 1 hung 0"]


# -- ckpt.load leaves live objects alone -------------------------------------------------------


def test_load_in_the_process_that_defined_the_class_leaves_the_class_untouched(store):
    result = guest_program("live_class.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "changed []",
        "same methods True",
        "loaded is a live Step True 3 live",
        "call 7",
    ]


# -- hostile values ----------------------------------------------------------------------------


class RaisingShape:
    @property
    def shape(self):
        raise RuntimeError("no shape")


class RaisingLen(list):
    def __len__(self):
        raise RuntimeError("no len")


class RaisingDtype:
    shape = (2, 3)

    @property
    def dtype(self):
        raise RuntimeError("no dtype")


class Counted:
    reprs = 0
    reduces = 0

    def __repr__(self):
        Counted.reprs += 1
        return "Counted()"

    def __reduce__(self):
        Counted.reduces += 1
        return (Counted, ())


def test_a_value_whose_shape_or_len_raises_loses_only_that_detail(store):
    @ckpt.ckpt
    def f(a, b, c, d):
        return 1

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert f(RaisingShape(), RaisingLen([1, 2]), RaisingDtype(), "kept") == 1
    checkpoint = ckpt.load()
    assert checkpoint.arguments["d"] == "kept"
    assert isinstance(checkpoint.arguments["a"], RaisingShape)
    described = ckpt.values.describe(RaisingLen([1]))
    assert described["type"].endswith("RaisingLen")
    assert "len" not in described
    assert ckpt.values.describe(RaisingDtype())["shape"] == [2, 3]


def test_one_save_calls_a_values_repr_and_reduce_once(store):
    Counted.reprs = Counted.reduces = 0

    @ckpt.ckpt(active=False)
    def fail(value):
        raise ValueError("theirs")

    with pytest.raises(ValueError):
        fail(Counted())
    # one save: the argument (call part) and the same object as a local (error part)
    assert (Counted.reprs, Counted.reduces) == (1, 1)
    assert ckpt.load().locals["value"].__class__ is Counted


class Slow:
    reprs = 0

    def __repr__(self):
        Slow.reprs += 1
        time.sleep(ckpt.values.SLOW_REPR + 0.05)
        return "Slow()"


def test_a_type_with_a_slow_repr_is_described_by_type_after_the_first(store):
    Slow.reprs = 0
    first = ckpt.values.describe(Slow())
    assert first["repr"] == "Slow()"
    started = time.perf_counter()
    later = [ckpt.values.describe(Slow()) for _ in range(5)]
    assert time.perf_counter() - started < ckpt.values.SLOW_REPR
    assert Slow.reprs == 1
    assert {d["repr"] for d in later} == {f"<{__name__}.Slow: repr skipped, it was slow>"}


class Huge:
    def __repr__(self):
        return "x" * 50_000_000


class HugeMessage(Exception):
    strs = 0

    def __str__(self):
        HugeMessage.strs += 1
        return "m" * 5_000_000


def test_huge_reprs_and_messages_are_cut_and_str_of_the_exception_runs_once(store):
    HugeMessage.strs = 0

    @ckpt.ckpt(active=False)
    def fail(value):
        raise HugeMessage()

    with pytest.raises(HugeMessage):
        fail(Huge())
    assert HugeMessage.strs == 1
    checkpoint = ckpt.load()
    assert len(checkpoint.exception.message) <= ckpt.values.MESSAGE_LIMIT + 100
    assert len(checkpoint.exception.traceback) <= ckpt.values.MESSAGE_LIMIT + 2000
    entry = ckpt.checkpoints()[-1]
    assert sum(os.path.getsize(path) for path in entry.paths) < 200_000
    assert len(ckpt.values.describe(Huge())["repr"]) <= ckpt.values.REPR_LIMIT


def test_a_repr_and_str_that_raise_lose_nothing_else(store):
    class NoStr(Exception):
        def __str__(self):
            raise RuntimeError("no str")

    @ckpt.ckpt(active=False)
    def fail(value):
        raise NoStr()

    with pytest.raises(NoStr):
        fail([1, 2])
    checkpoint = ckpt.load()
    assert checkpoint.arguments["value"] == [1, 2]
    assert checkpoint.exception.type.endswith("NoStr")


def test_idle_calls_import_nothing_and_a_save_imports_nothing_after_the_first(tmp_path):
    code = (
        "import sys, ckpt\n"
        "@ckpt.ckpt(active=False)\n"
        "def idle(x):\n"
        "    return x\n"
        "before = set(sys.modules)\n"
        "idle(1)\n"
        "assert set(sys.modules) == before, set(sys.modules) - before\n"
        "ckpt.ckpt(lambda x: x, name='first')(1)\n"
        "before = set(sys.modules)\n"
        "ckpt.ckpt(lambda x: x, name='second')(2)\n"
        "print(sorted(set(sys.modules) - before))\n"
    )
    result = run_python("-c", code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_guest_module_is_not_imported_by_import_ckpt():
    result = run_python("-c", "import sys, ckpt; print('ckpt.guest' in sys.modules)")
    assert result.stdout.strip() == "False"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_save_in_the_main_thread_leaves_the_signal_handlers_as_they_were(store):
    import signal

    def mine(signum, frame):
        pass

    previous = signal.signal(signal.SIGUSR1, mine)
    try:
        before = {n: signal.getsignal(n) for n in signal.valid_signals()}
        ckpt.ckpt(lambda x: x)(1)
        after = {n: signal.getsignal(n) for n in signal.valid_signals()}
        assert before == after
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_a_signal_handler_that_does_not_raise_runs_during_a_save(store):
    import signal

    seen = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: seen.append(signum))

    class RaisesSignal:
        def __reduce__(self):
            signal.raise_signal(signal.SIGUSR1)
            return (RaisesSignal, ())

    try:
        ckpt.ckpt(lambda x: x)(RaisesSignal())
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert seen == [signal.SIGUSR1]
    assert isinstance(ckpt.load().args[0], RaisesSignal)


def test_a_large_save_from_an_atexit_handler_is_kept(tmp_path):
    # buffers over 16 MiB are hashed on a thread pool, which refuses new work once the
    # interpreter shuts down: the chunks are then hashed inline
    script = tmp_path / "late.py"
    script.write_text(
        "import atexit, numpy, ckpt\n\n"
        "@ckpt.ckpt\ndef step(data):\n    return data.sum()\n\n"
        "step(numpy.zeros(5_000_000))  # the pool has served before the program ends\n"
        "atexit.register(lambda: step(numpy.ones(5_000_000)))\n")
    result = run_python("-W", "error", str(script))
    assert result.returncode == 0, result.stderr
    assert "CkptWarning" not in result.stderr
    assert ckpt.load("step").arguments["data"].sum() == 5_000_000  # the atexit call's
