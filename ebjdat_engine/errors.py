"""One type for the problems a user can fix, carrying the command line's exit status for it.

Every user-facing error of the engine subclasses `UserError` (a bad recipe, a run directory that
cannot be used as asked, missing data, a device this machine lacks, a run that cannot be loaded
or evaluated, ...), keeping its own name, so that code can still catch exactly the kind it
handles (`except RecipeError`), while a front end catches them all in one place, prints the
message and exits with `exit_code`, never with a traceback. The project's rule for the status:
2 for a bad recipe, argument, file or directory; a few stops carry their own (130 for a second
Ctrl-C, the signal's status for a stop before training started).

This module is the engine's lowest layer: it imports nothing of the engine, and every layer may
import it.
"""

from __future__ import annotations

#: the exit status of a bad recipe, argument, file or directory
EXIT_BAD_INPUT = 2


class UserError(Exception):
    """A problem the user can fix; the message says what to change.

    `exit_code` is the command line's exit status for it (`EXIT_BAD_INPUT` unless the class or
    the raiser says otherwise)."""

    exit_code: int = EXIT_BAD_INPUT

    def __init__(self, message: str = "", *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        return str(self)

    def lines(self, speaker: str) -> list[str]:
        """What a front end prints for it, given its own name (e.g. 'ebjdat run'): the message
        after that name. A subclass whose message stands alone returns it as it is."""
        return [f"{speaker}: {self.message}"]
