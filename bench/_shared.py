"""What the benchmarks share: frames of the column kinds tabular teams log, and the table they print."""

from __future__ import annotations

from typing import Any

WORDS = ["red", "green", "blue", "cyan", "magenta", "yellow"]


def mixed_frame(rows: int, seed: int = 0) -> Any:
    """21 columns of the kinds tabular teams log, each with missing values where its dtype allows."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    words = np.array(WORDS, dtype=object)
    cols = {}
    for i in range(6):
        values = rng.normal(size=rows)
        values[rng.random(rows) < 0.05] = np.nan
        cols[f"float{i}"] = values
    for i in range(4):
        cols[f"int{i}"] = rng.integers(0, 1000, rows)
    for i in range(2):
        cols[f"bool{i}"] = rng.random(rows) < 0.5
    for i in range(3):
        text = words[rng.integers(0, len(words), rows)]
        text[rng.random(rows) < 0.03] = None
        cols[f"text{i}"] = pd.Series(text, dtype=object)
    for i in range(2):
        cols[f"category{i}"] = pd.Series(pd.Categorical(words[rng.integers(0, 4, rows)])).where(rng.random(rows) > 0.02)
    for i in range(2):
        stamps = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 10**6, rows), unit="s")
        cols[f"date{i}"] = pd.Series(stamps).where(rng.random(rows) > 0.01)
    cols["count"] = pd.Series(rng.integers(0, 50, rows), dtype="Int64").where(rng.random(rows) > 0.1)
    cols["label"] = pd.Series(words[rng.integers(0, 6, rows)], dtype="string")
    return pd.DataFrame(cols)


def print_aligned(lines: list[list[str]]) -> None:
    """``lines`` (the header first) as columns padded to their widest cell, a rule under the header."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for n, line in enumerate(lines):
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))
