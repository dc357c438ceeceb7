"""The card type Metaflow finds: what a tracked step shows in the Metaflow UI, and how it stays current.

Q: Where does the card's data come from?
A: From the step's own process. While a tracked step runs, shipyard's step hooks
   call :meth:`ShipyardCard.collect` every few seconds and hand the result to
   Metaflow (``refresh``); Metaflow then draws the card in a separate process
   (``render_runtime`` while the step runs, ``render`` once it has ended) with
   that data. The step's process has MLflow loaded already; the drawing process
   then needs only matplotlib, about two seconds less per card. A card on a step
   shipyard does not track has no data handed over: it reads the run itself.
"""

from __future__ import annotations

from typing import Any

from metaflow.cards import MetaflowCard


class ShipyardCard(MetaflowCard):
    """A tracked step's metric charts, gate verdicts with reasons, registered versions with aliases, and lineage.

    Example:
        >>> @card(type="shipyard")     # doctest: +SKIP
        ... @step
        ... def train(self): ...
    """

    type = "shipyard"
    RUNTIME_UPDATABLE = True
    # a user's current.card.append goes to their own card, not into this one
    ALLOW_USER_COMPONENTS = False
    # data is only handed over when it changed, so every new runtime card is worth reloading
    RELOAD_POLICY = MetaflowCard.RELOAD_POLICY_ALWAYS

    def __init__(self, options: dict[str, Any] | None = None, components: Any = None, graph: Any = None,
                 flow: Any = None, **kwargs: Any) -> None:
        self.options = dict(options or {})

    @staticmethod
    def collect(run_id: str, workspace: Any = None) -> dict[str, Any]:
        """What the card shows about MLflow run ``run_id``, as JSON-ready data (see :mod:`._snapshot`)."""
        from ._snapshot import collect

        return collect(run_id, workspace)

    def render(self, task: Any) -> str:
        return self._page(task, self.runtime_data, final=True)

    def render_runtime(self, task: Any, data: Any) -> str:
        return self._page(task, data, final=False)

    def refresh(self, task: Any, data: Any) -> dict[str, Any]:
        from ._snapshot import summary

        return summary((data or {}).get("user") or {})

    def _page(self, task: Any, data: Any, *, final: bool) -> str:
        from ._html import page
        from ._snapshot import collect_for_task

        snapshot = (data or {}).get("user") or collect_for_task(task, final=final)
        return page(snapshot, task.pathspec, final=final, reload_token=self.RELOAD_POLICY_TOKEN)
