"""A tracked flow for scheduling on Argo Workflows: one step asks for resources, one runs on Kubernetes
with settings of its own, one sets an environment variable of its own."""

from metaflow import FlowSpec, Parameter, environment, kubernetes, resources, step

import shipyard


@shipyard.track
class ScheduledFlow(FlowSpec):
    data = Parameter("data", default="", help="CSV of training rows; empty: the flow makes its own")

    @step
    def start(self):
        self.rows = 100
        self.next(self.train)

    @resources(cpu=2, memory=6144)
    @step
    def train(self):
        shipyard.log_metric("accuracy", 0.9)
        self.next(self.report)

    @kubernetes(cpu=3, memory=2048)
    @step
    def report(self):
        self.next(self.end)

    @environment(vars={"FLOW_OWN": "kept", "SHIPYARD_EXPERIMENT": "from-the-step"})
    @step
    def end(self):
        pass


if __name__ == "__main__":
    ScheduledFlow()
