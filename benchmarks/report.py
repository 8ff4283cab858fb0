"""Timing statistics and plain-text tables shared by the benchmark scripts."""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path

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


def processes() -> dict[int, list[str]]:
    """Every process's ``/proc/PID/stat`` fields after its command name (which may hold spaces
    and parentheses): ``[1]`` its parent's pid, ``[3]`` its session id."""
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                found[int(name)] = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):  # gone meanwhile
                continue
    return found


def mapped_kb(pid: int | str, under: str) -> dict[str, int]:
    """``/proc/PID/smaps``'s figures in kB (``Rss``, ``FilePmdMapped``: in 2 MB pages, ...),
    summed over the process's mappings of files whose path starts with ``under``; empty when the
    process is gone or not ours to read."""
    try:
        lines = Path(f"/proc/{pid}/smaps").read_text().splitlines()
    except OSError:
        return {}
    totals: dict[str, int] = {}
    path = ""
    for line in lines:
        parts = line.split()
        if "-" in parts[0] and len(parts) >= 6:  # a mapping's first line ends with its file
            path = parts[-1]
        elif path.startswith(under) and parts[0].endswith(":") and len(parts) == 3:  # "Rss:  1024 kB"
            totals[parts[0][:-1]] = totals.get(parts[0][:-1], 0) + int(parts[1])
    return totals


def resident_mb(paths) -> tuple[float, float] | None:
    """(MB of these files in the page cache, their MB in all), as util-linux's ``fincore`` reads
    them (``mincore(2)`` over a mapping that reads nothing); None without ``fincore``, or when a
    file is neither ours nor writable to us, for which Linux answers "all resident" whatever is.
    A request at a million images reads rows and index pages nothing may have read for a while,
    and some machines page out what sat idle (DAMON's ``pageout`` scheme: docs/performance.md,
    section 31), so a run says which state it began in."""
    import shutil
    import subprocess

    paths = [str(path) for path in paths]
    if not shutil.which("fincore") or any(os.stat(path).st_uid != os.geteuid() and not os.access(path, os.W_OK) for path in paths):
        return None
    done = subprocess.run(["fincore", "--bytes", "--noheadings", "--raw", "--output", "RES,SIZE", *paths],
                          capture_output=True, text=True, check=True)
    figures = [[int(field) for field in line.split()] for line in done.stdout.splitlines() if line.strip()]
    return sum(res for res, _ in figures) / 2**20, sum(size for _, size in figures) / 2**20


def median(values):
    return statistics.median(values)


def server_timing(headers) -> dict[str, float]:
    """A response's ``Server-Timing`` figures in seconds (``gallery.http.server_timing``, when
    the server runs with SERVER_TIMING=true): ``{"app": ..., "encode": ..., "index": ..., "db": ...}``."""
    import re

    return {name: float(ms) / 1000 for name, ms in re.findall(r"(\w+);dur=([0-9.]+)", headers.get("Server-Timing", ""))}

