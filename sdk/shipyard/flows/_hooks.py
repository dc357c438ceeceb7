"""What happens around every tracked step. The decorators only point here.

Q: Why does the ``start`` step create the MLflow run, not the runner?
A: A flow can be started in many ways (``shipyard.run``, ``python flow.py
   run``, Argo, Kubernetes). ``start`` runs exactly once per Metaflow run and
   before every other step, so every way of starting gets one MLflow run.
   Its id travels to later steps as the ``_shipyard_run_id`` artifact.
"""

from __future__ import annotations

import inspect
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import Any

from .._core import lineage
from .._core.workspace import current_workspace
from ..tracking import _context, _runs
from ._metaflow import flow_parameters, run_in_any_namespace

RUN_ID_ARTIFACT = "_shipyard_run_id"
CARD_TYPE = "shipyard"
"""The Metaflow card type of the metaflow-shipyard extension; ``@shipyard.track`` attaches it when installed."""
CARD_REFRESH_SECONDS = 5.0  # @card's default refresh_interval: Metaflow drops refreshes closer together

StepEndHook = Callable[["StepEnd"], None]
_step_end_hooks: list[StepEndHook] = []


@dataclass(frozen=True)
class StepEnd:
    """What a step-end hook sees: the step, its flow object, and the run it logged into."""

    step_name: str
    flow: Any
    step_function: Any
    run_id: str
    workspace: Any
    exception: BaseException | None


def register_step_end_hook(hook: StepEndHook) -> None:
    """Call ``hook`` at the end of every tracked step, after its metrics are durable.

    Higher layers (gates) plug in here, so this layer never imports them.
    A hook that raises fails the step with that error.
    """
    if hook not in _step_end_hooks:
        _step_end_hooks.append(hook)


@dataclass
class StepSession:
    step_name: str
    flow: Any
    active: _context.ActiveRun
    started: float
    card: CardFeed | None = None


def step_started(
    step_name: str, flow: Any, inputs: Any, experiment: str | None, card: dict[str, str] | None = None
) -> StepSession:
    from metaflow import current

    ws = current_workspace()
    pathspec = f"{current.flow_name}/{current.run_id}"
    run_id = _inherited_run_id(flow, inputs)
    if run_id is None and step_name == "start":
        run_id = _runs.create_flow_run(
            ws,
            flow_name=current.flow_name,
            pathspec=pathspec,
            source_file=Path(inspect.getfile(type(flow))).resolve(),
            experiment=experiment,
            params=_flow_parameters(flow),
            card=card,
        )
        _tag_metaflow_run(pathspec, run_id)
    elif run_id is None:
        run_id = _runs.find_flow_run(ws, pathspec) or _runs.create_flow_run(
            ws,
            flow_name=current.flow_name,
            pathspec=pathspec,
            source_file=Path(inspect.getfile(type(flow))).resolve(),
            experiment=experiment,
            params=_flow_parameters(flow),
            card=card,
        )
    setattr(flow, RUN_ID_ARTIFACT, run_id)
    active = _context.attach(ws, run_id)
    return StepSession(step_name, flow, active, time.monotonic(), CardFeed.start(run_id, ws))


def step_finished(session: StepSession, exception: BaseException | None) -> None:
    try:
        _finish_step(session, exception)
    finally:
        if session.card is not None:
            session.card.finish()


def _finish_step(session: StepSession, exception: BaseException | None) -> None:
    from metaflow import current

    active = session.active
    ws = active.workspace
    tags = {
        lineage.step_tag(session.step_name, "status"): "failed" if exception else "ok",
        lineage.step_tag(session.step_name, "task"): current.pathspec or "",
        lineage.step_tag(session.step_name, "seconds"): f"{time.monotonic() - session.started:.3f}",
    }
    if exception is not None:
        tags[lineage.ERROR_STEP] = session.step_name
        tags[lineage.ERROR_CAUSE] = f"{type(exception).__name__}: {exception}"[:5000]
    active.buffer.put_tags(tags)
    try:
        if not active.buffer.flush(ws.settings.flush_timeout).spooled_batches:
            step_function = getattr(type(session.flow), session.step_name, None)
            end = StepEnd(session.step_name, session.flow, step_function, active.run_id, ws, exception)
            for hook in _step_end_hooks:
                hook(end)
        result = active.close()
    finally:
        _context.detach(active)
    if result.spooled_batches:
        print(
            f"shipyard: the tracker at {ws.tracking_uri} is unreachable; {result.spooled_batches} batches are "
            f"safe in {active.buffer.spool.directory} and will be replayed (or run `shipyard sync`).",
            file=sys.stderr,
        )
        return
    if exception is not None:
        _runs.finish_run(ws, active.run_id, "FAILED")
    elif session.step_name == "end":
        _runs.finish_run(ws, active.run_id, "FINISHED")


def _inherited_run_id(flow: Any, inputs: Any) -> str | None:
    run_id = getattr(flow, RUN_ID_ARTIFACT, None)
    if run_id is None and inputs:
        for inp in inputs:  # a join step: every branch carries the same id
            run_id = getattr(inp, RUN_ID_ARTIFACT, None)
            if run_id:
                break
    return run_id


def _flow_parameters(flow: Any) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, _ in flow_parameters(flow):
        try:
            params[name] = str(getattr(flow, name))
        except Exception:  # a parameter whose value cannot be read is not worth failing a run for
            continue
    return params


def _tag_metaflow_run(pathspec: str, run_id: str) -> None:
    """Write the MLflow run id onto the Metaflow run, so the link goes both ways."""
    try:
        run_in_any_namespace(pathspec).add_tag(f"{lineage.MLFLOW_RUN_TAG}:{run_id}")
    except Exception as exc:  # the artifact still links the runs; say why the tag is missing
        print(f"shipyard: could not tag Metaflow run {pathspec}: {exc}", file=sys.stderr)


def card_wanted() -> bool:
    """True when tracked steps get the ``shipyard`` card: the extension is installed and ``metaflow_card`` is on.

    Asked when the flow class is mutated, in every process that loads the flow;
    outside a project there is no setting to read, and the step itself will
    stop at its start with :class:`~shipyard.NoProject`, so no card is added.
    """
    from .._core.errors import ShipyardError

    try:
        wanted = current_workspace().settings.metaflow_card
    except ShipyardError:
        return False
    return wanted and card_installed()


def card_installed() -> bool:
    """True when Metaflow knows the ``shipyard`` card type, i.e. the metaflow-shipyard extension is installed.

    Q: Why ask Metaflow's list of card types?
    A: Metaflow loads every extension's card types when it is imported, so the
       answer costs nothing, and it is the list ``@card`` resolves types from.
    """
    return _card_class() is not None


def _card_class() -> Any:
    from metaflow.plugins import CARDS

    return next((card for card in CARDS if getattr(card, "type", None) == CARD_TYPE), None)


class CardFeed:
    """Hands what a step's ``shipyard`` card shows to Metaflow while the step runs, and once more at its end.

    Q: Why a thread of its own, and not the metric writer?
    A: Every hand-over makes Metaflow start a process that draws the card, so it
       happens at most once per the card's ``refresh_interval`` (5 s) and only
       when something changed; a step shorter than that gets only its final
       card. The data is read from MLflow (metrics, gates, versions), which the
       metric writer must not wait for.

    Q: Why can a card never fail the step?
    A: Metaflow cards are best-effort: a card that cannot be drawn must not cost
       the run. A failure to collect is printed and shown on the card itself
       (``error``), so a test reading the card sees it.
    """

    def __init__(self, managers: list[Any], collect: Callable[..., dict[str, Any]], run_id: str, ws: Any,
                 interval: float) -> None:
        self._managers, self._collect, self._run_id, self._ws = managers, collect, run_id, ws
        self._interval = interval
        self._sent: Any = None
        self._warned = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="shipyard-card", daemon=True)

    @classmethod
    def start(cls, run_id: str, ws: Any) -> CardFeed | None:
        """The feed of the running step's ``shipyard`` cards, started; None when the step has none."""
        from metaflow import current

        # current.card exists only in a step with a @card
        managers = list(current.card.get(type=CARD_TYPE)) if hasattr(current, "card") else []
        card = _card_class() if managers else None
        if card is None:
            return None
        try:
            _cards_beside_datastore()
        except OSError as exc:  # the card is still drawn; only get_cards will not find it
            print(f"shipyard: cannot link the Metaflow cards into the workspace's datastore: {exc}", file=sys.stderr)
        feed = cls(managers, card.collect, run_id, ws, CARD_REFRESH_SECONDS)
        feed._thread.start()
        return feed

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._send(final=False)

    def finish(self) -> None:
        """Stop the updates and leave the final data for the card Metaflow draws when the task ends."""
        self._stop.set()
        self._thread.join(timeout=60)
        self._send(final=True)

    def _send(self, *, final: bool) -> None:
        try:
            data = self._collect(self._run_id, self._ws)
        except Exception as exc:
            data = {"version": 1, "origin": "step", "error": f"shipyard could not read run {self._run_id}: "
                    f"{type(exc).__name__}: {exc}"}
            if not self._warned:
                print(f"shipyard: the Metaflow card could not be updated: {data['error']}", file=sys.stderr)
                self._warned = True
        unchanged = {k: v for k, v in data.items() if k != "collected_at"}
        if unchanged == self._sent and not final:
            return
        self._sent = unchanged
        for manager in self._managers:
            try:
                if final:
                    _hand_over(manager, data)
                else:
                    manager.refresh(data, force=True)
            except Exception as exc:  # best-effort, as Metaflow's own card calls are
                print(f"shipyard: Metaflow refused the card update: {type(exc).__name__}: {exc}", file=sys.stderr)


def _cards_beside_datastore() -> None:
    """Let Metaflow's card readers find the cards of a run in the workspace's datastore.

    Q: Why is this needed?
    A: A local card is written under the first ``.metaflow`` folder above the
       working directory (``<project>/.metaflow/mf.cards``), but ``get_cards``
       reads it under the datastore root the task's metadata records, which for
       a workspace is ``.shipyard/metaflow/.metaflow/mf.cards``. Setting
       ``METAFLOW_CARD_LOCALROOT`` does not join them: with it set, Metaflow
       2.19's ``CardDatastore.get_storage_root`` returns None and the card is
       written into the datastore root itself, where no reader looks. A link
       from where readers look to where cards are written joins the two; it is
       made once per workspace.
    """
    import os

    root = os.environ.get("METAFLOW_DATASTORE_SYSROOT_LOCAL")
    if not root or os.environ.get("METAFLOW_CARD_LOCALROOT"):
        return
    from metaflow.metaflow_config import CARD_SUFFIX, DATASTORE_LOCAL_DIR
    from metaflow.plugins.cards.card_datastore import CardDatastore

    read_from = Path(root, DATASTORE_LOCAL_DIR, CARD_SUFFIX)
    written_to = Path(CardDatastore.get_storage_root("local"))
    if os.path.lexists(read_from) or read_from.resolve() == written_to.resolve():
        return
    written_to.mkdir(parents=True, exist_ok=True)
    read_from.parent.mkdir(parents=True, exist_ok=True)
    try:
        read_from.symlink_to(written_to.resolve(), target_is_directory=True)
    except FileExistsError:  # a parallel task (foreach) made it first
        pass


def _hand_over(manager: Any, data: dict[str, Any]) -> None:
    """Leave ``data`` for the final card without drawing a runtime card first.

    Q: Why set Metaflow's private attribute instead of calling ``refresh``?
    A: The final card Metaflow draws when the task ends reads the data last
       given to ``refresh``, but ``refresh`` also starts a drawing process
       whenever its rate limit allows; the task's end then waits for that
       process, only to replace its card a moment later. Without the attribute
       (another Metaflow), ``refresh`` is the public way.
    """
    if hasattr(manager, "_latest_user_data"):
        manager._latest_user_data = data  # see above
    else:
        manager.refresh(data)

