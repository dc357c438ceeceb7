"""A tracked flow whose train step logs for a while, is gated, and whose end step registers the model.

With ``--watch-card`` the train step waits, between two bursts of metrics, for
the card Metaflow draws while it runs, and keeps what that card said.
"""

import time

import shipyard
from metaflow import FlowSpec, Parameter, current, step
from shipyard.gates import threshold


@shipyard.track
class CardedFlow(FlowSpec):
    watch_card = Parameter("watch-card", default=False, type=bool)
    model_name = Parameter("model-name", default="iris-card")

    @step
    def start(self):
        self.next(self.train)

    @shipyard.gate(
        threshold("val/accuracy >= 0.8", source="logged"),
        threshold("train/loss <= 0.001", source="logged", blocking=False),
        holdout=None,
    )
    @step
    def train(self):
        # the first burst before anything slow: the card drawn while the step runs holds all of it
        for i in range(20):
            shipyard.log_metric("train/loss", 1.0 / (i + 1), step=i)
            shipyard.log_metric("val/accuracy", 0.5 + i / 50, step=i)
        self.runtime_card = self._runtime_card() if self.watch_card else None
        for i in range(20, 40):
            shipyard.log_metric("train/loss", 1.0 / (i + 1), step=i)
            shipyard.log_metric("val/accuracy", 0.88 + (i - 19) / 1000, step=i)
        from sklearn.datasets import load_iris
        from sklearn.linear_model import LogisticRegression

        X, y = load_iris(return_X_y=True, as_frame=True)
        model = LogisticRegression(max_iter=300).fit(X, y)
        shipyard.log_metric("accuracy", model.score(X, y))
        shipyard.log_model(model, name="model", input_example=X.head(3))
        self.next(self.end)

    def _runtime_card(self):
        """The HTML of the first card Metaflow drew while this step ran (None after 60 s without one)."""
        from metaflow.cards import get_cards
        from metaflow.plugins.cards.exception import CardNotPresentException

        shipyard.flush()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                return get_cards(current.pathspec, type="shipyard")[0].get()
            except CardNotPresentException:
                time.sleep(0.5)
        return None

    @step
    def end(self):
        from shipyard import registry

        version = registry.register(self.model_name, shipyard.active_run_id(), alias="challenger")
        registry.set_alias(self.model_name, "candidate", version.version, reason="card test")
        self.version = version.version


if __name__ == "__main__":
    CardedFlow()
