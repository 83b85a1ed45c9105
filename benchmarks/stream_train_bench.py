"""Streamed training (``train.chunk_rows``) of the sgd family beside the in-memory calibrated SVM.

    python benchmarks/stream_train_bench.py                          # 100K and 1M synthetic reviews
    python benchmarks/stream_train_bench.py --sizes 100000 --chunk-rows 50000
    python benchmarks/stream_train_bench.py --workdirs /tmp/stream-bench-x/rows-1000000   # features already made

For each size, a stream_bench workdir (its seeded synthetic reviews, download -> preprocess ->
featurize streamed with ``featurize.vectorizer: hashing``, each step run by stream_bench's own child
command) unless ``--workdirs`` names existing ones, then in fresh processes on its
``data/features``: (a) the sgd family's CV over its params.yaml grid and the refit of the best
candidate, streamed (X_train.npz read in blocks, never whole: ``train_families_streamed``), and
its macro-F1 on the test split, read in chunks too; (b) at sizes up to ``--svm-max-rows``, the
linear_svm family's search over its params.yaml grid in memory (``train_families``, as the train
stage runs it) on the same split and folds, with class weights only (SMOTE on a million hashed
rows is not what anyone would run; ``--svm-smote`` adds it). Measured: CV and test macro-F1,
seconds of the search and refit (data loading apart), and the peak resident memory of the child's
process tree, sampled every 50 ms from /proc (stream_bench.run_sampled). The train section of the
project's params.yaml is used (its md5 recorded); ``train.chunk_rows`` is ``--chunk-rows``.
Markdown to stdout, the table to benchmarks/results/stream_train.json (--results-dir).
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import typer

if __package__:  # imported as benchmarks.stream_train_bench
    from . import common, stream_bench
else:  # run as python benchmarks/stream_train_bench.py: this folder is first on sys.path
    import common
    import stream_bench

log = logging.getLogger("stream_train_bench")
app = typer.Typer(add_completion=False)
ROOT = common.ROOT
NAME = "stream_train"
FEATURES = Path("data/features")


# ----------------------------------------------------------------------------- data
def make_workdir(base: Path, size: int, chunk_rows: int, n_jobs: int, seed: int, env: dict) -> Path:
    """A stream_bench workdir of ``size`` synthetic reviews, featurized by its child steps."""
    workdir = base / f"rows-{size}"
    workdir.mkdir(parents=True)
    log.info("%d rows: writing the source file", size)
    stream_bench.write_source(workdir / "source.csv", size, seed)
    stream_bench.stream_params(ROOT / "params.yaml", workdir, chunk_rows, n_jobs)
    for step in stream_bench.STEPS:
        log.info("%d rows: %s (stream_bench)", size, step)
        result = _sampled([sys.executable, stream_bench.__file__, "child", "--step", step, "--workdir", str(workdir)],
                          workdir, env)[0]
        if result.returncode:
            raise SystemExit(f"{step} on {size} rows failed:\n{result.stderr[-3000:]}")
    return workdir


# ----------------------------------------------------------------------------- the two children
def sgd_grid(grid, grid_json: str):
    """params.yaml's sgd grid with ``--sgd-grid``'s keys replaced (validated as params.yaml's are).
    ``alpha`` is a penalty per row, so the value tuned on 11K rows over-regularises 100 times as many
    (the SVM's C weighs the sum of the losses: alpha ~ 1 / (C x rows) is its counterpart)."""
    from sentiment_pipeline.core.config import SgdGrid

    return SgdGrid.model_validate({**grid.model_dump(), **json.loads(grid_json)})


def _test_f1_streamed(model, features: Path, chunk_rows: int) -> float:
    """Macro-F1 on the test split, its matrix read in chunks as the training one was."""
    import numpy as np
    from sklearn.metrics import f1_score

    from sentiment_pipeline.pipeline.incremental import CsrNpzReader

    y_test = np.load(features / "y_test.npy")
    predicted = np.empty_like(y_test)
    with CsrNpzReader(features / "X_test.npz") as reader:
        for start in range(0, reader.n_rows, chunk_rows):
            stop = min(reader.n_rows, start + chunk_rows)
            predicted[start:stop] = model.predict(reader.rows(start, stop))
    return float(f1_score(y_test, predicted, average="macro"))


@app.command("sgd-child", hidden=True)
def sgd_child(workdir: Path = typer.Option(...), chunk_rows: int = typer.Option(...),
              grid_json: str = typer.Option("{}")) -> None:
    """The sgd family's streamed CV and refit on ``workdir``'s features; JSON on the last line."""
    import numpy as np

    from sentiment_pipeline.core.config import load_params
    from sentiment_pipeline.pipeline.incremental import CsrNpzReader
    from sentiment_pipeline.pipeline.train import train_families_streamed

    common.setup_logging("INFO")
    params = load_params(ROOT / "params.yaml")
    train = params.train.model_copy(update={"chunk_rows": chunk_rows})
    grid = sgd_grid(params.train.families.sgd, grid_json)
    features = workdir / FEATURES
    y = np.load(features / "y_train.npy")
    started = time.perf_counter()
    result = train_families_streamed({"sgd": (grid.as_param_grid(), grid.resampling)}, features / "X_train.npz", y,
                                     train, params.featurize.resampling)["sgd"]
    seconds = time.perf_counter() - started
    with CsrNpzReader(features / "X_train.npz") as reader:
        nnz = int(reader.indptr[-1])
    typer.echo(json.dumps({"rows": len(y), "nnz": nnz, "seconds": seconds, "refit_seconds": result.timing["refit_seconds"],
                           "cv_f1_macro": result.summary["cv_f1_macro_mean"],
                           "cv_f1_macro_std": result.summary["cv_f1_macro_std"],
                           "test_f1_macro": _test_f1_streamed(result.best_estimator, features, chunk_rows),
                           "best_params": result.best_params, "process_peak_rss_mb": common.peak_rss_mb()}))


@app.command("svm-child", hidden=True)
def svm_child(workdir: Path = typer.Option(...), smote: bool = typer.Option(False)) -> None:
    """The linear_svm family's in-memory search and refit, as the train stage runs it."""
    from sklearn.metrics import f1_score

    from sentiment_pipeline.core.config import load_params
    from sentiment_pipeline.pipeline.features import FeatureSet
    from sentiment_pipeline.pipeline.train import train_families

    common.setup_logging("INFO")
    params = load_params(ROOT / "params.yaml")
    grid = params.train.families.linear_svm
    strategies = list(grid.resampling or ["class_weight"])
    if not smote:
        strategies = [s for s in strategies if s != "smote"] or ["class_weight"]
    started = time.perf_counter()
    features = FeatureSet.load(workdir / FEATURES)
    load_seconds = time.perf_counter() - started
    started = time.perf_counter()
    result = train_families({"linear_svm": (grid.as_param_grid(), strategies)}, features.X_train, features.y_train,
                            params.train, params.featurize.resampling)["linear_svm"]
    seconds = time.perf_counter() - started
    test_f1 = float(f1_score(features.y_test, result.best_estimator.predict(features.X_test), average="macro"))
    typer.echo(json.dumps({"rows": int(features.X_train.shape[0]), "nnz": int(features.X_train.nnz), "seconds": seconds,
                           "load_seconds": load_seconds, "refit_seconds": result.timing["refit_seconds"],
                           "cv_f1_macro": result.summary["cv_f1_macro_mean"],
                           "cv_f1_macro_std": result.summary["cv_f1_macro_std"], "test_f1_macro": test_f1,
                           "best_params": result.best_params, "strategies": strategies,
                           "process_peak_rss_mb": common.peak_rss_mb()}))


# ----------------------------------------------------------------------------- driver
TITLE = "Streamed training of the sgd family beside the in-memory calibrated SVM (synthetic reviews, hashed features)"


def report_table(report: dict) -> dict:
    rows = []
    for run in report["runs"]:
        for name, label in (("sgd", "sgd, streamed"), ("svm", "linear_svm, in memory")):
            record = run.get(name)
            if record is None:
                continue
            chosen = {key: value for key, value in record["best_params"].items() if key in ("alpha", "loss", "average", "C")}
            label += " (" + ", ".join(f"{key} {value}" for key, value in chosen.items()) + ")"
            rows.append([f"{record['rows']:,}", label, f"{record['cv_f1_macro']:.4f} ± {record['cv_f1_macro_std']:.4f}",
                         f"{record['test_f1_macro']:.4f}", f"{record['seconds']:.1f}", f"{record['peak_rss_mb']:,.0f}"])
    first = report["runs"][0]["sgd"]
    note = (f"train.chunk_rows {report['chunk_rows']}; params.yaml's grids ({report['sgd_grid']}; linear_svm "
            f"{report['svm_grid']}, resampling {report['svm_strategies']}); 5-fold CV on the same StratifiedKFold folds, "
            f"then the refit on all training rows; seconds exclude loading the features; the training rows hold "
            f"{first['nnz'] / first['rows']:.0f} non-zeros each (word and char_wb n-grams hashed into 2^20 columns "
            f"each). {report['extra_note']}").strip()
    return common.table(TITLE, ["training rows", "model", "CV macro-F1", "test macro-F1", "seconds", "peak RSS MB (tree)"],
                        rows, note=note)


def render(report: dict) -> str:
    result = report_table(report)
    return "\n".join([f"## {TITLE}", report["machine"], "", common.markdown_table(result["columns"], result["rows"]),
                      "", result["note"]]) + "\n"


def _sampled(args: list[str], workdir: Path, env: dict) -> tuple:
    """stream_bench.run_sampled: (the finished child, the peak RSS in MB of its process tree, ...)."""
    return tuple(stream_bench.run_sampled(args, workdir, env))


def _child(args: list[str], workdir: Path, env: dict) -> dict:
    result, peak = _sampled([sys.executable, __file__, *args], workdir, env)[:2]
    if result.returncode:
        raise SystemExit(f"{args[0]} on {workdir} failed:\n{result.stderr[-3000:]}")
    return {**common.last_json_line(result.stdout), "peak_rss_mb": peak}


@app.command("run")
def run(sizes: str = typer.Option("100000,1000000", help="synthetic reviews per run (before the test split)"),
        workdirs: str = typer.Option("", help="existing stream_bench workdirs (comma-separated) instead of --sizes"),
        chunk_rows: int = typer.Option(100_000), n_jobs: int = typer.Option(-1), seed: int = typer.Option(0),
        sgd_grid_json: str = typer.Option("{}", "--sgd-grid", help='keys replacing params.yaml\'s sgd grid, as JSON: '
                                          '\'{"alpha": [1e-5], "block_rows": [20000]}\''),
        svm_max_rows: int = typer.Option(1_000_000, help="the in-memory SVM runs up to this many reviews"),
        svm_smote: bool = typer.Option(False, help="search SMOTE for the SVM too, as its grid lists"),
        keep: bool = typer.Option(False, help="keep the generated workdirs"),
        note: str = typer.Option("", help="a sentence for the result's note (e.g. what else ran on the machine)"),
        base: Path = typer.Option(None, help="where generated workdirs go (default: the temporary directory)"),
        results_dir: Path = typer.Option(common.RESULTS_DIR, help=common.RESULTS_DIR_HELP)) -> None:
    from sentiment_pipeline.core.config import load_params

    common.setup_logging("INFO", fmt="%(asctime)s %(message)s")
    measured_at, params_md5 = common.utc_now(), common.params_md5(ROOT / "params.yaml")
    env = common.subprocess_env(ROOT)
    made = Path(tempfile.mkdtemp(prefix="stream-train-bench-", dir=base))
    dirs = ([(Path(d), None) for d in workdirs.split(",") if d] or
            [(None, int(float(s))) for s in sizes.split(",")])
    runs = []
    for workdir, size in dirs:
        if workdir is None:
            workdir = make_workdir(made, size, chunk_rows, n_jobs, seed, env)
        reviews = size if size is not None else sum(1 for _ in open(workdir / "source.csv", encoding="utf-8")) - 1
        log.info("%s: sgd, streamed", workdir)
        entry = {"workdir": str(workdir), "reviews": reviews,
                 "sgd": _child(["sgd-child", "--workdir", str(workdir), "--chunk-rows", str(chunk_rows),
                                "--grid-json", sgd_grid_json], workdir, env)}
        log.info("  CV %.4f, test %.4f, %.1f s, peak RSS %.0f MB", entry["sgd"]["cv_f1_macro"],
                 entry["sgd"]["test_f1_macro"], entry["sgd"]["seconds"], entry["sgd"]["peak_rss_mb"])
        if reviews <= svm_max_rows:
            log.info("%s: linear_svm, in memory", workdir)
            entry["svm"] = _child(["svm-child", "--workdir", str(workdir), *(["--smote"] if svm_smote else [])],
                                  workdir, env)
            log.info("  CV %.4f, test %.4f, %.1f s, peak RSS %.0f MB", entry["svm"]["cv_f1_macro"],
                     entry["svm"]["test_f1_macro"], entry["svm"]["seconds"], entry["svm"]["peak_rss_mb"])
        runs.append(entry)
        if not keep and str(workdir).startswith(str(made)):
            shutil.rmtree(workdir, ignore_errors=True)
    if not keep:
        shutil.rmtree(made, ignore_errors=True)
    params = load_params(ROOT / "params.yaml")
    svm_runs = [r["svm"] for r in runs if "svm" in r]
    report = {"machine": common.machine_description(), "chunk_rows": chunk_rows, "runs": runs,
              "sgd_grid": _grid_text(sgd_grid(params.train.families.sgd, sgd_grid_json).as_param_grid()),
              "svm_grid": _grid_text(params.train.families.linear_svm.as_param_grid()),
              "svm_strategies": ", ".join(svm_runs[0]["strategies"]) if svm_runs else "not run",
              "extra_note": note}
    typer.echo(render(report))
    common.write_result(NAME, [report_table(report)], results_dir, params_md5=params_md5, args=common.script_args(),
                        measured_at=measured_at)


def _grid_text(grid: dict) -> str:
    return ", ".join(f"{key.split('__', 1)[-1]} {values[0] if len(values) == 1 else values}" for key, values in grid.items())


if __name__ == "__main__":
    common.run_app(app, {"run", "sgd-child", "svm-child"}, "stream_train_bench.py")
