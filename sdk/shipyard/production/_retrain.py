"""``shipyard retrain``: the flow that made a model version, run again on new data, judged by its own gates.

The lineage of the version (``model@alias``) names everything needed to run
its flow again: the flow source its run stored (``lineage/flow_source.py``),
the flow's name and the parameters it ran with. The source is written to a
folder of the workspace and run through :func:`shipyard.run` with the same
parameters, except the data parameter (``data`` unless told), which names the
new rows. The flow's own gates (a champion/challenger comparison on a holdout
cut from the new rows, say) decide; a version that passes is registered as
``challenger`` and, unless told not to, promoted (approval rules apply: with
``require_approval`` the promotion waits for a reviewer).

Q: Why run the recorded source and not the flow file as it is today?
A: The version in production is the output of that exact source. Running
   today's file would mix the data change with whatever code changed since,
   and the gates could not tell which one they judge. A changed flow is a
   new run of its own (``shipyard.run``), not a retrain.

Q: Why read the flow's parameters from its source text?
A: Metaflow's Runner checks each value against the parameter's type and the
   run recorded every value as text; the source says the type (``type=`` or
   the default's), and which parameters exist, without importing the flow
   (importing runs whatever the file does at module level).
"""

from __future__ import annotations

import ast
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._core import audit, lineage
from .._core.errors import ModelNotFound, MonitoringError, ShipyardError
from .._core.hashing import sha256_text
from .._core.refs import ModelRef
from .._core.workspace import Workspace, current_workspace, slug

if TYPE_CHECKING:
    from ..flows import RunResult
    from ..promotion import Promotion
    from ..registry import ModelVersionRef

RETRAIN_DIR = "retrain"  # under the workspace root: the recorded flow sources, one folder per model


@dataclass(frozen=True)
class RetrainResult:
    """What a retrain did.

    Attributes:
        from_version: the version whose flow ran again (``name/version``).
        run: the new flow run.
        version: the version registered from it as ``challenger`` (None when its gates failed).
        promotion: the promotion of that version (None with ``promote=False`` or a failed gate).
        data: the absolute path of the data the flow was given.
        verdict: ``pass`` or ``fail``, the gate verdict of the new run.
    """

    from_version: str
    run: RunResult
    version: str | None
    promotion: Promotion | None
    data: str
    verdict: str

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def _repr_html_(self) -> str:
        colour = "green" if self.passed else "red"
        new = f"version <b>{self.version}</b> (challenger)" if self.version else "nothing registered"
        promoted = f" · promotion {self.promotion.status}" if self.promotion else ""
        return (
            f"Retrained <b>{self.from_version}</b> on <code>{self.data}</code>: "
            f"<span style='color:{colour}'>{self.verdict}</span> · {new}{promoted} · "
            f"MLflow run <code>{self.run.mlflow_run_id}</code>"
        )


@dataclass(frozen=True)
class _Param:
    name: str  # as the command line (and the Runner) spells it
    kind: str  # "int", "float", "bool", "str", or "" when the source does not say
    default: str | None  # str() of a literal default, as the run would have recorded it


@dataclass(frozen=True)
class _Recorded:
    flow: str
    source: str
    kind: str
    params: dict[str, str]
    import_dir: Path | None


def retrain(
    model: str,
    *,
    data: str | Path,
    alias: str = "champion",
    parameter: str = "data",
    promote: bool = True,
    reason: str | None = None,
    workspace: Workspace | None = None,
    **params: Any,
) -> RetrainResult:
    """Run the flow that made ``model@alias`` again on new data; register and promote what passes its gates.

    Args:
        model: a model name (its ``alias`` version is retrained) or a version reference
            (``name/3``, ``name@champion``).
        data: the new training data (a file path, given to the flow as ``parameter``).
        alias: the alias to retrain when ``model`` is a bare name.
        parameter: the flow ``Parameter`` that names the training data.
        promote: promote the new version when its gates pass (with required approvals it waits).
        reason: recorded with the alias moves; default: says what was retrained on what.
        **params: other flow parameters to change (the rest are as the version's run had them).

    Raises:
        MonitoringError: the data file is missing, the version has no recorded flow, or the flow
            has no ``parameter`` (the hint shows the line to add).
        ModelNotFound: no such model, version or alias.
        FlowFailed: a step of the new run failed.

    Example:
        >>> result = shipyard.retrain("churn", data="data/june.csv", promote=False)   # doctest: +SKIP
        >>> result.verdict, result.version                                           # doctest: +SKIP
        ('pass', '4')
    """
    from .. import registry
    from ..flows import run as run_flow

    path = Path(data).expanduser()
    if not path.is_file():
        raise MonitoringError(
            f"No data to retrain on at {path.resolve()}.",
            hint="Pass the path of an existing file (relative paths are read from the working directory).",
        )
    data_path = str(path.resolve())
    ws = _flow_workspace(workspace)
    version = registry.resolve(_reference(model, alias), workspace=ws)
    recorded = _recorded_flow(version, ws)
    declared = _flow_parameters(recorded.source, recorded.flow)
    if parameter not in declared and parameter not in {p.name for p in declared.values()}:
        raise MonitoringError(
            f"The flow {recorded.flow} that made {version} has no Parameter {parameter!r}, so it cannot be "
            "given new data.",
            hint=f'Add `{parameter} = Parameter("{parameter}", default="", help="training data (CSV path)")` '
            f"to class {recorded.flow} and read the rows from self.{parameter} when it is set; train and "
            "register it once, then retrain.",
        )
    run_params = _run_parameters(declared, recorded.params, {**params, parameter: data_path})
    reason = reason or f"retrained from {version} on {path.name}"
    audit.append(
        "retrain.started",
        workspace=ws,
        model=version.name,
        from_version=version.version,
        flow=recorded.flow,
        data=data_path,
        parameters=run_params,
    )
    flow_file = _write_source(ws, version.name, recorded)
    with _importable(recorded.import_dir):
        result = run_flow(flow_file, **run_params)
    _tag_run(ws, result.mlflow_run_id, version, data_path)
    verdict = "fail" if result.tags.get(lineage.GATE_VERDICT) == "fail" else "pass"
    new_version: ModelVersionRef | None = None
    promotion: Promotion | None = None
    if verdict == "pass":
        new_version = registry.register(
            version.name, result.mlflow_run_id, alias=registry.CHALLENGER, reason=reason, workspace=ws
        )
        registry.set_version_tags(
            new_version, {lineage.RETRAIN_FROM: str(version), lineage.RETRAIN_DATA: data_path}, workspace=ws
        )
        if promote:
            from ..promotion import promote as promote_version

            try:
                promotion = promote_version(str(new_version), reason=reason, workspace=ws)
            except ShipyardError as exc:  # the version stays challenger; the record says why it went no further
                _finished(ws, version, new_version, result.mlflow_run_id, verdict, f"failed: {type(exc).__name__}")
                raise
    _finished(ws, version, new_version, result.mlflow_run_id, verdict, promotion.status if promotion else None)
    return RetrainResult(
        from_version=str(version),
        run=result,
        version=new_version.version if new_version else None,
        promotion=promotion,
        data=data_path,
        verdict=verdict,
    )


def _finished(
    ws: Workspace,
    version: ModelVersionRef,
    new_version: ModelVersionRef | None,
    run_id: str,
    verdict: str,
    promotion: str | None,
) -> None:
    audit.append(
        "retrain.finished",
        workspace=ws,
        model=version.name,
        from_version=version.version,
        version=new_version.version if new_version else None,
        run=run_id,
        verdict=verdict,
        promotion=promotion,
    )


def _flow_workspace(workspace: Workspace | None) -> Workspace:
    """The workspace to retrain in: flows run in the default one, so a different one given is refused."""
    default = current_workspace()
    if workspace is not None and (workspace.root, workspace.tracking_uri) != (default.root, default.tracking_uri):
        raise MonitoringError(
            f"retrain was given the workspace at {workspace.root}, but flows run in the default one ({default.root}).",
            hint=f"Make it the default first: shipyard.init(project_dir={str(workspace.project_dir)!r}).",
        )
    return workspace or default


def _reference(model: str, alias: str) -> ModelRef:
    """``model`` as a reference; a bare name means its ``alias`` version."""
    try:
        return ModelRef.parse(model)
    except ModelNotFound:
        if "/" in model or "@" in model:
            raise
        return ModelRef(name=model.strip(), alias=alias)


def _recorded_flow(version: ModelVersionRef, ws: Workspace) -> _Recorded:
    """The flow source, name and parameters the version's run recorded."""
    from mlflow.exceptions import MlflowException

    from ..registry import lineage_of
    from ..tracking._client import client_for

    lin = lineage_of(version, workspace=ws)
    client = client_for(ws)
    try:
        run = client.get_run(lin.run_id) if lin.run_id else None
    except MlflowException as exc:
        raise MonitoringError(
            f"The run {lin.run_id} that made {version} cannot be read, so its flow cannot be run again: {exc}",
            hint="Retrain a version whose run is still in the tracking store.",
        ) from exc
    tags = dict(run.data.tags) if run else {}
    flow = tags.get(lineage.FLOW) or lin.pathspec.partition("/")[0]
    if run is None or not flow:
        raise MonitoringError(
            f"{version} was not made by a tracked flow (its run records no flow), so there is nothing to run again.",
            hint="Train it with a @shipyard.track flow through shipyard.run, register that run, then retrain.",
        )
    try:
        with tempfile.TemporaryDirectory(prefix="shipyard-retrain-") as tmp:
            source = Path(client.download_artifacts(lin.run_id, lineage.SOURCE_ARTIFACT, tmp)).read_text("utf-8")
    except (MlflowException, OSError) as exc:
        raise MonitoringError(
            f"The run {lin.run_id} of {version} has no flow source ({lineage.SOURCE_ARTIFACT}): {exc}",
            hint="Retrain a version trained by shipyard.run, which stores the flow source with its run.",
        ) from exc
    kind = tags.get(lineage.SOURCE_KIND, "file")
    origin = tags.get(lineage.NOTEBOOK) or tags.get(lineage.MLFLOW_SOURCE_NAME, "")
    import_dir = Path(origin).parent if origin and Path(origin).parent.is_dir() else None
    return _Recorded(flow, source, kind, dict(run.data.params), import_dir)


def _runnable_source(recorded: _Recorded) -> str:
    """The recorded source as a flow file: a notebook cell goes through the same rule ``shipyard.run`` applies."""
    if recorded.kind != "notebook-cell":
        return recorded.source
    from ..flows._cell import flow_script

    python = recorded.source
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:  # a cell without magics is Python already
        pass
    else:
        python = TransformerManager().transform_cell(python)
    return flow_script(python, recorded.flow).source


def _write_source(ws: Workspace, model: str, recorded: _Recorded) -> Path:
    source = _runnable_source(recorded)
    folder = ws.root / RETRAIN_DIR / slug(model)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{recorded.flow}_{sha256_text(source)[:12]}.py"
    if not path.is_file() or path.read_text(encoding="utf-8") != source:
        path.write_text(source, encoding="utf-8")
    return path


@contextmanager
def _importable(folder: Path | None) -> Iterator[None]:
    """The original flow's folder on the import path the steps get, for the helper modules it imports.

    ``shipyard.run`` hands the caller's ``sys.path`` to the step processes;
    the recorded source now lives in the workspace, away from its neighbours.
    """
    entry = str(folder) if folder is not None else None
    added = entry is not None and entry not in sys.path
    if added:
        sys.path.append(entry)  # type: ignore[arg-type]
    try:
        yield
    finally:
        if added:
            try:
                sys.path.remove(entry)  # type: ignore[arg-type]
            except ValueError:
                pass


def _flow_parameters(source: str, flow: str) -> dict[str, _Param]:
    """Attribute name → parameter of every ``Parameter`` the class ``flow`` declares in ``source``."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise MonitoringError(
            f"The recorded source of flow {flow} is not valid Python: {exc.msg} (line {exc.lineno})."
        ) from exc
    found: dict[str, _Param] = {}
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == flow):
        for stmt in cls.body:
            if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)):
                continue
            call = stmt.value
            if not (isinstance(call, ast.Call) and _called_name(call.func) == "Parameter"):
                continue
            found[stmt.targets[0].id] = _parameter(stmt.targets[0].id, call)
    return found


def _called_name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def _parameter(attribute: str, call: ast.Call) -> _Param:
    keywords = {k.arg: k.value for k in call.keywords if k.arg}
    name_node = call.args[0] if call.args else keywords.get("name")
    name = name_node.value if isinstance(name_node, ast.Constant) and isinstance(name_node.value, str) else attribute
    default_node = keywords.get("default")
    default = default_node.value if isinstance(default_node, ast.Constant) else None
    type_node = keywords.get("type")
    kind = type_node.id if isinstance(type_node, ast.Name) and type_node.id in {"int", "float", "bool", "str"} else ""
    if not kind and isinstance(default_node, ast.Constant) and default is not None:
        kind = type(default).__name__ if type(default) in (int, float, bool, str) else ""
    return _Param(name, kind, None if default is None else str(default))


def _run_parameters(
    declared: Mapping[str, _Param], recorded: Mapping[str, str], given: Mapping[str, Any]
) -> dict[str, Any]:
    """The parameters of the new run: the recorded ones (where they differ from the default), then ``given``."""
    by_name = {p.name: p for p in declared.values()}
    out: dict[str, Any] = {}
    for attribute, value in recorded.items():
        param = declared.get(attribute)
        if param is None or value == param.default or value == "None":
            continue  # the default gives the same value; a None was never given on a command line
        out[param.name] = _typed(param, value)
    for key, value in given.items():
        param = declared.get(key) or by_name.get(key)
        if param is None:
            raise MonitoringError(
                f"The recorded flow has no parameter {key!r} (it has: {', '.join(sorted(by_name)) or 'none'}).",
                hint="Pass only parameters the flow declares.",
            )
        out[param.name] = _typed(param, value) if isinstance(value, str) else value
    return out


def _typed(param: _Param, value: str) -> Any:
    """A recorded (text) value as the parameter's type, which Metaflow's Runner checks."""
    try:
        if param.kind == "int":
            return int(value)
        if param.kind == "float":
            return float(value)
    except ValueError as exc:
        raise MonitoringError(f"Parameter {param.name!r} needs a {param.kind}, not {value!r}.") from exc
    if param.kind == "bool":
        return value.strip().lower() in {"true", "1", "yes"}
    return value


def _tag_run(ws: Workspace, run_id: str, version: ModelVersionRef, data_path: str) -> None:
    """Write where the new run came from on the run itself, the record its version's lineage is read from."""
    from mlflow.exceptions import MlflowException

    from ..tracking._client import client_for, tracking_error

    client = client_for(ws)
    try:
        client.set_tag(run_id, lineage.RETRAIN_FROM, str(version))
        client.set_tag(run_id, lineage.RETRAIN_DATA, data_path)
    except MlflowException as exc:
        raise tracking_error(ws, exc) from exc
