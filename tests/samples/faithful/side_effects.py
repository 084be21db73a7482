"""A step that leaves a mark when its module is imported and when it runs."""

import pathlib

import ckpt


def marked(function):
    # A decorator runs whenever the script is imported, even when only its
    # definitions are (a replay skips the rest of a script's top level).
    pathlib.Path("imported.mark").write_text("the module was imported\n")
    return function


@marked
@ckpt.ckpt(active=False)
def fragile(x):
    pathlib.Path("called.mark").write_text("the function ran\n")
    raise ValueError(x)


if __name__ == "__main__":
    fragile(7)
