"""The serving benchmark's load generator: a bounded closed loop on aiohttp, in a process of its own.

``bench/serving.py`` starts it once and sends it one JSON line per cell on stdin::

    {"url": ..., "body": "<json text>", "concurrency": 8, "warmup": 1.0, "seconds": 5.0,
     "meter": {"kind": "cgroup", "path": ".../cpuacct.usage", "proxy_pids": [...]} | {"kind": "tree", "pid": 1234}}

and reads one JSON line back per cell: requests and errors counted in the measurement
window, latency percentiles, the server's CPU seconds over the same window (read here, at
the window's edges, so the two figures cover the same interval), the CPU of the
``docker-proxy`` that carries a container's loopback traffic (it runs outside the
container's cgroup) and this process's own CPU.

Closed loop: ``concurrency`` tasks share one ``ClientSession`` (keep-alive,
``TCPConnector(limit=concurrency)``); each sends its next request when the previous one has
answered. A request counts in the window when it completes inside it. Any non-200 answer
or exception is an error, counted and sampled, never retried.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import aiohttp

# Each request is bounded, so a hung server ends the cell instead of the benchmark.
REQUEST_TIMEOUT_S = 30.0
ERROR_SAMPLES = 5


def server_cpu_seconds(meter: dict[str, Any]) -> float | None:
    """CPU the server's processes have used so far: its cgroup's ``cpuacct.usage`` or its process tree."""
    if meter["kind"] == "cgroup":
        with open(meter["path"]) as f:
            return int(f.read()) / 1e9
    import psutil

    try:
        root = psutil.Process(meter["pid"])
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return None
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:  # a process that ended takes its time with it; counted as lost
            pass
    return total


def proxy_cpu_seconds(meter: dict[str, Any]) -> float | None:
    if not meter.get("proxy_pids"):
        return None
    import psutil

    total = 0.0
    for pid in meter["proxy_pids"]:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            return None
    return total


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def run_cell(spec: dict[str, Any]) -> dict[str, Any]:
    url, body, concurrency = spec["url"], spec["body"].encode(), int(spec["concurrency"])
    headers = {"Content-Type": "application/json"}
    latencies: list[float] = []
    errors = 0
    error_samples: list[str] = []
    marks: dict[str, Any] = {}
    loop = time.perf_counter
    warm_end = loop() + float(spec["warmup"])
    end = warm_end + float(spec["seconds"])

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while True:
            started = loop()
            if started >= end:
                return
            ok, reason = False, ""
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    ok = resp.status == 200
                    reason = f"HTTP {resp.status}"
            except Exception as exc:  # every failure is a counted error, whatever raised it
                reason = f"{type(exc).__name__}: {exc}"[:200]
            done = loop()
            if warm_end <= done < end:
                if ok:
                    latencies.append(done - started)
                else:
                    errors += 1
                    if len(error_samples) < ERROR_SAMPLES:
                        error_samples.append(reason)
            elif not ok and done < warm_end:
                marks["warmup_errors"] = marks.get("warmup_errors", 0) + 1

    async def meter_at_window_edges() -> None:
        await asyncio.sleep(max(0.0, warm_end - loop()))
        meter = spec["meter"]
        marks["cpu0"], marks["proxy0"] = server_cpu_seconds(meter), proxy_cpu_seconds(meter)
        marks["self0"], marks["t0"] = time.process_time(), loop()
        await asyncio.sleep(max(0.0, end - loop()))
        marks["cpu1"], marks["proxy1"] = server_cpu_seconds(meter), proxy_cpu_seconds(meter)
        marks["self1"], marks["t1"] = time.process_time(), loop()

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(meter_at_window_edges(), *(worker(session) for _ in range(concurrency)))

    latencies.sort()
    window = marks["t1"] - marks["t0"]
    cpu = None if marks["cpu0"] is None or marks["cpu1"] is None else marks["cpu1"] - marks["cpu0"]
    proxy = None if marks["proxy0"] is None or marks["proxy1"] is None else marks["proxy1"] - marks["proxy0"]
    return {
        "requests": len(latencies),
        "errors": errors,
        "error_samples": error_samples,
        "warmup_errors": marks.get("warmup_errors", 0),
        "window_s": window,
        "rps": len(latencies) / window,
        "p50_ms": None if not latencies else percentile(latencies, 0.50) * 1000,
        "p90_ms": None if not latencies else percentile(latencies, 0.90) * 1000,
        "p99_ms": None if not latencies else percentile(latencies, 0.99) * 1000,
        "max_ms": None if not latencies else latencies[-1] * 1000,
        "server_cpu_s": cpu,
        "proxy_cpu_s": proxy,
        "loadgen_cpu_s": marks["self1"] - marks["self0"],
    }


def main() -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        spec = json.loads(line)
        try:
            result = asyncio.run(run_cell(spec))
        except Exception as exc:  # the orchestrator reports it; this process stays up for the next cell
            result = {"failed": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
