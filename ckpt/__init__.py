"""ckpt: save a function call, replay it later with today's code.

PYTEST_DONT_REWRITE: `ckpt run -m pytest` imports ckpt before pytest can rewrite its
asserts (it has none to rewrite), and pytest would warn that it cannot.
"""

from __future__ import annotations

from .errors import CkptError, CkptWarning

TYPE_CHECKING = False  # not typing's: `import ckpt` must stay cheap (see decorator.py)
if TYPE_CHECKING:
    from typing import Any

    from .checkpoint import Checkpoint, checkpoints, load
    from .decorator import ckpt, disable, enable, is_enabled
    from .excepthook import install_excepthook
    from .notebook import load_ipython_extension, unload_ipython_extension
    from .values import Redacted, Unpicklable

__all__ = [
    "Checkpoint",
    "CkptError",
    "CkptWarning",
    "Redacted",
    "Unpicklable",
    "checkpoints",
    "ckpt",
    "disable",
    "enable",
    "install_excepthook",
    "is_enabled",
    "load",
    "load_ipython_extension",
    "unload_ipython_extension",
]
__version__ = "0.1.0"

# Loading is for notebooks and the replay child: `import ckpt` in a user's
# program must not pay for it. The decorator is imported on first use too, so that
# `cdip`, whose modules live in this package, starts a replay's child sooner.
_LAZY = {"Checkpoint": "checkpoint", "checkpoints": "checkpoint", "load": "checkpoint",
         "Redacted": "values", "Unpicklable": "values", "ckpt": "decorator", "disable": "decorator",
         "enable": "decorator", "is_enabled": "decorator", "install_excepthook": "excepthook",
         # `%load_ext ckpt` and `%unload_ext ckpt` (IPython looks these up with getattr)
         "load_ipython_extension": "notebook", "unload_ipython_extension": "notebook"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # found once; later lookups are plain attribute reads
        return value
    raise AttributeError(f"module 'ckpt' has no attribute {name!r}")
