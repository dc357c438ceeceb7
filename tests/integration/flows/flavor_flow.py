"""Trains and logs one model of the flavor its parameter names, on a frame with string categories."""

from metaflow import FlowSpec, Parameter, step

import shipyard
from shipyard.gates import threshold


@shipyard.track
class FlavorFlow(FlowSpec):
    flavor = Parameter("flavor", default="sklearn")

    @shipyard.gate(threshold("holdout_rows >= 100"))
    @step
    def start(self):
        from flavor_features import split, train

        X, y, holdout_X, holdout_y = split()
        model, example = train(self.flavor, X, y)
        shipyard.log_model(model, name="model", input_example=example)
        shipyard.log_metric("holdout_rows", len(holdout_X))
        self.holdout = holdout_X.assign(target=holdout_y.to_numpy())
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    FlavorFlow()
