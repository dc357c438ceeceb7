"""The version of the shipyard SDK, in one place.

The facade re-exports it as ``shipyard.__version__``; bentos record it as the
version of shipyard that generated their service. Keep it equal to
``project.version`` in ``pyproject.toml``.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
