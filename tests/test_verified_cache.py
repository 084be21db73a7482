"""Verification records: a blob hashed in full is not hashed again while its file is unchanged.

Each test attacks what a record trusts (`ckpt.verified`): the file's stat data
and ctime, the key's HMAC, the boot id, the inode, a private store, and the
switch that turns records off. Every attack must end with the load refusing
the altered blob, or hashing it.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import numpy
import pytest
from conftest import BIN, run_python

import ckpt
from ckpt import blobwrite, chunkhash, verified
from ckpt.errors import CorruptCheckpointError
from ckpt.fileformat import BLOB_MIN
from ckpt.keys import load_key
from ckpt.store import Store

SIZE = 4 * BLOB_MIN
MODULE = """
import numpy, ckpt

@ckpt.ckpt(name="big")
def big(data):
    return float(data[0])

if __name__ == "__main__":
    big(numpy.full({count}, 1.0))
"""


@pytest.fixture
def saved(tmp_path: Path, store: Path) -> Path:
    """A checkpoint of one blob, captured by a program of its own; the blob's path."""
    (tmp_path / "bigmod.py").write_text(MODULE.format(count=SIZE // 8))
    run_python("bigmod.py", cwd=tmp_path, check=True)
    (blob,) = [path for path in (store / "blobs").rglob("*")
               if path.is_file() and not path.name.startswith(".")]
    return blob


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many chunks this process hashes from now on (counted, still hashed).

    Those of a load, and of a save but the chunks of a new blob (hashed as written).
    """
    count = [0]
    real = chunkhash.sha256

    def counting(chunk: memoryview) -> bytes:
        count[0] += 1
        return real(chunk)

    monkeypatch.setattr(chunkhash, "sha256", counting)
    monkeypatch.setattr(blobwrite, "sha256", counting)
    return count


def load_hashing(hashed: list[int]) -> tuple[numpy.ndarray, int]:
    """Load the checkpoint; its argument and the chunks hashed to load it."""
    before = hashed[0]
    data = ckpt.load("big").arguments["data"]
    return data, hashed[0] - before


def save_hashing(hashed: list[int]) -> int:
    """Save the same data once more, in this process; the chunks it hashed."""
    @ckpt.ckpt(name="big")
    def big(data: numpy.ndarray) -> float:
        return float(data[0])

    before = hashed[0]
    big(numpy.full(SIZE // 8, 1.0))
    return hashed[0] - before


def alter_in_place(blob: Path) -> None:
    """Flip one byte of the blob, same size, and put its access and modification times back."""
    info = blob.stat()
    with open(blob, "r+b") as file:
        file.seek(SIZE // 2)
        byte = file.read(1)
        file.seek(SIZE // 2)
        file.write(bytes([byte[0] ^ 1]))
    os.utime(blob, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert blob.stat().st_mtime_ns == info.st_mtime_ns


def test_a_capture_records_its_blob_and_the_next_load_hashes_nothing(saved, hashed):
    data, count = load_hashing(hashed)
    assert count == 0
    numpy.testing.assert_array_equal(data, numpy.full(SIZE // 8, 1.0))


def test_a_blob_reused_by_later_saves_stays_vouched_for(tmp_path, store, hashed):
    # Each save that reuses a blob claims it (sets its times): an error part after its
    # call part, and three more calls with the same array. The record follows.
    (tmp_path / "reuse.py").write_text(textwrap.dedent(f"""
        import numpy, ckpt

        @ckpt.ckpt(name="big")
        def big(data):
            raise ValueError(float(data[0]))

        data = numpy.full({SIZE // 8}, 1.0)
        for _ in range(4):
            try:
                big(data)
            except ValueError:
                pass
    """))
    run_python("reuse.py", cwd=tmp_path, check=True)
    data, count = load_hashing(hashed)
    assert count == 0
    numpy.testing.assert_array_equal(data, numpy.full(SIZE // 8, 1.0))


def test_a_load_that_hashed_a_blob_records_it_for_the_next(saved, store, hashed, monkeypatch):
    for record in (store / verified.FOLDER).iterdir():
        record.unlink()  # as after a reboot: nothing vouches for the blob
    monkeypatch.setattr(verified, "_SETTLED_NS", 0)  # its ctime counts as old already
    assert load_hashing(hashed)[1] == -(-SIZE // (8 << 20))  # every chunk, once
    assert load_hashing(hashed)[1] == 0


def test_a_blob_altered_in_place_after_a_verified_load_is_detected(saved, tmp_path, hashed):
    assert load_hashing(hashed)[1] == 0  # vouched for by its record
    alter_in_place(saved)  # same size, same inode, mtime put back: only ctime moved
    with pytest.raises(CorruptCheckpointError, match="do not hash to the id"):
        ckpt.load("big")
    replayed = subprocess.run([str(BIN / "cdip"), "run", "big", "--mode", "run"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
    assert replayed.returncode == 2, replayed.stderr
    assert "altered or replaced" in replayed.stderr
    assert "Traceback" not in replayed.stderr


def test_a_record_forged_without_the_key_is_ignored(saved, store):
    alter_in_place(saved)
    forger = verified.Records(str(store), os.urandom(32))  # everything but the user's key
    forger.record(saved.name, saved.stat())
    genuine = verified.Records(str(store), load_key())._signed(saved.name, saved.stat())
    forged = (store / verified.FOLDER / saved.name).read_bytes()
    assert forged.split()[:-1] == genuine.split()[:-1]  # the very stat data; another tag
    with pytest.raises(CorruptCheckpointError, match="do not hash to the id"):
        ckpt.load("big")


def test_a_record_from_another_boot_is_ignored(saved, store, monkeypatch):
    # A record made before a crash: the page cache held bytes the disk never got, and
    # after the reboot the file reads otherwise with the same stat data.
    alter_in_place(saved)
    with monkeypatch.context() as before_the_crash:
        before_the_crash.setattr(verified, "boot_id", lambda: "an-earlier-boot")
        verified.Records(str(store), load_key()).record(saved.name, saved.stat())
    with pytest.raises(CorruptCheckpointError, match="do not hash to the id"):
        ckpt.load("big")


def test_a_blob_replaced_by_another_file_is_hashed_again(saved, hashed):
    assert load_hashing(hashed)[1] == 0
    info = saved.stat()
    data = bytearray(saved.read_bytes())
    data[SIZE // 2] ^= 1
    other = saved.with_name(".other")
    other.write_bytes(bytes(data))
    os.chmod(other, 0o600)
    os.utime(other, ns=(info.st_atime_ns, info.st_mtime_ns))
    os.replace(other, saved)  # a new inode under the blob's name, same size and mtime
    with pytest.raises(CorruptCheckpointError, match="do not hash to the id"):
        ckpt.load("big")


def test_a_store_others_could_change_is_always_hashed(saved, tmp_path, hashed):
    tmp_path.chmod(0o777)  # anyone may now replace the store under its name
    try:
        assert load_hashing(hashed)[1] > 0
        assert load_hashing(hashed)[1] > 0
    finally:
        tmp_path.chmod(0o700)


def test_verify_always_hashes_every_load(saved, hashed, monkeypatch):
    monkeypatch.setenv("PYCKPT_VERIFY", "always")
    assert load_hashing(hashed)[1] > 0
    assert load_hashing(hashed)[1] > 0


def test_records_of_blobs_that_are_gone_are_pruned(saved, store, monkeypatch):
    folder = store / verified.FOLDER
    gone = folder / ("0" * 80)
    gone.write_bytes(b"a record of a blob removed since\n")
    left = folder / ".tmp-1-deadbeef"  # a writer killed before it renamed its record
    left.write_bytes(b"half a rec")
    os.utime(left, (0, 0))
    being_written = folder / ".tmp-2-deadbeef"
    being_written.write_bytes(b"half a rec")
    monkeypatch.setattr(verified, "_PRUNE_OVER", 1)
    verified.Records(str(store), load_key()).record(saved.name, saved.stat())
    assert sorted(path.name for path in folder.iterdir()) == [being_written.name, saved.name]


def test_a_capture_program_records_nothing_under_verify_always(tmp_path, store):
    (tmp_path / "bigmod.py").write_text(MODULE.format(count=SIZE // 8))
    run_python("bigmod.py", cwd=tmp_path, check=True, env={"PYCKPT_VERIFY": "always"})
    assert not (store / verified.FOLDER).exists()


# --- a save reuses a blob of its data only once it knows the blob is whole -------------


@pytest.mark.parametrize("record", ["removed", "stale"])
def test_a_blob_damaged_in_place_is_replaced_by_the_next_save_of_its_data(saved, store, hashed,
                                                                         record):
    (first,) = Store(store).entries()
    if record == "removed":
        (store / verified.FOLDER / saved.name).unlink()
    alter_in_place(saved)  # same size and name: only its ctime says so (its record is stale)
    with pytest.raises(CorruptCheckpointError, match="do not hash to the id"):
        ckpt.load(first.id)
    # the buffer, the blob it would reuse, and the bytes written in its place (checked
    # against the id as they are written: the buffer may have changed since it was hashed)
    assert save_hashing(hashed) == 3
    entries = Store(store).entries()
    assert len(entries) == 2
    for entry in entries:  # the new checkpoint, and the first one: its blob is whole again
        numpy.testing.assert_array_equal(ckpt.load(entry.id).arguments["data"],
                                         numpy.full(SIZE // 8, 1.0))
    assert saved.read_bytes() == numpy.full(SIZE // 8, 1.0).tobytes()


def test_a_reused_blob_nothing_vouches_for_is_hashed_once_then_recorded(saved, store, hashed):
    (store / verified.FOLDER / saved.name).unlink()  # as after a reboot
    assert save_hashing(hashed) == 2  # the buffer, and the blob: whole, so kept and recorded
    assert save_hashing(hashed) == 1  # the buffer alone: the blob's record vouches for it
    assert load_hashing(hashed)[1] == 0


def test_a_blob_a_record_vouches_for_is_not_read_by_a_save(saved, store, hashed):
    # The blob is damaged, yet a genuine record vouches for it as it is now (as if the
    # damage had come beneath the file system): only reading it could show the damage,
    # and a save that trusts the record leaves it as it is.
    alter_in_place(saved)
    verified.Records(str(store), load_key()).record(saved.name, saved.stat())
    damaged, inode = saved.read_bytes(), saved.stat().st_ino
    assert save_hashing(hashed) == 1  # the buffer alone
    assert (saved.read_bytes(), saved.stat().st_ino) == (damaged, inode)
