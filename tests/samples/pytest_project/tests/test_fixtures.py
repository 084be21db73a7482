import os
import warnings

import greeting


def test_greet_prints(capsys):
    greeting.greet("Ada")
    assert capsys.readouterr().out == "Hello, Ada!\n"


def test_greet_prints_to_the_fd(capfd):
    greeting.greet("Bob")
    assert capfd.readouterr().out == "Hello, Bob!\n"


def test_welcome_logs(caplog):
    greeting.welcome("Cy")
    assert [r.levelname for r in caplog.records] == ["WARNING", "WARNING"]


def test_save_writes_a_file(tmp_path):
    assert not list(tmp_path.iterdir())  # a fresh directory, every time
    path = greeting.save(tmp_path, "Di")
    assert path.read_text() == "Hello Di!\n"


def test_save_in_a_factory_directory(tmp_path_factory):
    folder = tmp_path_factory.mktemp("greetings")
    assert greeting.save(folder, "Ed").read_text() == "Hello Ed!\n"


def test_home_greeting(monkeypatch):
    monkeypatch.setenv("GREETING_NAME", "Flo")
    assert greeting.home_greeting() == "Hello Flo!"


def test_deprecated_greet_warns(recwarn, capsys):
    greeting.deprecated_greet("Gil")
    assert recwarn.pop(DeprecationWarning)


def test_knows_its_name(request):
    assert request.node.name == "test_knows_its_names"
