"""Timing statistics and plain-text tables shared by the benchmark scripts."""

from __future__ import annotations

import platform
import statistics
import time

import numpy as np


def percentile_ms(seconds: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(seconds) * 1000, q))


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - started, result


def table(headers: list[str], rows: list[list]) -> str:
    """A Markdown table (also readable in a terminal)."""
    cells = [[_fmt(value) for value in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda values: "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths)) + " |"  # noqa: E731
    return "\n".join([line(headers), "| " + " | ".join("-" * w for w in widths) + " |", *map(line, cells)])


def machine() -> str:
    """The CPU (model and the instruction sets that decide which kernels run), torch and Python."""
    from indexer.runtime_choice import cpu_description, cpu_line

    try:
        import torch

        torch_part = f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    except ImportError:  # the slim web tier
        torch_part = "no torch"
    return f"{cpu_line(cpu_description())}, {torch_part}, Python {platform.python_version()}"


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def median(values):
    return statistics.median(values)


def server_timing(headers) -> dict[str, float]:
    """A response's ``Server-Timing`` figures in seconds (``gallery.http.server_timing``, when
    the server runs with SERVER_TIMING=true): ``{"app": ..., "encode": ..., "index": ..., "db": ...}``."""
    import re

    return {name: float(ms) / 1000 for name, ms in re.findall(r"(\w+);dur=([0-9.]+)", headers.get("Server-Timing", ""))}

