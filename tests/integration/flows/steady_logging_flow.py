"""Logs a steady stream of metric points, long enough to lose the tracker on the way."""

import time

from metaflow import FlowSpec, Parameter, step

import shipyard


@shipyard.track
class SteadyLoggingFlow(FlowSpec):
    points = Parameter("points", default=1500, type=int)
    seconds = Parameter("seconds", default=12.0, type=float)

    @step
    def start(self):
        pause = self.seconds / self.points
        for i in range(self.points):
            shipyard.log_metric("train/loss", 1.0 / (i + 1), step=i)
            time.sleep(pause)
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    SteadyLoggingFlow()
