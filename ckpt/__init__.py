"""ckpt: save a function call, replay it later with today's code."""

from .checkpoint import Checkpoint, checkpoints, load
from .decorator import ckpt, disable, enable, is_enabled
from .errors import CkptError, CkptWarning
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
