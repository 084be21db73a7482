"""The code under test: greetings, with bugs the tests find."""

import logging
import warnings

log = logging.getLogger("greeting")


def greet(name):
    """Print a greeting.

    >>> greet("Ada")
    Hello, Ada!
    """
    print(f"Hello {name}!")  # bug: the comma is missing


def shout(name):
    """The greeting, loud.

    >>> shout("ada")
    'HELLO, ADA!'
    >>> shout(None)
    'HELLO!'
    """
    return f"HELLO, {name.upper()}!"  # bug: no name is an AttributeError


def welcome(name):
    log.warning("welcoming %s", name)
    log.info("done")  # bug: the test expects this at warning level
    return name


def deprecated_greet(name):
    warnings.warn("use greet", UserWarning, stacklevel=2)  # bug: should be a DeprecationWarning
    return greet(name)


def save(folder, name):
    path = folder / f"{name}.txt"
    path.write_text(f"Hello, {name}!\n")
    return path


def home_greeting():
    import os

    return f"Hello, {os.environ.get('GREETING_NAME', 'stranger')}!"
