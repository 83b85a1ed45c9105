"""The grid search on the local backend and on a Dask LocalCluster, same grids, same run.

    python benchmarks/dask_bench.py [--runs 3] [--workers 2]

Reads this project's data/features and params.yaml (run `dvc repro` first), runs every family's
grid search locally (threads, train.n_jobs) and on a LocalCluster of --workers single-threaded
processes started once (as an existing cluster would be), checks that the CV results are
identical, and reports the median wall time per family, the overhead per fit
((dask - local) / fits) and the arithmetic for more workers. Markdown to stdout, the tables to
benchmarks/results/dask.json (--results-dir).
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

from sentiment_pipeline.core import kernels

kernels.pin(restart=True)  # the numbers the stages compute with, here and in the workers

from sentiment_pipeline.core import paths  # noqa: E402
from sentiment_pipeline.core.config import load_params  # noqa: E402
from sentiment_pipeline.pipeline.features import FeatureSet  # noqa: E402
from sentiment_pipeline.pipeline.train import grid_search  # noqa: E402

if __package__:  # imported as benchmarks.dask_bench
    from . import common
else:  # run as python benchmarks/dask_bench.py: this folder is first on sys.path
    import common

ROOT = common.ROOT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR, help=common.RESULTS_DIR_HELP)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("distributed").setLevel(logging.WARNING)
    from distributed import LocalCluster

    script_args = common.script_args()  # before the chdir: argv[0] may be relative
    os.chdir(ROOT)
    measured_at, params_md5 = common.utc_now(), common.params_md5(paths.PARAMS)
    params = load_params(paths.PARAMS)
    features = FeatureSet.load(paths.FEATURES_DIR)
    rows = []
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        dask_config = params.train.model_copy(update={"backend": "dask", "scheduler_address": cluster.scheduler_address})
        for family in params.train.families.enabled():
            grid = params.train.families.grid(family).as_param_grid()
            timings = {"local": [], "dask": []}
            results = {}
            for _ in range(args.runs):
                for backend, config in (("local", params.train), ("dask", dask_config)):
                    started = time.perf_counter()
                    results[backend] = grid_search(family, grid, features.X_train, features.y_train, config,
                                                   params.featurize.resampling)
                    timings[backend].append(time.perf_counter() - started)
            identical = results["local"].cv_table.equals(results["dask"].cv_table)
            fits = results["local"].timing["fits"]
            local, dask = common.median(timings["local"]), common.median(timings["dask"])
            rows.append({"family": family, "fits": fits, "local": local, "dask": dask,
                         "fit_s": results["local"].timing["mean_fit_seconds"],
                         "overhead_ms": (dask - local) / fits * 1000, "identical": identical})
    cpu = common.cpu_model()
    tables = report_tables(rows, args.workers, args.runs, params.train.n_jobs)
    main_table, estimate = tables
    print(f"## Grid search: local threads vs Dask LocalCluster ({args.workers} worker processes)\n")
    print(f"{cpu}, {os.cpu_count()} cores; median of {args.runs} runs; train.n_jobs={params.train.n_jobs}\n")
    print(common.markdown_table(main_table["columns"], main_table["rows"]))
    print(f"\n{_all_families(rows, args.workers)}")
    print("\n" + common.markdown_table(estimate["columns"], estimate["rows"]))
    common.write_result("dask", tables, args.results_dir, params_md5=params_md5, args=script_args,
                        measured_at=measured_at)


def _spread(rows: list[dict], workers: int) -> tuple[float, int, float]:
    """CV fits spread over the workers; the rest (scheduling and shipping each fit, the refit of
    the best candidate in this process) does not: T(w) = serial + cv_work / w. Returns the CV fit
    work (core-s), the number of fits and the serial part (s)."""
    total_dask = sum(r["dask"] for r in rows)
    cv_work = sum(r["fit_s"] * (r["fits"] - 1) for r in rows)
    fits = sum(r["fits"] for r in rows)
    return cv_work, fits, max(0.0, total_dask - cv_work / workers)


def _all_families(rows: list[dict], workers: int) -> str:
    total_local, total_dask = sum(r["local"] for r in rows), sum(r["dask"] for r in rows)
    cv_work, fits, serial = _spread(rows, workers)
    return (f"All families: local {total_local:.1f} s, Dask {total_dask:.1f} s; CV fit work {cv_work:.1f} core-s over "
            f"{fits} fits; the part that does not spread over workers: {serial:.1f} s "
            f"({serial / fits * 1000:.0f} ms per fit).")


def report_tables(rows: list[dict], workers: int, runs: int, n_jobs: int) -> list[dict]:
    """The per-family table and the estimate for more workers (``common.table``), as printed."""
    cv_work, _, serial = _spread(rows, workers)
    per_family = common.table(
        f"Grid search: local threads vs Dask LocalCluster ({workers} worker processes)",
        ["family", "fits", "mean s per fit", "local s", "Dask s", "Dask / local", "overhead per fit ms",
         "CV results identical"],
        [[r["family"], r["fits"], f"{r['fit_s']:.3f}", f"{r['local']:.1f}", f"{r['dask']:.1f}",
          f"{r['dask'] / r['local']:.2f}x", f"{r['overhead_ms']:.0f}", "yes" if r["identical"] else "**no**"]
         for r in rows],
        note=f"Median of {runs} runs; train.n_jobs={n_jobs}. {_all_families(rows, workers)}")
    estimate = common.table(
        "Estimated Dask wall time for more workers (arithmetic, not measured)",
        ["workers", "estimated Dask s (serial + CV fit work / workers)"],
        [[w, f"{serial + cv_work / w:.1f}"] for w in (2, 4, 8, 16, 32)])
    return [per_family, estimate]

if __name__ == "__main__":
    main()
