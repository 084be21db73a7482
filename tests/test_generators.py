"""Decorated generators and async generators: an error raised while iterating is saved."""

from __future__ import annotations

import asyncio
import inspect
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
from conftest import BIN, SAMPLES, run_python

import ckpt

CDIP = str(BIN / "cdip")


@pytest.fixture
def streams(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(SAMPLES))
    sys.modules.pop("streams", None)
    import streams

    yield streams
    sys.modules.pop("streams", None)


def names(store: Path) -> list[str]:
    return [entry.name for entry in ckpt.checkpoints(directory=store)]


def test_an_error_while_iterating_a_generator_is_saved_with_its_arguments_and_locals(
        streams, store):
    rows = [1.0, 2.0, 0.0, 4.0]
    stream = streams.batches(rows, 2)
    assert next(stream) == [100.0, 50.0]
    assert names(store) == []  # active=False: nothing until it raises
    with pytest.raises(ZeroDivisionError):
        next(stream)
    checkpoint = ckpt.load("batches")
    assert checkpoint.trigger == "error"
    assert checkpoint.arguments == {"rows": rows, "size": 2}
    assert checkpoint.locals["batch"] == []
    assert checkpoint.locals["row"] == 0.0
    assert checkpoint.exception.type == "ZeroDivisionError"
    assert "batch.append(100 / row)" in checkpoint.exception.traceback
    assert checkpoint.frames[0].function == "batches"


def test_an_error_while_iterating_an_async_generator_is_saved(streams, store):
    async def consume() -> list[list[float]]:
        return [batch async for batch in streams.abatches([5.0, 0.0], 1)]

    with pytest.raises(ZeroDivisionError):
        asyncio.run(consume())
    checkpoint = ckpt.load("abatches")
    assert checkpoint.trigger == "error"
    assert checkpoint.arguments == {"rows": [5.0, 0.0], "size": 1}
    assert checkpoint.locals["row"] == 0.0
    assert checkpoint.frames[0].function == "abatches"


def test_an_active_generator_is_saved_at_call_and_completed_by_its_error(streams, store):
    stream = streams.counted(5)
    assert names(store) == ["counted"]  # saved when called, before iterating
    assert next(stream) == 0
    with pytest.raises(ValueError, match="no 2 today"):
        list(stream)
    (entry,) = ckpt.checkpoints(directory=store)  # one invocation, one checkpoint
    assert entry.trigger == "error"
    checkpoint = ckpt.load("counted")
    assert checkpoint.arguments == {"n": 5}
    assert checkpoint.locals["i"] == 2


def test_a_generator_that_ends_well_saves_nothing(streams, store):
    assert list(streams.batches([1.0, 4.0, 5.0], 2)) == [[100.0, 25.0], [20.0]]

    async def consume() -> list[list[float]]:
        return [batch async for batch in streams.abatches([1.0], 1)]

    assert asyncio.run(consume()) == [[100.0]]
    assert names(store) == []


def test_the_wrapped_generator_behaves_as_the_original(streams, store):
    stream = streams.doubler()
    assert inspect.isgenerator(stream)
    assert stream.__name__ == "doubler"
    assert stream.__qualname__ == "doubler"
    assert next(stream) == "ready"
    assert stream.send(21) == 42
    assert stream.throw(KeyError("k")) == "caught 'k'"
    with pytest.raises(StopIteration) as stopped:
        next(stream)
    assert stopped.value.value == "done"  # the return value passes through
    closing = streams.doubler()
    next(closing)
    closing.close()
    assert inspect.getgeneratorstate(closing) == inspect.GEN_CLOSED
    assert names(store) == []  # GeneratorExit and StopIteration are not errors


def test_the_wrapped_async_generator_behaves_as_the_original(streams, store):
    async def converse() -> list[object]:
        stream = streams.adoubler()
        assert inspect.isasyncgen(stream)
        said = [await stream.asend(None), await stream.asend(4),
                await stream.athrow(KeyError("k"))]
        with pytest.raises(StopAsyncIteration):
            await stream.asend(None)
        closing = streams.adoubler()
        await closing.asend(None)
        await closing.aclose()
        return said

    assert asyncio.run(converse()) == ["ready", 8, "caught 'k'"]
    assert names(store) == []


def test_their_exception_object_and_traceback_are_untouched(streams, store):
    stream = streams.batches([0.0], 1)
    with pytest.raises(ZeroDivisionError) as caught:
        next(stream)
    frames = [frame.name for frame in traceback.extract_tb(caught.tb)]
    assert frames[-1] == "batches"
    assert names(store) == ["batches"]


def test_a_recursive_generator_saves_its_error_once(streams, store):
    with pytest.raises(ZeroDivisionError):
        list(streams.walk([1, [2, [4, 0]]]))
    (entry,) = ckpt.checkpoints(directory=store)
    checkpoint = ckpt.load(entry.id)
    assert checkpoint.arguments == {"tree": [4, 0], "depth": 2}  # the innermost call


def test_a_bad_call_fails_at_the_call_as_before(streams, store):
    with pytest.raises(TypeError):
        streams.batches()  # no iteration needed to find out


def test_disabled_returns_their_own_generator(streams, store):
    ckpt.disable()
    try:
        stream = streams.batches([0.0], 1)
        assert stream.gi_code is streams.batches.__wrapped__.__code__
        with pytest.raises(ZeroDivisionError):
            next(stream)
    finally:
        ckpt.enable()
    assert names(store) == []


def test_cdip_replays_an_error_saved_while_iterating(tmp_path, store):
    script = tmp_path / "streams.py"
    shutil.copy(SAMPLES / "streams.py", script)
    failed = run_python(str(script))
    assert failed.returncode == 1
    assert "ZeroDivisionError" in failed.stderr
    shown = subprocess.run([CDIP, "info", "batches"], capture_output=True, text=True,
                           timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "trigger:   error" in shown.stdout
    assert "locals at the error (batches" in shown.stdout
    replayed = subprocess.run([CDIP, "run", "batches", "--mode", "run"], capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert replayed.returncode == 1, replayed.stderr
    assert "batches raised ZeroDivisionError" in replayed.stdout
    script.write_text(script.read_text().replace("100 / row)", "100 / row if row else 0.0)"))
    fixed = subprocess.run([CDIP, "run", "batches", "--mode", "run"], capture_output=True,
                           text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert fixed.returncode == 0, fixed.stderr
    assert "batches yielded 2 values" in fixed.stdout


def test_a_generator_never_started_does_not_keep_its_checkpoint_protected(streams, store):
    from ckpt import capture

    stream = streams.counted(3)
    (entry,) = ckpt.checkpoints(directory=store)
    assert entry.id in capture._in_flight  # its error may yet come
    del stream  # dropped unstarted: no error can come any more
    assert entry.id not in capture._in_flight
