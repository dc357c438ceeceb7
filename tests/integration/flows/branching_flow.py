"""A multi-step flow (branch + join) with a parameter, used by the integration tests."""

from metaflow import FlowSpec, Parameter, step

import shipyard


@shipyard.track
class BranchingFlow(FlowSpec):
    points = Parameter("points", default=100, type=int)
    fail_in = Parameter("fail_in", default="", help="name of the step that raises")

    @step
    def start(self):
        for i in range(self.points):
            shipyard.log_metric("loss", 1.0 / (i + 1))
        shipyard.log_params(optimizer="sgd")
        self.next(self.left, self.right)

    @step
    def left(self):
        shipyard.log_metric("left_score", 0.25)
        self.next(self.join)

    @step
    def right(self):
        for i in range(self.points):
            shipyard.log_metric("right_progress", float(i), step=i)
        if self.fail_in == "right":
            raise ValueError(f"right step gave up after {self.points} points")
        self.next(self.join)

    @step
    def join(self, inputs):
        self.merge_artifacts(inputs)
        self.answer = 42
        self.next(self.end)

    @step
    def end(self):
        shipyard.log_metric("final_accuracy", 0.93)


if __name__ == "__main__":
    BranchingFlow()
