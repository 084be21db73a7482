"""Attacks on a store at a URL by someone who can write to the bucket but holds no key.

Nothing planted in the bucket may break listing, drive the terminal, or be
written outside the user's cache or store before it verifies under the key.
Against a real S3 API server (moto's, on loopback), through the real `cdip`.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import s3server
from test_remote import CDIP, bucket, machine, remote, run, worker_fails

s3_server = s3server.s3_server
s3_env = s3server.s3_env
remote = remote  # the fixture: a fresh prefix of the bucket, and the key


def test_a_planted_part_with_a_very_long_name_does_not_break_the_listing(remote, tmp_path):
    worker_fails(tmp_path)
    long_name = "n" * 300 + "~00000000000000000001~abcdef012345.call"
    bucket(f"fs.pipe_file(url + '/{long_name}', b'CKPT' + bytes(100))", remote)
    laptop = machine(tmp_path, "laptop")
    listing = run([*CDIP, "info"], laptop, tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert "scale" in listing.stdout
    assert "Traceback" not in listing.stderr


def test_a_planted_part_named_with_escapes_is_not_shown_raw(remote, tmp_path):
    worker_fails(tmp_path)
    name = "evil\\x1b]0;pwned\\x07\\x1b[2J~00000000000000000001~abcdef012345.call"
    bucket(f"fs.pipe_file(url + '/{name}', b'CKPT' + bytes(100))", remote)
    laptop = machine(tmp_path, "laptop")
    for args in (["info"], ["info", "abcdef012345"], ["gc"]):
        listing = run([*CDIP, *args], laptop, tmp_path)
        assert "\x1b" not in listing.stdout + listing.stderr
        assert "Traceback" not in listing.stderr and listing.returncode in (0, 2)



def test_a_link_planted_as_the_local_copy_is_refused_not_followed(remote, tmp_path):
    worker_fails(tmp_path)
    laptop, victim = machine(tmp_path, "laptop"), tmp_path / "victim"
    victim.mkdir(mode=0o755)
    listing = run([*CDIP, "info"], laptop, tmp_path)
    assert listing.returncode == 0, listing.stderr
    (copy,) = (Path(laptop["XDG_CACHE_HOME"]) / "pyckpt" / "remote").iterdir()
    shutil.rmtree(copy)
    copy.symlink_to(victim)  # what another user could do in a shared cache folder
    for args in (["info"], ["pull", "scale", "--to", str(tmp_path / "local")]):
        refused = run([*CDIP, *args], laptop, tmp_path)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert refused.stderr.startswith(f"cdip: error: not using the local copy {copy}: "
                                         ), refused.stderr
        assert "Traceback" not in refused.stderr
    assert list(victim.iterdir()) == []
    assert oct(victim.stat().st_mode & 0o777) == "0o755"  # not chmod-ed through the link


def test_a_blob_swapped_for_a_larger_one_after_listing_is_refused_as_it_comes(remote, tmp_path):
    worker_fails(tmp_path)
    code = (
        "import sys, s3fs\n"
        "from ckpt.errors import CorruptCheckpointError\n"
        "from ckpt.mirror import copy_checkpoint\n"
        "from ckpt.store import Store\n"
        "source = Store(sys.argv[1])\n"
        "entry = source.find('scale')\n"  # listed and verified: the blob's size is right
        "fs = s3fs.S3FileSystem(skip_instance_cache=True)\n"
        "(blob,) = fs.find(sys.argv[1] + '/blobs')\n"
        "fs.pipe_file(blob, bytes(fs.size(blob) + (32 << 20)))\n"  # then swapped: larger
        "target = source.mirror.local_store()\n"
        "try:\n"
        "    copy_checkpoint(source, entry, target)\n"
        "except CorruptCheckpointError as exc:\n"
        "    print('refused:', exc.reason)\n"
        "print(sorted(p.name for p in __import__('pathlib').Path(target.path).rglob('*')"
        " if p.is_file()))\n")
    copied = run([sys.executable, "-c", code, remote], machine(tmp_path, "laptop"), tmp_path)
    assert copied.returncode == 0, copied.stderr
    assert copied.stdout.startswith(
        "refused: a stored buffer was altered or replaced (its size)\n"), copied.stdout
    assert copied.stdout.endswith("\n[]\n"), copied.stdout  # no blob, no temporary left
