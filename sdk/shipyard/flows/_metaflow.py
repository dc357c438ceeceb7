"""The Metaflow adapter: every use shipyard makes of Metaflow's private API.

The rest of ``flows`` uses Metaflow's public API (``FlowSpec``, the
user-decorator API, ``Runner``, the client). What it offers no public way to
do is here, each with why, and ``tests/integration/test_adapters_metaflow.py``
runs each of them against a real flow and fails when the installed Metaflow is
outside :data:`SUPPORTED`, the range this was written and checked for:

* :func:`run_in_any_namespace` — a client ``Run`` read whatever the caller's
  namespace (``_namespace_check=False``);
* :func:`flow_parameters` — a flow's parameters from inside a running step
  (``FlowSpec._get_parameters``);
* :func:`decorated_step` — the step function under a user step decorator
  (``UserStepDecorator._my_step``);
* :func:`user_decorators` — the flow mutators and user step decorators a flow
  class carries (``FlowSpec._flow_state``, a step's ``wrappers``);
* :func:`runner_class` — ``metaflow.Runner`` with the command-line API it
  drives imported, leaving Python's ``typing`` as it was.

This module imports Metaflow only inside its functions.
"""

from __future__ import annotations

import threading
import typing
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from metaflow import Run, Runner

_IMPORT_LOCK = threading.Lock()

SUPPORTED = "metaflow>=2.19,<2.20"
"""The Metaflow versions this adapter was written for (as in ``pyproject.toml``)."""


def run_in_any_namespace(pathspec: str) -> Run:
    """The Metaflow client's ``Run`` for ``pathspec`` (``Flow/run_id``), whichever namespace it is in.

    Q: Why skip the namespace check?
    A: Shipyard reads and tags runs it knows by their exact pathspec (it
       started them, or MLflow recorded them). Metaflow's client would refuse
       one outside the caller's default namespace, ``user:<name>``: a run an
       Argo workflow or another user started, or any run when the user name is
       unknown. The public alternative, ``metaflow.namespace(None)``, changes
       the namespace for the whole process, including the user's own client
       calls.
    """
    from metaflow import Run

    return Run(pathspec, _namespace_check=False)


def flow_parameters(flow: Any) -> Iterator[tuple[str, Any]]:
    """``(name, Parameter)`` for every parameter of ``flow`` (a ``FlowSpec`` instance or class).

    Q: Why the private class method?
    A: Inside a running step, the flow's parameters are only listed by
       ``FlowSpec._get_parameters``, which Metaflow's own CLI, task runner and
       Argo compiler call. The public ``MutableFlow.parameters`` exists only
       while a flow mutator runs, not in the step.
    """
    flow_class = flow if isinstance(flow, type) else type(flow)
    return flow_class._get_parameters()  # noqa: SLF001 - see above


def decorated_step(obj: Any) -> Any | None:
    """The step function a Metaflow user step decorator (or a mutable step) wraps; None for anything else.

    Q: Why the private attribute?
    A: A user step decorator used bare (``@my_decorator`` above ``@step``)
       stays in the flow class as the decorator object, not the function (only
       attribute access on the class unwraps it). ``_my_step`` is the one way
       from the object back to the function and to the marks other decorators
       (``@shipyard.gate``) left on it; Metaflow unwraps it the same way.
    """
    return getattr(obj, "_my_step", None)


def user_decorators(flow_class: type) -> list[Any]:
    """Every flow mutator (inherited ones too) and user step decorator on ``flow_class``, before it runs.

    Q: Why the private state?
    A: Metaflow lists a class's mutators in ``FlowSpec._flow_state`` and a
       step's user decorators in the step function's ``wrappers``; the public
       view, ``MutableFlow``, exists only while a mutator runs. ``shipyard.run``
       reads them to refuse an untracked flow before any step starts.
    """
    from metaflow.flowspec import FlowStateItems

    found = list(flow_class._flow_state[FlowStateItems.FLOW_MUTATORS])  # noqa: SLF001 - see above
    for name in dir(flow_class):
        try:
            attr = getattr(flow_class, name)  # attribute access unwraps a bare user step decorator
        except Exception:  # a descriptor that fails on the class is no step
            continue
        if callable(attr) and getattr(attr, "is_step", False):
            found.extend(getattr(attr, "wrappers", None) or ())
    return found


def runner_class() -> type[Runner]:
    """``metaflow.Runner``, with the modules a run imports already loaded and ``typing`` left untouched.

    Q: Why guard ``typing``?
    A: The Runner's command-line API imports Metaflow's vendored copy of
       ``typing_extensions``, which replaces ``typing._collect_parameters``
       with a version that only knows its own ``NoDefault``. Afterwards every
       generic class built from the real ``typing_extensions``' type variables
       fails to define ("Type parameter ~_R without a default follows type
       parameter with a default"): ``import torch`` in the same kernel breaks,
       and so does loading any model whose library imports it. The vendored
       copy needs its replacement only while its own modules are defined, so
       the original is put back once they are imported.

    Q: Why import the commands here, under a lock?
    A: Metaflow's command line loads ``run``, ``resume`` and ``step`` lazily,
       the first time a Runner asks for them. Two runs started at once from
       background threads then import ``metaflow.cli_components.run_cmds``
       concurrently; Python's import deadlock detection hands one of them the
       half-initialised module ("has no attribute 'run'"). Loading them once,
       before any Runner exists, leaves nothing to race.
    """
    with _IMPORT_LOCK:
        saved = {name: getattr(typing, name) for name in ("_collect_parameters", "_collect_type_vars") if hasattr(typing, name)}
        try:
            from metaflow import Runner
            from metaflow.cli import cli
            from metaflow.runner import click_api  # noqa: F401 - imported here, under the guard, not mid-run

            for name in getattr(cli, "lazy_subcommands", {}):
                cli.get_command(None, name)
        finally:
            for name, value in saved.items():
                setattr(typing, name, value)
    return Runner
