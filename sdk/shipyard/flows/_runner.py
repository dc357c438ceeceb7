"""Running flows from notebooks and scripts through Metaflow's Runner.

In a notebook, the cell that defines the flow class is written to a file in
the workspace and run from there, so ``shipyard.run(Flow)`` may be called
from any later cell. What of the cell goes into that file (the flow and what
it needs, not the cell's data loading, plots or ``shipyard.run`` calls) is
the rule in :mod:`shipyard.flows._cell`. In a script, the flow's own file is
run.

Steps behave like the caller: they import what the caller's ``sys.path``
(in a notebook: the notebook's directory, then the kernel's path) provides,
passed to the step processes through ``PYTHONPATH``. A flow that is not
tracked is refused before Metaflow starts it.

Q: Why hand the caller's import path to the steps?
A: Each step is a new Python process started on the written flow file, whose
   own directory (``.shipyard/flows``) is the first entry of its path. A
   helper module next to the notebook, or a ``src/`` the notebook added to
   ``sys.path``, would be importable in the kernel and missing in the step.
"""

from __future__ import annotations

import ast
import asyncio
import concurrent.futures
import functools
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._core import lineage
from .._core.errors import FlowError, FlowFailed
from .._core.hashing import sha256_text
from .._core.workspace import Workspace, current_workspace
from ._metaflow import run_in_any_namespace

_LOG_TAIL_LINES = 40


@dataclass(frozen=True)
class RunResult:
    """What a finished flow run produced.

    Attributes:
        mlflow_run_id: the MLflow run that tracked it.
        pathspec: Metaflow run pathspec, ``Flow/run_id``.
        status: MLflow run status (``FINISHED``).
        metrics: last value of every metric.
        params: parameters as recorded in MLflow.
        models: model name → model URI, for every model logged.
        duration_s: wall time of the run.
    """

    mlflow_run_id: str
    pathspec: str
    status: str
    metrics: dict[str, float]
    params: dict[str, str]
    models: dict[str, str]
    duration_s: float
    tags: dict[str, str] = field(repr=False, default_factory=dict)

    @property
    def model_uri(self) -> str | None:
        """URI of the model named ``model``, else of the only model logged."""
        if "model" in self.models:
            return self.models["model"]
        return next(iter(self.models.values())) if len(self.models) == 1 else None

    @property
    def artifacts(self) -> Mapping[str, Any]:
        """Metaflow artifacts of the run's ``end`` step, loaded on access."""
        return _Artifacts(self.pathspec)

    def _repr_html_(self) -> str:
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(self.metrics.items())[:6])
        return (
            f"<b>{self.pathspec}</b> · MLflow run <code>{self.mlflow_run_id}</code> · {self.status} "
            f"in {self.duration_s:.1f}s<br>{metrics}"
        )


class _Artifacts(Mapping[str, Any]):
    def __init__(self, pathspec: str) -> None:
        self._pathspec = pathspec

    def _task(self) -> Any:
        return run_in_any_namespace(self._pathspec)["end"].task

    def __getitem__(self, name: str) -> Any:
        try:
            return self._task()[name].data
        except KeyError:
            raise KeyError(f"{self._pathspec} has no artifact {name!r}") from None

    def __iter__(self) -> Iterator[str]:
        return (a.id for a in self._task() if not a.id.startswith("_") and a.id != "name")

    def __len__(self) -> int:
        return sum(1 for _ in self)


class FlowRun:
    """A flow running in the background; the notebook stays usable.

    Await it (``result = await shipyard.run_async(Flow)``) or call
    :meth:`result`. ``mlflow_run_id`` becomes known soon after start, for
    live views of its metrics.
    """

    def __init__(self, future: concurrent.futures.Future[RunResult], state: _RunState) -> None:
        self._future = future
        self._state = state

    @property
    def pathspec(self) -> str | None:
        return self._state.pathspec

    @property
    def mlflow_run_id(self) -> str | None:
        if self._state.mlflow_run_id is None and self._state.pathspec:
            from ..tracking._runs import find_flow_run

            self._state.mlflow_run_id = find_flow_run(self._state.workspace, self._state.pathspec)
        return self._state.mlflow_run_id

    def done(self) -> bool:
        return self._future.done()

    def result(self, timeout: float | None = None) -> RunResult:
        """Wait for the run and return its result (raises :class:`FlowFailed` if a step failed)."""
        return self._future.result(timeout)

    def __await__(self) -> Any:
        import asyncio

        return asyncio.wrap_future(self._future).__await__()

    def __repr__(self) -> str:
        state = "done" if self.done() else "running"
        return f"<FlowRun {self.pathspec or '(starting)'} {state}>"


@dataclass
class _RunState:
    workspace: Workspace
    pathspec: str | None = None
    mlflow_run_id: str | None = None


def run(flow: Any, *, show_output: bool = False, **params: Any) -> RunResult:
    """Run a tracked flow to completion and return what it produced.

    Args:
        flow: a ``FlowSpec`` subclass (defined in a notebook cell or a module) or a path to a flow file.
        show_output: stream Metaflow's output while it runs.
        **params: values for the flow's ``Parameter``s.

    Raises:
        FlowFailed: a step raised; carries the step name, the original error and the log tail.
        FlowError: the flow could not be started, e.g. it is not decorated with ``@shipyard.track``.

    Example:
        >>> result = shipyard.run(TrainFlow, epochs=20)   # doctest: +SKIP
        >>> result.metrics["accuracy"], result.model_uri   # doctest: +SKIP
    """
    state = _RunState(current_workspace())
    flow_file = _flow_file(flow, state.workspace)  # refuses an untracked flow before anything starts
    _refuse_rerun_from_inside(flow_file)
    _prepare_store(state.workspace)
    return _execute(flow_file, params, show_output, state)


def run_async(flow: Any, *, show_output: bool = False, **params: Any) -> FlowRun:
    """Start a tracked flow in the background and return a :class:`FlowRun` handle at once."""
    state = _RunState(current_workspace())
    flow_file = _flow_file(flow, state.workspace)  # resolve the cell now, in the caller's thread
    _refuse_rerun_from_inside(flow_file)
    _prepare_store(state.workspace)
    future: concurrent.futures.Future[RunResult] = concurrent.futures.Future()

    def target() -> None:
        try:
            future.set_result(_execute(flow_file, params, show_output, state))
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=target, name="shipyard-flow", daemon=True).start()
    return FlowRun(future, state)


def _refuse_rerun_from_inside(flow_file: _FlowFile) -> None:
    """Refuse to start a flow from the Metaflow process that is running that same flow file.

    Q: How can that happen?
    A: Metaflow runs a flow by executing its file (``flow.py run``), so a file
       that ends in ``shipyard.run(Flow)`` instead of ``Flow()`` starts a new
       run from inside each run: processes without end. The step processes
       ``shipyard.run`` starts carry ``SHIPYARD_SOURCE_KIND``.
    """
    if not os.environ.get("SHIPYARD_SOURCE_KIND") or not sys.argv or not sys.argv[0]:
        return
    try:
        same = Path(sys.argv[0]).resolve() == flow_file.path.resolve()
    except OSError:
        return
    if same:
        raise FlowError(
            f"shipyard.run was called while Metaflow runs {flow_file.path.name} itself: the flow file starts "
            "its own run again, which would start runs without end.",
            hint="End the flow file with `MyFlow()` under `if __name__ == '__main__':`, and call shipyard.run "
            "from a notebook, a script or the command line instead.",
        )


def _execute(flow: Any, params: Mapping[str, Any], show_output: bool, state: _RunState) -> RunResult:
    from ._metaflow import runner_class

    Runner = runner_class()  # noqa: N806 - the class, named as Metaflow names it
    _ensure_metaflow_identity()
    ws = state.workspace
    flow_file = flow if isinstance(flow, _FlowFile) else _flow_file(flow, ws)
    env = {**ws.child_env(), **flow_file.env}
    if import_path := step_import_path(os.environ.get("PYTHONPATH", "")):
        env["PYTHONPATH"] = import_path  # never empty: an empty entry would put the working directory on the path
    # Step processes must fail fast on a dead tracker and spool, not sit in MLflow's long retry loop.
    env.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1"))
    env.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", os.environ.get("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"))
    env.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", "20"))
    started = time.monotonic()
    try:
        runner = Runner(str(flow_file.path), show_output=show_output, env=env, cwd=str(ws.project_dir))
        with runner:
            # Metaflow's command line (which the Runner drives) spells parameters in lower case.
            cli_params = {name.lower().replace("-", "_"): value for name, value in params.items()}
            if _loop_running():
                executing = runner.run(**cli_params)
                state.pathspec = executing.run.pathspec
            else:  # the pathspec is known as soon as the run starts, for live views
                executing = asyncio.run(_start(runner, cli_params, state))
            status = executing.status
            output = (executing.stdout or "") + (executing.stderr or "")
    except FlowError:
        raise
    except Exception as exc:
        raise FlowError(
            f"Metaflow could not start {flow_file.path.name}: {exc}",
            hint="Check that the flow defines a `start` and an `end` step and that its parameters are right.",
        ) from exc
    duration = time.monotonic() - started
    return _collect(ws, state, status, output, duration)


def _prepare_store(ws: Workspace) -> None:
    """Create the embedded store's tables before any step or live view opens it.

    Q: Why here?
    A: On a fresh workspace, the start step and a live view would otherwise
       both find an empty sqlite file and race to create MLflow's tables.
    """
    if ws.embedded:
        from ..tracking._client import client_for

        client_for(ws).search_experiments(max_results=1)


async def _start(runner: Any, params: Mapping[str, Any], state: _RunState) -> Any:
    executing = await runner.async_run(**params)
    state.pathspec = executing.run.pathspec
    await executing.wait()
    return executing


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _collect(ws: Workspace, state: _RunState, status: str, output: str, duration: float) -> RunResult:
    from ..tracking import sync
    from ..tracking._client import client_for
    from ..tracking._runs import find_flow_run, finish_run

    pathspec = state.pathspec or ""
    tail = "\n".join(output.rstrip().splitlines()[-_LOG_TAIL_LINES:])
    try:
        sync(ws)  # batches a step had to spool go out now that the flow is over
    except Exception as exc:
        print(f"shipyard: {exc}", file=sys.stderr)
    run_id = state.mlflow_run_id = find_flow_run(ws, pathspec) if pathspec else None
    client = client_for(ws)
    mlflow_run = client.get_run(run_id) if run_id else None
    if status != "successful":
        tags = mlflow_run.data.tags if mlflow_run else {}
        step = tags.get(lineage.ERROR_STEP) or _failed_step_from_metaflow(pathspec)
        cause = tags.get(lineage.ERROR_CAUSE) or _last_exception_line(output)
        if run_id and mlflow_run and mlflow_run.info.status == "RUNNING":
            finish_run(ws, run_id, "FAILED")
        raise FlowFailed(
            f"Flow {pathspec or '(not started)'} failed in step '{step}': {cause}",
            step=step,
            cause=cause,
            log_tail=tail,
            pathspec=pathspec or None,
            mlflow_run_id=run_id,
            hint="Fix the step and run again; the log tail is on .log_tail"
            + (f", metrics logged before the failure are in MLflow run {run_id}." if run_id else "."),
        )
    if mlflow_run is None:
        raise FlowError(
            f"Flow {pathspec} finished but has no MLflow run.",
            hint="Decorate the flow class with @shipyard.track.",
        )
    if mlflow_run.info.status == "RUNNING":
        finish_run(ws, run_id, "FINISHED")  # type: ignore[arg-type]
        mlflow_run = client.get_run(run_id)  # type: ignore[arg-type]
    tags = mlflow_run.data.tags
    return RunResult(
        mlflow_run_id=mlflow_run.info.run_id,
        pathspec=pathspec,
        status=mlflow_run.info.status,
        metrics=dict(mlflow_run.data.metrics),
        params=dict(mlflow_run.data.params),
        models=lineage.logged_models(tags),
        duration_s=duration,
        tags=dict(tags),
    )


def _ensure_metaflow_identity() -> None:
    """Metaflow's client needs a user name for its default namespace and rejects "root";
    without one, read runs in the global namespace instead of failing."""
    import metaflow
    from metaflow.util import get_username

    if get_username() is None:
        metaflow.namespace(None)


def _failed_step_from_metaflow(pathspec: str) -> str | None:
    if not pathspec:
        return None
    try:
        for step in run_in_any_namespace(pathspec):
            for task in step:
                if not task.successful:
                    return step.id
    except Exception:  # best effort: the log tail still says what happened
        return None
    return None


def _last_exception_line(output: str) -> str:
    for line in reversed(output.splitlines()):
        stripped = line.strip()
        if stripped and ("Error" in stripped or "Exception" in stripped):
            return stripped
    return "the step exited with an error (see log_tail)"


def step_import_path(existing: str = "") -> str:
    """``PYTHONPATH`` for a flow's step processes: the caller's own import path first, then ``existing``.

    The caller's path is the notebook's directory (in a kernel), then every
    entry of ``sys.path`` a fresh interpreter would not have anyway (the
    script's or kernel's directory, ``sys.path.append(...)`` edits, the
    caller's own ``PYTHONPATH``), in order, each once; nothing of
    ``existing`` is dropped.
    """
    default = _interpreter_path()
    entries: list[str] = []
    notebook = os.environ.get("JPY_SESSION_NAME", "")
    if notebook and os.path.isabs(notebook) and os.path.isfile(notebook):
        entries.append(os.path.dirname(notebook))
    for entry in sys.path:
        if not isinstance(entry, (str, os.PathLike)):
            continue  # importlib ignores these too
        text = os.fspath(entry)
        if not isinstance(text, str):
            continue
        path = os.path.abspath(text or os.getcwd())
        if path not in default and os.path.exists(path):
            entries.append(path)
    entries.extend(p for p in existing.split(os.pathsep) if p)
    # an entry holding the separator cannot be passed through PYTHONPATH; the step cannot see it either way
    unique = [p for p in dict.fromkeys(entries) if os.pathsep not in p]
    return os.pathsep.join(unique)


@functools.lru_cache(maxsize=1)
def _interpreter_path() -> frozenset[str]:
    """What ``sys.path`` a fresh interpreter (the one steps run on) has without ``PYTHONPATH``.

    Q: Why ask a fresh interpreter, not ``sysconfig``?
    A: Site packages add entries of their own (``.pth`` files, editable
       installs); only the interpreter knows them all. Passing them again
       would move them ahead of the standard library in the steps.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    try:
        out = subprocess.run(
            [sys.executable, "-c", "import sys; print(repr(sys.path[1:]))"],
            capture_output=True, text=True, env=env, cwd=os.path.dirname(sys.executable) or None, timeout=60,
        )
        listed = ast.literal_eval(out.stdout.strip())
    except (OSError, subprocess.SubprocessError, ValueError, SyntaxError):
        import site
        import sysconfig

        listed = [*sysconfig.get_paths().values(), *site.getsitepackages(), site.getusersitepackages()]
    return frozenset(os.path.abspath(p) for p in listed if isinstance(p, str) and p)


def _require_tracked(flow: type) -> None:
    from ._decorators import ShipyardFlow, ShipyardStep
    from ._metaflow import user_decorators

    if any(isinstance(d, (ShipyardFlow, ShipyardStep)) for d in user_decorators(flow)):
        return
    raise FlowError(
        f"{flow.__name__} is not tracked, so shipyard.run() did not start it: no MLflow run would record "
        "its metrics, model and lineage.",
        hint=f"Put `@shipyard.track` above `class {flow.__name__}(FlowSpec):`, run that cell (or save the file) "
        "again, then run the flow.",
    )


def _require_tracked_file(path: Path) -> None:
    from ._cell import starts_a_flow, tracked_in_source

    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FlowError(f"Cannot read the flow file {path}: {exc}", hint="Pass a readable Python file.") from exc
    found = tracked_in_source(source)
    if found.tracked is False:  # None: it cannot tell from the text; the run's result says it
        names = ", ".join(found.flows)
        raise FlowError(
            f"{names} in {path.name} is not tracked, so shipyard.run() did not start it: no MLflow run would "
            "record its metrics, model and lineage.",
            hint=f"Put `@shipyard.track` (after `import shipyard`) above the flow class in {path}, then run it again.",
        )
    if starts_a_flow(source) is False:  # Metaflow would never start, and the run would wait for it forever
        names = ", ".join(found.flows) or "the flow"
        raise FlowError(
            f"{path.name} defines {names} but never starts it when run as a script, so Metaflow cannot run it.",
            hint=f'End {path.name} with:\n\nif __name__ == "__main__":\n    {found.flows[0] if found.flows else "MyFlow"}()',
        )


@dataclass(frozen=True)
class _FlowFile:
    path: Path
    env: dict[str, str]


def _flow_file(flow: Any, ws: Workspace) -> _FlowFile:
    if isinstance(flow, _FlowFile):
        return flow
    if isinstance(flow, (str, os.PathLike)):
        path = Path(flow).resolve()
        if not path.is_file():
            raise FlowError(f"No flow file at {path}.", hint="Pass a FlowSpec class or the path of a flow file.")
        _require_tracked_file(path)
        return _FlowFile(path, {"SHIPYARD_SOURCE_KIND": "file"})
    from metaflow import FlowSpec

    if not isinstance(flow, type) or not issubclass(flow, FlowSpec):
        raise FlowError(
            f"shipyard.run() needs a FlowSpec class or a flow file, not {_describe(flow)}.",
            hint="Pass the class itself: shipyard.run(MyFlow).",
        )
    _require_tracked(flow)
    module = sys.modules.get(flow.__module__)
    module_file = getattr(module, "__file__", None)
    if flow.__module__ != "__main__" or (module_file and not _in_ipython()):
        return _FlowFile(Path(module_file or "").resolve(), {"SHIPYARD_SOURCE_KIND": "file"})
    cell, python = _defining_cell(flow.__name__)
    from ._cell import RULE_VERSION, flow_script

    digest = sha256_text(f"{RULE_VERSION}\n{cell}")
    flows_dir = ws.root / "flows"
    flows_dir.mkdir(parents=True, exist_ok=True)
    path = flows_dir / f"{flow.__name__}_{digest[:12]}.py"
    cell_path = flows_dir / f"{flow.__name__}_{digest[:12]}.cell.py"
    if not path.exists() or not cell_path.exists():
        _write_atomically(cell_path, cell)
        _write_atomically(path, flow_script(python, flow.__name__).source)
    env = {"SHIPYARD_SOURCE_KIND": "notebook-cell", "SHIPYARD_CELL_SOURCE": str(cell_path)}
    if notebook := os.environ.get("JPY_SESSION_NAME"):
        env["SHIPYARD_NOTEBOOK"] = notebook
    return _FlowFile(path, env)


def _describe(obj: Any) -> str:
    return f"the class {obj.__name__}" if isinstance(obj, type) else type(obj).__name__


def _write_atomically(path: Path, text: str) -> None:
    # two runs of one cell at once (run_async) must not see a half-written file
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def _in_ipython() -> bool:
    ipython_module = sys.modules.get("IPython")
    return bool(ipython_module and ipython_module.get_ipython())


def _defining_cell(class_name: str) -> tuple[str, str]:
    """The newest notebook cell that defines ``class_name``: as typed, and as Python (magics made calls)."""
    from IPython import get_ipython
    from IPython.core.inputtransformer2 import TransformerManager

    history = get_ipython().history_manager.input_hist_raw
    transformer = TransformerManager()
    for cell in reversed(history):
        if f"class {class_name}" not in cell:
            continue
        try:
            python = transformer.transform_cell(cell)
            tree = ast.parse(python)
        except Exception:  # noqa: BLE001 - a history entry IPython or Python cannot read defines no flow
            continue
        if any(isinstance(node, ast.ClassDef) and node.name == class_name for node in tree.body):
            return cell, python
    raise FlowError(
        f"Could not find the notebook cell that defines {class_name}.",
        hint="Define the flow class in a single cell (with its imports) and run that cell before shipyard.run().",
    )
