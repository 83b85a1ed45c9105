"""Prediction log benchmark: what shipping a row to a SQLite log costs, by the log's size and the
kind of ids it indexes.

    python benchmarks/log_bench.py [--sizes 0,800000] [--rows 20000] [--batch 50] [--runs 3]

The serving benchmark's log grows to about 800,000 rows over its rounds, and its later rounds were
slower. This measures the shipper alone, in one process: ``PredictionLog._insert`` (what the
shipper thread runs for each batch read back from the spool) on logs of each size, with random
ids (``uuid4``, what the log used before) and with time-ordered ones (UUIDv7, ``new_ids``, what it
uses now). Each log is filled with its own kind of ids first (a log that always had them), copied
afresh for every run, and the variants take turns (interleaved ``--runs`` times); the medians of
user and kernel CPU time per row (``getrusage``) and of wall time per row are reported. A
prediction id and a request id are indexed per row; the log's other indexes (time, model version,
key) grow at their end either way. Markdown to stdout, the table to benchmarks/results/log.json
(--results-dir).
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

if __package__:  # imported as benchmarks.log_bench
    from . import common
else:  # run as python benchmarks/log_bench.py: this folder is first on sys.path
    import common

from sentiment_pipeline.predlog.prediction_log import LogSettings, PredictionLog, connect, new_ids, now

ROOT = common.ROOT
TEXTS = ("@united thanks, the crew was great! :)", "lost my bag AGAIN... worst airline ever",
         "@SouthwestAir is my flight on time?", "four hours on the tarmac. never again.",
         "@JetBlue the new seats are lovely")


def random_ids(n: int) -> list[str]:
    return [uuid.uuid4().hex for _ in range(n)]


ID_KINDS: dict[str, Callable[[int], list[str]]] = {"random (uuid4)": random_ids, "time-ordered (UUIDv7)": new_ids}


def records(log: PredictionLog, ids: Callable[[int], list[str]], n: int, start: int = 0) -> list[dict]:
    """``n`` prediction records as the shipper reads them back from the spool (JSON-decoded)."""
    import orjson

    prediction_ids, request_ids = ids(n), ids(n)
    created = now()
    rows = [log.row(prediction_id=prediction_ids[i], request_id=request_ids[i], text=TEXTS[(start + i) % len(TEXTS)],
                    cleaned_length=30, label="positive", confidence=0.9,
                    probabilities={"negative": 0.05, "neutral": 0.05, "positive": 0.9}, model_version="abcdef123456",
                    latency_ms=3.2, created_at=created + timedelta(microseconds=start + i), key_id="e7a6071b26c9")
            for i in range(n)]
    return [orjson.loads(orjson.dumps({"k": "p", "r": row})) for row in rows]


def remove(path: Path) -> None:
    """A SQLite log and the files beside it (its WAL, shared memory, migration lock)."""
    for found in path.parent.glob(f"{path.name}*"):
        found.unlink()


def fill(path: Path, rows: int, ids: Callable[[int], list[str]], chunk: int = 10_000) -> Path:
    """A log at ``path`` holding ``rows`` predictions with ids of one kind."""
    engine = connect(f"sqlite:///{path}")
    log = PredictionLog(engine, LogSettings())
    for start in range(0, rows, chunk):
        log._insert(records(log, ids, min(chunk, rows - start), start))
    engine.dispose()
    return path


def ship(template: Path, workdir: Path, ids: Callable[[int], list[str]], rows: int, batch: int) -> dict:
    """CPU and wall time per row of shipping ``rows`` records in batches of ``batch`` to a copy of
    ``template``."""
    path = workdir / "log.db"
    shutil.copyfile(template, path)
    engine = connect(f"sqlite:///{path}")
    log = PredictionLog(engine, LogSettings())
    work = [records(log, ids, batch, i) for i in range(0, rows, batch)]  # made before timing
    # this thread's CPU only: as the shipper thread's in a worker, whatever else the process runs
    before, started = resource.getrusage(resource.RUSAGE_THREAD), time.perf_counter()
    for part in work:
        log._insert(part)
    wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_THREAD)
    engine.dispose()
    remove(path)
    done = len(work) * batch
    return {"user": (after.ru_utime - before.ru_utime) / done * 1e6,
            "sys": (after.ru_stime - before.ru_stime) / done * 1e6, "wall": wall / done * 1e6}


def measure(sizes: list[int], rows: int, batch: int, runs: int, workdir: Path) -> dict[tuple[int, str], list[dict]]:
    """Per (log size, id kind), one measurement per run; the variants take turns within a run."""
    templates = {(size, kind): fill(workdir / f"template-{size}-{i}.db", size, ids)
                 for size in sizes for i, (kind, ids) in enumerate(ID_KINDS.items())}
    results: dict[tuple[int, str], list[dict]] = {key: [] for key in templates}
    keys = list(templates)
    for run in range(runs):
        for size, kind in keys[run % len(keys):] + keys[:run % len(keys)]:
            results[(size, kind)].append(ship(templates[(size, kind)], workdir, ID_KINDS[kind], rows, batch))
    for template in templates.values():
        remove(template)
    return results


def report_table(results: dict[tuple[int, str], list[dict]], rows: int, batch: int, runs: int) -> dict:
    table_rows = []
    for (size, kind), measured in results.items():
        median = {part: statistics.median(m[part] for m in measured) for part in ("user", "sys", "wall")}
        cpu = statistics.median(m["user"] + m["sys"] for m in measured)
        table_rows.append([size, kind, round(median["user"], 1), round(median["sys"], 1), round(cpu, 1),
                           round(median["wall"], 1)])
    return common.table(
        "Shipping predictions to a SQLite log: µs per row", ["rows in the log", "ids", "user CPU", "kernel CPU",
                                                            "CPU", "wall"], table_rows,
        note=f"Median of {runs} interleaved runs, each shipping {rows:,} rows in batches of {batch} "
             "(PredictionLog._insert: what the shipper thread runs per batch read from the spool) to a copy of a log "
             "filled with the same kind of ids (so the log holds that many rows more by the end of a run); one "
             "prediction id and one request id indexed per row.")


def sizes_option(value: str) -> list[int]:
    try:
        sizes = [int(size) for size in value.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 0:
        raise argparse.ArgumentTypeError(f"{value!r}: expected row counts separated by commas, e.g. 0,800000")
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=sizes_option, default=[0, 800_000],
                        help="Rows in the log before shipping, comma-separated (default: 0,800000).")
    parser.add_argument("--rows", type=int, default=20_000, help="Rows shipped per run.")
    parser.add_argument("--batch", type=int, default=50,
                        help="Rows per insert: about what one 50 ms spool flush of one worker holds under load.")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None, help="Where the logs are made (default: a temporary "
                                                                   "directory; ~0.5 GB per 800,000 rows).")
    parser.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR, help=common.RESULTS_DIR_HELP)
    args = parser.parse_args()
    sizes = args.sizes
    common.setup_logging()
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its migration chatter, once per log made
    measured_at, params_md5 = common.utc_now(), common.params_md5(ROOT / "params.yaml", "log")
    workdir = Path(tempfile.mkdtemp(prefix="log-bench-", dir=args.workdir))
    try:
        results = measure(sizes, args.rows, args.batch, args.runs, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    table = report_table(results, args.rows, args.batch, args.runs)
    print(f"## {table['title']}\n\n{common.machine_description()}; load average {os.getloadavg()[0]:.2f}. "
          f"{table['note']}\n")
    print(common.markdown_table(table["columns"], table["rows"]))
    common.write_result("log", [table], args.results_dir, params_md5=params_md5, args=common.script_args(),
                        measured_at=measured_at)


if __name__ == "__main__":
    main()
