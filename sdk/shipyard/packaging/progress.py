"""The progress display of long packaging steps (debootstrap, image builds, bento builds).

Builders report each step by calling ``say(message)``; what the user sees is
decided here: a rich status line with a log of finished steps on stderr, or
nothing at all when quiet. stdout stays free for the command's result, so
``shipyard package … | tail -1`` still works. rich is imported only when the
display is shown.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any

Say = Callable[[str], None]
"""A progress callback: takes one line saying what is happening now."""


def silent(message: str) -> None:
    """A :data:`Say` that shows nothing (for ``quiet=True`` and for callers that want no display)."""


class Progress:
    """Context manager whose ``__enter__`` gives the :data:`Say` callback; the status line ends on exit.

    Use :func:`progress` to make one.
    """

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self._status: Any = None

    def __enter__(self) -> Say:
        if self.quiet:
            return silent
        from rich.console import Console

        console = Console(stderr=True, log_path=False)
        status = console.status("shipyard: starting")
        status.__enter__()
        self._status = status

        def say(message: str) -> None:
            console.log(message, highlight=False)
            status.update(f"shipyard: {message}")

        return say

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._status is not None:
            self._status.__exit__(exc_type, exc, tb)
            self._status = None


def progress(quiet: bool = False) -> Progress:
    """A context manager giving a ``say(message)`` callable that shows progress on stderr.

    Args:
        quiet: show nothing; ``say`` still accepts every message.

    Example:
        >>> with progress(quiet=True) as say:
        ...     say("building shipyard/iris:v1")
    """
    return Progress(quiet)


__all__ = ["Progress", "Say", "progress", "silent"]
