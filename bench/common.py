"""Shared pieces of the benchmark: figures, percentiles, timing and process helpers."""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def figure(
    name: str,
    value: float | None,
    baseline: float | None,
    unit: str,
    goal: str,
    met: bool | None,
    notes: str = "",
    ratio: float | None = None,
) -> dict[str, Any]:
    """One row of the report. `ratio` defaults to value / baseline; `met` None marks an
    informational row (no goal is judged on it)."""
    if ratio is None and value is not None and baseline:
        ratio = value / baseline
    return {
        "name": name,
        "value": _round(value),
        "baseline": _round(baseline),
        "ratio": _round(ratio),
        "unit": unit,
        "goal": goal,
        "met": None if met is None else bool(met),
        "notes": notes,
    }


def failed(name: str, unit: str, goal: str, error: BaseException | str) -> dict[str, Any]:
    """A figure that could not be measured: reported, never silently dropped."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return figure(name, None, None, unit, goal, False, f"NOT MEASURED: {text}"[:600])


def _round(x: float | None) -> float | None:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    if abs(x) >= 100:
        return round(x, 1)
    return round(x, 4)


def percentile(values: Iterable[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no values."""
    data = sorted(values)
    if not data:
        return float("nan")
    k = max(0, min(len(data) - 1, math.ceil(p / 100 * len(data)) - 1))
    return data[k]


def median(values: Iterable[float]) -> float:
    data = list(values)
    return statistics.median(data) if data else float("nan")


def wait_until(
    check: Callable[[], Any], timeout: float, interval: float = 0.02, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout:.0f} s")
        time.sleep(interval)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process `pid` (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


class Log:
    """Progress lines on stderr-like stdout, with elapsed time since the run began."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def __call__(self, msg: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.1f}s] {msg}", flush=True)


log = Log()
