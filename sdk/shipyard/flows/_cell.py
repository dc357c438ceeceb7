"""What of a notebook cell the flow's step processes run: the flow and what it needs.

Metaflow runs every step in a new process that imports the flow's file, so
whatever the file holds at module level runs once per step. A notebook cell
that defines a flow often holds more than the flow: it loads data to look at,
plots, appends to a file, calls ``shipyard.run(Flow)``. In the kernel that ran
once; it must not run again in every step. :func:`flow_script` writes the
file from the cell by this rule, applied to the cell's top-level statements:

* **kept**: the flow class; every ``import``; every ``def`` and ``class``
  (defining them runs only their decorators and default values);
* **kept when the kept code uses a name it binds** (followed transitively):
  assignments such as ``MODEL_NAME = "iris"`` or ``GATES = [threshold(...)]``,
  a ``with``/``for``/``if``/``try`` block that binds such a name (kept
  whole), a method call on such a value (``FEATURES.append("age")``, since it
  may change it), a ``del`` of it;
* **dropped**: everything else, notably expression statements (calls,
  displays, plots) and assignments nothing kept uses (``df =
  pd.read_csv(...)`` when no step reads ``df``);
* **never kept**: a statement that calls ``shipyard.run``/``run_async`` (each
  step would start the flow again) or ``get_ipython()`` (there is no kernel).

Dropped statements become blank lines, so a traceback's line numbers are the
cell's. The flow's steps should load their data themselves: a module-level
value a step reads is computed again in every step process.

Q: Why a rule over the syntax tree, not "everything above the class" (as
   Metaflow's NBRunner does)?
A: Above the class is exactly where data loading, plotting and
   ``sys.path`` edits sit, and below it are helpers the steps call. Kept
   names follow what the flow reads, which ``ast`` can tell; what a call does
   it cannot, so a call is kept only when the flow needs what it binds.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass

from .._core.errors import FlowError

RULE_VERSION = "2"
"""Part of a written flow file's name: a cell written by an older rule is written again."""

_DEFINITIONS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_NEVER_KEPT_CALLS = frozenset(
    {"shipyard.run", "shipyard.run_async", "shipyard.flows.run", "shipyard.flows.run_async", "get_ipython"}
)
_TRACK_NAMES = frozenset(
    {"shipyard.track", "shipyard.flows.track", "shipyard.flows.ShipyardFlow", "shipyard.flows.ShipyardStep"}
)
_HARMLESS_DECORATORS = frozenset({"staticmethod", "classmethod", "property"})


@dataclass(frozen=True)
class FlowScript:
    """The flow file written from a cell, and what of the cell it left out.

    Attributes:
        source: the file's text; ends by running the flow under ``__main__``.
        dropped: the first line of every top-level statement left out, in order.
    """

    source: str
    dropped: tuple[str, ...]


def flow_script(cell: str, flow_name: str) -> FlowScript:
    """The flow file for the flow class ``flow_name`` defined in ``cell`` (Python; magics already made calls).

    Example:
        >>> script = flow_script("import os\\nprint('hi')\\nclass F: pass\\n", "F")
        >>> script.dropped
        ("print('hi')",)
    """
    try:
        tree = ast.parse(cell)
    except SyntaxError as exc:
        raise FlowError(
            f"The cell that defines {flow_name} is not valid Python: {exc.msg} (line {exc.lineno}).",
            hint="Fix the cell, run it again, then run the flow.",
        ) from exc
    body = tree.body
    flows = [s for s in body if isinstance(s, ast.ClassDef) and s.name == flow_name]
    if not flows:
        raise FlowError(
            f"The cell has no top-level class {flow_name}.",
            hint="Define the flow class at the top level of one cell (with its imports) and run that cell.",
        )
    aliases = _import_aliases(body)
    assigned = set().union(*(_binds(s) for s in body if not isinstance(s, _DEFINITIONS)))
    kept = [isinstance(s, _DEFINITIONS) for s in body]
    never = [not k and _calls_any(s, aliases, _NEVER_KEPT_CALLS) for s, k in zip(body, kept)]
    needed = set().union(*(_loads(s) for s, k in zip(body, kept) if k))
    changed = True
    while changed:  # a kept assignment may read names that other statements bind
        changed = False
        for i, stmt in enumerate(body):
            if kept[i] or never[i]:
                continue
            if (_binds(stmt) | _mutates(stmt, assigned)) & needed:
                kept[i] = changed = True
                needed |= _loads(stmt)
    dropped = [s for s, k in zip(body, kept) if not k]
    source = _blank_out(cell, dropped)
    try:
        ast.parse(source)
    except SyntaxError:  # an unusual layout (e.g. backslashes): fall back to the kept statements alone
        source = "\n\n".join(ast.unparse(s) for s, k in zip(body, kept) if k)
    source = source.rstrip() + f"\n\n\nif __name__ == \"__main__\":\n    {flow_name}()\n"
    return FlowScript(source, tuple(_first_line(cell, s) for s in dropped))


@dataclass(frozen=True)
class SourceTracking:
    """Whether a flow file's flow classes are tracked, as far as its text tells.

    Attributes:
        tracked: True, False, or None when the text cannot tell.
        flows: the names of the flow classes found.
    """

    tracked: bool | None
    flows: tuple[str, ...]


def is_main_guard(stmt: ast.stmt) -> bool:
    """Whether ``stmt`` is ``if __name__ == "__main__":``."""
    if not isinstance(stmt, ast.If) or not isinstance(stmt.test, ast.Compare):
        return False
    parts = [stmt.test.left, *stmt.test.comparators]
    names = {p.id for p in parts if isinstance(p, ast.Name)}
    constants = {p.value for p in parts if isinstance(p, ast.Constant)}
    return names == {"__name__"} and constants == {"__main__"}


def starts_a_flow(source: str) -> bool | None:
    """Whether running the file as a script starts its flow: True when a flow class is called at its top level
    or under ``if __name__ == "__main__":``, False when the file runs nothing at all (no such guard, no call at
    its top level), None when the text does not say (no flow class, something else is called, not Python)."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return None
    aliases = _import_aliases(body)
    flows = {s.name for s in body if isinstance(s, ast.ClassDef) and _is_flow_class(s, aliases)}
    if not flows:
        return None
    runs = [stmt for stmt in body if is_main_guard(stmt) or isinstance(stmt, ast.Expr)]
    for stmt in runs:
        for node in ast.walk(stmt):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in flows:
                return True
    calls = any(isinstance(node, ast.Call) for stmt in runs for node in ast.walk(stmt))
    return None if calls else False


def tracked_in_source(source: str) -> SourceTracking:
    """Whether a flow file's flow classes carry ``@shipyard.track``, read from its text without running it.

    False only when sure: every flow class subclasses Metaflow's ``FlowSpec``
    directly and every decorator on it and its methods is Metaflow's, one of
    shipyard's other decorators, or a builtin. A decorator or base class
    imported from elsewhere may apply the tracking, so it gives None.
    """
    try:
        body = ast.parse(source).body
    except SyntaxError:  # Metaflow reports it, with the line
        return SourceTracking(None, ())
    aliases = _import_aliases(body)
    flows = [s for s in body if isinstance(s, ast.ClassDef) and _is_flow_class(s, aliases)]
    names = tuple(cls.name for cls in flows)
    if not flows:
        return SourceTracking(None, names)
    sure = True
    for cls in flows:
        if not all(_dotted(b, aliases) == "metaflow.FlowSpec" for b in cls.bases):
            sure = False
        decorators = list(cls.decorator_list)
        for item in cls.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                decorators.extend(item.decorator_list)
        for deco in decorators:
            name = _dotted(deco.func if isinstance(deco, ast.Call) else deco, aliases)
            if name in _TRACK_NAMES:
                return SourceTracking(True, names)
            if name is None or not (name.startswith(("metaflow.", "shipyard.")) or name in _HARMLESS_DECORATORS):
                sure = False
    return SourceTracking(False if sure else None, names)


def _is_flow_class(cls: ast.ClassDef, aliases: dict[str, str]) -> bool:
    if any(_dotted(b, aliases) == "metaflow.FlowSpec" for b in cls.bases):
        return True
    steps = (
        d
        for item in cls.body
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
        for d in item.decorator_list
    )
    return any(_dotted(d, aliases) == "metaflow.step" for d in steps)


def _import_aliases(body: Iterable[ast.stmt]) -> dict[str, str]:
    """Local name → dotted name it was imported as, for the cell's top-level imports."""
    aliases: dict[str, str] = {}
    for stmt in body:
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    aliases[top] = top
        elif isinstance(stmt, ast.ImportFrom) and stmt.module and not stmt.level:
            for alias in stmt.names:
                aliases[alias.asname or alias.name] = f"{stmt.module}.{alias.name}"
    return aliases


def _dotted(node: ast.expr, aliases: dict[str, str]) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))


def _walk_outside_bodies(node: ast.AST) -> Iterable[ast.AST]:
    """Every node of ``node`` except what runs only when a nested function is called."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        for child in ast.iter_child_nodes(current):
            if isinstance(current, (ast.FunctionDef, ast.AsyncFunctionDef)) and child in current.body:
                continue
            if isinstance(current, ast.Lambda) and child is current.body:
                continue
            stack.append(child)


def _loads(stmt: ast.stmt) -> set[str]:
    """Names ``stmt`` reads anywhere, function bodies included (a step reads module globals there)."""
    return {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _binds(stmt: ast.stmt) -> set[str]:
    """Module-level names ``stmt`` binds, deletes or changes in place (``X[k] = v``, ``X.a += 1``)."""
    names: set[str] = set()
    for node in _walk_outside_bodies(stmt):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node is not stmt:
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names if a.name != "*")
        elif isinstance(node, (ast.Attribute, ast.Subscript)) and isinstance(node.ctx, (ast.Store, ast.Del)):
            root = _root_name(node)
            if root:
                names.add(root)
    return names


def _mutates(stmt: ast.stmt, assigned: set[str]) -> set[str]:
    """For ``X.method(...)`` as a statement, ``{X}`` when the cell assigns ``X`` (a value, not a module)."""
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) and isinstance(stmt.value.func, ast.Attribute):
        root = _root_name(stmt.value.func)
        if root in assigned:
            return {root}
    return set()


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _calls_any(stmt: ast.stmt, aliases: dict[str, str], names: frozenset[str]) -> bool:
    return any(
        isinstance(node, ast.Call) and _dotted(node.func, aliases) in names for node in _walk_outside_bodies(stmt)
    )


def _blank_out(cell: str, dropped: list[ast.stmt]) -> str:
    """``cell`` with each dropped statement's text removed and its lines kept (blank), so line numbers hold."""
    lines = cell.splitlines()
    for stmt in sorted(dropped, key=lambda s: (s.lineno, s.col_offset), reverse=True):
        first, last = stmt.lineno - 1, (stmt.end_lineno or stmt.lineno) - 1
        prefix = _chars(lines[first], stmt.col_offset)
        suffix = lines[last][len(_chars(lines[last], stmt.end_col_offset or 0)):]
        # `a = 1; print(a)` keeps `a = 1;`; `print(a); a = 1` needs a statement before the `;`
        follows = bool(suffix.strip()) and not suffix.strip().startswith("#")
        filler = "pass" if follows else ""
        if first == last:
            lines[first] = prefix + filler + suffix
            continue
        # a statement after it on its last line must stay on the same logical line
        joiner = " \\" if follows else ""
        lines[first] = prefix + filler + joiner if follows else prefix.rstrip()
        for i in range(first + 1, last):
            lines[i] = "\\" if follows else ""
        lines[last] = suffix if follows else ""
    return "\n".join(lines)


def _chars(line: str, byte_offset: int) -> str:
    """The first ``byte_offset`` UTF-8 bytes of ``line`` as text (``ast`` columns count bytes)."""
    return line.encode("utf-8")[:byte_offset].decode("utf-8", errors="ignore")


def _first_line(cell: str, stmt: ast.stmt) -> str:
    segment = ast.get_source_segment(cell, stmt) or ""
    return segment.strip().splitlines()[0] if segment.strip() else type(stmt).__name__
