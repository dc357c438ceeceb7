"""Shipyard decorators on Metaflow flows and steps, built on Metaflow's user-decorator API.

The decorators only record a spec (the experiment name); the behaviour lives
in :mod:`shipyard.flows._hooks`, which Metaflow's runtime calls around each step.
"""

from __future__ import annotations

import inspect
from typing import Any, TypeVar, overload

from metaflow import FlowMutator, UserStepDecorator

from .._core.errors import FlowError
from . import _hooks

T = TypeVar("T")


class ShipyardStep(UserStepDecorator):
    """Tracks one step: attaches the MLflow run, makes every metric durable at step end."""

    def init(self, *args: Any, **kwargs: Any) -> None:
        self.experiment: str | None = kwargs.get("experiment")
        self.card: dict[str, str] | None = kwargs.get("card")

    def pre_step(self, step_name: str, flow: Any, inputs: Any = None) -> None:
        self._session = _hooks.step_started(step_name, flow, inputs, self.experiment, self.card)
        return None

    def post_step(self, step_name: str, flow: Any, exception: Exception | None = None) -> Any:
        _hooks.step_finished(self._session, exception)
        return (exception, None) if exception is not None else (None, None)


class ShipyardFlow(FlowMutator):
    """Adds :class:`ShipyardStep` to every step of the flow."""

    def init(self, *args: Any, **kwargs: Any) -> None:
        self.experiment: str | None = kwargs.get("experiment")
        self.card: dict[str, str] | None = kwargs.get("card")

    def mutate(self, mutable_flow: Any) -> None:
        card = _hooks.card_wanted()
        for _, mutable_step in mutable_flow.steps:
            specs = list(mutable_step.decorator_specs)
            # a step's own @shipyard.track (with its own experiment) wins over the flow's
            tracked = any(fq_name == ShipyardStep.decorator_name for _, fq_name, _, _ in specs)
            if not tracked:
                mutable_step.add_decorator(ShipyardStep, deco_kwargs={"experiment": self.experiment, "card": self.card})
            # the metaflow-shipyard extension's card, unless the step asks for it itself
            carded = any(name == "card" and kwargs.get("type") == _hooks.CARD_TYPE for name, _, _, kwargs in specs)
            if card and not carded:
                mutable_step.add_decorator("card", deco_kwargs={"type": _hooks.CARD_TYPE})


@overload
def track(obj: T) -> T: ...
@overload
def track(*, experiment: str | None = None, card: dict[str, str] | None = None) -> Any: ...
def track(obj: Any = None, *, experiment: str | None = None, card: dict[str, str] | None = None) -> Any:
    """Track a Metaflow flow (every step) or a single step in MLflow.

    One MLflow run per Metaflow run; Metaflow parameters become MLflow params;
    lineage (pathspec, source hash, git commit, Python, package lock) is
    recorded; metrics logged in any step are durable when the step ends.

    Works as ``@shipyard.track`` and ``@shipyard.track(experiment="churn")``,
    above ``class MyFlow(FlowSpec)`` or above ``@step``.

    ``card`` declares the model card's own sections, Markdown by section name
    (``{"intended_use": "...", "limitations": "..."}``); it is recorded on the
    run, with a ``MODEL_CARD.md`` next to the flow file, for
    :func:`shipyard.model_card`.

    Example:
        >>> @shipyard.track                                   # doctest: +SKIP
        ... class TrainFlow(FlowSpec):
        ...     @step
        ...     def start(self):
        ...         shipyard.log_metric("loss", 0.5)
        ...         self.next(self.end)
    """
    card = _card_spec(card)
    if obj is None:
        return lambda target: track(target, experiment=experiment, card=card)
    if inspect.isclass(obj):
        return ShipyardFlow(experiment=experiment, card=card)(obj)
    if callable(obj):
        return ShipyardStep(experiment=experiment, card=card)(obj)
    raise FlowError(
        f"@shipyard.track decorates a FlowSpec class or a @step function, not {obj!r}.",
        hint="Put it above `class MyFlow(FlowSpec):` or above a `@step` method.",
    )


def _card_spec(card: Any) -> dict[str, str] | None:
    """``card=`` checked when the flow is declared, not when a run is already under way."""
    if card is None:
        return None
    if not isinstance(card, dict) or not all(isinstance(k, str) and k and isinstance(v, str) for k, v in card.items()):
        raise FlowError(
            f"@shipyard.track(card=...) takes section name -> Markdown text, not {card!r}.",
            hint='e.g. card={"intended_use": "Ranking support tickets", "limitations": "English text only"}.',
        )
    return dict(card)
