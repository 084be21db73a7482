"""Redaction: values named in `redact` or PYCKPT_REDACT, and secrets in argv, are never stored."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from conftest import PROGRAMS

import ckpt
from ckpt.environment import redact_argv
from ckpt.fileformat import read_headers
from ckpt.values import Redaction


class Secret:
    """A value that must never be looked at: pickling or repr'ing it fails the test."""

    def __reduce__(self):
        raise AssertionError("a redacted value was pickled")

    def __repr__(self):
        raise AssertionError("a redacted value was repr'd")


def store_bytes(store: Path) -> bytes:
    return b"".join(path.read_bytes() for path in store.iterdir())


def secret() -> str:
    """A secret made at run time: the source (which checkpoints keep) does not hold it."""
    return f"SECRET-{os.urandom(6).hex()}"


def call_header(entry) -> dict:
    return read_headers(str(entry.call_path), None)[1]


def test_redacted_arguments_are_replaced_never_pickled_nor_repred(store):
    @ckpt.ckpt(redact=["password", "api_*"])
    def login(user, password, api_key, api_url="https://example.invalid"):
        return user

    key = secret()
    assert login("ada", Secret(), key) == "ada"
    checkpoint = ckpt.load()
    assert checkpoint.arguments["user"] == "ada"
    assert checkpoint.arguments["password"] == ckpt.Redacted(f"{__name__}.Secret")
    assert checkpoint.arguments["api_key"] == ckpt.Redacted("str")
    assert isinstance(checkpoint.arguments["api_url"], ckpt.Redacted)
    assert repr(checkpoint.arguments["api_key"]) == "<redacted str>"
    assert key.encode() not in store_bytes(store)
    described = {a["name"]: a for a in call_header(ckpt.checkpoints()[-1])["arguments"]}
    assert described["api_key"] == {"name": "api_key", "kind": "positional_or_keyword",
                                    "type": "str", "repr": "<redacted>", "redacted": True}
    assert described["user"]["repr"] == "'ada'"


def _connect(dsn):
    db_password = os.environ["CKPT_TEST_DB_PASSWORD"]  # noqa: F841 (saved with the locals)
    raise ConnectionError(f"cannot reach {dsn}")


def test_redaction_covers_the_locals_of_every_saved_frame(store, monkeypatch):
    secrets = [secret(), secret(), secret()]
    monkeypatch.setenv("CKPT_TEST_DB_PASSWORD", secrets[0])
    monkeypatch.setenv("CKPT_TEST_SESSION", secrets[1])

    @ckpt.ckpt(active=False, redact=["token", "*password"])
    def sync(token):
        session_token = os.environ["CKPT_TEST_SESSION"]  # noqa: F841 (not covered: kept)
        _connect("db.example.invalid")

    with pytest.raises(ConnectionError):
        sync(secrets[2])
    checkpoint = ckpt.load()
    assert isinstance(checkpoint.arguments["token"], ckpt.Redacted)
    outer, inner = checkpoint.frames
    assert isinstance(outer.locals["token"], ckpt.Redacted)
    assert outer.locals["session_token"] == secrets[1]
    assert isinstance(inner.locals["db_password"], ckpt.Redacted)
    assert inner.locals["dsn"] == "db.example.invalid"
    data = store_bytes(store)
    assert secrets[0].encode() not in data
    assert secrets[1].encode() in data
    assert secrets[2].encode() not in data


def test_pyckpt_redact_adds_names_for_every_function(store, monkeypatch):
    monkeypatch.setenv("PYCKPT_REDACT", " secret , *_key,")

    @ckpt.ckpt(redact=["extra"])
    def configure(secret, aws_key, extra, region):
        return region

    aws_key = secret()
    configure(Secret(), aws_key, Secret(), "eu-west-1")
    arguments = ckpt.load().arguments
    assert [name for name, value in arguments.items() if isinstance(value, ckpt.Redacted)] == [
        "secret", "aws_key", "extra"]
    assert arguments["region"] == "eu-west-1"
    assert aws_key.encode() not in store_bytes(store)


def test_keyword_arguments_collected_in_kwargs_are_redacted_by_their_own_names(store):
    @ckpt.ckpt(active=False, redact=["password"])
    def connect(host, **options):
        raise ConnectionRefusedError(host)

    with pytest.raises(ConnectionRefusedError):
        connect("db", password=Secret(), timeout=3)
    checkpoint = ckpt.load()
    assert checkpoint.arguments["options"]["timeout"] == 3
    assert isinstance(checkpoint.arguments["options"]["password"], ckpt.Redacted)
    assert isinstance(checkpoint.locals["options"]["password"], ckpt.Redacted)


def test_a_single_string_is_one_name_and_names_must_be_strings(store):
    @ckpt.ckpt(redact="pin")
    def check(pin, p):
        return p

    check("1234", "p")
    assert isinstance(ckpt.load().arguments["pin"], ckpt.Redacted)
    assert ckpt.load().arguments["p"] == "p"
    with pytest.raises(TypeError, match="redact"):
        ckpt.ckpt(redact=[1])


def test_secrets_in_argv_are_redacted_by_default(store, monkeypatch):
    monkeypatch.setattr(sys, "argv", [
        "train.py", "--password=hunter2", "--token", "SECRET-T", "--api-key", "SECRET-K",
        "--db-password", "SECRET-P", "AWS_SECRET_ACCESS_KEY=SECRET-A", "--epochs", "3",
        "--tokenizer", "bpe", "--db-url=postgres://u:SECRET-U@h", "data.csv",
    ])

    @ckpt.ckpt(redact=["db_url"])
    def train(epochs):
        return epochs

    train(3)
    assert ckpt.load().metadata["argv"] == [
        "train.py", "--password=<redacted>", "--token", "<redacted>", "--api-key", "<redacted>",
        "--db-password", "<redacted>", "AWS_SECRET_ACCESS_KEY=<redacted>", "--epochs", "3",
        "--tokenizer", "bpe", "--db-url=<redacted>", "data.csv",
    ]
    assert b"SECRET-" not in store_bytes(store)
    assert b"hunter2" not in store_bytes(store)


@pytest.mark.parametrize(("argv", "expected"), [
    (["p", "--secret", "s"], ["p", "--secret", "<redacted>"]),
    (["p", "--SECRET=s"], ["p", "--SECRET=<redacted>"]),
    (["p", "--client_secret", "s", "x"], ["p", "--client_secret", "<redacted>", "x"]),
    (["p", "--apikey=s"], ["p", "--apikey=<redacted>"]),
    (["p", "--token"], ["p", "--token"]),  # no value follows
    (["p", "--token", "--verbose"], ["p", "--token", "--verbose"]),
    (["p", "GITHUB_TOKEN=s", "mypass=s", "mypassword=s"],
     ["p", "GITHUB_TOKEN=<redacted>", "mypass=s", "mypassword=<redacted>"]),
    (["p", "SORT_KEY=name"], ["p", "SORT_KEY=<redacted>"]),  # *_KEY=: better safe
    (["p", "--sort-key", "name"], ["p", "--sort-key", "name"]),  # an option named *-key is not
    (["p", "key=value", "a=b"], ["p", "key=value", "a=b"]),
    (["--password=s"], ["--password=s"]),  # argv[0] is the program
])
def test_redact_argv(argv, expected):
    assert redact_argv(argv) == expected


def test_redact_argv_with_the_names_to_redact():
    argv = ["p", "--db-url", "u", "--user_name=ada", "region=x"]
    assert redact_argv(argv, Redaction(["db_url", "user_*", "region"])) == [
        "p", "--db-url", "<redacted>", "--user_name=<redacted>", "region=<redacted>"]


def test_redacted_is_public_api():
    assert "Redacted" in ckpt.__all__
    assert ckpt.Redacted("str") == ckpt.Redacted("str") != ckpt.Redacted("bytes")
    assert len({ckpt.Redacted("str"), ckpt.Redacted("str")}) == 1


def test_cdip_info_shows_redacted_values_without_them(store):
    import subprocess

    @ckpt.ckpt(redact=["password"])
    def login(user, password):
        return user

    password = secret()
    login("ada", password)
    name = ckpt.checkpoints()[-1].name
    result = subprocess.run([*PROGRAMS["cdip"], "info", name], capture_output=True, text=True,
                            timeout=60, env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    assert "<redacted>" in result.stdout
    assert password not in result.stdout
