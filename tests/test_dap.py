"""`cdip run --debugger debugpy`: a real DAP conversation with the replay, over its socket."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pexpect
import psutil
import pytest
from conftest import BIN, SAMPLES, run_python
from test_faithful import environment_without

pytest.importorskip("debugpy")

CDIP = str(BIN / "cdip")
WAIT = 60.0  # seconds: generous, for a loaded 2-core machine; a pass takes ~2 s
FIRST_BODY_LINE, RAISING_LINE = 21, 22  # of summarise in tests/samples/pipeline.py


@pytest.fixture
def pipeline(tmp_path: Path) -> Path:
    """A copy of the pipeline whose summarise(values, threshold=2.0) has failed once."""
    script = tmp_path / "pipeline.py"
    shutil.copy(SAMPLES / "pipeline.py", script)
    assert run_python(str(script), "2.0").returncode == 1
    return script


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Dap:
    """A small DAP client: requests and events as Content-Length framed JSON."""

    def __init__(self, port: int, log: Path) -> None:
        self.log = log
        deadline = time.monotonic() + WAIT
        while True:  # the adapter starts listening a moment after the replay starts
            try:
                self.socket = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"nothing listens on {port}:\n{log.read_text()}") \
                        from None
                time.sleep(0.05)
        self.buffer, self.seq, self.unread = b"", 0, []  # type: ignore[var-annotated]

    def close(self) -> None:
        self.socket.close()

    def send(self, command: str, **arguments: Any) -> int:
        self.seq += 1
        body = json.dumps({"seq": self.seq, "type": "request", "command": command,
                           "arguments": arguments}).encode()
        self.socket.sendall(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        return self.seq

    def request(self, command: str, **arguments: Any) -> dict[str, Any]:
        """Send a request; its response's body (it must succeed)."""
        seq = self.send(command, **arguments)
        response = self._next(lambda m: m["type"] == "response" and m["request_seq"] == seq)
        assert response["success"], response
        return response.get("body", {})

    def event(self, *names: str) -> dict[str, Any]:
        """The next of these events (other messages are kept for later)."""
        return self._next(lambda m: m["type"] == "event" and m["event"] in names)

    def _next(self, wanted: Any) -> dict[str, Any]:
        for message in self.unread:
            if wanted(message):
                self.unread.remove(message)
                return message  # type: ignore[no-any-return]
        while True:
            message = self._read()
            if wanted(message):
                return message
            self.unread.append(message)

    def _read(self) -> dict[str, Any]:
        while b"\r\n\r\n" not in self.buffer:
            self._receive()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        length = int(re.search(rb"Content-Length: *(\d+)", head, re.IGNORECASE)[1])  # type: ignore[index]
        while len(self.buffer) < length:
            self._receive()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return json.loads(body)  # type: ignore[no-any-return]

    def _receive(self) -> None:
        try:
            chunk = self.socket.recv(65536)
        except TimeoutError:
            raise AssertionError(f"no answer from the replay:\n{self.log.read_text()}") from None
        if not chunk:
            raise AssertionError(f"the replay closed the connection:\n{self.log.read_text()}")
        self.buffer += chunk

    def attach(self, breakpoints: dict[Path, list[int]] | None = None) -> None:
        """What an IDE does on attach: initialize, attach, its breakpoints, configurationDone."""
        self.request("initialize", clientID="ckpt-test", adapterID="debugpy", pathFormat="path",
                     linesStartAt1=True, columnsStartAt1=True)
        self.send("attach", justMyCode=True)  # answered once configured
        self.event("initialized")
        for path, lines in (breakpoints or {}).items():
            self.request("setBreakpoints", source={"path": str(path)},
                         breakpoints=[{"line": line} for line in lines])
        self.request("setExceptionBreakpoints", filters=[])
        self.request("configurationDone")

    def stopped(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Wait for a stop: its event's body, and the top frame of the stopped thread."""
        stop = self.event("stopped")["body"]
        frames = self.request("stackTrace", threadId=stop["threadId"])["stackFrames"]
        return stop, frames[0]

    def variables(self, frame: dict[str, Any]) -> dict[str, str]:
        """The frame's local variables, name to value as the IDE shows it."""
        scopes = self.request("scopes", frameId=frame["id"])["scopes"]
        local = next(scope for scope in scopes if scope["name"].lower().startswith("local"))
        found = self.request("variables", variablesReference=local["variablesReference"])
        return {item["name"]: item["value"] for item in found["variables"]}


@contextmanager
def ide_replay(tmp_path: Path, *args: str) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """`cdip run ARGS` in the background, its output in a log; ended whatever happens."""
    log = tmp_path / "replay.log"
    with log.open("w") as output:
        child = subprocess.Popen([CDIP, "run", *args], stdin=subprocess.DEVNULL, stdout=output,
                                 stderr=subprocess.STDOUT, cwd=tmp_path, text=True)
    try:
        yield child, log
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)  # cdip passes it on and cleans up
            try:
                child.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def listening_port(log: Path, host: str = "127.0.0.1") -> int:
    """The port the replay says to attach to."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        found = re.search(rf"debugpy: listening on {re.escape(host)}:(\d+): attach your IDE "
                          "there", log.read_text())
        if found:
            return int(found[1])
        time.sleep(0.05)
    raise AssertionError(f"no attach line:\n{log.read_text()}")


def ended(child: subprocess.Popen[str], log: Path) -> int:
    """The exit status of `cdip`, once it has ended (its output on failure)."""
    try:
        return child.wait(timeout=WAIT)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"cdip did not end:\n{log.read_text()}") from None


def descendants(child: subprocess.Popen[str]) -> list[psutil.Process]:
    """The processes `cdip` has started (the replay, and any of its own)."""
    return psutil.Process(child.pid).children(recursive=True)


def all_gone(processes: list[psutil.Process], port: int) -> bool:
    """Whether `processes` have all ended, and nothing listens on `port` any more."""
    alive = [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    with socket.socket() as probe:
        listening = probe.connect_ex(("127.0.0.1", port)) == 0
    return not alive and not listening


# -- the IDE's session ----------------------------------------------------------------


def test_break_stops_the_ide_at_the_first_line_with_the_saved_arguments(pipeline, tmp_path):
    port = free_port()
    with ide_replay(tmp_path, "summarise", "--mode", "break", "--debugger", "debugpy",
                    "--listen", f"127.0.0.1:{port}", "--wait-for-client") as (child, log):
        assert listening_port(log) == port
        ide = Dap(port, log)
        ide.attach({pipeline: [RAISING_LINE]})

        stop, frame = ide.stopped()  # ours: the first line of the body
        family = descendants(child)
        assert (frame["name"], frame["line"]) == ("summarise", FIRST_BODY_LINE)
        assert Path(frame["source"]["path"]) == pipeline
        variables = ide.variables(frame)
        assert variables["threshold"] == "2.0"  # the saved arguments, bound
        assert variables["values"].startswith("[0.0, 0.0222")
        ide.request("continue", threadId=stop["threadId"])

        stop, frame = ide.stopped()  # the IDE's own breakpoint
        assert (stop["reason"], frame["line"]) == ("breakpoint", RAISING_LINE)
        evaluated = ide.request("evaluate", expression="len(values), kept", frameId=frame["id"],
                                context="repl")
        assert evaluated["result"] == "(10, [])"  # evaluation on the live objects
        ide.request("continue", threadId=stop["threadId"])

        assert ended(child, log) == 1  # it raised, as at capture
        ide.close()
    output = log.read_text()
    assert "ZeroDivisionError: division by zero" in output
    assert "frozen modules" not in output  # debugpy's warning, not about the user's code
    assert "warning" not in output  # loopback: reachable from this machine only
    assert all_gone(family, port), "a process of the replay outlived it"


def test_break_stops_a_generator_in_its_body(tmp_path):
    # a generator's call only makes it: the stop is at the first line of its body, run
    # as the replay iterates it, and not in ckpt's code that iterates
    script = tmp_path / "streams.py"
    shutil.copy(SAMPLES / "streams.py", script)
    assert run_python(str(script)).returncode == 1  # batches fails while iterated
    port = free_port()
    with ide_replay(tmp_path, "batches", "--mode", "break", "--debugger", "debugpy",
                    "--listen", f"127.0.0.1:{port}") as (child, log):
        ide = Dap(port, log)
        ide.attach()
        stop, frame = ide.stopped()
        assert (frame["name"], frame["line"]) == ("batches", 10)  # batch = []
        assert ide.variables(frame) == {"rows": "[1.0, 2.0, 0.0, 4.0]", "size": "2"}
        ide.request("continue", threadId=stop["threadId"])
        assert ended(child, log) == 1
        ide.close()


def test_until_error_stops_the_ide_at_the_raising_frame_with_the_exception(pipeline, tmp_path):
    # No --wait-for-client: the call runs at once, and the exception waits for the IDE
    # (the post-mortem debugpy cannot attach to after the fact, debugpy#1793). Port 0:
    # any free one, said in the attach line.
    with ide_replay(tmp_path, "summarise", "--debugger", "debugpy",
                    "--listen", "127.0.0.1:0") as (child, log):
        port = listening_port(log)
        ide = Dap(port, log)
        ide.attach()

        stop, frame = ide.stopped()
        family = descendants(child)
        assert stop["reason"] == "exception"
        assert (frame["name"], frame["line"]) == ("summarise", RAISING_LINE)
        assert Path(frame["source"]["path"]) == pipeline
        raised = ide.request("exceptionInfo", threadId=stop["threadId"])
        assert "ZeroDivisionError" in raised["exceptionId"]
        assert raised["description"] == "division by zero"
        variables = ide.variables(frame)
        assert (variables["threshold"], variables["kept"]) == ("2.0", "[]")
        ide.request("continue", threadId=stop["threadId"])

        assert ended(child, log) == 1
        ide.close()
    assert "waiting for your IDE to attach" in log.read_text()
    assert all_gone(family, port), "a process of the replay outlived it"


def test_an_error_inside_a_library_stops_the_ide_in_your_innermost_frame(tmp_path):
    # as the pdb post-mortem opens in it: with "just my code" (VS Code's default) the
    # frames of json below it are not shown
    script = tmp_path / "library_error.py"
    shutil.copy(SAMPLES / "faithful" / "library_error.py", script)
    assert run_python(str(script)).returncode == 1
    with ide_replay(tmp_path, "load_config", "--debugger", "debugpy",
                    "--listen", "127.0.0.1:0") as (child, log):
        ide = Dap(listening_port(log), log)
        ide.attach()
        stop, frame = ide.stopped()
        assert stop["reason"] == "exception"
        assert (frame["name"], frame["line"]) == ("parse", 17)  # json.loads(cleaned)
        assert ide.variables(frame)["cleaned"] == "'{\"retries\": 5,'"
        ide.request("continue", threadId=stop["threadId"])
        assert ended(child, log) == 1
        ide.close()


def test_the_ide_runs_todays_code(pipeline, tmp_path):
    fixed = "    mean = sum(kept) / len(kept) if kept else 0.0  # fixed\n"
    lines = pipeline.read_text().splitlines(keepends=True)
    lines[RAISING_LINE - 1] = fixed
    pipeline.write_text("".join(lines))
    port = free_port()
    with ide_replay(tmp_path, "summarise", "--debugger", "debugpy",
                    "--listen", f"127.0.0.1:{port}", "--wait-for-client") as (child, log):
        ide = Dap(port, log)
        ide.attach({pipeline: [RAISING_LINE]})  # set before the call runs: it stops there
        stop, frame = ide.stopped()
        assert (stop["reason"], frame["line"]) == ("breakpoint", RAISING_LINE)
        ide.request("continue", threadId=stop["threadId"])
        assert ended(child, log) == 0
        ide.close()
    assert "summarise now succeeds: it returned 0.0" in log.read_text()


def test_listening_beyond_this_machine_is_warned_about(pipeline, tmp_path):
    with ide_replay(tmp_path, "summarise", "--debugger", "debugpy",
                    "--listen", "0.0.0.0:0") as (_, log):
        listening_port(log, host="0.0.0.0")
        assert "debugpy: warning: 0.0.0.0 can be reached from other machines, and whoever " \
               "attaches runs code as you" in log.read_text()


def test_ctrl_c_while_waiting_for_the_ide_ends_it_cleanly(pipeline, tmp_path):
    port = free_port()
    child = pexpect.spawn(CDIP, ["run", "summarise", "--mode", "break", "--debugger", "debugpy",
                                 "--listen", f"127.0.0.1:{port}"],
                          encoding="utf-8", timeout=WAIT, cwd=str(tmp_path),
                          logfile=(tmp_path / "session.log").open("w"))
    try:
        child.expect(f"waiting for your IDE to attach at 127.0.0.1:{port}")
        family = psutil.Process(child.pid).children(recursive=True)
        child.sendintr()
        child.expect("interrupted \\(Ctrl-C\\): the replay ends")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 130
        assert "Traceback" not in child.before
    finally:
        child.close(force=True)
    assert all_gone(family, port), "a process of the replay outlived it"


# -- refusals: one line, exit 2, before the function runs --------------------------------


@pytest.mark.parametrize(("args", "message"), [
    (["--listen", "5678"], "argument --listen: expected HOST:PORT"),
    (["--listen", "localhost:99999"], "argument --listen: expected HOST:PORT"),
    (["--listen", "[]:5678"], "argument --listen: expected HOST:PORT"),  # "" is every address
    (["--debugger", "pdb", "--listen", "127.0.0.1:5678"], "go with --debugger debugpy"),
    (["--mode", "run", "--debugger", "debugpy", "--wait-for-client"],
     "go with --debugger debugpy, in --mode break or until-error"),
    (["--debugger", "debugpy", "-c", "p 1"], "debugpy takes no -c commands"),
    # its in-process adapter binds IPv4 only: said, not "Address family ... not supported"
    (["--debugger", "debugpy", "--listen", "[::1]:5678"],
     "debugpy cannot listen on [::1]:5678: the adapter in the replay's process listens on "
     "IPv4 only"),
], ids=["no-host", "bad-port", "empty-host", "not-debugpy", "mode-run", "commands", "ipv6"])
def test_bad_debugpy_options_are_refused(pipeline, tmp_path, args, message):
    result = subprocess.run([CDIP, "run", "summarise", *args], capture_output=True, text=True,
                            timeout=WAIT, cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_an_address_in_use_is_refused_before_the_function_runs(pipeline, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [CDIP, "run", "summarise", "--debugger", "debugpy", "--listen", f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=WAIT, cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert result.returncode == 2, result.stderr
    assert f"cdip: error: debugpy cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "hint: pick another address with --listen" in result.stderr
    assert "ZeroDivisionError" not in result.stderr  # the function did not run
    assert "Traceback" not in result.stderr


def test_a_missing_debugpy_is_refused_with_how_to_install_it(pipeline, tmp_path):
    python = environment_without(tmp_path, "debugpy")
    result = subprocess.run(
        [CDIP, "run", "summarise", "--python", str(python), "--debugger", "debugpy"],
        capture_output=True, text=True, timeout=WAIT, cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert result.returncode == 2, result.stderr
    assert f"the debugger debugpy is not installed in {python}" in result.stderr
    assert "pip install debugpy" in result.stderr
    assert "Traceback" not in result.stderr


def test_debugpy_is_imported_only_by_this_mode():
    # the CLI and the runner's table of debuggers name it, but import it only when it is used
    probe = run_python("-c", "import sys, ckpt.commands, _ckpt_runner.debuggers, "
                             "_ckpt_runner.modes; print('debugpy' in sys.modules)")
    assert probe.stdout.strip() == "False", probe.stderr
