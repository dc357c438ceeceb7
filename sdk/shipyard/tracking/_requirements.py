"""A model's Python requirements, read from the objects it is made of.

:func:`model_requirements` walks the model's object graph (attributes,
``__dict__`` and ``__slots__``, lists, tuples, sets and dicts, functions and
the globals their code names, ``functools.partial``), so the steps of a
scikit-learn ``Pipeline``, the transformers of a ``ColumnTransformer``, the
``func`` of a ``FunctionTransformer`` and any wrapped estimator are all seen.
The top-level module of every class and function found is mapped to the
installed distribution that provides it (``importlib.metadata``), pinned to
the version running now. A module no distribution provides and that is not
part of the standard library is the project's own code: its files ship with
the model (MLflow ``code_paths``), so the image can unpickle a custom
transformer defined there.

Q: Why walk the object instead of letting MLflow infer the requirements?
A: MLflow's inference loads the saved model in a subprocess and records the
   imports (seconds per call, and it needs the model to load in a fresh
   process already). The object in memory says the same thing directly: a
   class that is used is a class whose module must be importable to unpickle
   it.

Q: Why is the walk bounded?
A: A model can hold a training frame, a cache or a reference back to a big
   object; :data:`MAX_OBJECTS` visited objects are plenty for any real model
   (a 500-tree forest has about 1,500) and keep the walk in milliseconds.
   Arrays and frames are leaves: their library is recorded, their values are
   not walked.
"""

from __future__ import annotations

import functools
import re
import sys
import sysconfig
import types
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from .._core.errors import InvalidRequirement
from ._environment import installed_packages

MAX_OBJECTS = 20_000
# Elements of one container or object-dtype array that are walked; the rest are alike in any real model.
MAX_ITEMS = 2_000
# Libraries whose objects are data, not code: record the library, never walk the values.
LEAF_LIBRARIES = frozenset({"numpy", "pandas", "scipy", "pyarrow", "polars", "torch"})
# Distributions never written as a model requirement: the serving image brings its own,
# or (shipyard) the model only passed through our code.
NEVER_REQUIRED = frozenset({"shipyard", "pip", "setuptools", "wheel"})
# Top-level modules never shipped as project code even if no distribution claims them.
NOT_PROJECT = frozenset({"__main__", "__mp_main__", "builtins", "_frozen_importlib", "__future__", "shipyard"})
_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")


@dataclass(frozen=True)
class ModelRequirements:
    """What a model needs where it is loaded.

    Attributes:
        requirements: pip requirements, sorted: the detected ones pinned (``name==version``),
            the given ones as written (a bare name pinned to the installed version).
        code_paths: files and package folders of the project's own modules the model uses.
        modules: top-level modules the model's objects come from, sorted.
    """

    requirements: tuple[str, ...]
    code_paths: tuple[Path, ...]
    modules: tuple[str, ...]


def model_requirements(
    model: Any,
    *,
    base: Iterable[str] = (),
    extra: Iterable[str] | None = None,
    replace: Iterable[str] | None = None,
) -> ModelRequirements:
    """Requirements of ``model``: what its object graph uses, pinned, plus ``base``.

    Args:
        model: any object; walked as the module docstring says.
        base: distributions the flavor needs to load the model (pinned when installed).
        extra: requirements to add; one with the name of a detected requirement replaces it.
        replace: requirements to use instead of the detected ones (project code still ships).

    Raises:
        InvalidRequirement: a string in ``extra`` or ``replace`` is not a pip requirement.

    Example:
        >>> from sklearn.linear_model import LinearRegression                     # doctest: +SKIP
        >>> model_requirements(LinearRegression().fit(X, y)).requirements         # doctest: +SKIP
        ('numpy==2.4.6', 'scikit-learn==1.9.1')
    """
    for given, argument in ((extra, "extra_requirements"), (replace, "requirements")):
        if isinstance(given, str | bytes):
            raise InvalidRequirement(
                f"{argument} is the string {given!r}; it takes a list of requirements.",
                hint=f'Pass a list, e.g. {argument}=["holidays>=0.50"].',
            )
    modules = sorted(top_level_modules(model))
    owners = _module_owners()
    project = [m for m in modules if m not in owners and _is_project_module(m)]
    project += [m for m in sorted(_project_imports(project, owners)) if m not in project]
    if replace is not None:
        chosen = {name: line for name, line in (_parsed(r, "requirements") for r in replace)}
    else:
        wanted = list(base)
        for module in modules + sorted(_library_imports(project, owners)):
            wanted += owners.get(module, [])
        chosen = {}
        packages = {canonical(k): v for k, v in installed_packages().items()}
        for name in wanted:
            key = canonical(name)
            if key in packages and key not in NEVER_REQUIRED:
                chosen[key] = f"{key}=={packages[key]}"
    for requirement in extra or ():
        name, line = _parsed(requirement, "extra_requirements")
        chosen[name] = line
    code_paths = tuple(p for p in (_module_path(m) for m in sorted(set(project))) if p is not None)
    return ModelRequirements(tuple(sorted(chosen.values(), key=str.lower)), code_paths, tuple(modules))


def top_level_modules(model: Any, *, max_objects: int = MAX_OBJECTS) -> set[str]:
    """Top-level modules of the classes and functions reachable from ``model`` (cycle-safe, bounded)."""
    found: set[str] = set()
    seen: set[int] = set()
    kept: list[Any] = []  # visited objects stay alive, so no new object reuses the id of one seen
    queue: deque[Any] = deque([model])
    while queue and len(seen) < max_objects:
        obj = queue.popleft()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        kept.append(obj)
        try:
            _visit(obj, found, queue)
        except Exception:  # noqa: BLE001  an object whose attributes raise: what was found of it stays
            continue
    return {m for m in found if m}


def _visit(obj: Any, found: set[str], queue: deque[Any]) -> None:
    """Record the modules of ``obj`` and queue what it refers to."""
    if isinstance(obj, types.ModuleType):
        found.add(obj.__name__.partition(".")[0])
        return
    if isinstance(obj, type):
        _add_module(found, obj)
        if _is_user_code(obj):
            queue.extend(_class_functions(obj))
        return
    if isinstance(obj, types.FunctionType | types.MethodType | types.BuiltinFunctionType | functools.partial):
        _add_module(found, obj)
        queue.extend(_function_references(obj))
        return
    cls = type(obj)
    _add_module(found, cls)
    if cls.__module__ != "builtins" and _is_user_code(cls):
        queue.append(cls)  # its methods name the libraries they call
    if _top(cls) in LEAF_LIBRARIES:
        return
    queue.extend(_children(obj))


def canonical(name: str) -> str:
    """PEP 503 normalized distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _parsed(requirement: Any, argument: str) -> tuple[str, str]:
    """(canonical name, requirement line) of one user-given requirement; a bare name is pinned if installed."""
    from packaging.requirements import InvalidRequirement as Invalid
    from packaging.requirements import Requirement

    if not isinstance(requirement, str) or not requirement.strip() or "\n" in requirement:
        raise InvalidRequirement(
            f"{argument} holds {requirement!r}, which is not a requirement string.",
            hint='Pass strings such as "scikit-learn==1.9.0" or "holidays>=0.50", one requirement each.',
        )
    text = requirement.strip()
    try:
        parsed = Requirement(text)
    except Invalid as exc:
        raise InvalidRequirement(
            f"{argument} holds {text!r}, which is not a valid pip requirement: {exc}",
            hint='Write it as pip does, e.g. "xgboost==3.2.0" or "lightgbm>=4,<5" (no options such as -e or --index-url).',
        ) from exc
    if parsed.url:
        raise InvalidRequirement(
            f"{argument} holds {text!r}, a direct URL; an image build cannot pin what a URL serves.",
            hint="Publish the package to an index the image build can reach and require it by name and version.",
        )
    name = canonical(parsed.name)
    installed = {canonical(k): v for k, v in installed_packages().items()}.get(name)
    if not parsed.specifier and installed and not parsed.marker:
        extras = f"[{','.join(sorted(parsed.extras))}]" if parsed.extras else ""
        return name, f"{name}{extras}=={installed}"
    return name, text


@functools.lru_cache(maxsize=1)
def _module_owners() -> dict[str, list[str]]:
    """Top-level module → distributions that install it.

    Several distributions can write into one package (``mlflow``, ``mlflow-skinny`` and
    ``mlflow-tracing`` all install ``mlflow``); the one named like the module is then the
    package itself and the others are parts of it.
    """
    owners: dict[str, list[str]] = {}
    for module, dists in metadata.packages_distributions().items():
        unique = list(dict.fromkeys(dists))
        named = [d for d in unique if canonical(d) == canonical(module)]
        owners[module] = named or unique
    return owners


def _top(obj: Any) -> str:
    module = getattr(obj, "__module__", None)
    return module.partition(".")[0] if isinstance(module, str) else ""


def _add_module(found: set[str], obj: Any) -> None:
    """Record the module of ``obj``; for a class, of every class in its MRO too.

    Importing a class imports its bases: an ``XGBRegressor`` cannot be unpickled
    without scikit-learn, whose ``RegressorMixin`` it derives from.
    """
    for owner in getattr(obj, "__mro__", None) or (obj,):
        top = _top(owner)
        if top and top != "builtins":
            found.add(top)


def _is_user_code(obj: Any) -> bool:
    """True for classes and functions of the project or of ``__main__`` (not of an installed library)."""
    top = _top(obj)
    return bool(top) and (top in ("__main__", "__mp_main__") or (top not in _module_owners() and _is_project_module(top)))


def _class_functions(cls: type) -> Iterator[Any]:
    for klass in cls.__mro__:
        if klass is object or not _is_user_code(klass):
            continue
        for value in vars(klass).values():
            if isinstance(value, staticmethod | classmethod):
                value = value.__func__
            elif isinstance(value, property):
                yield from (f for f in (value.fget, value.fset) if f is not None)
                continue
            if isinstance(value, types.FunctionType):
                yield value
        yield from klass.__bases__


def _function_references(fn: Any) -> Iterator[Any]:
    """What a function uses: a partial's parts, closure cells, defaults, and the globals its code names."""
    if isinstance(fn, functools.partial):
        yield fn.func
        yield from fn.args
        yield from fn.keywords.values()
        return
    if isinstance(fn, types.MethodType):
        yield fn.__func__
        yield fn.__self__
        return
    if not isinstance(fn, types.FunctionType):
        return
    yield from fn.__defaults__ or ()
    yield from (fn.__kwdefaults__ or {}).values()
    for cell in fn.__closure__ or ():
        try:
            yield cell.cell_contents
        except ValueError:  # an empty cell
            continue
    if not _is_user_code(fn):
        return  # a library's own function: its library is recorded, its internals are its business
    names = _code_names(fn.__code__)
    scope = fn.__globals__
    for name in names:
        if name in scope:
            yield scope[name]


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _children(obj: Any) -> Iterator[Any]:
    if isinstance(obj, str | bytes | bytearray | int | float | complex | bool | type(None)):
        return
    if isinstance(obj, dict):
        for i, (key, value) in enumerate(obj.items()):
            if i >= MAX_ITEMS:
                break
            yield key
            yield value
        return
    if isinstance(obj, list | tuple | set | frozenset | deque):
        for i, item in enumerate(obj):
            if i >= MAX_ITEMS:
                break
            yield item
        return
    try:
        state = vars(obj)
    except TypeError:
        state = None
    if isinstance(state, dict):
        yield from list(state.values())[:MAX_ITEMS]
    for klass in type(obj).__mro__:
        slots = klass.__dict__.get("__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            if slot in ("__dict__", "__weakref__"):
                continue
            try:
                yield getattr(obj, slot)
            except AttributeError:
                continue


@functools.lru_cache(maxsize=256)
def _is_project_module(top: str) -> bool:
    """True when ``top`` is importable code outside the standard library and the environment's site-packages."""
    if top in NOT_PROJECT or top in sys.stdlib_module_names or top in sys.builtin_module_names:
        return False
    module = sys.modules.get(top)
    file = getattr(module, "__file__", None)
    if not file:
        return False
    path = Path(file).resolve()
    installed_roots = {
        Path(p).resolve()
        for key in ("purelib", "platlib", "stdlib", "platstdlib")
        if (p := sysconfig.get_paths().get(key))
    }
    return not any(path.is_relative_to(root) for root in installed_roots) and "site-packages" not in path.parts


def _module_path(top: str) -> Path | None:
    """The file (a single module) or folder (a package) to ship for the project module ``top``."""
    module = sys.modules.get(top)
    file = getattr(module, "__file__", None)
    if not file:
        return None
    path = Path(file).resolve()
    return path.parent if path.name == "__init__.py" else path


def _project_imports(project: list[str], owners: dict[str, list[str]]) -> set[str]:
    """Other project modules that the shipped project modules import (their module globals)."""
    return {m for m in _module_globals_tops(project) if m not in owners and _is_project_module(m)}


def _library_imports(project: list[str], owners: dict[str, list[str]]) -> set[str]:
    """Installed libraries that the shipped project modules import at their top level.

    Importing the module to unpickle a class of it runs those imports, so they are needed
    even when the model's own objects never touch them.
    """
    return {m for m in _module_globals_tops(project) if m in owners}


def _module_globals_tops(project: list[str]) -> set[str]:
    tops: set[str] = set()
    for name in project:
        for module_name, module in list(sys.modules.items()):
            if module is None or not (module_name == name or module_name.startswith(name + ".")):
                continue
            for value in list(vars(module).values()):
                if isinstance(value, types.ModuleType):
                    tops.add(value.__name__.partition(".")[0])
                elif isinstance(value, type | types.FunctionType):
                    tops.add(_top(value))
    tops.discard("")
    tops.discard("builtins")
    return tops - set(project)


def requirement_name(line: str) -> str:
    """Canonical distribution name of a requirement line (``"XGBoost==3.2.0"`` → ``"xgboost"``)."""
    match = _NAME.match(line.strip())
    return canonical(match.group(0)) if match else ""


__all__ = ["ModelRequirements", "canonical", "model_requirements", "requirement_name", "top_level_modules"]
