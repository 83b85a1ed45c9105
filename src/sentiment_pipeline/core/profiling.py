"""Opt-in profile of stage processes: wall time and peak memory, one JSON line per stage run.

Set ``SENTIMENT_PIPELINE_PROFILE=/path/profile.jsonl`` and every ``python -m sentiment_pipeline
<stage>`` appends a line such as::

    {"stage": "train@xgboost", "ok": true, "seconds": 41.2, "stage_seconds": 39.0,
     "max_rss_mb": 610.4, "children_max_rss_mb": 702.9, "pid": 1234}

``seconds`` is the wall time of the whole process (interpreter start-up and imports included),
``stage_seconds`` the stage function alone. ``max_rss_mb`` is the peak resident memory of the
stage process, ``children_max_rss_mb`` that of its largest child (joblib's loky workers). With
the variable unset nothing is measured or written.
"""

from __future__ import annotations

import atexit
import json
import os
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ENV_VAR = "SENTIMENT_PIPELINE_PROFILE"

# Fallback origin for the process wall time where /proc is not available.
_IMPORTED_AT = time.monotonic()


def profile_target() -> Path | None:
    """The file named by ``SENTIMENT_PIPELINE_PROFILE``, or None when profiling is off."""
    value = os.environ.get(ENV_VAR, "").strip()
    return Path(value) if value else None


def process_seconds() -> float:
    """Seconds since this process started, from /proc (interpreter start-up included).

    /proc/self/stat field 22 is the start time in clock ticks since boot and /proc/uptime the
    seconds since boot, both on the same clock; elsewhere we count from this module's import.
    """
    try:
        stat = Path("/proc/self/stat").read_text()
        # The command name (field 2) may hold spaces; the fields after its ")" are plain.
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.monotonic() - _IMPORTED_AT


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident set size in MiB. Linux reports ru_maxrss in KiB.

    For RUSAGE_CHILDREN it is the largest single child that has been waited for, not a sum."""
    return resource.getrusage(who).ru_maxrss / 1024


def profile_record(stage: str, ok: bool, stage_seconds: float) -> dict:
    return {
        "stage": stage,
        "ok": ok,
        "seconds": round(process_seconds(), 3),
        "stage_seconds": round(stage_seconds, 3),
        "max_rss_mb": round(peak_rss_mb(resource.RUSAGE_SELF), 1),
        "children_max_rss_mb": round(peak_rss_mb(resource.RUSAGE_CHILDREN), 1),
        "pid": os.getpid(),
    }


def append_record(path: Path, record: dict) -> None:
    """Append one JSON line; a single O_APPEND write, so parallel stages do not interleave."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@contextmanager
def profiled(stage: str, target: Path | None = None) -> Iterator[None]:
    """Profile the enclosed stage call when ``target`` (default: the env variable) is set.

    The line is written at interpreter exit, not here: joblib shuts its worker processes down
    during exit, and only workers that have exited count in RUSAGE_CHILDREN. atexit callbacks
    run after that shutdown (loky registers it with threading's earlier exit hook).
    """
    target = target if target is not None else profile_target()
    if target is None:
        yield
        return
    started = time.perf_counter()
    ok = False
    try:
        yield
        ok = True
    finally:
        elapsed = time.perf_counter() - started
        atexit.register(lambda: append_record(target, profile_record(stage, ok, elapsed)))
