"""``@shipyard.gate`` on a flow step: the decorator records a spec, a step-end hook evaluates it.

Q: Why is the hook registered by the decorator and not when this package is imported?
A: Registering needs :mod:`shipyard.flows`, which imports Metaflow (half a
   second). ``import shipyard.gates`` stays cheap for notebooks and the CLI;
   a flow file that uses ``@shipyard.gate`` imports Metaflow anyway, and the
   decorator runs in every process that runs its steps. If the flows layer is
   already loaded, importing this package registers the hook at once.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from .._core.errors import GateError
from ._specs import SPEC_TYPES, GateSpec

GATES_ATTR = "__shipyard_gates__"
FLOW_GATES_ARTIFACT = "gates"


@dataclass(frozen=True)
class StepGates:
    """What ``@shipyard.gate`` recorded on a step.

    Attributes:
        gates: the gate specs; empty means "read them from the step's ``self.gates``".
        holdout: name of the flow artifact holding the holdout DataFrame (None: no holdout).
        target: target column of the holdout.
        model: name the step logged its model under.
        model_name: registered model whose champion to compare with.
        datasets: names of flow artifacts that data contracts check (besides the holdout).
        on_fail: ``"record"`` keeps the flow going with the verdict recorded; ``"stop"`` fails the step.
    """

    gates: tuple[GateSpec, ...] = ()
    holdout: str | None = "holdout"
    target: str = "target"
    model: str = "model"
    model_name: str | None = None
    datasets: tuple[str, ...] = ()
    on_fail: Literal["record", "stop"] = "record"


def gate(
    *gates: Any,
    holdout: str | None = "holdout",
    target: str = "target",
    model: str = "model",
    model_name: str | None = None,
    datasets: tuple[str, ...] | list[str] = (),
    on_fail: Literal["record", "stop"] = "record",
) -> Any:
    """Declare gates on a flow step; they are evaluated when the step ends, after its metrics are durable.

    ``@shipyard.gate(g1, g2, ...)`` declares the gates; bare ``@shipyard.gate``
    evaluates the list the step assigns to ``self.gates``. The step's holdout
    set is read from the flow artifact named by ``holdout``. The verdict is
    recorded like :func:`shipyard.check`'s; ``on_fail="stop"`` also fails the
    step when a blocking gate fails. The decorator itself only records a spec.

    Example:
        >>> @shipyard.gate(threshold("accuracy >= 0.9"), model_name="iris")   # doctest: +SKIP
        ... @step
        ... def train(self):
        ...     ...
        ...     self.holdout = test_df
        ...     self.next(self.end)
    """
    if on_fail not in ("record", "stop"):
        raise GateError(f"@shipyard.gate: on_fail must be 'record' or 'stop', not {on_fail!r}.")
    if len(gates) == 1 and callable(gates[0]) and type(gates[0]) not in SPEC_TYPES.values():
        return _attach(gates[0], StepGates())
    for spec in gates:
        if type(spec) not in SPEC_TYPES.values():
            raise GateError(
                f"@shipyard.gate got {spec!r}, which is not a gate.",
                hint="Pass gates built with shipyard.gates.threshold(), champion_challenger(), data_contract(), "
                "slice_parity() or custom(fn).",
            )
    declared = StepGates(tuple(gates), holdout, target, model, model_name, tuple(datasets), on_fail)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        return _attach(fn, declared)

    return decorate


def _attach(fn: Any, declared: StepGates) -> Any:
    existing: StepGates | None = getattr(fn, GATES_ATTR, None)
    if existing is not None:
        declared = StepGates(existing.gates + declared.gates, *_settings(declared))
    try:
        setattr(fn, GATES_ATTR, declared)
    except AttributeError as exc:
        raise GateError(
            f"@shipyard.gate cannot mark {fn!r}.", hint="Put @shipyard.gate directly above or below @step."
        ) from exc
    ensure_hook()
    return fn


def _settings(s: StepGates) -> tuple[Any, ...]:
    return (s.holdout, s.target, s.model, s.model_name, s.datasets, s.on_fail)


def find_step_gates(step_function: Any) -> StepGates | None:
    """The :class:`StepGates` recorded on a step function, looking through wrappers."""
    from ..flows._metaflow import decorated_step

    seen = 0
    current = step_function
    while current is not None and seen < 8:
        found = getattr(current, GATES_ATTR, None)
        if isinstance(found, StepGates):
            return found
        current = getattr(current, "__wrapped__", None) or decorated_step(current)
        seen += 1
    return None


def on_step_end(end: Any) -> None:
    """Step-end hook: evaluate the gates declared on the step and record the report."""
    if end.exception is not None:
        return
    declared = find_step_gates(end.step_function)
    if declared is None:
        return
    from ._check import check

    specs = declared.gates or tuple(getattr(end.flow, FLOW_GATES_ARTIFACT, None) or ())
    if not specs:
        raise GateError(
            f"Step {end.step_name!r} is marked @shipyard.gate but declares no gates.",
            hint="Pass gates to the decorator, or assign a list of gates to self.gates in the step.",
        )
    holdout = None
    if declared.holdout is not None:
        holdout = getattr(end.flow, declared.holdout, None)
    datasets: dict[str, Any] = {}
    for name in declared.datasets:
        if not hasattr(end.flow, name):
            raise GateError(
                f"Step {end.step_name!r}: @shipyard.gate reads the dataset artifact self.{name}, "
                "which the step did not set.",
                hint=f"Assign self.{name} = <DataFrame> in the step, or remove it from datasets=.",
            )
        datasets[name] = getattr(end.flow, name)
    report = check(
        end.run_id,
        list(specs),
        holdout,
        target=declared.target,
        datasets=datasets,
        model=declared.model,
        model_name=declared.model_name,
        workspace=end.workspace,
    )
    print(f"shipyard gates after step {end.step_name}:\n{report.summary()}", file=sys.stderr)
    if declared.on_fail == "stop":
        report.raise_for_verdict()


_registered = False


def ensure_hook() -> None:
    """Register :func:`on_step_end` with the flows layer (once per process)."""
    global _registered
    if _registered:
        return
    from ..flows._hooks import register_step_end_hook

    register_step_end_hook(on_step_end)
    _registered = True


if "shipyard.flows._hooks" in sys.modules:
    ensure_hook()
