"""Benchmark: the pipeline against a naive grid-search reference, and growth with data size.

    python benchmarks/pipeline_bench.py            # the full run (long: see README), `make bench`
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

A markdown summary goes to stdout, every number to a JSON file, progress to stderr.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import typer
import yaml

from sentiment_pipeline.core.config import FAMILY_GRIDS
from sentiment_pipeline.core.files import write_csv
from sentiment_pipeline.core.kernels import NATIVE_ENV as NATIVE_KERNELS_ENV

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


# ----------------------------------------------------------------------------- helpers
def _median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return float(statistics.median(values)) if values else None


def _read_params(path: Path) -> dict:
    """params.yaml as plain data; the typed loader's YAML 1.2 number rules when available."""
    try:
        from sentiment_pipeline.core.config import load_yaml
    except ImportError:  # pragma: no cover - the config module moved
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return load_yaml(path) or {}


def run_logged(args: list[str], cwd: Path, env: dict, log_file: Path) -> float:
    """Run a command with its output in ``log_file``; return its wall time; fail loudly."""
    started = time.perf_counter()
    with open(log_file, "ab") as out:
        result = subprocess.run(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"{' '.join(args)} failed (exit {result.returncode}) in {cwd}:\n{tail}")
    return seconds


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        ram_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        ram_bytes = 0
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": round(ram_bytes / 2**30, 1),
            "python": platform.python_version(), "platform": platform.platform()}


def subprocess_env(project: Path | None = None, profile: Path | None = None) -> dict:
    """Environment for child processes: this interpreter's tools first on PATH, the snapshot's
    code ahead of the (editable) installed package, no DVC analytics."""
    env = {**os.environ,
           "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
           "DVC_NO_ANALYTICS": "1",
           "GIT_AUTHOR_NAME": "benchmark", "GIT_AUTHOR_EMAIL": "benchmark@example.com",
           "GIT_COMMITTER_NAME": "benchmark", "GIT_COMMITTER_EMAIL": "benchmark@example.com"}
    if project is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(project / "src"), os.environ.get("PYTHONPATH")]))
    env.pop("SENTIMENT_PIPELINE_PROFILE", None)
    if profile is not None:
        env["SENTIMENT_PIPELINE_PROFILE"] = str(profile)
    return env


# ----------------------------------------------------------------------------- project snapshot
def project_files(root: Path) -> list[str]:
    """Every file git knows of or would add (tracked plus untracked, not ignored) that exists."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=root, capture_output=True, check=True).stdout
    return sorted({name for name in out.decode().split("\0") if name and (root / name).is_file()})


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
    run_logged([sys.executable, "-m", "sentiment_pipeline", "download"], project, env,
                project / "benchmark-setup.log")
    raw = pd.read_csv(project / "data/raw/reviews.csv", dtype=str, keep_default_na=False)
    params = _read_params(project / "params.yaml")
    test_size = params.get("preprocess", {}).get("test_size", 0.2)
    # A few percent more than needed: preprocess drops empty texts and duplicates.
    wanted = min(len(raw), math.ceil(QUICK_TRAIN_ROWS / (1 - test_size) * 1.04))
    sample = raw.groupby("label", group_keys=False).sample(frac=wanted / len(raw), random_state=seed)
    sample_path = Path("data/external/benchmark_sample.csv")
    write_csv(sample, project / sample_path)  # quotes stray carriage returns inside tweets
    params["download"].update(source="file", path=str(sample_path), text_column="text",
                              label_column="label")
    shrink_for_quick(params)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    log.info("quick mode: %d of %d rows, grids of 2 candidates, 3 folds", len(sample), len(raw))


def snapshot_project(root: Path, dest: Path, quick: bool, seed: int) -> Path:
    """Copy the project to ``dest`` and make it a git repository with one commit (DVC and
    dvclive expect one); the copy's own src/ is what runs there."""
    files = project_files(root)
    for name in files:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, dest / name)
    log.info("snapshot of %d files in %s", len(files), dest)
    env = subprocess_env(dest)
    if quick:
        write_quick_sample(dest, env, seed)
    for args in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                 ["git", "commit", "-qm", "benchmark snapshot"]):
        run_logged(args, dest, env, dest / "benchmark-setup.log")
    return dest


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
        env = subprocess_env(project, profile)
        if native_kernels:
            env[NATIVE_KERNELS_ENV] = "1"
        log.info("%s: dvc repro --force, run %d of %d", label, i, runs)
        seconds = run_logged([sys.executable, "-m", "dvc", "repro", "--force"], project, env,
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
    env = subprocess_env(project)
    noop = [run_logged([sys.executable, "-m", "dvc", "repro"], project, env,
                        project.parent / f"dvc-repro-noop-{i}.log") for i in range(1, 4)]
    log.info("ours: no-op dvc repro %.1f s (median of 3)", _median(noop))
    return {**summarise_ours(results), "noop_seconds": _median(noop)}


def summarise_ours(runs: list[dict]) -> dict:
    """Medians across runs: wall time, and per stage its seconds and peak memory."""
    stages: dict[str, list[dict]] = {}
    for run in runs:
        for record in run["stages"]:
            stages.setdefault(record["stage"], []).append(record)
    per_stage = {
        name: {field: _median([r.get(field) for r in records])
               for field in ("seconds", "stage_seconds", "max_rss_mb", "children_max_rss_mb")}
        for name, records in stages.items()
    }
    peak = max((max(s["max_rss_mb"] or 0, s["children_max_rss_mb"] or 0) for s in per_stage.values()),
               default=None)
    last = runs[-1]
    return {"runs": runs, "seconds": _median([r["seconds"] for r in runs]),
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
    raise ValueError(f"no naive reference for model family {family!r}")


def naive_grid(family: str, project_grid: dict, classifier) -> dict[str, list]:
    """The project's grid restricted to parameters the usual recipe tunes, plus any other
    classifier parameter the project searches over, so the number of candidates matches."""
    accepted = classifier.get_params()
    # CalibratedClassifierCV holds the SVM as ``estimator``; its C is ``estimator__C``
    nested = {"C": "estimator__C", "calibration": "method"} if family == "linear_svm" else {}
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

    _setup_logging()
    params = _read_params(project / "params.yaml")
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
        seconds = run_logged([sys.executable, str(Path(__file__).resolve()), "naive-child",
                               "--project", str(project), "--output", str(output), "--profile", str(profile)],
                              project, subprocess_env(project), project.parent / f"naive-{i}.log")
        result = json.loads(output.read_text())
        record = (read_profile(profile) or [{}])[-1]
        result.update(seconds=seconds, max_rss_mb=record.get("max_rss_mb"),
                      children_max_rss_mb=record.get("children_max_rss_mb"))
        log.info("naive: run %d took %.1f s; %s CV macro-F1 %.4f, test macro-F1 %.4f", i, seconds,
                 result["family"], result["cv_f1_macro"], result["test_f1_macro"])
        results.append(result)
    last = results[-1]
    peak = max(last.get("max_rss_mb") or 0, last.get("children_max_rss_mb") or 0) or None
    return {"runs": results, "seconds": _median([r["seconds"] for r in results]),
            "family": last["family"], "cv_f1_macro": last["cv_f1_macro"],
            "test_f1_macro": last["test_f1_macro"], "families": last["families"], "peak_rss_mb": peak}


# ----------------------------------------------------------------------------- synthetic growth data
_FUNCTION_WORDS = ("the i a to my you and it for on is was in of at with this me our that "
                   "we be so have just get your are from when they an now up can there all "
                   "what out been about will again").split()
_SENTIMENT_WORDS = {
    "negative": ("delayed cancelled lost rude worst terrible awful broken hours waiting late "
                 "stuck refund missed dirty horrible disappointed angry fail worse useless "
                 "unacceptable ridiculous never nothing problem complaint").split(),
    "neutral": ("question schedule gate change flight info status ticket booking check "
                "tomorrow route seat option policy update confirm number travel wondering "
                "baggage allowance boarding time").split(),
    "positive": ("thanks great love awesome amazing best friendly helpful excellent happy "
                 "perfect smooth wonderful appreciate nice good fantastic comfortable kind "
                 "enjoyed glad quick easy recommend").split(),
}
# The airline tweets' class balance: mostly complaints.
_LABEL_SHARES = {"negative": 0.63, "neutral": 0.21, "positive": 0.16}
_EXTRAS = ("@airline", "#travel", "http://t.co/abc123", "2 hours", "😊", "😠", "!!!", "sooo",
           "don't", "&amp;")


def _content_vocabulary(rng: np.random.Generator, size: int = 5000) -> np.ndarray:
    """Pronounceable made-up content words (a stand-in for nouns, places, names)."""
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["ing", "er", "ly", "tion"]
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(syllables, rng.integers(1, 4))))
    # Shuffled so that Zipf ranks (frequency) are unrelated to spelling.
    return rng.permutation(np.array(sorted(words), dtype=object))


def synthetic_reviews(n_rows: int, seed: int = 0, chunk: int = 100_000) -> pd.DataFrame:
    """:func:`synthetic_review_chunks` in one frame."""
    return pd.concat(list(synthetic_review_chunks(n_rows, seed, chunk)), ignore_index=True)


def synthetic_review_chunks(n_rows: int, seed: int = 0, chunk: int = 100_000) -> Iterator[pd.DataFrame]:
    """Seeded short reviews with three imbalanced labels: 5-40 words each, Zipf-distributed
    content words, function words, and sentiment words of the row's label (some from another
    label, as real text is noisy), sometimes with a mention, hashtag, URL, number or emoji so
    that every cleaning rule has work."""
    rng = np.random.default_rng(seed)
    content = _content_vocabulary(rng)
    zipf = 1.0 / np.arange(1, len(content) + 1)
    zipf /= zipf.sum()
    function = np.array(_FUNCTION_WORDS, dtype=object)
    labels = np.array(list(_LABEL_SHARES))
    sentiment = [np.array(_SENTIMENT_WORDS[label], dtype=object) for label in labels]
    extras = np.array(_EXTRAS, dtype=object)
    for start in range(0, n_rows, chunk):  # chunks bound the memory of the token arrays
        texts: list[str] = []
        n = min(chunk, n_rows - start)
        row_labels = rng.choice(len(labels), n, p=list(_LABEL_SHARES.values()))
        lengths = rng.integers(5, 41, n)
        total = int(lengths.sum())
        kind = rng.random(total)  # < 0.15 sentiment word, < 0.55 function word, else content
        token_label = np.repeat(row_labels, lengths)
        noisy = rng.random(total) < 0.2
        token_label = np.where(noisy, rng.integers(0, len(labels), total), token_label)
        tokens = content[rng.choice(len(content), total, p=zipf)]
        is_function = (kind >= 0.15) & (kind < 0.55)
        tokens[is_function] = function[rng.integers(0, len(function), int(is_function.sum()))]
        for k, words in enumerate(sentiment):
            pick = (kind < 0.15) & (token_label == k)
            tokens[pick] = words[rng.integers(0, len(words), int(pick.sum()))]
        extra = np.where(rng.random(n) < 0.3, extras[rng.integers(0, len(extras), n)], "")
        ends = np.cumsum(lengths)
        for row, (stop, length) in enumerate(zip(ends, lengths, strict=True)):
            text = " ".join(tokens[stop - length:stop])
            texts.append(f"{text} {extra[row]}" if extra[row] else text)
        yield pd.DataFrame({"text": texts, "label": labels[row_labels]}, index=pd.RangeIndex(start, start + n))


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
    import resource

    _setup_logging()
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
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
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
        synthetic_reviews(size, seed).to_csv(step_dir / "raw.csv", index=False)
        for step in ("preprocess", "featurize"):
            log.info("growth: %s on %d rows", step, size)
            result = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "growth-child", "--step", step,
                 "--workdir", str(step_dir), "--params", str(params_file.resolve())],
                env=subprocess_env(), capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"growth step {step} on {size} rows failed:\n{result.stderr[-3000:]}")
            record = json.loads(result.stdout.strip().splitlines()[-1])
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


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(report: dict) -> str:
    m = report["machine"]
    parts = [f"## Benchmark{' (quick)' if report['quick'] else ''}",
             f"{m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, Python {m['python']}"]
    ours, naive = report.get("ours"), report.get("naive")
    if ours or naive:
        rows = []
        for name, result, runs in (("pipeline (`dvc repro --force`)", ours, report["runs"]),
                                   ("naive reference", naive, report["naive_runs"])):
            if result:
                rows.append([name, f"{_fmt(result['seconds'])} s (median of {runs})", result["family"],
                             _fmt(result["cv_f1_macro"], 4), _fmt(result["test_f1_macro"], 4),
                             _fmt(result["peak_rss_mb"], 0, " MB")])
        parts.append(markdown_table(["", "wall time", "selected", "CV macro-F1", "test macro-F1",
                                     "peak RSS"], rows))
        if ours and naive:
            parts.append(f"Speed ratio naive / pipeline: **{naive['seconds'] / ours['seconds']:.2f}x**")
        native = report.get("ours_native_kernels")
        if ours and native:
            cost = ours["seconds"] / native["seconds"] - 1
            parts.append(f"Pinned kernels (the default) against the CPU's native kernels "
                         f"(`{NATIVE_KERNELS_ENV}=1`): {_fmt(ours['seconds'])} s vs "
                         f"{_fmt(native['seconds'])} s (medians of {report['runs']}), "
                         f"**{cost:+.1%}**; native run selected {native['family']}, test macro-F1 "
                         f"{_fmt(native['test_f1_macro'], 4)}")
        if ours and ours.get("noop_seconds") is not None:
            parts.append(f"No-op `dvc repro` (nothing changed): {_fmt(ours['noop_seconds'])} s (median of 3)")
    if ours:
        parts.append("### Pipeline stages (median across runs)")
        parts.append(markdown_table(
            ["stage", "process s", "stage s", "peak RSS MB", "workers' peak RSS MB"],
            [[name, _fmt(s["seconds"]), _fmt(s["stage_seconds"]), _fmt(s["max_rss_mb"], 0),
              _fmt(s["children_max_rss_mb"], 0)] for name, s in ours["stages"].items()]
            + [["all stage processes", _fmt(ours["stage_seconds_total"]), "", "", ""],
               ["DVC itself (wall time minus stages)",
                _fmt(ours["seconds"] - ours["stage_seconds_total"]), "", "", ""]]))
    if naive:
        parts.append("### Naive reference by family")
        parts.append(markdown_table(
            ["family", "candidates (naive / pipeline)", "CV macro-F1", "seconds"],
            [[family, f"{f['candidates']} / {f['project_candidates']}", _fmt(f["cv_f1_macro"], 4),
              _fmt(f["seconds"])] for family, f in naive["families"].items()]))
    if report.get("growth"):
        parts.append("### Growth on synthetic reviews (each step in a fresh process)")
        parts.append(markdown_table(
            ["rows", "step", "seconds", "rows/s", "µs/row", "µs/row vs smallest", "peak RSS MB"],
            [[_fmt(r["size"]), r["step"], _fmt(r["seconds"], 2), _fmt(r["rows_per_second"], 0),
              _fmt(r["us_per_row"]), _fmt(r["time_per_row_vs_smallest"], 2, "x"), _fmt(r["max_rss_mb"], 0)]
             for r in report["growth"]]))
    return "\n\n".join(parts) + "\n"


# ----------------------------------------------------------------------------- entry point
def _setup_logging() -> None:
    logging.basicConfig(level=os.environ.get("SENTIMENT_LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("dvclive", "dvc", "matplotlib", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


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
) -> None:
    """Time the pipeline against a naive grid search, and preprocess/featurize against data size."""
    _setup_logging()
    project = project.resolve()
    runs = runs or (1 if quick else 3)
    sizes = _parse_sizes(growth_sizes or (QUICK_GROWTH_SIZES if quick else FULL_GROWTH_SIZES))
    scratch = Path(tempfile.mkdtemp(prefix="sentiment-bench-", dir=workdir))
    report: dict = {"quick": quick, "runs": runs, "naive_runs": naive_runs, "machine": machine_info(),
                    "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    completed = False
    try:
        if not (skip_ours and skip_naive):
            snapshot = snapshot_project(project, scratch / "project", quick, seed)
            if not skip_ours:
                report["ours"] = run_ours(snapshot, runs)
                if kernels_reference:
                    report["ours_native_kernels"] = run_ours(snapshot, runs, native_kernels=True)
            else:  # the naive reference still needs the pipeline's split
                run_logged([sys.executable, "-m", "dvc", "repro", "preprocess"], snapshot,
                            subprocess_env(snapshot), scratch / "dvc-repro-preprocess.log")
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


def main() -> None:  # pragma: no cover - entry point
    # `python benchmarks/pipeline_bench.py [options]` runs the benchmark; the hidden child
    # commands are called by name.
    argv = sys.argv[1:]
    if not argv or argv[0] not in {"run", "naive-child", "growth-child"}:
        argv = ["run", *argv]
    app(args=argv, prog_name="python benchmarks/pipeline_bench.py")


if __name__ == "__main__":  # pragma: no cover
    main()
