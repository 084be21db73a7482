"""The decorator in-process: every form, and that it never changes the function."""

from __future__ import annotations

import asyncio
import functools
import inspect
import sys
import warnings
from pathlib import Path

import pytest
from conftest import SAMPLES

import ckpt


@pytest.fixture
def shapes(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(SAMPLES))
    sys.modules.pop("shapes", None)
    import shapes

    yield shapes
    sys.modules.pop("shapes", None)


def names(store: Path) -> list[str]:
    return [entry.name for entry in ckpt.checkpoints(directory=store)]


def test_bare_decorator_saves_every_call_with_defaults_applied(shapes, store):
    assert shapes.add(1, 2, 3, 4, scale=2, colour="red") == 20
    checkpoint = ckpt.load("add")
    assert checkpoint.trigger == "call"
    assert checkpoint.arguments == {"a": 1, "b": 2, "rest": (3, 4), "scale": 2,
                                    "options": {"colour": "red"}}
    assert checkpoint.args == (1, 2, 3, 4)
    assert checkpoint.kwargs == {"scale": 2, "colour": "red"}
    assert checkpoint.exception is None
    assert checkpoint.locals == {}
    assert checkpoint.call() == 20
    shapes.add(5)
    assert ckpt.load("add").arguments["b"] == 10


def test_parenthesised_decorator_is_the_bare_one():
    @ckpt.ckpt()
    def twice(x):
        return 2 * x

    assert twice(4) == 8
    assert ckpt.load("test_parenthesised_decorator_is_the_bare_one.<locals>.twice").args == (4,)


def test_wraps_metadata_and_wrapped(shapes):
    assert shapes.add.__name__ == "add"
    assert shapes.add.__qualname__ == "add"
    assert shapes.add.__module__ == "shapes"
    assert inspect.signature(shapes.add) == inspect.signature(shapes.add.__wrapped__)
    assert shapes.Account.withdraw.__wrapped__.__name__ == "withdraw"


def test_active_false_saves_nothing_without_an_error(shapes, store):
    assert shapes.divide(6, 3) == 2
    assert names(store) == []


def test_error_reraises_the_same_exception_object_with_its_traceback(shapes, store):
    with pytest.raises(ZeroDivisionError) as caught:
        shapes.divide(1, 0)
    frames = [entry.name for entry in __import__("traceback").extract_tb(caught.tb)]
    assert frames[-1] == "divide"
    checkpoint = ckpt.load("divide")
    assert checkpoint.trigger == "error"
    assert checkpoint.arguments == {"a": 1, "b": 0}
    assert checkpoint.locals == {"a": 1, "b": 0}
    assert checkpoint.exception.type == "ZeroDivisionError"
    assert checkpoint.exception.message == "division by zero"
    assert "ratio = a / b" in checkpoint.exception.traceback
    assert "decorator.py" not in checkpoint.exception.traceback


def test_same_exception_object_passes_through():
    sentinel = ValueError("mine")

    @ckpt.ckpt
    def fail():
        raise sentinel

    with pytest.raises(ValueError) as caught:
        fail()
    assert caught.value is sentinel


def test_one_invocation_gives_one_checkpoint_completed_on_error(store):
    @ckpt.ckpt
    def fail(data):
        data.append("mutated")
        raise RuntimeError("late")

    with pytest.raises(RuntimeError):
        fail(["original"])
    entries = ckpt.checkpoints()
    assert len(entries) == 1
    assert entries[0].trigger == "error"
    # active: the arguments were written at call time, before the mutation
    assert ckpt.load().arguments["data"] == ["original"]
    assert ckpt.load().locals["data"] == ["original", "mutated"]
    assert len(list(store.iterdir())) == 2  # one call part, one error part


def test_on_error_only_saves_arguments_as_at_the_error(store):
    @ckpt.ckpt(active=False)
    def fail(data):
        data.append("mutated")
        raise RuntimeError("late")

    with pytest.raises(RuntimeError):
        fail(["original"])
    assert ckpt.load().arguments["data"] == ["original", "mutated"]


def test_on_error_false_never_saves_errors(store):
    @ckpt.ckpt(active=False, on_error=False)
    def fail():
        raise RuntimeError("not saved")

    with pytest.raises(RuntimeError):
        fail()
    assert names(store) == []


def test_on_error_false_with_active_saves_the_call_only(store):
    @ckpt.ckpt(on_error=False)
    def fail(x):
        raise RuntimeError("not saved")

    with pytest.raises(RuntimeError):
        fail(1)
    checkpoint = ckpt.load()
    assert checkpoint.trigger == "call"
    assert checkpoint.exception is None


def test_predicate_gets_the_arguments_and_name_and_keep_apply(shapes, store):
    for n in range(7):
        assert shapes.maybe(n, flag=True) == n
    entries = ckpt.checkpoints()
    assert [entry.name for entry in entries] == ["big", "big"]
    assert [ckpt.load(entry.id).args for entry in entries] == [(5,), (6,)]


def test_predicate_that_raises_warns_and_the_call_goes_on(store):
    @ckpt.ckpt(active=lambda x: 1 / 0)
    def f(x):
        return x + 1

    with pytest.warns(ckpt.CkptWarning, match="predicate"):
        assert f(1) == 2
    assert names(store) == []


def test_methods_hold_self(shapes):
    account = shapes.Account(5)
    with pytest.raises(ValueError, match="cannot withdraw 9"):
        account.withdraw(9)
    checkpoint = ckpt.load("Account.withdraw")
    assert checkpoint.args[0].balance == 5
    assert checkpoint.arguments["amount"] == 9
    assert checkpoint.function is shapes.Account.withdraw.__wrapped__


def test_static_and_class_methods(shapes):
    assert shapes.Account.fee(200) == 2.0
    assert shapes.Account(1).fee(100) == 1.0
    assert ckpt.load("Account.fee").args == (100,)
    account = shapes.Account.opened(7)
    assert isinstance(account, shapes.Account)
    checkpoint = ckpt.load("Account.opened")
    assert checkpoint.arguments["cls"] is shapes.Account
    assert checkpoint.arguments["balance"] == 7


def test_closures_are_saved_by_value(shapes):
    step = shapes.make_counter(40)
    with pytest.raises(RuntimeError, match="at 42"):
        step(2)
    checkpoint = ckpt.load("make_counter.<locals>.step")
    assert checkpoint.locals["total"] == 42
    assert checkpoint.saved_function is not None
    with pytest.raises(RuntimeError, match="at 43"):
        checkpoint.saved_function(3)


def test_async_functions_catch_the_error_inside_the_coroutine(shapes):
    assert inspect.iscoroutinefunction(shapes.fetch)
    with pytest.raises(ConnectionError):
        asyncio.run(shapes.fetch("http://example.invalid"))
    checkpoint = ckpt.load("fetch")
    assert checkpoint.arguments == {"url": "http://example.invalid"}
    assert checkpoint.locals == {"url": "http://example.invalid"}


def test_async_active_saves_at_call():
    @ckpt.ckpt
    async def ok(x):
        return x * 2

    assert asyncio.run(ok(21)) == 42
    assert ckpt.load().args == (21,)


def test_nested_decorated_functions_each_get_their_checkpoint(shapes, store):
    with pytest.raises(KeyError):
        shapes.outer(1)
    assert sorted(names(store)) == ["inner", "outer"]
    inner, outer = ckpt.load("inner"), ckpt.load("outer")
    assert inner.locals == {"y": 2, "z": 3}
    assert outer.locals == {"x": 1}
    # the outer checkpoint holds every frame below it, innermost last
    assert [frame.function for frame in outer.frames] == ["outer", "inner"]
    assert outer.frames[-1].locals == {"y": 2, "z": 3}
    assert "wrapper" not in outer.exception.traceback


@pytest.mark.parametrize(("function", "kind"), [("interrupted", KeyboardInterrupt),
                                                ("exits", SystemExit)])
def test_base_exceptions_pass_through_untouched(shapes, store, function, kind):
    args = (3,) if function == "exits" else ()
    with pytest.raises(kind):
        getattr(shapes, function)(*args)
    assert names(store) == []


def test_generator_exit_passes_through(store):
    @ckpt.ckpt(active=False)
    def closing():
        raise GeneratorExit

    with pytest.raises(GeneratorExit):
        closing()
    assert names(store) == []


def test_unpicklable_values_become_placeholders_and_the_rest_is_kept(shapes):
    with pytest.raises(ValueError):
        shapes.unpicklable(shapes.LOCK, [1, 2, 3])
    checkpoint = ckpt.load("unpicklable")
    placeholder = checkpoint.arguments["lock"]
    assert isinstance(placeholder, ckpt.Unpicklable)
    assert placeholder.type == "_thread.lock"
    assert "lock" in placeholder.repr
    assert "TypeError" in placeholder.error
    assert checkpoint.arguments["value"] == [1, 2, 3]
    assert isinstance(checkpoint.locals["lock"], ckpt.Unpicklable)


def test_disable_and_enable(store, monkeypatch):
    @ckpt.ckpt
    def f(x):
        return x

    ckpt.disable()
    assert not ckpt.is_enabled()
    assert f(1) == 1
    assert names(store) == []
    ckpt.enable()
    assert f(2) == 2
    assert names(store) == ["test_disable_and_enable.<locals>.f"]


def test_keep_must_be_positive():
    with pytest.raises(ValueError, match="keep"):
        ckpt.ckpt(keep=0)


def test_pykckpt_keep_sets_the_default(store, monkeypatch):
    monkeypatch.setenv("PYCKPT_KEEP", "2")

    @ckpt.ckpt
    def f(x):
        return x

    for i in range(5):
        f(i)
    assert [c.id for c in ckpt.checkpoints()] and len(ckpt.checkpoints()) == 2
    assert [ckpt.load(c.id).args for c in ckpt.checkpoints()] == [(3,), (4,)]


def test_default_keep_is_five(store):
    @ckpt.ckpt
    def f(x):
        return x

    for i in range(8):
        f(i)
    assert [ckpt.load(c.id).args[0] for c in ckpt.checkpoints()] == [3, 4, 5, 6, 7]


def test_a_decorated_function_called_while_saving_does_not_recurse(store):
    @ckpt.ckpt
    def helper():
        return "helper"

    class Sneaky:
        def __reduce__(self):
            helper()
            return (Sneaky, ())

    @ckpt.ckpt
    def f(x):
        return 1

    assert f(Sneaky()) == 1
    assert names(store) == ["test_a_decorated_function_called_while_saving_does_not_recurse"
                            ".<locals>.f"]


def test_wrapped_function_identity_and_partial(store):
    def base(a, b):
        return a - b

    wrapped = ckpt.ckpt(functools.partial(base, 10))
    assert wrapped(3) == 7
    assert ckpt.load().args == (3,)


def test_no_warning_on_a_normal_save(store):
    @ckpt.ckpt
    def f(x):
        return x

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f(1)


def test_traceback_keeps_the_cause_and_context_chain():
    @ckpt.ckpt(active=False)
    def chained():
        try:
            {}["missing"]
        except KeyError as exc:
            raise ValueError("lookup failed") from exc

    with pytest.raises(ValueError):
        chained()
    text = ckpt.load().exception.traceback
    assert "KeyError: 'missing'" in text
    assert "The above exception was the direct cause" in text
    assert text.rstrip().endswith("ValueError: lookup failed")


def test_metadata_holds_timestamps_and_duration(store):
    import time

    @ckpt.ckpt
    def slow():
        time.sleep(0.05)
        raise RuntimeError("late")

    before = time.time()
    with pytest.raises(RuntimeError):
        slow()
    checkpoint = ckpt.load()
    assert before <= checkpoint.created <= time.time()
    entry = ckpt.checkpoints()[-1]
    from ckpt.fileformat import read_headers

    detail = read_headers(str(entry.error_path), None)[1]
    assert 0.05 <= detail["duration"] < 5


def test_arguments_given_by_position_bind_as_inspect_binds_them():
    import inspect

    from ckpt.capture import _KINDS, bind_arguments
    from ckpt.target import Target

    def everything(a, /, b, c=3, *args, d, e=5, **kwargs):
        return a

    def plain(a, b, c=3):
        return a

    def positional(a, b, /):
        return a

    calls = [(plain, (1, 2, 4), {}), (plain, (1, 2), {}), (plain, (1,), {"b": 2}),
             (positional, (1, 2), {}), (everything, (1, 2, 3, 4), {"d": 0}),
             (everything, (1, 2), {"d": 0, "z": 9}), (plain, (1, 2, 3, 4), {})]
    for function, args, kwargs in calls:
        try:
            bound = inspect.signature(function).bind(*args, **kwargs)
        except TypeError:  # the call fails alike: everything is saved as args and kwargs
            expected = [("args", "var_positional", args), ("kwargs", "var_keyword", kwargs)]
        else:
            bound.apply_defaults()
            parameters = inspect.signature(function).parameters
            expected = [(name, _KINDS[parameters[name].kind], value)
                        for name, value in bound.arguments.items()]
        assert bind_arguments(Target(function, None, None, ()), args, kwargs) == expected
