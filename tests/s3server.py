"""A real S3 API server on loopback for the tests: moto's standalone server, in a child process.

A child process (not moto's in-process thread) so that a test can SIGKILL it
mid-upload, and so that the server does not share the test's GIL. It binds
port 0 and says which port it got, so parallel sessions never collide.

Use the `s3_server` fixture (one server per test session) and `s3_env` (its
environment, set for the test: subprocesses such as `cdip` inherit it), or
start an `S3Server` of your own for a test that kills it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

BUCKET = "ckpt-test"
_RUNNING = re.compile(r"Running on (http://127\.0\.0\.1:[0-9]+)")


class S3Server:
    """moto's server in a child process; `url` once started, `env` for its clients."""

    def __init__(self, workdir: Path, recording: Path | None = None) -> None:
        self.workdir = workdir
        self.recording = recording
        self.log = workdir / "moto.log"
        self.url = ""
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_s = 0.0

    def start(self, timeout: float = 30.0) -> S3Server:
        """Start it and wait until it serves (a fraction of a second to a second)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        for name in ("MOTO_ENABLE_RECORDING", "MOTO_RECORDER_FILEPATH"):
            env.pop(name, None)
        if self.recording is not None:
            # every request is logged, so that a second server can replay them
            env.update(MOTO_ENABLE_RECORDING="1", MOTO_RECORDER_FILEPATH=str(self.recording))
        started = time.perf_counter()
        with open(self.log, "wb") as log:
            # cwd: an empty folder, so no stray module (a cmd.py) shadows the server's imports
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, env=env)
        deadline = started + timeout
        while not self.url:
            found = _RUNNING.search(self.log.read_text(errors="replace"))
            if found:
                self.url = found.group(1)
            elif self.process.poll() is not None or time.perf_counter() > deadline:
                self.stop()
                raise RuntimeError(f"moto's server did not start:\n{self.log.read_text()}")
            else:
                time.sleep(0.02)
        self.startup_s = time.perf_counter() - started
        return self

    @property
    def env(self) -> dict[str, str]:
        """The standard AWS and fsspec settings that point a client at this server."""
        return {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.url,  # botocore's own setting
            "FSSPEC_S3_ENDPOINT_URL": self.url,  # fsspec's config, for s3fs
            "AWS_EC2_METADATA_DISABLED": "true",  # never wait for an instance role
        }

    def make_bucket(self, name: str = BUCKET) -> str:
        """Create a bucket (moto accepts the unsigned request); return its name."""
        self._request("PUT", f"/{name}")
        return name

    def replay(self, recording: Path) -> None:
        """Replay another server's recorded requests into this one (moto's recorder)."""
        self._request("POST", "/moto-api/recorder/upload-recording", recording.read_bytes())
        self._request("POST", "/moto-api/recorder/replay-recording")

    def replay_but_parts(self, recording: Path) -> None:
        """Replay another server's recording, less the parts of multipart uploads.

        moto names an upload with `os.urandom`, so the replayed one gets another
        id and the recorded parts (sent to the old id) cannot follow it: the upload
        is replayed, unfinished and empty, as a server killed mid-upload left it.
        Concurrent requests can run into one line; a killed server's last is cut.
        """
        import json

        text, decoder, kept, at = recording.read_text(), json.JSONDecoder(), [], 0
        while True:
            while at < len(text) and text[at].isspace():
                at += 1
            try:
                request, at = decoder.raw_decode(text, at)
            except ValueError:
                break  # the end, or the request the kill cut short
            if "uploadId=" not in request["url"]:
                kept.append(json.dumps(request))
        replayable = recording.with_name(recording.name + ".replayable")
        replayable.write_text("\n".join(kept) + "\n")
        self.replay(replayable)

    def _request(self, method: str, path: str, data: bytes | None = None) -> bytes:
        # octet-stream: sent as a form, the recording would be parsed and lost
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(request, timeout=60) as response:
            body: bytes = response.read()
            return body

    def kill(self) -> None:
        """SIGKILL: what a crash or a lost machine does; its in-memory state dies with it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        """Terminate it and wait (SIGKILL after 10 seconds)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One S3 server for the test session, with the bucket `ckpt-test`."""
    server = S3Server(tmp_path_factory.mktemp("s3server")).start()
    try:
        server.make_bucket()
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The server's environment, set for this test (and every subprocess it starts)."""
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "FSSPEC_S3"):
        monkeypatch.delenv(name, raising=False)
    return s3_server.env
