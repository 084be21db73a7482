"""`cdip export` / `cdip import` against hostile bundles, other users and failures midway."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import pwd
import shutil
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import BIN
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ckpt
from ckpt import bundle, cli, display, export
from ckpt.blobs import Blobs
from ckpt.fileformat import PartWriter, read_part
from ckpt.keys import load_key
from ckpt.store import Store

CDIP = str(BIN / "cdip")
# a bundle's members, as `cdip export` writes them
MANIFEST, DIGEST, PARTS = "manifest.json", "manifest.sha256", "checkpoints/"
SECRET = "hunter2-do-not-leak"


# --- making checkpoints and bundles --------------------------------------------------


@ckpt.ckpt(name="tests/test_stats.py::test_mean", active=False)
def failing_mean(values: list[float]) -> float:
    mean = sum(values) / len(values)
    assert mean == 3.0
    return mean


@ckpt.ckpt(name="evil", active=False)
def evil(command: str) -> None:
    os.system(command)  # what the attacker wants replayed
    raise RuntimeError("done")


@ckpt.ckpt(name="called")
def called(a: int, password: str = SECRET) -> int:
    return a


def capture_some() -> None:
    """Three checkpoints in the test's store: two errors and one call."""
    with contextlib.suppress(AssertionError):
        failing_mean([1.0, 2.0])
    with contextlib.suppress(RuntimeError):
        evil("true")
    called(1)


def export_all(output: Path, redact: tuple[str, ...] = ()) -> list[export.Exported]:
    store = Store(os.environ["PYCKPT_DIR"])
    return export.export(store.entries(), output, *([redact] if redact else []))


@pytest.fixture
def exported(tmp_path: Path) -> Path:
    """A bundle of three checkpoints, exported in-process."""
    capture_some()
    path = tmp_path / "out" / "failures.ckpt"
    path.parent.mkdir()
    export_all(path)
    return path


def members(path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """A bundle's manifest and its checkpoint files by name."""
    with tarfile.open(path) as tar:
        data = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    manifest = json.loads(data.pop(MANIFEST))
    data.pop(DIGEST)
    return manifest, {name.removeprefix(PARTS): blob for name, blob in data.items()}


def pack(path: Path, manifest: Any, files: dict[str, bytes], fix: bool = True,
         extra: tuple[tuple[tarfile.TarInfo, bytes], ...] = ()) -> Path:
    """Write a bundle; with `fix`, the manifest's sizes and digests are made to match."""
    if fix:
        for entry in manifest["checkpoints"]:
            for file in entry["files"]:
                blob = files.get(file["name"], b"")
                file["size"], file["sha256"] = len(blob), hashlib.sha256(blob).hexdigest()
    blob = json.dumps(manifest).encode() if not isinstance(manifest, bytes) else manifest
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        add(tar, tarfile.TarInfo(MANIFEST), blob)
        add(tar, tarfile.TarInfo(DIGEST), hashlib.sha256(blob).hexdigest().encode())
        for name, data in files.items():
            add(tar, tarfile.TarInfo(PARTS + name), data)
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def add(tar: tarfile.TarFile, info: tarfile.TarInfo, data: bytes) -> None:
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def rewrite_part(blob: bytes, change: Callable[[dict[str, Any], dict[str, Any]], None]) -> bytes:
    """A part with its headers changed by `change(summary, detail)`, signed under any key."""
    with tempfile.NamedTemporaryFile() as file:
        file.write(blob)
        file.flush()
        part = read_part(file.name, key=None)
    change(part.summary, part.detail)
    out = io.BytesIO()
    writer = PartWriter(out, os.urandom(32))  # type: ignore[arg-type]
    writer.write_header(part.summary, part.detail)
    for record in part.records:
        writer.write_record(record.inband, record.buffers)
    writer.finish()
    return out.getvalue()


def entry_named(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    return next(e for e in manifest["checkpoints"] if e["name"] == name)


def only(manifest: dict[str, Any], files: dict[str, bytes], name: str,
         ) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The bundle reduced to the checkpoint `name`."""
    entry = entry_named(manifest, name)
    kept = {f["name"] for f in entry["files"]}
    return {**manifest, "checkpoints": [entry]}, {n: b for n, b in files.items() if n in kept}


def change_everywhere(manifest: dict[str, Any], files: dict[str, bytes], name: str,
                      field: str, value: Any) -> None:
    """Give checkpoint `name` another `field` in its manifest entry and its parts alike."""
    entry = entry_named(manifest, name)
    entry[field] = value
    for file in entry["files"]:
        files[file["name"]] = rewrite_part(files[file["name"]],
                                           lambda summary, _: summary.update({field: value}))


def importing(path: Path, store: Path | None = None) -> list[bundle.Adopted]:
    shown: list[bundle.Bundle] = []
    target = Store(store or Path(os.environ["PYCKPT_DIR"]).with_name("importer"))
    return bundle.import_bundle(path, target, lambda opened: shown.append(opened) or True)


def store_files(store: Path) -> list[str]:
    return sorted(os.listdir(store)) if store.exists() else []


def cdip(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
         **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CDIP, *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})}, cwd=cwd,
                          **kwargs)


def other_user(tmp_path: Path, store: Path) -> dict[str, str]:
    """Another user's environment: their own home, key and store."""
    home = tmp_path / "colleague"
    home.mkdir(exist_ok=True)
    return {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
            "PYCKPT_DIR": str(store)}


# --- 1. export writes its bundle privately, through no one's link ----------------------


def test_export_creates_the_bundle_private_whatever_the_umask(exported, tmp_path):
    old = os.umask(0o022)
    try:
        again = tmp_path / "out" / "again.ckpt"
        export_all(again)
    finally:
        os.umask(old)
    assert stat.S_IMODE(again.stat().st_mode) == 0o600
    assert stat.S_IMODE(exported.stat().st_mode) == 0o600
    assert sorted(os.listdir(again.parent)) == ["again.ckpt", "failures.ckpt"]  # no leftovers


@pytest.fixture
def as_nobody() -> Callable[..., None]:
    """Run a command as an unprivileged other user (the attacker)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to act as another user")
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody'")

    def run(*command: str) -> None:
        subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                        *command], check=True, timeout=30)

    return run


@pytest.fixture(params=[0o1777, 0o777], ids=["sticky-like-tmp", "shared-project-dir"])
def shared_dir(request: pytest.FixtureRequest) -> Path:
    """A directory other users can write to, outside pytest's private tmp_path."""
    directory = Path(tempfile.mkdtemp(prefix="ckpt-shared-", dir="/tmp"))
    directory.chmod(request.param)
    yield directory  # type: ignore[misc]
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize("target", ["victims-file", "attackers-file"])
def test_export_writes_through_no_link_planted_at_its_temporary(as_nobody, shared_dir, target):
    capture_some()
    victim = shared_dir / "victim"
    victim.write_text("precious\n")
    victim.chmod(0o644)
    loot = shared_dir / "loot"
    as_nobody("sh", "-c", f"umask 0; : > {loot}")
    output = shared_dir / "failures.ckpt"
    # the name the old code wrote through: predictable from our pid
    planted = shared_dir / f".{output.name}.{os.getpid()}.tmp"
    as_nobody("ln", "-s", str(victim if target == "victims-file" else loot), str(planted))
    export_all(output)
    assert victim.read_text() == "precious\n"
    assert loot.read_bytes() == b""
    assert not output.is_symlink() and output.owner() == "root"
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    assert importing(output)


def test_export_replaces_a_link_planted_at_its_output(as_nobody, shared_dir):
    capture_some()
    victim = shared_dir / "victim"
    victim.write_text("precious\n")
    output = shared_dir / "failures.ckpt"
    as_nobody("ln", "-s", str(victim), str(output))
    export_all(output)
    assert victim.read_text() == "precious\n"
    assert not output.is_symlink() and stat.S_IMODE(output.stat().st_mode) == 0o600


def test_export_into_a_missing_directory_is_a_clear_error(store, tmp_path):
    capture_some()
    result = cdip("export", "-o", str(tmp_path / "nowhere" / "x.ckpt"))
    assert result.returncode == 2
    assert result.stderr.startswith("cdip: error: cannot write")
    assert "Traceback" not in result.stderr


# --- 2. import decides from the parts, and the manifest must agree ----------------------


def test_a_manifest_describing_other_parts_is_refused(exported, tmp_path):
    manifest, files = members(exported)
    shown = entry_named(manifest, "tests/test_stats.py::test_mean")
    payload = entry_named(manifest, "evil")
    # the prompt would say test_mean / AssertionError; the files are evil's
    manifest["checkpoints"] = [{**shown, "files": payload["files"]}]
    forged = pack(tmp_path / "forged.ckpt", manifest,
                  {f["name"]: files[f["name"]] for f in payload["files"]})
    with pytest.raises(ckpt.CkptError, match=r"is refused: .* says another"):
        importing(forged)
    assert store_files(tmp_path / "importer") == []


@pytest.mark.parametrize(("field", "value"), [
    ("name", "tests/test_stats.py::test_other"),
    ("function", "tests.test_stats:test_other"),
    ("exception", {"type": "AssertionError", "message": "harmless"}),
    ("trigger", "call"),
    ("created", 1.6e9),
    ("id", "0123456789ab"),
])
def test_every_claim_of_the_manifest_must_match_the_parts(exported, tmp_path, field, value):
    manifest, files = only(*members(exported), "evil")
    manifest["checkpoints"][0][field] = value
    with pytest.raises(ckpt.CkptError, match="manifest says another") as refused:
        importing(pack(tmp_path / "lying.ckpt", manifest, files))
    assert "refused" in refused.value.message
    assert store_files(tmp_path / "importer") == []


@pytest.mark.parametrize("version", [1, 2, 3, 4])
def test_a_checkpoint_of_every_format_travels(tmp_path, monkeypatch, version):
    golden = Path(__file__).parent / "data" / f"format-{version}"
    store = tmp_path / "golden"
    shutil.copytree(golden / "store", store)
    key = tmp_path / "key"
    shutil.copy(golden / "key", key)
    key.chmod(0o600)
    monkeypatch.setenv("PYCKPT_KEY_FILE", str(key))
    (entry,) = (entry for entry in Store(store).entries() if entry.name == "golden")
    output = tmp_path / "golden.ckpt"
    (carried,) = export.export([entry], output, ("weights",))
    assert {(v.name, v.redacted) for v in carried.arguments} == {
        ("values", False), ("weights", True), ("label", False)}
    monkeypatch.delenv("PYCKPT_KEY_FILE")  # the importer: another user, another key
    (adopted,) = importing(output, tmp_path / "importer")
    (imported,) = Store(tmp_path / "importer").entries()
    assert imported.problem is None and imported.stamp == entry.stamp
    assert (imported.id, imported.name) == (adopted.new, "golden")
    loaded = ckpt.load(adopted.new, directory=str(tmp_path / "importer"))
    assert loaded.arguments["label"] == f"v{version}"
    assert repr(loaded.arguments["weights"]) == "<redacted numpy.ndarray>"
    assert loaded.exception.message == f"v{version}: 7.5"


def test_what_import_shows_is_read_from_the_parts(exported, tmp_path):
    manifest, files = members(exported)
    for entry in manifest["checkpoints"]:  # an index that says nothing does not matter...
        entry.update(id="0" * 12, name="?", function="?", exception=None, trigger="call")
    blank = pack(tmp_path / "blank.ckpt", manifest, files)
    with pytest.raises(ckpt.CkptError, match="manifest says another"):
        importing(blank)  # ...but one that disagrees with the parts is refused
    seen: dict[str, bundle.BundledCheckpoint] = {}

    def confirm(opened: bundle.Bundle) -> bool:
        for checkpoint in opened.checkpoints:
            seen[checkpoint.name] = checkpoint
            call = read_part(str(checkpoint.files[0]), key=None).summary
            assert (checkpoint.id, checkpoint.function) == (call["id"], call["function"])
        return False

    target = Store(tmp_path / "importer")
    assert bundle.import_bundle(exported, target, confirm) == []
    assert seen["evil"].exception_text == "RuntimeError: done"
    assert seen["tests/test_stats.py::test_mean"].exception_text.startswith("AssertionError")
    assert seen["called"].trigger == "call" and seen["called"].exception is None
    assert store_files(tmp_path / "importer") == []


# --- 3. ids, times and names are checked; sizes bounded; all or nothing ------------------


@pytest.mark.parametrize("bad_id", ["ab~cd", "../../x", "ABCDEF012345", "abc.def", "é" * 12])
def test_an_id_that_is_not_ours_gets_a_fresh_one(exported, tmp_path, bad_id):
    manifest, files = only(*members(exported), "evil")
    change_everywhere(manifest, files, "evil", "id", bad_id)
    (adopted,) = importing(pack(tmp_path / "odd-id.ckpt", manifest, files))
    assert adopted.old == bad_id and len(adopted.new) == 12 and adopted.new != bad_id
    importer = Store(tmp_path / "importer")
    assert [e.id for e in importer.entries()] == [adopted.new]
    assert all(adopted.new in name for name in store_files(tmp_path / "importer"))


def test_an_id_already_here_or_twice_in_the_bundle_gets_a_fresh_one(exported, tmp_path):
    first = importing(exported)
    again = importing(exported)
    assert {a.old for a in again} == {a.new for a in first}
    assert not {a.new for a in again} & {a.new for a in first}
    assert len(Store(tmp_path / "importer").entries()) == 6
    manifest, files = members(exported)
    twin = entry_named(manifest, "called")["id"]
    change_everywhere(manifest, files, "evil", "id", twin)
    adopted = importing(pack(tmp_path / "twins.ckpt", manifest, files),
                        tmp_path / "another-importer")
    assert len({a.new for a in adopted}) == 3


@pytest.mark.parametrize("stamp", ["abc", 1.5e18, 10**30, -1, True, 0, None])
def test_a_time_that_is_no_sane_time_is_refused(exported, tmp_path, stamp):
    manifest, files = only(*members(exported), "evil")
    entry = manifest["checkpoints"][0]
    entry["stamp"] = stamp
    if isinstance(stamp, (int, float)):
        entry["created"] = stamp / 1e9
        change_everywhere(manifest, files, "evil", "created", stamp / 1e9)
    with pytest.raises(ckpt.CkptError, match="time"):
        importing(pack(tmp_path / "odd-time.ckpt", manifest, files))
    assert store_files(tmp_path / "importer") == []
    assert cdip("info", "--dir", str(tmp_path / "importer")).returncode == 0


@pytest.mark.parametrize("name", [123, ["a"], None, "a\0b", "", "x" * 5000])
def test_a_name_that_is_not_a_sane_string_is_refused(exported, tmp_path, name):
    manifest, files = only(*members(exported), "evil")
    change_everywhere(manifest, files, "evil", "name", name)
    with pytest.raises(ckpt.CkptError, match="refused"):
        importing(pack(tmp_path / "odd-name.ckpt", manifest, files))
    assert store_files(tmp_path / "importer") == []


@pytest.mark.parametrize(("part", "field", "value"), [
    ("error", "exception", "not an object"),
    ("error", "exception", {"type": ["x"]}),
    ("call", "function", {"module": "m"}),
    ("call", "trigger", "whatever"),
    ("call", "part", "error"),
    ("call", "stamp", None),  # says nothing of when it was taken
    ("error", "stamp", 1_700_000_000_000_000_000),
])
def test_a_header_that_would_break_listing_is_refused(exported, tmp_path, part, field, value):
    manifest, files = only(*members(exported), "evil")
    for name in files:
        if name.endswith("." + part):
            files[name] = rewrite_part(files[name],
                                       lambda summary, _: summary.update({field: value}))
    with pytest.raises(ckpt.CkptError, match="refused"):
        importing(pack(tmp_path / "odd-header.ckpt", manifest, files))
    assert store_files(tmp_path / "importer") == []
    listed = cdip("info", "--dir", str(tmp_path / "importer"))
    assert listed.returncode == 0, listed.stderr


def member_info(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0,
                link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size, link
    return info


@pytest.mark.parametrize(("extra", "reason"), [
    (member_info("checkpoints/x.call", tarfile.SYMTYPE, link="/etc/passwd"), "not a regular"),
    (member_info("checkpoints/x.call", tarfile.LNKTYPE, link="manifest.json"), "not a regular"),
    (member_info("checkpoints/x.call", tarfile.CHRTYPE), "not a regular"),
    (member_info("checkpoints/x.call", tarfile.FIFOTYPE), "not a regular"),
    (member_info("checkpoints", tarfile.DIRTYPE), "not a regular"),
    (member_info("checkpoints/../../escaped.call"), "no file of a bundle"),
    (member_info("/tmp/escaped.call"), "no file of a bundle"),
    (member_info("checkpoints/unlisted~1~abc.call"), "not in its manifest"),
    (member_info("manifest.json"), "appears twice"),
])
def test_members_other_than_the_listed_files_are_refused(exported, tmp_path, extra, reason):
    manifest, files = members(exported)
    bad = pack(tmp_path / "extra.ckpt", manifest, files, extra=((extra, b""),))
    with pytest.raises(ckpt.CkptError, match=reason):
        importing(bad)
    assert store_files(tmp_path / "importer") == []
    assert not Path("/tmp/escaped.call").exists()


def test_a_listed_file_given_twice_takes_neither(exported, tmp_path):
    manifest, files = only(*members(exported), "evil")
    name = next(n for n in files if n.endswith(".call"))
    good = files[name]
    evil_copy = rewrite_part(good, lambda summary, _: summary.update(function="os:system"))
    bad = pack(tmp_path / "twice.ckpt", manifest, files,
               extra=((member_info(PARTS + name), evil_copy),))
    with pytest.raises(ckpt.CkptError, match="appears twice"):
        importing(bad)


def test_a_member_larger_than_the_manifest_says_is_refused_unread(exported, tmp_path):
    manifest, files = only(*members(exported), "evil")
    pack(tmp_path / "x.ckpt", manifest, files)  # fixes sizes and digests
    name = next(iter(files))
    files[name] += b"\0" * 4096
    with pytest.raises(ckpt.CkptError, match="not of the size its manifest says"):
        importing(pack(tmp_path / "bigger.ckpt", manifest, files, fix=False))


def test_a_bundle_over_the_store_budget_is_refused_from_its_headers(exported, tmp_path,
                                                                    monkeypatch):
    monkeypatch.setenv("PYCKPT_MAX_BYTES", "4K")
    with pytest.raises(ckpt.CkptError, match="more than the store's budget") as refused:
        importing(exported)
    assert "PYCKPT_MAX_BYTES" in refused.value.hint
    assert store_files(tmp_path / "importer") == []


def octal(value: int, width: int) -> bytes:
    return f"{value:0{width - 1}o}".encode() + b"\0"


def sparse_member(name: str, real_size: int) -> bytes:
    """An old-GNU sparse member: `real_size` bytes once extracted, all hole but the last 512."""
    info = tarfile.TarInfo(name)
    info.type, info.size = tarfile.GNUTYPE_SPARSE, 512
    header = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    assert len(header) == 512
    header[386:398] = octal(real_size - 512, 12)  # the one data run: offset...
    header[398:410] = octal(512, 12)  # ...and length
    header[482] = 0  # no extension blocks
    header[483:495] = octal(real_size, 12)
    header[148:156] = b"        "
    header[148:156] = f"{sum(header[:512]):06o}".encode() + b"\0 "
    return bytes(header[:512]) + b"x" * 512


def made_sparse(plain: Path, name: str, real_size: int) -> Path:
    """`plain` with its 512-byte member `name` made sparse: `real_size` bytes once extracted."""
    data = plain.read_bytes()
    with tarfile.open(plain) as tar:
        member = tar.getmember(name)
    assert member.size == 512
    sparse = plain.with_name("sparse-" + plain.name)
    sparse.write_bytes(data[:member.offset] + sparse_member(name, real_size)
                       + data[member.offset_data + 512:])
    return sparse


def limited(resource_name: str, limit: int) -> Callable[[], None]:
    """A preexec_fn that sets one resource limit of the child."""
    def apply() -> None:
        import resource

        kind = getattr(resource, resource_name)
        resource.setrlimit(kind, (limit, limit))

    return apply


def test_a_sparse_member_is_refused_before_anything_is_extracted(exported, tmp_path):
    manifest, files = only(*members(exported), "evil")
    name = next(iter(files))
    files[name] = b"x" * 512
    plain = pack(tmp_path / "plain.ckpt", manifest, files)
    sparse = made_sparse(plain, PARTS + name, 4 << 30)  # 4 GiB from 10 KiB
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    result = cdip("import", str(sparse), "--yes", env={"TMPDIR": str(scratch)},
                  preexec_fn=limited("RLIMIT_FSIZE", 16 << 20))
    assert result.returncode == 2
    assert "not a regular file" in result.stderr, result.stderr
    assert "File too large" not in result.stderr and "Traceback" not in result.stderr
    assert os.listdir(scratch) == []


def test_a_huge_manifest_is_refused_unread(exported, tmp_path):
    _, files = members(exported)
    plain = pack(tmp_path / "plain.ckpt", b" " * 512, files, fix=False)
    sparse = made_sparse(plain, MANIFEST, 3 << 30)  # 3 GiB of JSON whitespace
    result = cdip("import", str(sparse), "--yes", preexec_fn=limited("RLIMIT_AS", 1 << 30))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("cdip: error: the bundle")
    assert "Traceback" not in result.stderr


def test_a_huge_tar_header_extension_is_refused_unread(tmp_path):
    info = tarfile.TarInfo("././@LongLink")
    info.type, info.size = tarfile.GNUTYPE_LONGNAME, 3 << 30
    huge = tmp_path / "longname.ckpt"
    huge.write_bytes(info.tobuf(tarfile.GNU_FORMAT) + b"a" * 10240)
    result = cdip("import", str(huge), "--yes", preexec_fn=limited("RLIMIT_AS", 1 << 30))
    assert result.returncode == 2, result.stderr
    assert "tar header extension" in result.stderr


@pytest.mark.parametrize(("where", "failure"), [
    ("write", OSError(errno.ENOSPC, "No space left on device")),
    ("write", KeyboardInterrupt()),
    ("place", OSError(errno.EIO, "Input/output error")),
])
def test_an_import_that_fails_midway_leaves_nothing(exported, tmp_path, monkeypatch, where,
                                                    failure):
    importer = tmp_path / "importer"
    own = Store(importer)
    calls = {"n": 0}
    real = Store.stage_part if where == "write" else os.link

    def failing(*args: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 4:
            raise failure
        return real(*args)

    if where == "write":
        monkeypatch.setattr(Store, "stage_part", failing)
    else:
        monkeypatch.setattr(bundle.os, "link", failing)
    with pytest.raises((ckpt.CkptError, KeyboardInterrupt)) as failed:
        bundle.import_bundle(exported, own, lambda opened: True)
    if isinstance(failed.value, ckpt.CkptError):
        assert "nothing was imported" in failed.value.message
    assert calls["n"] == 4
    assert store_files(importer) == []


def test_a_directory_given_as_a_bundle_is_a_clear_error(tmp_path):
    for path in (tmp_path, tmp_path / "missing.ckpt"):
        result = cdip("import", str(path), "--yes")
        assert result.returncode == 2 and result.stderr.startswith("cdip: error:")
        assert "Traceback" not in result.stderr


# --- 4. nothing from a bundle reaches the terminal raw ----------------------------------


HOSTILE = "\x1b[2J\x1b]0;pwned\x07\nID  NAME  fake row\u202e"


def test_import_shows_the_bundles_text_escaped(exported, tmp_path):
    manifest, files = only(*members(exported), "evil")
    change_everywhere(manifest, files, "evil", "function", "m:f" + HOSTILE)
    for name in files:  # the function the replay would call is the one shown
        if name.endswith(".call"):
            files[name] = rewrite_part(files[name], lambda _, detail: detail["function"].update(
                module="m", qualname="f" + HOSTILE))
    change_everywhere(manifest, files, "evil", "name", "evil" + HOSTILE)
    exception = {"type": "E" + HOSTILE, "message": HOSTILE}
    entry = manifest["checkpoints"][0]
    entry["exception"] = exception
    for name in files:
        if name.endswith(".error"):
            files[name] = rewrite_part(files[name],
                                       lambda summary, _: summary.update(exception=exception))
    manifest["host"] = "ci" + HOSTILE
    hostile = pack(tmp_path / "hostile\x1b[31m.ckpt", manifest, files)
    result = cdip("import", str(hostile), "--yes", "--dir", str(tmp_path / "importer"))
    assert result.returncode == 0, result.stderr
    for text in (result.stdout, result.stderr):
        assert display.printable(text, newlines=True) == text
    assert "fake row" in result.stdout and "\\x1b[2J" in result.stdout
    assert len(result.stdout.splitlines()) == 5  # title, header, one row, warning, imported


def test_a_refusal_shows_the_bundles_text_escaped(exported, tmp_path):
    manifest, files = members(exported)
    bad = pack(tmp_path / "bad.ckpt", manifest, files,
               extra=((member_info("checkpoints/" + HOSTILE), b""),))
    result = cdip("import", str(bad), "--yes", "--dir", str(tmp_path / "importer"))
    assert result.returncode == 2
    assert display.printable(result.stderr, newlines=True) == result.stderr


# --- 5. export says what leaves, and --redact keeps secrets home --------------------------


JOB = """
import os
import ckpt

class Canary:
    # unpickling this creates a file: proof that someone unpickled it
    def __reduce__(self):
        return (open, (os.environ["CANARY"], "w"))

@ckpt.ckpt(active=False)
def step(data, password, api_token, canary):
    derived = len(data)
    raise ValueError("step failed")

if __name__ == "__main__":
    # the secret is read, not written here: the module's source travels with an error
    step([1, 2, 3], os.environ["SECRET"], "tok-" + os.environ["SECRET"], Canary())
"""


@pytest.fixture
def job(tmp_path: Path, store: Path) -> Path:
    script = tmp_path / "job.py"
    script.write_text(JOB)
    canary = tmp_path / "canary"
    result = subprocess.run([str(BIN / "python"), str(script)], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path,
                            env={**os.environ, "CANARY": str(canary), "SECRET": SECRET})
    assert "ValueError" in result.stderr
    assert not canary.exists()
    return canary


def test_export_lists_what_leaves(job, tmp_path):
    result = cdip("export", "-o", str(tmp_path / "b.ckpt"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "exported 1 checkpoint(s)" in out
    assert "arguments: data: list, password: str, api_token: str, canary: " in out
    assert "locals of step: data: list, password: str" in out and "derived: int" in out
    assert SECRET not in out  # names and types, never values


def test_redacted_values_never_leave_and_the_rest_replays(job, tmp_path):
    bundle_path = tmp_path / "b.ckpt"
    result = cdip("export", "-o", str(bundle_path), "--redact", "password",
                  "--redact", "*token*")
    assert result.returncode == 0, result.stderr
    assert "password: str [redacted], api_token: str [redacted]" in result.stdout
    assert SECRET.encode() not in bundle_path.read_bytes()
    assert not job.exists()  # the CLI unpickled nothing
    kept = b"".join(path.read_bytes() for path in Path(os.environ["PYCKPT_DIR"]).iterdir())
    assert SECRET.encode() in kept  # the store keeps them
    colleague = other_user(tmp_path, tmp_path / "colleague-store")
    imported = cdip("import", str(bundle_path), "--yes", env=colleague)
    assert imported.returncode == 0, imported.stderr
    shown = cdip("info", "step", env=colleague)
    assert shown.returncode == 0, shown.stderr
    assert "<redacted>" in shown.stdout and SECRET not in shown.stdout
    replay = cdip("run", "step", "--mode", "locals", "-c", "print(password, data, derived)",
                  env=colleague, cwd=tmp_path)
    assert replay.returncode == 0, replay.stderr
    assert "<redacted str> [1, 2, 3] 3" in replay.stdout


def test_an_unmatched_redact_pattern_is_noted(job, tmp_path):
    result = cdip("export", "-o", str(tmp_path / "b.ckpt"), "--redact", "pasword")
    assert result.returncode == 0
    assert "note: --redact 'pasword' matched no argument or local" in result.stderr


# --- 6. fuzz: whatever the bundle, a clean import or a clean refusal ---------------------


HOSTILE_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12),
    st.sampled_from([0, -1, 2**63, 10**30, 1.5e18, 1.7e18, 1.7e9, "", "a~b", "../../x",
                     "x\0y", "\x1b[2J", "ab.cd", "0" * 12, "call", "error", "checkpoints",
                     "job", "manifest.json", "ckpt-bundle", "0" * 64]),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))
FUZZ = settings(deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])
FUZZ_MODULE = """
def job(values, password="s3cret"):
    total = sum(values)
    raise ValueError(f"bad total {total}")

def step(x):
    return x
"""


@pytest.fixture
def small_bundle(tmp_path: Path) -> Path:
    """A bundle of two checkpoints (an error and a call) of a small module of their own.

    Small, so that an import costs milliseconds; in a module of its own, so that
    showing a checkpoint reads a short source file.
    """
    source = tmp_path / "src" / "fuzzmod.py"
    source.parent.mkdir()
    source.write_text(FUZZ_MODULE)
    namespace: dict[str, Any] = {}
    exec(compile(FUZZ_MODULE, str(source), "exec"), namespace)
    with contextlib.suppress(ValueError):
        ckpt.ckpt(namespace["job"], name="job")([1, 2])
    ckpt.ckpt(namespace["step"], name="step")(1)
    path = tmp_path / "out" / "small.ckpt"
    path.parent.mkdir()
    export_all(path)
    return path


class Importer:
    """Imports bundles into a store that already holds a checkpoint, checking each outcome.

    Every attempt either imports cleanly (each checkpoint listed, verified under
    our key and shown by `cdip info NAME`) or fails with a `CkptError` (through
    the CLI: `cdip: error:`, exit 2) leaving the store exactly as it was; never
    another exception; no temporary is left and nothing is written outside the
    store; listing the store works afterwards. Some attempts go through the CLI's
    own `main`, in-process, so the prompt and messages are checked too: nothing
    from the bundle may reach the terminal raw.
    """

    def __init__(self, root: Path) -> None:
        self.root, self.scratch = root, root / "scratch"
        self.store = Path(os.environ["PYCKPT_DIR"])  # checkpoints of our own, kept
        self.work = root / "work"  # where the tests build bundles
        self.bundle = self.work / "fuzzed.ckpt"
        self.scratch.mkdir()
        self.work.mkdir()
        self.before = self.snapshot(self.store)
        self.outside = self.stats(root)
        self.key = load_key(create=False)

    @staticmethod
    def snapshot(directory: Path) -> dict[str, bytes]:
        """Each file's name and digest."""
        return {path.name: hashlib.sha256(path.read_bytes()).digest()
                for path in directory.iterdir()}

    def stats(self, directory: Path) -> dict[str, tuple[int, int]]:
        """Each file's size and time under `directory`, but in the store and our scratch."""
        found = {}
        for entry in os.scandir(directory):
            if entry.path in (str(self.store), str(self.scratch), str(self.work)):
                continue
            if entry.is_dir(follow_symlinks=False):
                found.update(self.stats(Path(entry.path)))
            else:
                status = entry.stat(follow_symlinks=False)
                found[entry.path] = (status.st_size, status.st_mtime_ns)
        return found

    def attempt(self, data: bytes, through_cli: bool = False) -> int:
        self.bundle.write_bytes(data)
        with patched_tempdir(self.scratch):
            status = self.cli() if through_cli else self.api()
        if status == 0:
            self.check_imported()
        else:
            assert self.snapshot(self.store) == self.before  # nothing partial
        assert os.listdir(self.scratch) == []
        assert self.stats(self.root) == self.outside  # nothing written anywhere else
        for name in set(os.listdir(self.store)) - set(self.before):
            os.unlink(self.store / name)  # the next attempt starts from the same store
        return status

    def api(self) -> int:
        try:
            bundle.import_bundle(self.bundle, Store(self.store), lambda opened: True)
        except ckpt.CkptError:
            return 2
        return 0

    def cli(self) -> int:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = cli.main(["import", str(self.bundle), "--yes", "--dir", str(self.store)])
        for text in (out.getvalue(), err.getvalue()):
            assert display.printable(text, newlines=True) == text  # nothing raw from it
        assert status in (0, 2), err.getvalue()
        assert status == 0 or err.getvalue().startswith("cdip: error: "), err.getvalue()
        return status

    def check_imported(self) -> None:
        entries = Store(self.store).entries()
        assert all(entry.problem is None for entry in entries), entries
        now = self.snapshot(self.store)
        assert {name: now[name] for name in self.before} == self.before
        new = [e for e in entries if not set(map(os.path.basename, e.paths)) <= set(self.before)]
        assert new
        for entry in new:
            for path in entry.paths:
                read_part(path, self.key)  # whole, and signed under our key
            display.detail(entry)
        display.listing(entries)
        for entry in entries:
            display.entry_json(entry)


@contextlib.contextmanager
def patched_tempdir(directory: Path) -> Iterator[None]:
    old = tempfile.tempdir
    tempfile.tempdir = str(directory)
    try:
        yield
    finally:
        tempfile.tempdir = old


@pytest.fixture
def importer(tmp_path: Path, small_bundle: Path) -> Importer:
    return Importer(tmp_path)


@pytest.fixture
def offsets(small_bundle: Path) -> list[int]:
    return interesting_offsets(small_bundle)


def test_the_unchanged_bundle_imports(importer, small_bundle):
    assert importer.attempt(small_bundle.read_bytes()) == 0
    assert importer.attempt(small_bundle.read_bytes(), through_cli=True) == 0


def interesting_offsets(path: Path) -> list[int]:
    """Where a change matters most: tar headers, the manifest, the parts' headers."""
    offsets = []
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            offsets += range(member.offset, member.offset_data, 5)
            offsets += range(member.offset_data, member.offset_data + min(member.size, 700), 3)
    return offsets


@settings(FUZZ, max_examples=800)
@given(data=st.data())
def test_fuzz_bytes_of_a_bundle(importer, small_bundle, offsets, data):
    blob = bytearray(small_bundle.read_bytes())
    where = st.one_of(st.sampled_from(offsets), st.integers(0, len(blob) - 1))
    for offset, value in data.draw(st.lists(st.tuples(where, st.integers(0, 255)),
                                            min_size=1, max_size=6)):
        blob[offset] = value
    cut = data.draw(st.one_of(st.none(), st.integers(0, len(blob))))
    importer.attempt(bytes(blob[:cut]), through_cli=data.draw(st.integers(0, 15)) == 0)


def manifest_paths(manifest: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Every field of the manifest, as a path of keys and indexes."""
    paths: list[tuple[Any, ...]] = [(key,) for key in manifest]
    for i, entry in enumerate(manifest["checkpoints"]):
        paths += [("checkpoints", i, key) for key in entry]
        for j, file in enumerate(entry["files"]):
            paths += [("checkpoints", i, "files", j, key) for key in file]
    return paths


def set_path(root: Any, path: tuple[Any, ...], value: Any, delete: bool = False) -> None:
    for step in path[:-1]:
        root = root[step]
    if delete:
        del root[path[-1]]
    else:
        root[path[-1]] = value


@settings(FUZZ, max_examples=800)
@given(data=st.data())
def test_fuzz_fields_of_a_manifest(importer, small_bundle, data):
    """Odd values in the manifest, its digest right: past the integrity check."""
    manifest, files = members(small_bundle)
    for path in data.draw(st.lists(st.sampled_from(manifest_paths(manifest)), min_size=1,
                                   max_size=3, unique=True)):
        with contextlib.suppress(KeyError, IndexError, TypeError):
            set_path(manifest, path, data.draw(HOSTILE_VALUES), delete=data.draw(st.booleans()))
    try:  # sizes and digests made to match again, where the manifest still has them
        packed = pack(importer.work / "packed.ckpt", manifest, files, fix=data.draw(st.booleans()))
    except (KeyError, TypeError, AttributeError):
        packed = pack(importer.work / "packed.ckpt", manifest, files, fix=False)
    importer.attempt(packed.read_bytes(), through_cli=data.draw(st.integers(0, 15)) == 0)


def header_paths(summary: dict[str, Any], detail: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Fields of a part's headers: every summary field, and the detail's down to values."""
    paths: list[tuple[Any, ...]] = [("summary", key) for key in summary]
    paths += [("detail", key) for key in detail]
    for key, value in detail.items():
        if isinstance(value, dict):
            paths += [("detail", key, inner) for inner in value]
        if isinstance(value, list):
            for i, item in enumerate(value[:2]):
                paths.append(("detail", key, i))
                if isinstance(item, dict):
                    paths += [("detail", key, i, inner) for inner in item]
    return paths


@settings(FUZZ, max_examples=800)
@given(data=st.data())
def test_fuzz_headers_of_the_parts(importer, small_bundle, data):
    """Parts rewritten with odd headers, the manifest agreeing or not: past every digest."""
    manifest, files = members(small_bundle)
    name = data.draw(st.sampled_from(sorted(files)))
    entry = next(e for e in manifest["checkpoints"] if name in {f["name"] for f in e["files"]})
    changes: list[tuple[tuple[Any, ...], Any, bool]] = []

    def change(summary: dict[str, Any], detail: dict[str, Any]) -> None:
        paths = header_paths(summary, detail)
        for path in data.draw(st.lists(st.sampled_from(paths), min_size=1, max_size=3,
                                       unique=True)):
            value, delete = data.draw(HOSTILE_VALUES), data.draw(st.booleans())
            with contextlib.suppress(KeyError, IndexError, TypeError):
                set_path({"summary": summary, "detail": detail}, path, value, delete)
                changes.append((path, value, delete))

    files[name] = rewrite_part(files[name], change)
    if data.draw(st.booleans()):  # and the manifest says the same, so they agree
        for path, value, delete in changes:
            if path[0] == "summary" and len(path) == 2 and path[1] in entry:
                set_path(entry, path[1:], value, delete)
    packed = pack(importer.work / "packed.ckpt", manifest, files)
    importer.attempt(packed.read_bytes(), through_cli=data.draw(st.integers(0, 15)) == 0)


MEMBER_TYPES = [tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE,
                tarfile.DIRTYPE, tarfile.FIFOTYPE, tarfile.CHRTYPE, tarfile.CONTTYPE,
                tarfile.GNUTYPE_SPARSE]


@settings(FUZZ, max_examples=500)
@given(data=st.data())
def test_fuzz_members_of_the_tar(importer, small_bundle, data):
    """Members added, dropped, doubled, retyped, or with another declared size."""
    manifest, files = members(small_bundle)
    names = sorted(files)
    extra = []
    for _ in range(data.draw(st.integers(0, 2))):
        name = data.draw(st.one_of(st.sampled_from(
            [PARTS + n for n in names] + [MANIFEST, DIGEST, "../escaped.call", "/escaped.call",
                                          PARTS + "../x.call", PARTS + "extra~1~abc.call"]),
            st.text(min_size=1, max_size=20)))
        info = member_info(name, data.draw(st.sampled_from(MEMBER_TYPES)),
                           link=data.draw(st.sampled_from(["", "/etc/passwd", MANIFEST])))
        extra.append((info, data.draw(st.binary(max_size=64))))
    for name in data.draw(st.lists(st.sampled_from(names), max_size=2, unique=True)):
        del files[name]
    packed = importer.work / "packed.ckpt"
    try:
        blob = bytearray(pack(packed, manifest, files, extra=tuple(extra)).read_bytes())
    except (ValueError, UnicodeError):  # a name tarfile cannot write
        return
    if data.draw(st.booleans()):
        resize(blob, packed, data.draw(st.integers(0, 1 << 40)), data.draw(st.integers(0, 9)))
    importer.attempt(bytes(blob), through_cli=data.draw(st.integers(0, 15)) == 0)
    assert not Path("/escaped.call").exists()


def resize(blob: bytearray, path: Path, size: int, which: int) -> None:
    """Write another size into one member's header (its checksum made right again)."""
    with tarfile.open(path) as tar:
        listed = tar.getmembers()
    header = listed[which % len(listed)].offset_data - 512
    blob[header + 124 : header + 136] = octal(size, 12) if size < 8**11 else \
        b"\x80" + size.to_bytes(11, "big")
    blob[header + 148 : header + 156] = b" " * 8
    blob[header + 148 : header + 156] = f"{sum(blob[header:header + 512]):06o}".encode() + b"\0 "


@settings(FUZZ, max_examples=6)
@given(data=st.data())
def test_fuzz_through_the_real_command(small_bundle, tmp_path, data):
    """A few damaged bundles through `cdip import` in a subprocess: exit 0 or 2, never a crash."""
    blob = bytearray(small_bundle.read_bytes())
    for offset, value in data.draw(st.lists(st.tuples(
            st.sampled_from(interesting_offsets(small_bundle)), st.integers(0, 255)),
            min_size=1, max_size=4)):
        blob[offset] = value
    fuzzed = tmp_path / "fuzzed.ckpt"
    fuzzed.write_bytes(bytes(blob))
    store = tmp_path / "cli-store"
    result = cdip("import", str(fuzzed), "--yes", "--dir", str(store))
    assert result.returncode in (0, 2), result.stderr
    assert "Traceback" not in result.stderr
    assert result.returncode == 0 or result.stderr.startswith("cdip: error: ")
    listed = cdip("info", "--dir", str(store))
    assert listed.returncode == 0, listed.stderr


def test_a_part_showing_another_function_than_it_calls_is_refused(exported, tmp_path):
    # shown as job:step at the prompt and in `cdip info`, replayed as subprocess.getoutput
    manifest, files = only(*members(exported), "evil")
    for name in files:
        if name.endswith(".call"):
            files[name] = rewrite_part(files[name], lambda _, detail: detail["function"].update(
                module="subprocess", qualname="getoutput"))
    bundle_path = pack(tmp_path / "swapped.ckpt", manifest, files)
    result = cdip("import", str(bundle_path), "--yes", "--dir", str(tmp_path / "importer"))
    assert result.returncode == 2
    assert "another function" in result.stderr
    assert not (tmp_path / "importer").exists() or not list((tmp_path / "importer").iterdir())


# --- large buffers travel once, as blobs -----------------------------------------------


@ckpt.ckpt(name="big", active=False)
def big_step(data: Any) -> None:
    total = float(data.sum())
    raise ValueError(f"total {total}")


def capture_big(values: tuple[float, ...] = (1.0, 1.0)) -> None:
    import numpy

    for value in values:
        with contextlib.suppress(ValueError):
            big_step(numpy.full(1 << 18, value))  # 2 MiB: a blob


def blob_members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
                for m in tar.getmembers() if m.name.startswith("blobs/")}


def test_a_buffer_many_checkpoints_hold_travels_once_and_lands_once(tmp_path):
    import numpy

    capture_big()  # two checkpoints, each an argument that is also a local: one blob
    bundle_path = tmp_path / "big.ckpt"
    export_all(bundle_path)
    (blob,) = blob_members(bundle_path).values()
    assert len(blob) == 2 << 20
    assert bundle_path.stat().st_size < 1.5 * len(blob)  # not 4x: once, with the parts
    importer = tmp_path / "importer"
    adopted = importing(bundle_path, importer)
    assert len(adopted) == 2
    assert len(list(Blobs(str(importer)).ids())) == 1
    for item in adopted:
        loaded = ckpt.load(item.new, directory=importer)
        numpy.testing.assert_array_equal(loaded.arguments["data"], numpy.full(1 << 18, 1.0))
        numpy.testing.assert_array_equal(loaded.locals["data"], numpy.full(1 << 18, 1.0))


def repacked(path: Path, out: Path, change: Callable[[dict[str, bytes]], None]) -> Path:
    """The bundle with its blob members changed by `change` (the manifest left as it is)."""
    with tarfile.open(path) as tar:
        data = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    blobs = {name: blob for name, blob in data.items() if name.startswith("blobs/")}
    change(blobs)
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, blob in data.items():
            if not name.startswith("blobs/"):
                add(tar, tarfile.TarInfo(name), blob)
        for name, blob in blobs.items():
            add(tar, tarfile.TarInfo(name), blob)
    return out


def test_an_altered_blob_in_a_bundle_is_refused_and_nothing_is_imported(tmp_path):
    capture_big((1.0, 2.0))
    bundle_path = tmp_path / "big.ckpt"
    export_all(bundle_path)

    def swap(blobs: dict[str, bytes]) -> None:  # each blob's bytes under the other's name
        first, second = sorted(blobs)
        blobs[first], blobs[second] = blobs[second], blobs[first]

    for change, why in ((swap, "altered or replaced"), (lambda blobs: blobs.clear(), "missing")):
        importer = tmp_path / f"importer-{why[:7]}"
        with pytest.raises(ckpt.CkptError, match=why):
            importing(repacked(bundle_path, tmp_path / "bad.ckpt", change), importer)
        assert not importer.exists() or store_files(importer) == []
        assert not (importer / "blobs").exists()


def test_an_import_that_fails_midway_leaves_no_blob(tmp_path, monkeypatch):
    capture_big((1.0, 2.0))
    bundle_path = tmp_path / "big.ckpt"
    export_all(bundle_path)
    importer = tmp_path / "importer"
    real, calls = Store.stage_part, {"n": 0}

    def failing(*args: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:  # the second checkpoint's call part: the first one's blob is in
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args)

    monkeypatch.setattr(Store, "stage_part", failing)
    with pytest.raises(ckpt.CkptError, match="nothing was imported"):
        importing(bundle_path, importer)
    assert store_files(importer) == []
    assert not (importer / "blobs").exists()


def test_blobs_do_not_count_against_the_checkpoints_a_bundle_may_hold(tmp_path, monkeypatch):
    capture_big((1.0, 2.0))  # two checkpoints (two parts each), two blobs
    bundle_path = tmp_path / "big.ckpt"
    export_all(bundle_path)
    monkeypatch.setattr(bundle, "MAX_CHECKPOINTS", 2)  # as full as a bundle may be
    assert len(importing(bundle_path, tmp_path / "importer")) == 2
    monkeypatch.setattr(bundle, "MAX_BLOBS", 1)  # but blobs have a bound of their own
    with pytest.raises(ckpt.CkptError, match="more than 1 blobs"):
        importing(bundle_path, tmp_path / "refused")
    assert not (tmp_path / "refused").exists() or store_files(tmp_path / "refused") == []
