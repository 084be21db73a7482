"""ckpt: save a function call, replay it later with today's code."""

from __future__ import annotations

from .decorator import ckpt, disable, enable, is_enabled
from .errors import CkptError, CkptWarning

TYPE_CHECKING = False  # not typing's: `import ckpt` must stay cheap (see decorator.py)
if TYPE_CHECKING:
    from typing import Any

    from .checkpoint import Checkpoint, checkpoints, load
    from .values import Unpicklable

__all__ = [
    "Checkpoint",
    "CkptError",
    "CkptWarning",
    "Unpicklable",
    "checkpoints",
    "ckpt",
    "disable",
    "enable",
    "is_enabled",
    "load",
]
__version__ = "0.1.0"

# Loading is for notebooks and the replay child: `import ckpt` in a user's
# program must not pay for it.
_LAZY = {"Checkpoint": "checkpoint", "checkpoints": "checkpoint", "load": "checkpoint",
         "Unpicklable": "values"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'ckpt' has no attribute {name!r}")
