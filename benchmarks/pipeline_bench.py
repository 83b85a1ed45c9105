"""Benchmark: the pipeline against a naive grid-search reference, and growth with data size.

    python benchmarks/pipeline_bench.py            # the full run (long: see docs/benchmarks.md), `make bench`
    python benchmarks/pipeline_bench.py --quick    # a smoke run on ~1,500 training rows

In one invocation, on the same data and the same train/test split:

* **ours**: a snapshot of the project (every file git knows of, uncommitted edits included) is
  copied to a temporary git repository and ``dvc repro --force`` runs there ``--runs`` times
  with ``SENTIMENT_PIPELINE_PROFILE`` set, so each stage process reports its wall time and peak
  memory (see ``profiling.py``);
* **naive**: the usual recipe, one imbalanced-learn Pipeline (TF-IDF, SMOTE, classifier) per
  family in ``GridSearchCV`` on the raw training text (word TF-IDF, plus char_wb TF-IDF when the
  project uses char n-grams), with as many candidates per family as ``params.yaml`` has,
  library defaults for everything the project tunes for speed, and the project's ensemble as
  scikit-learn's soft ``VotingClassifier`` (and ``StackingClassifier``) of the best pipelines;
* **growth**: the package's preprocess and featurize functions on synthetic reviews of growing
  size, each (size, step) in a fresh process so its peak memory is its own.

A markdown summary goes to stdout, every number to a JSON file, the tables to
``benchmarks/results/pipeline.json`` (``--results-dir``; see ``common.write_result``), progress to
stderr.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import typer

from sentiment_pipeline.core.config import FAMILY_GRIDS
from sentiment_pipeline.core.files import write_csv
from sentiment_pipeline.core.kernels import NATIVE_ENV as NATIVE_KERNELS_ENV

if __package__:  # imported as benchmarks.pipeline_bench (the tests)
    from . import common
else:  # run as python benchmarks/pipeline_bench.py: this folder is first on sys.path
    import common

# tests/test_monitoring_e2e.py takes its out-of-domain text from here
synthetic_reviews = common.synthetic_reviews

log = logging.getLogger("benchmarks.pipeline_bench")

app = typer.Typer(add_completion=False, help=__doc__.split("\n\n")[0])

FAMILIES = tuple(FAMILY_GRIDS)

# Classifier parameters someone following the usual recipe searches over. The project's speed
# settings (solver, max_samples, max_bin, subsample, colsample_bytree and the chi-squared
# select_k) are not among them: the naive reference leaves those at library defaults unless
# params.yaml searches over several values of one.
NAIVE_TUNED = {
    "logreg": ("C", "max_iter"),
    "naive_bayes": ("alpha", "fit_prior"),
    "random_forest": ("n_estimators", "max_depth", "min_samples_leaf", "max_features"),
    "xgboost": ("n_estimators", "max_depth", "learning_rate"),
    "linear_svm": ("C",),
}

QUICK_TRAIN_ROWS = 1500
WARMUP_ROWS = 200  # growth steps first run on this many rows, untimed (see _warm_up)
QUICK_GROWTH_SIZES = "1000,10000"
FULL_GROWTH_SIZES = "10000,100000,1000000"


# ----------------------------------------------------------------------------- project snapshot
def shrink_for_quick(params: dict) -> dict:
    """Tiny grids for a smoke run: 2 candidates per family, 20 trees at most, 3 folds."""
    params["train"]["cv_folds"] = 3
    for grid in params["train"]["families"].values():
        searched = False
        for key, values in grid.items():
            if not isinstance(values, list):
                continue
            if len(values) > 1:
                grid[key] = values[:1] if searched else values[:2]
                searched = True
            if key == "n_estimators":
                grid[key] = [min(v, 20) for v in grid[key]]
    return params


def write_quick_sample(project: Path, env: dict, seed: int) -> None:
    """Materialise the configured data, keep a stratified sample of it as a local file source,
    and point params.yaml at it, so that about QUICK_TRAIN_ROWS rows reach training."""
    common.run_logged([sys.executable, "-m", "sentiment_pipeline", "download"], project, env,
                      project / "benchmark-setup.log")
    raw = pd.read_csv(project / "data/raw/reviews.csv", dtype=str, keep_default_na=False)
    params = common.read_params(project / "params.yaml")
    test_size = params.get("preprocess", {}).get("test_size", 0.2)
    # A few percent more than needed: preprocess drops empty texts and duplicates.
    wanted = min(len(raw), math.ceil(QUICK_TRAIN_ROWS / (1 - test_size) * 1.04))
    sample = raw.groupby("label", group_keys=False).sample(frac=wanted / len(raw), random_state=seed)
    sample_path = Path("data/external/benchmark_sample.csv")
    write_csv(sample, project / sample_path)  # quotes stray carriage returns inside tweets
    common.use_file_source(params, sample_path)
    shrink_for_quick(params)
    common.write_params(params, project / "params.yaml")
    log.info("quick mode: %d of %d rows, grids of 2 candidates, 3 folds", len(sample), len(raw))


def snapshot_project(root: Path, dest: Path, quick: bool, seed: int) -> Path:
    """:func:`common.snapshot_project`; in quick mode on a sample of the data with tiny grids."""
    prepare = (lambda copy, env: write_quick_sample(copy, env, seed)) if quick else None
    return common.snapshot_project(root, dest, prepare)


# ----------------------------------------------------------------------------- ours: dvc repro
def read_profile(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_ours(project: Path, runs: int, native_kernels: bool = False) -> dict:
    """``dvc repro --force`` ``runs`` times; wall time, per-stage profile and metrics of each.

    ``native_kernels`` runs with the CPU's own NumPy/OpenBLAS/libm kernels instead of the pinned
    ones (kernels.py): the reference that measures what pinning costs."""
    results = []
    label = "ours, native kernels" if native_kernels else "ours"
    tag = "native-" if native_kernels else ""
    for i in range(1, runs + 1):
        profile = project.parent / f"profile-ours-{tag}{i}.jsonl"
        env = common.subprocess_env(project, profile)
        if native_kernels:
            env[NATIVE_KERNELS_ENV] = "1"
        log.info("%s: dvc repro --force, run %d of %d", label, i, runs)
        seconds = common.run_logged([sys.executable, "-m", "dvc", "repro", "--force"], project, env,
                                    project.parent / f"dvc-repro-{tag}{i}.log")
        selection = json.loads((project / "metrics/selection.json").read_text())
        test = json.loads((project / "metrics/test.json").read_text())
        results.append({"seconds": seconds, "stages": read_profile(profile),
                        "family": selection.get("family"),
                        "cv_f1_macro": selection.get("cv_f1_macro_mean"),
                        "test_f1_macro": test.get("f1_macro")})
        log.info("%s: run %d took %.1f s; %s CV macro-F1 %.4f, test macro-F1 %.4f", label, i, seconds,
                 results[-1]["family"], results[-1]["cv_f1_macro"], results[-1]["test_f1_macro"])
    if native_kernels:
        return summarise_ours(results)
    # What a user waits for when nothing changed: DVC checking every stage's hashes.
    env = common.subprocess_env(project)
    noop = [common.run_logged([sys.executable, "-m", "dvc", "repro"], project, env,
                              project.parent / f"dvc-repro-noop-{i}.log") for i in range(1, 4)]
    log.info("ours: no-op dvc repro %.1f s (median of 3)", common.median(noop))
    return {**summarise_ours(results), "noop_seconds": common.median(noop)}


def summarise_ours(runs: list[dict]) -> dict:
    """Medians across runs: wall time, and per stage its seconds and peak memory."""
    stages: dict[str, list[dict]] = {}
    for run in runs:
        for record in run["stages"]:
            stages.setdefault(record["stage"], []).append(record)
    per_stage = {
        name: {field: common.median([r.get(field) for r in records])
               for field in ("seconds", "stage_seconds", "max_rss_mb", "children_max_rss_mb")}
        for name, records in stages.items()
    }
    peak = max((max(s["max_rss_mb"] or 0, s["children_max_rss_mb"] or 0) for s in per_stage.values()),
               default=None)
    last = runs[-1]
    return {"runs": runs, "seconds": common.median([r["seconds"] for r in runs]),
            "stage_seconds_total": sum(s["seconds"] or 0 for s in per_stage.values()),
            "stages": per_stage, "peak_rss_mb": peak, "family": last["family"],
            "cv_f1_macro": last["cv_f1_macro"], "test_f1_macro": last["test_f1_macro"]}


# ----------------------------------------------------------------------------- naive reference
def naive_classifier(family: str, seed: int):
    """The classifier as the library ships it (a seed for repeatability, nothing else)."""
    if family == "logreg":
        from sklearn.linear_model import LogisticRegression
        return LogisticRegression(random_state=seed)
    if family == "naive_bayes":
        from sklearn.naive_bayes import MultinomialNB
        return MultinomialNB()
    if family == "random_forest":
        from sklearn.ensemble import RandomForestClassifier
        return RandomForestClassifier(random_state=seed)
    if family == "xgboost":
        from xgboost import XGBClassifier
        return XGBClassifier(random_state=seed)
    if family == "linear_svm":
        # the recipe for SVM probabilities: calibrate it
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.svm import LinearSVC
        return CalibratedClassifierCV(LinearSVC(random_state=seed))
    if family == "sgd":
        # the same recipe for SGD's margins, fitted in memory with SGD's own epochs
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.linear_model import SGDClassifier
        return CalibratedClassifierCV(SGDClassifier(random_state=seed))
    raise ValueError(f"no naive reference for model family {family!r}")


def naive_grid(family: str, project_grid: dict, classifier) -> dict[str, list]:
    """The project's grid restricted to parameters the usual recipe tunes, plus any other
    classifier parameter the project searches over, so the number of candidates matches."""
    accepted = classifier.get_params()
    # CalibratedClassifierCV holds the SVM as ``estimator``; its C is ``estimator__C``
    nested = ({"C": "estimator__C", "calibration": "method"} if family == "linear_svm" else
              {"alpha": "estimator__alpha", "loss": "estimator__loss", "calibration": "method"} if family == "sgd"
              else {})
    grid = {f"clf__{nested.get(key, key)}": list(values) for key, values in project_grid.items()
            if nested.get(key, key) in accepted
            and (key in NAIVE_TUNED.get(family, ()) or len(values) > 1)}
    if family == "naive_bayes" and len(project_grid.get("complement", [])) > 1:
        # the recipe's way to try complement NB: the estimator itself as a grid value
        from sklearn.naive_bayes import ComplementNB, MultinomialNB

        grid["clf"] = [ComplementNB() if complement else MultinomialNB()
                       for complement in project_grid["complement"]]
    return grid


def n_candidates(grid: dict[str, list]) -> int:
    return int(np.prod([len(v) for v in grid.values()])) if grid else 1


def naive_vectorizer(char_ngram_range: tuple[int, int] | None):
    """The usual TF-IDF, joined by the usual char_wb one when the project uses char n-grams."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    word = TfidfVectorizer(max_features=20000, ngram_range=(1, 2))
    if char_ngram_range is None:
        return word
    char = TfidfVectorizer(analyzer="char_wb", ngram_range=tuple(char_ngram_range), max_features=20000)
    return FeatureUnion([("word", word), ("char", char)])


def naive_pipeline(classifier, seed: int, char_ngram_range: tuple[int, int] | None = None):
    from imblearn.over_sampling import SMOTE
    from imblearn.pipeline import Pipeline

    return Pipeline([("tfidf", naive_vectorizer(char_ngram_range)),
                     ("smote", SMOTE(random_state=seed)),
                     ("clf", classifier)])


def naive_ensembles(ensemble: dict, searches: dict, seed: int) -> dict:
    """The usual recipe for the project's ensemble: scikit-learn's soft VotingClassifier and,
    if the project tries stacking, its StackingClassifier, over the members' best naive
    pipelines (refitted in every fold; the stacker's own 5 inner folds make out-of-fold
    predictions). The project's prior adjustment and class scales have no counterpart there."""
    from sklearn.base import clone
    from sklearn.ensemble import StackingClassifier, VotingClassifier
    from sklearn.linear_model import LogisticRegression

    members = [(m, clone(searches[m].best_estimator_)) for m in ensemble.get("members", []) if m in searches]
    if len(members) < 2:
        return {}
    found = {"soft_vote": VotingClassifier(members, voting="soft")}
    if "stacking" in ensemble.get("method", []):
        found["stacking"] = StackingClassifier(members, final_estimator=LogisticRegression(random_state=seed),
                                               stack_method="predict_proba")
    return found


def run_naive(train: pd.DataFrame, test: pd.DataFrame, family_grids: dict[str, dict], seed: int,
              folds: int = 5, n_jobs: int = -1, char_ngram_range: tuple[int, int] | None = None,
              ensemble: dict | None = None) -> dict:
    """Grid-search every family on the training text, keep the best by CV macro-F1, refit
    (GridSearchCV does) and score it on the test split; with ``ensemble`` (params.yaml's
    ``train.ensemble``), also the library's ensembles of the members' best pipelines."""
    from sklearn.metrics import f1_score
    from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
    from sklearn.preprocessing import LabelEncoder

    encoder = LabelEncoder().fit(train["label"])  # XGBoost wants labels 0..k-1
    y_train, y_test = encoder.transform(train["label"]), encoder.transform(test["label"])
    families, searches = {}, {}
    for family, project_grid in family_grids.items():
        classifier = naive_classifier(family, seed)
        grid = naive_grid(family, project_grid, classifier)
        search = GridSearchCV(naive_pipeline(classifier, seed, char_ngram_range), grid, scoring="f1_macro",
                              n_jobs=n_jobs, cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
        started = time.perf_counter()
        search.fit(train["text"], y_train)
        searches[family] = search
        families[family] = {
            "cv_f1_macro": float(search.best_score_),
            "candidates": n_candidates(grid),
            "project_candidates": n_candidates({k: v for k, v in project_grid.items() if isinstance(v, list)}),
            "grid": {k.removeprefix("clf__"): v for k, v in grid.items()},
            "best_params": {k.removeprefix("clf__"): v for k, v in search.best_params_.items()},
            "seconds": time.perf_counter() - started,
        }
        log.info("naive %s: %d candidates x %d folds, CV macro-F1 %.4f in %.1f s", family,
                 families[family]["candidates"], folds, search.best_score_, families[family]["seconds"])
    fitted = {family: search.best_estimator_ for family, search in searches.items()}
    for method, model in naive_ensembles(ensemble or {}, searches, seed).items():
        started = time.perf_counter()
        scores = cross_val_score(model, train["text"], y_train, scoring="f1_macro", n_jobs=n_jobs,
                                 cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
        name = f"ensemble ({method})"
        fitted[name] = model.fit(train["text"], y_train)
        families[name] = {"cv_f1_macro": float(np.mean(scores)), "candidates": 1, "project_candidates": None,
                          "grid": {}, "best_params": {"members": [m for m, _ in model.estimators]},
                          "seconds": time.perf_counter() - started}
        log.info("naive %s: %d folds, CV macro-F1 %.4f in %.1f s", name, folds, np.mean(scores),
                 families[name]["seconds"])
    best = max(families, key=lambda f: families[f]["cv_f1_macro"])
    y_pred = fitted[best].predict(test["text"])
    return {"family": best, "cv_f1_macro": families[best]["cv_f1_macro"],
            "test_f1_macro": float(f1_score(y_test, y_pred, average="macro")), "families": families}


def load_split(project: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    read = lambda name: pd.read_csv(project / "data/processed" / name, dtype=str,  # noqa: E731
                                    keep_default_na=False)
    return read("train.csv"), read("test.csv")


def family_grids(params: dict) -> dict[str, dict]:
    """The grids of the families the project trains (every family when none is listed, as in
    config.FamiliesConfig.enabled)."""
    families = params.get("train", {}).get("families") or {}
    listed = [family for family in FAMILIES if family in families] or list(FAMILIES)
    return {family: families.get(family) or {} for family in listed}


@app.command("naive-child", hidden=True)
def naive_child(project: Path = typer.Option(...), output: Path = typer.Option(...),
                profile: Path = typer.Option(...)) -> None:
    """One naive reference run in its own process, on the snapshot's split and params."""
    from sentiment_pipeline.core import profiling

    common.setup_logging()
    params = common.read_params(project / "params.yaml")
    train_params = params.get("train", {})
    train, test = load_split(project)
    with profiling.profiled("naive", target=profile):
        featurize = params.get("featurize", {})
        char = featurize.get("char_ngram_range", [2, 5]) if featurize.get("char_ngrams") else None
        result = run_naive(train, test, family_grids(params), seed=train_params.get("seed", 42),
                           folds=train_params.get("cv_folds", 5), char_ngram_range=char,
                           ensemble=train_params.get("ensemble"))
    output.write_text(json.dumps(result, indent=2, default=str))


def run_naive_reference(project: Path, runs: int) -> dict:
    results = []
    for i in range(1, runs + 1):
        output, profile = project.parent / f"naive-{i}.json", project.parent / f"profile-naive-{i}.jsonl"
        log.info("naive: grid search of every family, run %d of %d (slow)", i, runs)
        seconds = common.run_logged([sys.executable, str(Path(__file__).resolve()), "naive-child",
                                     "--project", str(project), "--output", str(output), "--profile", str(profile)],
                                    project, common.subprocess_env(project), project.parent / f"naive-{i}.log")
        result = json.loads(output.read_text())
        record = (read_profile(profile) or [{}])[-1]
        result.update(seconds=seconds, max_rss_mb=record.get("max_rss_mb"),
                      children_max_rss_mb=record.get("children_max_rss_mb"))
        log.info("naive: run %d took %.1f s; %s CV macro-F1 %.4f, test macro-F1 %.4f", i, seconds,
                 result["family"], result["cv_f1_macro"], result["test_f1_macro"])
        results.append(result)
    last = results[-1]
    peak = max(last.get("max_rss_mb") or 0, last.get("children_max_rss_mb") or 0) or None
    return {"runs": results, "seconds": common.median([r["seconds"] for r in results]),
            "family": last["family"], "cv_f1_macro": last["cv_f1_macro"],
            "test_f1_macro": last["test_f1_macro"], "families": last["families"], "peak_rss_mb": peak}


# ----------------------------------------------------------------------------- growth steps
def _call_preprocess(raw: pd.DataFrame, params_file: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The package's preprocess step; the one place that knows its signature."""
    from sentiment_pipeline.core.config import load_params
    from sentiment_pipeline.pipeline.preprocess import preprocess

    config = load_params(params_file).preprocess
    result = preprocess(raw, config)
    return (result.train, result.test) if hasattr(result, "train") else tuple(result)[:2]


def _call_featurize(train: pd.DataFrame, test: pd.DataFrame, params_file: Path) -> int:
    """The package's featurize step; returns the number of features."""
    from sentiment_pipeline.core.config import load_params
    from sentiment_pipeline.pipeline.features import featurize

    config = load_params(params_file).featurize
    _, features, _ = featurize(train, test, config)
    return int(features.X_train.shape[1])


def _current_rss_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


@app.command("growth-child", hidden=True)
def growth_child(step: str = typer.Option(...), workdir: Path = typer.Option(...),
                 params: Path = typer.Option(...)) -> None:
    """One growth step in a fresh process; prints its measurements as JSON on stdout."""
    common.setup_logging()
    if step == "preprocess":
        raw = pd.read_csv(workdir / "raw.csv", dtype=str, keep_default_na=False)
        warmup_seconds = _warm_up(lambda: _call_preprocess(raw.head(WARMUP_ROWS), params))
        rss_before = _current_rss_mb()
        started = time.perf_counter()
        train, test = _call_preprocess(raw, params)
        seconds = time.perf_counter() - started
        train.to_parquet(workdir / "train.parquet")
        test.to_parquet(workdir / "test.parquet")
        extra = {"rows": len(raw), "rows_out": len(train) + len(test)}
    elif step == "featurize":
        train = pd.read_parquet(workdir / "train.parquet")
        test = pd.read_parquet(workdir / "test.parquet")
        warmup_seconds = _warm_up(lambda: _call_featurize(train.head(WARMUP_ROWS), test.head(WARMUP_ROWS),
                                                          params))
        rss_before = _current_rss_mb()
        started = time.perf_counter()
        n_features = _call_featurize(train, test, params)
        seconds = time.perf_counter() - started
        extra = {"rows": len(train) + len(test), "n_features": n_features}
    else:
        raise typer.BadParameter(f"unknown step {step!r}")
    peak = common.peak_rss_mb()
    typer.echo(json.dumps({"step": step, "seconds": seconds, "warmup_seconds": warmup_seconds,
                           "max_rss_mb": round(peak, 1),
                           "rss_before_mb": rss_before and round(rss_before, 1), **extra}))


def _warm_up(call) -> float:
    """Run the step once on a few rows so that imports and one-time set-up (the stopword
    corpus, compiled patterns) are not counted as per-row time; return how long that took."""
    started = time.perf_counter()
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - a warm-up that fails on few rows is harmless
        log.debug("warm-up failed: %s", exc)
    return time.perf_counter() - started


def run_growth(sizes: list[int], params_file: Path, workdir: Path, seed: int) -> list[dict]:
    """Preprocess then featurize synthetic data of each size, each step in a fresh process."""
    rows = []
    for size in sizes:
        step_dir = workdir / f"growth-{size}"
        step_dir.mkdir(parents=True, exist_ok=True)
        log.info("growth: generating %d synthetic reviews", size)
        common.synthetic_reviews(size, seed).to_csv(step_dir / "raw.csv", index=False)
        for step in ("preprocess", "featurize"):
            log.info("growth: %s on %d rows", step, size)
            result = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "growth-child", "--step", step,
                 "--workdir", str(step_dir), "--params", str(params_file.resolve())],
                env=common.subprocess_env(), capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"growth step {step} on {size} rows failed:\n{result.stderr[-3000:]}")
            record = common.last_json_line(result.stdout)
            record.update(size=size, rows_per_second=record["rows"] / max(record["seconds"], 1e-9),
                          us_per_row=record["seconds"] / max(record["rows"], 1) * 1e6)
            rows.append(record)
        shutil.rmtree(step_dir, ignore_errors=True)
    add_linearity(rows)
    return rows


def add_linearity(rows: list[dict]) -> None:
    """Time per row relative to the smallest size of the same step: 1.0 means linear growth."""
    first: dict[str, float] = {}
    for row in sorted(rows, key=lambda r: r["size"]):
        base = first.setdefault(row["step"], row["us_per_row"])
        row["time_per_row_vs_smallest"] = row["us_per_row"] / base if base else None


# ----------------------------------------------------------------------------- report
def _fmt(value, digits: int = 1, suffix: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{suffix}"
    return f"{value:,}{suffix}"


SUMMARY_TITLE = "Pipeline and naive reference"


def _summary_paragraphs(report: dict) -> list[str]:
    """What follows the summary table: the speed ratio, the kernels' cost, the no-op run."""
    ours, naive, native = report.get("ours"), report.get("naive"), report.get("ours_native_kernels")
    parts = []
    if ours and naive:
        parts.append(f"Speed ratio naive / pipeline: **{naive['seconds'] / ours['seconds']:.2f}x**")
    if ours and native:
        cost = ours["seconds"] / native["seconds"] - 1
        parts.append(f"Pinned kernels (the default) against the CPU's native kernels "
                     f"(`{NATIVE_KERNELS_ENV}=1`): {_fmt(ours['seconds'])} s vs "
                     f"{_fmt(native['seconds'])} s (medians of {report['runs']}), "
                     f"**{cost:+.1%}**; native run selected {native['family']}, test macro-F1 "
                     f"{_fmt(native['test_f1_macro'], 4)}")
    if ours and ours.get("noop_seconds") is not None:
        parts.append(f"No-op `dvc repro` (nothing changed): {_fmt(ours['noop_seconds'])} s (median of 3)")
    return parts


def _as_note(paragraphs: list[str]) -> str | None:
    return ". ".join(paragraphs) + "." if paragraphs else None


def report_tables(report: dict) -> list[dict]:
    """The summary's tables (``common.table``), as :func:`render_markdown` prints them; the
    paragraphs after the first one are its note. What the result file holds."""
    ours, naive = report.get("ours"), report.get("naive")
    tables = []
    if ours or naive:
        rows = []
        for name, result, runs in (("pipeline (`dvc repro --force`)", ours, report["runs"]),
                                   ("naive reference", naive, report["naive_runs"])):
            if result:
                rows.append([name, f"{_fmt(result['seconds'])} s (median of {runs})", result["family"],
                             _fmt(result["cv_f1_macro"], 4), _fmt(result["test_f1_macro"], 4),
                             _fmt(result["peak_rss_mb"], 0, " MB")])
        tables.append(common.table(SUMMARY_TITLE + (" (quick)" if report["quick"] else ""),
                                   ["", "wall time", "selected", "CV macro-F1", "test macro-F1", "peak RSS"], rows,
                                   note=_as_note(_summary_paragraphs(report))))
    if ours:
        tables.append(common.table(
            "Pipeline stages (median across runs)",
            ["stage", "process s", "stage s", "peak RSS MB", "workers' peak RSS MB"],
            [[name, _fmt(s["seconds"]), _fmt(s["stage_seconds"]), _fmt(s["max_rss_mb"], 0),
              _fmt(s["children_max_rss_mb"], 0)] for name, s in ours["stages"].items()]
            + [["all stage processes", _fmt(ours["stage_seconds_total"]), "", "", ""],
               ["DVC itself (wall time minus stages)",
                _fmt(ours["seconds"] - ours["stage_seconds_total"]), "", "", ""]]))
    if naive:
        tables.append(common.table(
            "Naive reference by family",
            ["family", "candidates (naive / pipeline)", "CV macro-F1", "seconds"],
            [[family, f"{f['candidates']} / {f['project_candidates']}", _fmt(f["cv_f1_macro"], 4),
              _fmt(f["seconds"])] for family, f in naive["families"].items()]))
    if report.get("growth"):
        tables.append(common.table(
            "Growth on synthetic reviews (each step in a fresh process)",
            ["rows", "step", "seconds", "rows/s", "µs/row", "µs/row vs smallest", "peak RSS MB"],
            [[_fmt(r["size"]), r["step"], _fmt(r["seconds"], 2), _fmt(r["rows_per_second"], 0),
              _fmt(r["us_per_row"]), _fmt(r["time_per_row_vs_smallest"], 2, "x"), _fmt(r["max_rss_mb"], 0)]
             for r in report["growth"]]))
    return tables


def render_markdown(report: dict) -> str:
    m = report["machine"]
    parts = [f"## Benchmark{' (quick)' if report['quick'] else ''}",
             f"{m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, Python {m['python']}"]
    tables = report_tables(report)
    if report.get("ours") or report.get("naive"):  # the summary: no heading, its paragraphs after it
        summary, *tables = tables
        parts.append(common.markdown_table(summary["columns"], summary["rows"]))
        parts += _summary_paragraphs(report)
    for entry in tables:
        parts += [f"### {entry['title']}", common.markdown_table(entry["columns"], entry["rows"])]
    return "\n\n".join(parts) + "\n"


# ----------------------------------------------------------------------------- entry point
def _parse_sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(float(part)) for part in text.split(",") if part.strip()})
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated row counts, got {text!r}") from None
    if not sizes or sizes[0] < 100:
        raise typer.BadParameter("growth sizes must be at least 100 rows")
    return sizes


@app.command("run")
def run(
    project: Path = typer.Option(Path("."), help="Project root to benchmark (a git checkout)."),
    runs: int = typer.Option(None, min=1, help="dvc repro --force runs (default 3; quick: 1)."),
    naive_runs: int = typer.Option(1, min=1, help="Runs of the (slow) naive reference."),
    skip_naive: bool = typer.Option(False, help="Leave out the naive reference."),
    skip_ours: bool = typer.Option(False, help="Leave out the dvc repro runs."),
    skip_growth: bool = typer.Option(False, help="Leave out the growth table."),
    kernels_reference: bool = typer.Option(True, help="Also time dvc repro with the CPU's native "
                                           "kernels, to measure what pinning them costs."),
    growth_sizes: str = typer.Option(None, help=f"Synthetic sizes (default {FULL_GROWTH_SIZES}; "
                                                f"quick: {QUICK_GROWTH_SIZES})."),
    quick: bool = typer.Option(False, help=f"Smoke run: ~{QUICK_TRAIN_ROWS} training rows, tiny grids."),
    output: Path = typer.Option(Path(tempfile.gettempdir()) / "sentiment-benchmark.json",
                                help="Where to write every number as JSON."),
    workdir: Path = typer.Option(None, help="Scratch directory (default: a new one under /tmp)."),
    keep: bool = typer.Option(False, help="Keep the scratch directory (project copy, logs)."),
    seed: int = typer.Option(0, help="Seed of the synthetic data and the quick-mode sample."),
    results_dir: Path = typer.Option(None, help=f"{common.RESULTS_DIR_HELP} Default: benchmarks/results; "
                                     "a --quick run writes none unless this is given."),
) -> None:
    """Time the pipeline against a naive grid search, and preprocess/featurize against data size."""
    common.setup_logging()
    project = project.resolve()
    runs = runs or (1 if quick else 3)
    sizes = _parse_sizes(growth_sizes or (QUICK_GROWTH_SIZES if quick else FULL_GROWTH_SIZES))
    scratch = Path(tempfile.mkdtemp(prefix="sentiment-bench-", dir=workdir))
    report: dict = {"quick": quick, "runs": runs, "naive_runs": naive_runs, "machine": common.machine_info(),
                    "started": common.utc_now(), "params_md5": common.params_md5(project / "params.yaml")}
    completed = False
    try:
        if not (skip_ours and skip_naive):
            snapshot = snapshot_project(project, scratch / "project", quick, seed)
            if not skip_ours:
                report["ours"] = run_ours(snapshot, runs)
                if kernels_reference:
                    report["ours_native_kernels"] = run_ours(snapshot, runs, native_kernels=True)
            else:  # the naive reference still needs the pipeline's split
                common.run_logged([sys.executable, "-m", "dvc", "repro", "preprocess"], snapshot,
                                  common.subprocess_env(snapshot), scratch / "dvc-repro-preprocess.log")
            if not skip_naive:
                report["naive"] = run_naive_reference(snapshot, naive_runs)
            if report.get("ours") and report.get("naive"):
                report["speed_ratio_naive_over_ours"] = report["naive"]["seconds"] / report["ours"]["seconds"]
        if not skip_growth:
            report["growth"] = run_growth(sizes, project / "params.yaml", scratch, seed)
        completed = True
    finally:
        # A long run that fails late still leaves the numbers it got.
        report["completed"] = completed
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=2, default=str))
        log.info("%s written to %s", "all numbers" if completed else "partial results", output)
        if keep or not completed:
            log.info("scratch directory kept (project copy, logs): %s", scratch)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    typer.echo(render_markdown(report))
    tables = report_tables(report)
    if tables and (results_dir is not None or not quick):  # a smoke run does not replace the committed tables
        common.write_result("pipeline", tables, results_dir or common.RESULTS_DIR, params_md5=report["params_md5"],
                            args=common.script_args(), measured_at=report["started"],
                            machine=common.machine_description(report["machine"]), commit=common.git_commit(project))


def main() -> None:  # pragma: no cover - entry point
    # `python benchmarks/pipeline_bench.py [options]` runs the benchmark; the hidden child
    # commands are called by name.
    common.run_app(app, {"run", "naive-child", "growth-child"}, "python benchmarks/pipeline_bench.py")


if __name__ == "__main__":  # pragma: no cover
    main()
