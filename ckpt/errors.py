"""The one hierarchy of errors and warnings that ckpt raises."""

from __future__ import annotations

EXIT_OK = 0
EXIT_RAISED = 1
EXIT_USAGE = 2


class CkptError(Exception):
    """A problem the user can fix; the CLI prints it without a traceback.

    Args:
        message: what is wrong, in one line.
        hint: what to do about it, in one line (optional).
        exit_code: the status `cdip` exits with.
    """

    def __init__(self, message: str, hint: str = "", exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code


class NotFoundError(CkptError):
    """No checkpoint matches the given name or id."""


class CorruptCheckpointError(CkptError):
    """A checkpoint file is truncated, altered, of another format or unreadable.

    `reason` is the short cause alone (no path), for listings. `dead` says the
    file can never be read as a checkpoint (torn, truncated, damaged under this
    user's own key), so `cdip gc` may remove it; a file signed elsewhere, of a
    newer format or merely unreadable to us is not dead.
    """

    def __init__(self, message: str, hint: str = "", reason: str = "",
                 dead: bool = True) -> None:
        super().__init__(message, hint)
        self.reason = reason or message
        self.dead = dead


class CkptWarning(UserWarning):
    """The decorator could not save a checkpoint; the user's program carries on."""
