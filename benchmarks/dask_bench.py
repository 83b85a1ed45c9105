"""The grid search on the local backend and on a Dask LocalCluster, same grids, same run.

    python benchmarks/dask_bench.py [--runs 3] [--workers 2]

Reads this project's data/features and params.yaml (run `dvc repro` first), runs every family's
grid search locally (threads, train.n_jobs) and on a LocalCluster of --workers single-threaded
processes started once (as an existing cluster would be), checks that the CV results are
identical, and reports the median wall time per family, the overhead per fit
((dask - local) / fits) and the arithmetic for more workers.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import time
from pathlib import Path

from sentiment_pipeline.core import kernels

kernels.pin(restart=True)  # the numbers the stages compute with, here and in the workers

from sentiment_pipeline.core import paths  # noqa: E402
from sentiment_pipeline.core.config import load_params  # noqa: E402
from sentiment_pipeline.pipeline.features import FeatureSet  # noqa: E402
from sentiment_pipeline.pipeline.train import grid_search  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("distributed").setLevel(logging.WARNING)
    from distributed import LocalCluster

    os.chdir(ROOT)
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
            local, dask = statistics.median(timings["local"]), statistics.median(timings["dask"])
            rows.append({"family": family, "fits": fits, "local": local, "dask": dask,
                         "fit_s": results["local"].timing["mean_fit_seconds"],
                         "overhead_ms": (dask - local) / fits * 1000, "identical": identical})
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine())
    print(f"## Grid search: local threads vs Dask LocalCluster ({args.workers} worker processes)\n")
    print(f"{cpu}, {os.cpu_count()} cores; median of {args.runs} runs; train.n_jobs={params.train.n_jobs}\n")
    print("| family | fits | mean s per fit | local s | Dask s | Dask / local | overhead per fit ms | CV results identical |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['family']} | {r['fits']} | {r['fit_s']:.3f} | {r['local']:.1f} | {r['dask']:.1f} | "
              f"{r['dask'] / r['local']:.2f}x | {r['overhead_ms']:.0f} | {'yes' if r['identical'] else '**no**'} |")
    total_local, total_dask = sum(r["local"] for r in rows), sum(r["dask"] for r in rows)
    # CV fits spread over the workers; the rest (scheduling and shipping each fit, the refit of
    # the best candidate in this process) does not: T(w) = serial + cv_work / w
    cv_work = sum(r["fit_s"] * (r["fits"] - 1) for r in rows)
    fits = sum(r["fits"] for r in rows)
    serial = max(0.0, total_dask - cv_work / args.workers)
    print(f"\nAll families: local {total_local:.1f} s, Dask {total_dask:.1f} s; CV fit work {cv_work:.1f} core-s over "
          f"{fits} fits; the part that does not spread over workers: {serial:.1f} s "
          f"({serial / fits * 1000:.0f} ms per fit).")
    print("\n| workers | estimated Dask s (serial + CV fit work / workers) |\n| --- | --- |")
    for w in (2, 4, 8, 16, 32):
        print(f"| {w} | {serial + cv_work / w:.1f} |")

if __name__ == "__main__":
    main()
