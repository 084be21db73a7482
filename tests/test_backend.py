"""The storage backends keep one contract: the local directory, memory:// and S3 (moto's server).

Each contract test runs against all three. The failure tests kill real
processes: a writer mid-upload, and the S3 server itself mid-upload.
"""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import s3server
from s3server import BUCKET, S3Server

import ckpt.s3upload
from ckpt.backend import Backend, LocalBackend, open_backend
from ckpt.errors import CkptError, CorruptCheckpointError

s3_server = s3server.s3_server
s3_env = s3server.s3_env

KINDS = ["local", "memory", "s3"]
MiB = 1 << 20


def _url(kind: str, tmp_path: Path) -> str:
    """A fresh, empty store of each kind."""
    unique = uuid.uuid4().hex[:12]
    if kind == "local":
        return str(tmp_path / "objects")
    if kind == "memory":
        return f"memory://ckpt-{unique}"
    return f"s3://{BUCKET}/{unique}"


@pytest.fixture(params=KINDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """An empty store of each kind (s3: a fresh prefix in the session's bucket)."""
    if request.param == "s3":
        request.getfixturevalue("s3_env")
    return open_backend(_url(request.param, tmp_path))


def test_open_backend_picks_by_url(tmp_path):
    assert type(open_backend(str(tmp_path))).__name__ == "LocalBackend"
    local = open_backend(f"file://{tmp_path}/store")
    assert isinstance(local, LocalBackend) and local.path == f"{tmp_path}/store"
    assert type(open_backend("memory://x")).__name__ == "FsspecBackend"
    assert type(open_backend("s3:/not-a-url")).__name__ == "LocalBackend"  # a relative path


def test_put_then_read_round_trips(backend):
    assert backend.put("a~1~x.call", b"hello world") is True
    assert backend.put("b", bytearray(b"from a bytearray")) is True
    assert backend.put("c", memoryview(b"\x00\x01" * 10).cast("B")) is True
    assert backend.read("a~1~x.call") == b"hello world"
    assert backend.read("b") == b"from a bytearray"
    with backend.open("c") as stream:
        assert stream.read() == b"\x00\x01" * 10
    # a ranged read of a small header prefix
    assert backend.read("a~1~x.call", 0, 5) == b"hello"
    assert backend.read("a~1~x.call", 6) == b"world"
    info = backend.stat("a~1~x.call")
    assert info is not None and info.name == "a~1~x.call" and info.size == 11
    assert abs(info.mtime - time.time()) < 120
    # put without exclusive replaces
    assert backend.put("b", b"new") is True
    assert backend.read("b") == b"new"


def test_heads_reads_each_prefix_and_reports_the_missing(backend):
    for number in range(20):
        backend.put(f"part~{number:02d}.call", f"HEAD{number:02d}".encode() + b"-" * 100)
    names = [f"part~{number:02d}.call" for number in range(20)] + ["gone~99.call"]
    heads = backend.heads(names, 6)
    assert [heads[f"part~{n:02d}.call"] for n in range(20)] == [
        f"HEAD{n:02d}".encode() for n in range(20)]
    assert isinstance(heads["gone~99.call"], FileNotFoundError)


def test_missing_object_is_none_or_file_not_found(backend):
    assert backend.stat("nothing") is None
    with pytest.raises(FileNotFoundError):
        backend.open("nothing").read()
    assert backend.names() == [] and backend.objects() == []


def test_put_if_absent_keeps_the_first(backend, monkeypatch):
    assert backend.put("blobs/ab/abcdef", b"first", exclusive=True) is True
    assert backend.put("blobs/ab/abcdef", b"second", exclusive=True) is False
    assert backend.read("blobs/ab/abcdef") == b"first"
    # another writer published it between our look and our write: the write itself refuses
    monkeypatch.setattr(backend, "stat", lambda name: None)
    assert backend.put("blobs/ab/abcdef", b"third", exclusive=True) is False
    assert backend.read("blobs/ab/abcdef") == b"first"


@pytest.mark.parametrize("size", [3, 6 * MiB], ids=["one-put", "multipart"])
def test_put_if_absent_race_has_one_winner(backend, size, monkeypatch):
    monkeypatch.setattr(ckpt.s3upload, "PART", 5 * MiB)  # 6 MiB: a multipart upload on S3
    # both writers checked (nothing there) and wrote before either published:
    # the service itself must refuse the second (S3: If-None-Match: *; locally: link)
    first = backend.create("race", exclusive=True)
    second = backend.create("race", exclusive=True)
    first.write(b"1" * size)
    second.write(b"2" * size)
    assert first.commit() is True
    assert second.commit() is False
    assert backend.read("race", 0, 3) == b"111"
    assert backend.unfinished() == []  # the loser's upload was aborted, not left behind


def test_an_upload_is_invisible_until_committed(backend):
    upload = backend.create("pending~1~p.call")
    upload.write(b"x" * 1000)
    assert backend.names() == [] and backend.stat("pending~1~p.call") is None
    assert upload.commit() is True
    assert backend.names() == ["pending~1~p.call"]


def _write_and_fail(backend: Backend) -> None:
    with backend.create("doomed") as upload:
        upload.write(b"y" * (6 * MiB))
        raise KeyError("the writer failed")


def test_an_upload_that_raises_leaves_nothing(backend, monkeypatch):
    monkeypatch.setattr(ckpt.s3upload, "PART", 5 * MiB)  # on S3: a part sent, then aborted
    with pytest.raises(KeyError):
        _write_and_fail(backend)
    assert backend.names() == [] and backend.objects() == [] and backend.unfinished() == []


def test_list_by_prefix_with_sizes_and_times(backend):
    for name, size in (("k1~01~aa.call", 3), ("k1~02~bb.call", 5), ("k2~01~cc.call", 7),
                       ("blobs/ab/abc", 11), ("blobs/cd/cde", 13)):
        backend.put(name, b"z" * size)
    assert sorted(backend.names("k1~")) == ["k1~01~aa.call", "k1~02~bb.call"]
    assert backend.names("k3") == []
    listed = {info.name: info for info in backend.objects("k")}
    assert {name: info.size for name, info in listed.items()} == {
        "k1~01~aa.call": 3, "k1~02~bb.call": 5, "k2~01~cc.call": 7}
    assert all(abs(info.mtime - time.time()) < 120 for info in listed.values())
    # not recursive: a folder's objects are listed by its own prefix
    assert "blobs/ab/abc" not in backend.names()
    assert [(i.name, i.size) for i in backend.objects("blobs/ab/")] == [("blobs/ab/abc", 11)]
    assert backend.names("blobs/cd/c") == ["blobs/cd/cde"]


def test_recursive_listing_sees_every_folder(backend):
    for name in ("blobs/aa/aa1", "blobs/aa/aa2", "blobs/ab/ab1", "blobs/ba/ba1", "top~1"):
        backend.put(name, name.encode())
    assert sorted((i.name, i.size) for i in backend.objects("blobs/", recursive=True)) == [
        ("blobs/aa/aa1", 12), ("blobs/aa/aa2", 12), ("blobs/ab/ab1", 12), ("blobs/ba/ba1", 12)]
    assert sorted(i.name for i in backend.objects("blobs/a", recursive=True)) == [
        "blobs/aa/aa1", "blobs/aa/aa2", "blobs/ab/ab1"]
    assert [i.name for i in backend.objects("blobs/", recursive=False)] == []
    assert len(backend.objects(recursive=True)) == 5


def test_delete(backend):
    backend.put("a", b"1")
    backend.put("b", b"2")
    backend.delete("a")
    backend.delete("a")  # already gone: fine
    backend.delete("never-there")
    assert backend.names() == ["b"] and backend.stat("a") is None


def test_keys_cannot_leave_the_store(backend):
    for bad in ("../x", "/abs", "a//b", "a/./b", ""):
        with pytest.raises(ValueError, match="not an object key"):
            backend.put(bad, b"x")


def _big_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as stream:
        for start in range(0, size, 8 * MiB):
            chunk = os.urandom(min(8 * MiB, size - start))
            digest.update(chunk)
            stream.write(chunk)
    return digest.hexdigest()


@pytest.mark.parametrize("kind", ["local", "s3"])  # memory:// holds objects in memory
def test_a_large_object_streams_without_being_held_in_memory(kind, tmp_path, request,
                                                             monkeypatch):
    size = 64 * MiB
    expected = _big_file(tmp_path / "big.bin", size)
    if kind == "s3":
        request.getfixturevalue("s3_env")
        # S3 holds the parts on the wire, each about twice in the HTTP stack: with S3's
        # smallest parts, one at a time, that is far less than the object
        monkeypatch.setattr(ckpt.s3upload, "PART", 5 * MiB)
        monkeypatch.setattr(ckpt.s3upload, "IN_FLIGHT", 1)
    backend = open_backend(_url(kind, tmp_path))
    tracemalloc.start()
    try:
        with open(tmp_path / "big.bin", "rb") as source:
            assert backend.put("blobs/big", source, exclusive=True) is True
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert backend.stat("blobs/big").size == size
    # measured: 3 MiB locally; on S3 24 MiB here, 130 MiB with the defaults
    # (16 MiB parts, 4 on the wire), for 64 MiB and for 256 MiB alike
    assert peak < size / 2, f"{peak / MiB:.0f} MiB held for a {size // MiB} MiB put"
    digest = hashlib.sha256()
    with backend.open("blobs/big") as stream:
        while chunk := stream.read(8 * MiB):
            digest.update(chunk)
    assert digest.hexdigest() == expected


def test_local_files_are_private_and_never_followed(tmp_path):
    backend = LocalBackend(tmp_path / "store")
    backend.put("blobs/ab/abc", b"data", exclusive=True)
    backend.put("top", b"data")
    assert stat.S_IMODE((tmp_path / "store").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "store/blobs/ab").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "store/top").stat().st_mode) == 0o600
    (tmp_path / "store/link").symlink_to(tmp_path / "store/top")
    with pytest.raises(CorruptCheckpointError, match="symbolic link"):
        backend.open("link")
    assert backend.stat("link") is None  # not an object: it weighs nothing for the budget
    assert sorted(info.name for info in backend.objects()) == ["top"]
    assert "link" in backend.names()  # still listed, so that `cdip info` can say what it is
    os.mkfifo(tmp_path / "store/fifo")
    with pytest.raises(CorruptCheckpointError, match="not a regular file"):
        backend.open("fifo")  # never blocks


def test_an_unreadable_local_store_is_one_clear_error(tmp_path):
    (tmp_path / "file").write_bytes(b"not a directory")
    with pytest.raises(CkptError, match=r"cannot read the store .*file: Not a directory"):
        LocalBackend(tmp_path / "file").names()
    assert LocalBackend(tmp_path / "not-yet").names() == []  # made by the first save


def test_import_ckpt_does_not_import_fsspec(tmp_path):
    code = ("import sys, ckpt, ckpt.backend; ckpt.backend.open_backend(sys.argv[1]).names(); "
            "print(sorted(m for m in ('fsspec', 's3fs', 'botocore') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr
    timing = subprocess.run([sys.executable, "-X", "importtime", "-c", "import ckpt"],
                            capture_output=True, text=True, timeout=60)
    assert "fsspec" not in timing.stderr


@pytest.mark.parametrize("knob", ["AWS_ENDPOINT_URL", "FSSPEC_S3_ENDPOINT_URL"])
def test_the_endpoint_is_configured_the_standard_way(knob, s3_env, tmp_path):
    # either standard setting alone is enough (in a fresh process: fsspec reads its own
    # settings when it is imported)
    env = {name: value for name, value in os.environ.items()
           if name not in ("AWS_ENDPOINT_URL", "FSSPEC_S3_ENDPOINT_URL")}
    env[knob] = s3_env[knob]
    prefix = uuid.uuid4().hex[:12]
    code = ("import sys; from ckpt.backend import open_backend; "
            "backend = open_backend(sys.argv[1]); backend.put('x', b'through ' + sys.argv[2]"
            ".encode()); print(backend.read('x').decode())")
    result = subprocess.run([sys.executable, "-c", code, f"s3://{BUCKET}/{prefix}", knob],
                            capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert result.stdout.strip() == f"through {knob}", result.stderr
    assert open_backend(f"s3://{BUCKET}/{prefix}").read("x") == f"through {knob}".encode()


# --- failures: each one clear line, never a traceback -------------------------------------


def _clear_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("AWS_", "FSSPEC_S3")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_missing_credentials_is_one_clear_error(s3_server, monkeypatch):
    _clear_aws(monkeypatch)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.url)  # reachable: only the keys lack
    backend = open_backend(f"s3://{BUCKET}/nokeys")
    for attempt in (lambda: backend.put("a", b"x"), backend.names, lambda: backend.stat("a")):
        with pytest.raises(CkptError, match="no credentials for the store s3://") as caught:
            attempt()
        assert "AWS_ACCESS_KEY_ID" in caught.value.hint


def test_unreachable_endpoint_is_one_clear_error(s3_env, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # the standard knob: fail fast in the test
    _point_fsspec_at(monkeypatch, "http://127.0.0.1:9")
    backend = open_backend(f"s3://{BUCKET}/unreachable")
    started = time.monotonic()
    with pytest.raises(CkptError, match=r"cannot reach the storage service .*127\.0\.0\.1:9"):
        backend.names()
    assert time.monotonic() - started < 30


def test_missing_bucket_is_one_clear_error(s3_env):
    backend = open_backend("s3://no-such-bucket/store")
    with pytest.raises(CkptError, match="no bucket 'no-such-bucket'"):
        backend.put("a", b"x")


def test_missing_library_or_unknown_scheme_is_one_clear_error(tmp_path):
    code = textwrap.dedent("""
        import sys
        sys.modules[sys.argv[1]] = None  # as if it were not installed
        from ckpt.backend import open_backend
        from ckpt.errors import CkptError
        try:
            open_backend(sys.argv[2])
        except CkptError as exc:
            print(exc.message)
            print(exc.hint)
    """)
    for missing, url, expected in (
            ("s3fs", "s3://bucket/x", "needs a library that is not installed"),
            ("fsspec", "s3://bucket/x", "needs fsspec"),
            ("nothing", "nosuch://bucket/x", "not a store URL")):
        result = subprocess.run([sys.executable, "-c", code, missing, url], capture_output=True,
                                text=True, timeout=60, cwd=tmp_path)
        assert expected in result.stdout, result.stdout + result.stderr
        assert "pip install" in result.stdout or missing == "nothing"
        assert "Traceback" not in result.stderr


# --- killed mid-upload: nothing partial is ever listed --------------------------------------

_WRITER = textwrap.dedent("""
    import sys
    import ckpt.s3upload
    from ckpt.backend import open_backend
    from ckpt.errors import CkptError
    ckpt.s3upload.PART = 5 << 20  # S3's smallest: each write below sends a part
    backend = open_backend(sys.argv[1])
    backend.put("done", b"published before the crash")
    try:
        with backend.create("partial") as upload:
            for part in range(1000):
                upload.write(b"p" * (5 << 20))
                print("wrote", part + 1, flush=True)
    except CkptError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        sys.exit(2)
""")


def _start_writer(url: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", _WRITER, url], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **env},
                            cwd=cwd)


def _wait_for_parts(writer: subprocess.Popen[str], parts: int) -> None:
    assert writer.stdout is not None
    for line in writer.stdout:
        if line.strip() == f"wrote {parts}":
            return
    raise AssertionError(f"the writer stopped early: {writer.stderr.read()}")  # type: ignore


# a dead server is found at the first try (the standard setting; the default retries)
_FAIL_FAST = {"AWS_MAX_ATTEMPTS": "1"}


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_a_writer_killed_mid_upload_leaves_nothing_listed(kind, tmp_path, request):
    env = request.getfixturevalue("s3_env") if kind == "s3" else {}
    url = _url(kind, tmp_path)
    writer = _start_writer(url, {**env, **_FAIL_FAST}, tmp_path)
    try:
        _wait_for_parts(writer, 4)  # 20 MiB sent: at least three parts are on the server
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    backend = open_backend(url)
    assert backend.names() == ["done"]
    assert [info.name for info in backend.objects()] == ["done"]
    assert backend.stat("partial") is None
    # what it left is found as unfinished (for `cdip gc`), and can be removed
    (left,) = backend.unfinished()
    if kind == "s3":
        assert left.name == "partial"
    backend.abort_unfinished(left)
    assert backend.unfinished() == []
    assert backend.names() == ["done"]


def _point_fsspec_at(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """fsspec read FSSPEC_S3_ENDPOINT_URL when it was imported: tell it of this server."""
    import fsspec.config

    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    monkeypatch.setenv("FSSPEC_S3_ENDPOINT_URL", url)
    monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": url})


@pytest.fixture
def recorded_server(tmp_path: Path) -> Iterator[S3Server]:
    """A server of this test's own, recording every request it serves."""
    server = S3Server(tmp_path / "first", recording=tmp_path / "requests.jsonl").start()
    try:
        server.make_bucket()
        yield server
    finally:
        server.stop()


def test_the_server_killed_mid_upload_leaves_nothing_partial(recorded_server, tmp_path,
                                                             monkeypatch):
    url = f"s3://{BUCKET}/store"
    writer = _start_writer(url, {**recorded_server.env, **_FAIL_FAST}, tmp_path)
    try:
        _wait_for_parts(writer, 3)
        recorded_server.kill()
        _, stderr = writer.communicate(timeout=60)
    finally:
        writer.kill()
    # the writer's user sees one line, not a traceback, and the writer does not hang
    assert writer.returncode == 2, stderr
    assert "Traceback" not in stderr
    assert stderr.startswith("error: cannot reach the storage service"), stderr
    # moto keeps its state in memory, which died with it: a second server replays every
    # request the first one received, up to the kill
    second = S3Server(tmp_path / "second").start()
    try:
        second.replay(recorded_server.recording)
        _point_fsspec_at(monkeypatch, second.url)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        backend = open_backend(url)
        assert backend.names() == ["done"]  # the replay holds what was published...
        assert backend.read("done") == b"published before the crash"
        assert backend.stat("partial") is None  # ...and the interrupted upload is not listed
        (left,) = backend.unfinished()  # but is there, for `cdip gc` to abort
        assert left.name == "partial"
        backend.abort_unfinished(left)
        assert backend.unfinished() == []
    finally:
        second.stop()

