"""Lazy attribute loading for package facades (PEP 562), shared by every facade in shipyard."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def lazy_attributes(
    package: str, names: Mapping[str, str], submodules: Iterable[str] = ()
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` that import each public name on first use.

    Args:
        package: the package's ``__name__``.
        names: public name → module defining it, relative to ``package`` (e.g. ``".bento"``).
        submodules: subpackages reachable as attributes (``shipyard.gates``).

    Example:
        >>> __getattr__, __dir__ = lazy_attributes(__name__, {"package": ".bento"})   # doctest: +SKIP
    """
    module = importlib.import_module(package)
    subs = frozenset(submodules)

    def __getattr__(name: str) -> Any:
        target = names.get(name)
        if target is not None:
            value = getattr(importlib.import_module(target, package), name)
            setattr(module, name, value)  # later lookups skip __getattr__
            return value
        if name in subs:
            return importlib.import_module(f".{name}", package)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*names, *subs, *getattr(module, "__all__", ())})

    return __getattr__, __dir__
