"""The train stage: one cross-validated grid search per model family."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from joblib import effective_n_jobs, parallel_config
from sklearn.base import clone
from sklearn.metrics import get_scorer
from sklearn.model_selection import GridSearchCV, ParameterGrid, StratifiedKFold, cross_val_predict
from sklearn.utils.class_weight import compute_sample_weight
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from sentiment_pipeline.core.config import ResamplingConfig, ResamplingStrategy, TrainConfig
from sentiment_pipeline.core.errors import ConfigError, DataError
from sentiment_pipeline.pipeline.models import LOCKED_FAMILIES, STREAMING_FAMILIES, build_pipeline

log = logging.getLogger(__name__)


@dataclass
class SearchResult:
    family: str
    best_estimator: object
    best_params: dict
    cv_table: pd.DataFrame
    summary: dict
    # Seconds, measured: they differ from run to run, so they stay out of ``summary``.
    timing: dict
    # The best candidate's out-of-fold class probabilities: row i from the fit that did not see
    # it (the ensemble family combines these)
    oof_proba: np.ndarray


def _fingerprint(X: sp.csr_matrix | np.ndarray) -> bytes:
    """A digest of a matrix's contents, shape and dtypes (each part's length goes in too, so
    no two different matrices feed the hash the same bytes)."""
    digest = hashlib.blake2b(digest_size=16)
    # scipy ships no types, so sp.issparse cannot narrow X to the sparse matrix for mypy
    parts = (X.indptr, X.indices, X.data) if sp.issparse(X) else (X,)  # type: ignore[union-attr]
    digest.update(repr((type(X).__name__, X.shape, [str(np.asarray(p).dtype) for p in parts])).encode())
    for part in parts:
        part = np.ascontiguousarray(part)
        digest.update(part.nbytes.to_bytes(8, "little"))
        digest.update(part.tobytes())
    return digest.digest()


class _OutOfFold:
    """Every (candidate, fold) fit's probabilities for its validation fold, as the search scores
    them: the scorer is given the validation rows, and their fingerprint names the fold. Costs
    a prediction per fit instead of refitting the best candidate once per fold."""

    def __init__(self, fold_of: dict[bytes, int], folds: list, param_names: list[str]) -> None:
        self.folds = folds
        self.fold_of = fold_of  # fingerprint of a validation fold's rows -> fold number
        self.param_names = param_names
        self.probas: dict[tuple, np.ndarray] = {}

    def _key(self, params: dict) -> tuple:
        return tuple(repr(params[name]) for name in self.param_names)

    def record(self, estimator, X) -> None:
        fold = self.fold_of.get(_fingerprint(X))
        if fold is not None:  # None: a scorer call of another search
            self.probas[(self._key(estimator.get_params()), fold)] = estimator.predict_proba(X)

    def of(self, params: dict, n_rows: int) -> np.ndarray:
        """The out-of-fold probabilities of the candidate with ``params``."""
        key = self._key(params)
        parts = [self.probas[(key, k)] for k in range(len(self.folds))]
        oof = np.zeros((n_rows, parts[0].shape[1]))
        for (_, valid), proba in zip(self.folds, parts, strict=True):
            oof[valid] = proba
        return oof


class _Cancelled(Exception):
    """Another search failed: this one stops at its next scored fit instead of running on."""


class _Progress:
    """The run's one progress bar, ticked from every search's thread, and the flag that stops
    every search once one has failed."""

    def __init__(self, bar: tqdm) -> None:
        self.bar = bar
        self.lock = threading.Lock()
        self.cancelled = threading.Event()

    def tick(self) -> None:
        with self.lock:
            self.bar.update(1)


class _ScoreAndTick:
    """The search's scorer, ticking the progress bar: GridSearchCV scores every (candidate,
    fold) fit exactly once, on its validation fold, so the count is the fits done."""

    def __init__(self, scoring: str, progress: _Progress, out_of_fold: _OutOfFold) -> None:
        self.scorer = get_scorer(scoring)
        self.progress = progress
        self.out_of_fold = out_of_fold

    def __call__(self, estimator, X, y, **kwargs) -> float:
        if self.progress.cancelled.is_set():
            raise _Cancelled
        score = self.scorer(estimator, X, y, **kwargs)
        self.out_of_fold.record(estimator, X)
        self.progress.tick()
        return score


@contextmanager
def _one_thread_per_fit():
    """Run the search's fits in threads of this process, each fit single-threaded.

    Threads skip what process workers pay on every stage: starting interpreters, importing
    scikit-learn and copying the data (3-4 s per stage, more than some whole searches). The
    solvers release the GIL, and one BLAS/OpenMP thread per fit keeps cores from being
    oversubscribed and floating-point sums in the same order, so results match the
    process-based search bit for bit."""
    with threadpool_limits(limits=1), parallel_config(backend="threading"):
        yield


@contextmanager
def _fits_on_dask(config: TrainConfig):
    """Run the search's fits on a Dask cluster through joblib's Dask backend: the scheduler at
    ``train.scheduler_address`` or $SENTIMENT_DASK_SCHEDULER, else a LocalCluster of
    ``train.dask_workers`` single-threaded processes started for this search (cluster.dask_client,
    as for the data stages). The workers need this package importable and, for bit-identical
    numbers, the same pinned kernels (a LocalCluster inherits them; see kernels.py for remote
    workers)."""
    from sentiment_pipeline.pipeline.cluster import dask_client

    with (dask_client("train", config.scheduler_address, config.dask_workers, as_default=True),
          threadpool_limits(limits=1), parallel_config(backend="dask")):
        yield


def fits_in_parallel(config: TrainConfig):
    """Where ``train.backend`` runs a search's fits: threads of this process, or Dask."""
    return _fits_on_dask(config) if config.backend == "dask" else _one_thread_per_fit()


def _smallest_training_fold(y: np.ndarray, folds: int) -> int:
    """Rows of the smallest class in a training fold: all but about 1/folds of them."""
    smallest = int(np.bincount(y).min())
    return int(smallest - np.ceil(smallest / folds))


def _check_folds(y: np.ndarray, folds: int, resampling: ResamplingConfig) -> None:
    counts = np.bincount(y)
    if np.count_nonzero(counts) < 2:
        raise DataError("the training split holds a single class; a classifier needs at least two "
                        "(check data/processed/train.csv)")
    if counts.min() < folds:
        raise DataError(
            f"the smallest class has {counts.min()} training rows, fewer than "
            f"train.cv_folds={folds}; lower train.cv_folds or add data"
        )
    # SMOTE needs more rows than k_neighbors in every class it oversamples.
    smallest_fold = _smallest_training_fold(y, folds)
    if resampling.strategy == "smote" and smallest_fold <= resampling.k_neighbors:
        raise ConfigError(
            f"featurize.resampling.k_neighbors={resampling.k_neighbors} needs more rows than that "
            f"in every class of a training fold; with train.cv_folds={folds} the smallest class "
            f"has {smallest_fold}. Lower k_neighbors or cv_folds, or use another strategy"
        )


def _check_calibration_folds(y: np.ndarray, folds: int, calibration_folds: list[int]) -> None:
    """The calibrated SVM splits every training fold again; each class needs a row per split."""
    if not calibration_folds:
        return
    smallest_fold = _smallest_training_fold(y, folds)
    if max(calibration_folds) > smallest_fold:
        raise ConfigError(
            f"train.families.linear_svm.calibration_folds={max(calibration_folds)} needs that many "
            f"rows of every class in each training fold; with train.cv_folds={folds} the smallest "
            f"class has {smallest_fold}. Lower calibration_folds or cv_folds, or add data"
        )


def _config_name(param_key: str) -> str:
    """``clf__C`` -> ``C``, ``select__k`` -> ``select_k``: the names params.yaml uses."""
    step, name = param_key.split("__", 1)
    return "select_k" if step == "select" else name


def _config_value(value):
    return None if value == "all" else value


def _cv_table(search: GridSearchCV, param_names: list[str]) -> pd.DataFrame:
    results = search.cv_results_
    # Fit and score times are left out: they differ run to run and would make outputs churn.
    table = pd.DataFrame({
        _config_name(name): [_config_value(v) for v in results[f"param_{name}"]]
        for name in param_names
    })
    folds = search.n_splits_
    for i in range(folds):
        table[f"split{i}_f1_macro"] = results[f"split{i}_test_score"]
    table["mean_f1_macro"] = results["mean_test_score"]
    table["std_f1_macro"] = results["std_test_score"]
    table["rank"] = results["rank_test_score"]
    return table.sort_values(["rank"], kind="stable").reset_index(drop=True)


class FoldCache:
    """Each training fold's resampled rows, computed once per training run and shared by every
    search that resamples the same rows the same way (a ``memory`` for the Pipelines).

    SMOTE's output depends only on its parameters and the rows it gets: the families without a
    column filter (logreg, naive Bayes, the SVM) resample the same training folds, and so do
    the forest and XGBoost (the same chi-squared filter of 1,000 columns), so of the 30 SMOTE
    runs of the default run's CV and refits 12 remain. Entries are keyed by the arguments'
    contents (a BLAKE2 digest of every array, joblib's hash of the rest), as joblib.Memory keys
    them, but held in memory: joblib.Memory pickled each 50 MB fold to disk and hashed it again
    on every read, which cost naive Bayes' search 4 of its 6 s. Only the resampling step is
    cached; the filter is cheaper to refit than to key.

    Unlike joblib.Memory's copies, every search gets the same arrays (and the same fitted
    sampler, which the refitted models keep in their unused resample step): they are made
    read-only, so a classifier that wrote into its input would fail loudly instead of changing
    another search's rows."""

    def __init__(self) -> None:
        self._entries: dict[tuple, list] = {}
        self._lock = threading.Lock()

    def __deepcopy__(self, memo):  # clone() deep-copies Pipeline parameters: share, don't copy
        return self

    def cache(self, func, ignore=None):
        if func.__name__ != "_fit_resample_one":
            return func
        import inspect

        import joblib

        signature = inspect.signature(func)

        def cached(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            key = tuple((name, _content_key(value)) for name, value in bound.arguments.items()
                        if name not in (ignore or ()))
            with self._lock:
                entry = self._entries.setdefault(key, [threading.Lock(), None])
            with entry[0]:  # a second search wanting the same fold waits for the first
                if entry[1] is None:
                    entry[1] = _read_only(func(*args, **kwargs))
            return entry[1]

        def _read_only(result):
            for value in result:
                for array in (value.data, value.indices, value.indptr) if sp.issparse(value) else (value,):
                    if isinstance(array, np.ndarray):
                        array.flags.writeable = False
            return result

        def _content_key(value):
            if sp.issparse(value) or isinstance(value, np.ndarray):
                return _fingerprint(value)
            return joblib.hash(value)

        return cached


@dataclass(eq=False)
class _Search:
    """One family's grid search with one resampling strategy."""

    family: str
    strategy: ResamplingStrategy
    search: GridSearchCV | StreamedSearch
    fit_params: dict
    out_of_fold: _OutOfFold | None
    seconds: float = 0.0


# Relative seconds per fit on this data (measured, class weights; SMOTE doubles them): the
# longest searches start first so the cores finish together. Only the order depends on them.
_FIT_COST = {"xgboost": 3.0, "logreg": 2.0, "random_forest": 2.0, "linear_svm": 1.5, "naive_bayes": 0.2, "sgd": 1.0}


def grid_search(
    family: str,
    grid: dict[str, list],
    X: sp.csr_matrix,
    y: np.ndarray,
    config: TrainConfig,
    resampling: ResamplingConfig,
    strategies: list[ResamplingStrategy] | None = None,
) -> SearchResult:
    """Stratified K-fold grid search of ``family`` over ``grid`` (``step__param`` keys),
    scored by macro-F1, with resampling inside each training fold; the best candidate refitted
    on all of X. One family of :func:`train_families`."""
    return train_families({family: (grid, strategies)}, X, y, config, resampling)[family]


def train_families(
    grids: dict[str, tuple[dict[str, list], list[ResamplingStrategy] | None]],
    X: sp.csr_matrix,
    y: np.ndarray,
    config: TrainConfig,
    resampling: ResamplingConfig,
) -> dict[str, SearchResult]:
    """Every family's search (``grids``: family -> (param grid, resampling strategies or None)).

    ``strategies`` (a family's ``resampling`` grid entry) make the resampling strategy a grid
    dimension: one search per strategy on the same folds, the best mean CV score wins (ties:
    the strategy listed first). Searched apart because class weights are a fit parameter of
    every candidate, while SMOTE changes the rows the classifier sees.

    With ``train.backend: local`` all families' searches run in one pool of threads (a search
    per thread, its fits in turn), the longest first, and each family's winner is refitted as
    soon as its searches are done: the cores stay busy to the end, the liblinear lock that
    serialises the SVM's fits costs no idle core, and SMOTE's folds are shared through a
    :class:`FoldCache`. Scores and models do not depend on that schedule (tested)."""
    _check_grids(grids, y, config, resampling)
    on_dask = config.backend == "dask"
    folds = list(StratifiedKFold(config.cv_folds, shuffle=True, random_state=config.seed).split(X, y))
    fold_of = None if on_dask else {_fingerprint(X[valid]): k for k, (_, valid) in enumerate(folds)}
    memory = None if on_dask else FoldCache()  # a Dask worker could not share it
    n_fits = sum(int(np.prod([len(v) for v in grid.values()])) * config.cv_folds * len(strategies or [None]) + 1
                 for grid, strategies in grids.values())
    # candidates x folds done, elapsed, ETA; shown on a terminal only (tqdm's disable=None)
    bar = tqdm(total=n_fits, desc="CV fits", unit="fit", disable=True if on_dask else None, leave=False)
    progress = _Progress(bar)
    searches: dict[str, list[_Search]] = {}
    for family, (grid, strategies) in grids.items():
        searches[family] = []
        for strategy in strategies or [resampling.strategy]:
            strategy_config = ResamplingConfig(strategy=strategy, k_neighbors=resampling.k_neighbors)
            fit_params = {}
            if strategy == "class_weight":
                # Every family accepts sample weights; GridSearchCV slices them per fold.
                fit_params["clf__sample_weight"] = compute_sample_weight("balanced", y)
            if family in STREAMING_FAMILIES:
                # the rows' positions, sliced per fold like the weights (and their number, passed
                # as is): a fold's fit then blocks and orders its rows as the streamed fit does
                fit_params["clf__row_ids"] = np.arange(len(y), dtype=np.int64)
                fit_params["clf__total_rows"] = len(y)
            out_of_fold = None if fold_of is None else _OutOfFold(fold_of, folds, list(grid))  # None: on_dask
            search = GridSearchCV(
                build_pipeline(family, strategy_config, config.seed, memory=memory),
                param_grid=grid,
                # the ticking scorer holds a lock and a terminal: it cannot travel to Dask workers
                scoring=config.scoring if out_of_fold is None else _ScoreAndTick(config.scoring, progress, out_of_fold),
                cv=folds,
                n_jobs=config.n_jobs if on_dask else 1,
                refit=False,  # the winner across strategies is refitted below, once
                error_score="raise",
            )
            searches[family].append(_Search(family, strategy, search, fit_params, out_of_fold))
            log.info("%s (%s): %d candidates x %d folds", family, strategy,
                     len(ParameterGrid(grid)), config.cv_folds)
    with bar, fits_in_parallel(config):
        if on_dask:
            refits = _run_on_dask(searches, X, y, folds, config, progress)
        else:
            refits = _run_in_threads(searches, X, y, config, progress)
    results = {}
    for family, (grid, strategies) in grids.items():
        refit, refit_seconds, oof_proba = refits[family]
        refit.set_params(memory=None)
        results[family] = _result(family, grid, strategies, searches[family], refit, refit_seconds, oof_proba,
                                  y, config)
    return results


def _check_grids(grids: dict, y: np.ndarray, config: TrainConfig, resampling: ResamplingConfig) -> None:
    for family, (grid, strategies) in grids.items():
        for strategy in strategies or [resampling.strategy]:
            if strategy == "smote" and family in STREAMING_FAMILIES:
                raise ConfigError(f"train.families.{family}.resampling: SMOTE needs every row of a fold in memory, "
                                  f"which the {family} family never holds; set it to [class_weight]")
            _check_folds(y, config.cv_folds, ResamplingConfig(strategy=strategy, k_neighbors=resampling.k_neighbors))
        _check_calibration_folds(y, config.cv_folds, grid.get("clf__calibration_folds", []))


def _winner(searches: list[_Search]) -> _Search:
    """The strategy with the best mean CV score; ties: the one listed first."""
    best = max(range(len(searches)), key=lambda i: (searches[i].search.best_score_, -i))
    return searches[best]


def _fit_search(job: _Search, X, y, progress: _Progress | None = None) -> _Search:
    if progress is not None and progress.cancelled.is_set():
        raise _Cancelled
    assert isinstance(job.search, GridSearchCV)  # in memory: the streamed searches never come here
    started = time.perf_counter()
    job.search.fit(X, y, **job.fit_params)
    job.seconds = time.perf_counter() - started
    return job


def _fit_searches(jobs: list[_Search], X, y, progress: _Progress) -> list[_Search]:
    return [_fit_search(job, X, y, progress) for job in jobs]


def _refit(job: _Search, X, y, progress: _Progress) -> tuple:
    """The winner refitted on all rows, its seconds, and its out-of-fold probabilities."""
    estimator, seconds = _timed_refit(job.search.estimator, job.search.best_params_, X, y, job.fit_params)
    progress.tick()
    assert job.out_of_fold is not None  # the threads' searches (not Dask's) record it
    return estimator, seconds, job.out_of_fold.of(job.search.best_params_, len(y))


def _run_in_threads(searches: dict[str, list[_Search]], X, y, config: TrainConfig, progress: _Progress) -> dict:
    """Every search in a pool of threads, longest first, a search per thread and its fits in
    turn (so `train --family` alone uses one core); a family's winner refitted as soon as its
    searches are done. Returns family -> (refitted winner, seconds, out-of-fold probabilities).
    The first failure stops the rest at their next fit (`_Cancelled`) and is raised."""
    def cost(job: _Search) -> float:
        return (_FIT_COST.get(job.family, 1.0) * len(ParameterGrid(job.search.param_grid))
                * (2.0 if job.strategy == "smote" else 1.0))

    # A task is one search, or all of a locked family's searches in turn (see LOCKED_FAMILIES).
    tasks = [[job] for family, family_jobs in searches.items() if family not in LOCKED_FAMILIES
             for job in family_jobs]
    tasks += [family_jobs for family, family_jobs in searches.items() if family in LOCKED_FAMILIES]
    tasks.sort(key=lambda task: sum(cost(job) for job in task), reverse=True)
    left = {family: len(family_jobs) for family, family_jobs in searches.items()}
    refits = {}
    with ThreadPoolExecutor(max_workers=effective_n_jobs(config.n_jobs), thread_name_prefix="fit") as pool:
        try:
            searching = {pool.submit(_fit_searches, task, X, y, progress): task for task in tasks}
            running: set[Future] = set(searching)  # the searches, then the refits too
            while running:
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    future.result()  # a failed fit raises here
                    task = searching.get(future)
                    if task is None:  # a refit
                        continue
                    job = task[0]
                    left[job.family] -= len(task)
                    if not left[job.family]:  # all its strategies searched: refit the winner
                        refits[job.family] = pool.submit(_refit, _winner(searches[job.family]), X, y, progress)
                        running.add(refits[job.family])
        except BaseException:
            progress.cancelled.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return {family: future.result() for family, future in refits.items()}


def _run_on_dask(searches: dict[str, list[_Search]], X, y, folds: list, config: TrainConfig,
                 progress: _Progress) -> dict:
    """Every search in turn, its fits spread over the cluster; the winner refitted here and,
    since the scorers ran on the workers, fitted once per fold on the cluster for its
    out-of-fold probabilities."""
    refits = {}
    for family, family_jobs in searches.items():
        for job in family_jobs:
            _fit_search(job, X, y)
        winner = _winner(family_jobs)
        estimator, seconds = _timed_refit(winner.search.estimator, winner.search.best_params_, X, y,
                                          winner.fit_params)
        progress.tick()
        oof_proba = cross_val_predict(clone(estimator).set_params(memory=None), X, y, cv=folds,
                                      method="predict_proba", params=winner.fit_params, n_jobs=config.n_jobs)
        refits[family] = (estimator, seconds, oof_proba)
    return refits


def _result(family: str, grid: dict[str, list], strategies: list[ResamplingStrategy] | None, searches: list[_Search],
            estimator, refit_seconds: float, oof_proba: np.ndarray, y, config: TrainConfig) -> SearchResult:
    searched = strategies is not None  # the grid names its strategies: report which one won
    strategies = [job.strategy for job in searches]
    winner = _winner(searches)
    search = winner.search
    best_params = {_config_name(k): _config_value(v) for k, v in search.best_params_.items()}
    if searched:
        best_params["resampling"] = winner.strategy
    tables = [_cv_table(job.search, list(grid)) for job in searches]
    if len(searches) > 1:
        table = pd.concat([t.assign(resampling=job.strategy) for t, job in zip(tables, searches, strict=True)],
                          ignore_index=True)
        # ranked as GridSearchCV ranks: ties share the smaller rank
        table["rank"] = table["mean_f1_macro"].rank(method="min", ascending=False).astype(int)
        table = table.sort_values(["rank"], kind="stable").reset_index(drop=True)
    else:
        table = tables[0]
    n_candidates = len(ParameterGrid(grid)) * len(strategies)
    summary = {
        "family": family,
        "cv_f1_macro_mean": float(search.best_score_),
        "cv_f1_macro_std": float(search.cv_results_["std_test_score"][search.best_index_]),
        "n_candidates": n_candidates,
        "cv_folds": config.cv_folds,
        "best_params": best_params,
    }
    if searched:
        summary["resampling_cv_f1_macro"] = {job.strategy: float(job.search.best_score_) for job in searches}
    fit_times = np.concatenate([job.search.cv_results_["mean_fit_time"] for job in searches])
    timing = {
        "search_seconds": round(sum(job.seconds for job in searches) + refit_seconds, 2),
        "mean_fit_seconds": round(float(np.mean(fit_times)), 3),
        "best_fit_seconds": round(float(search.cv_results_["mean_fit_time"][search.best_index_]), 3),
        "refit_seconds": round(refit_seconds, 3),
        "fits": n_candidates * config.cv_folds + 1,
    }
    log.info("%s: best CV macro-F1 %.4f +/- %.4f with %s", family, summary["cv_f1_macro_mean"],
             summary["cv_f1_macro_std"], best_params)
    return SearchResult(family, estimator, best_params, table, summary, timing, oof_proba)


def _timed_refit(estimator, params: dict, X, y, fit_params: dict):
    """The refit GridSearchCV(refit=True) does: the same clone, parameters and fit parameters."""
    started = time.perf_counter()
    refitted = clone(estimator).set_params(**clone(params, safe=False)).fit(X, y, **fit_params)
    return refitted, time.perf_counter() - started


# ----------------------------------------------------------------------------- streamed (train.chunk_rows)
class StreamedSearch:
    """What ``GridSearchCV(refit=False)`` holds after its fit (the attributes ``_cv_table``,
    ``_result`` and ``_winner`` read), for a search whose fits were streamed: the same
    ``cv_results_`` arithmetic (means, population standard deviations, ``min`` ranks) on the same
    candidates in ``ParameterGrid`` order."""

    def __init__(self, estimator, param_grid: dict[str, list], scores: np.ndarray, seconds: float) -> None:
        from scipy.stats import rankdata

        self.estimator, self.param_grid = estimator, param_grid
        candidates = list(ParameterGrid(param_grid))
        n_candidates, self.n_splits_ = scores.shape
        results: dict = {f"param_{name}": [params[name] for params in candidates] for name in param_grid}
        results["params"] = candidates
        for i in range(self.n_splits_):
            results[f"split{i}_test_score"] = scores[:, i]
        means = np.average(scores, axis=1)
        results["mean_test_score"] = means
        results["std_test_score"] = np.sqrt(np.average((scores - means[:, np.newaxis]) ** 2, axis=1))
        results["rank_test_score"] = rankdata(-means, method="min").astype(np.int32, copy=False)
        # the fits shared their passes over the file: each one's share of the time
        results["mean_fit_time"] = np.full(n_candidates, seconds / max(1, scores.size))
        self.cv_results_ = results
        self.best_index_ = int(results["rank_test_score"].argmin())
        self.best_score_ = means[self.best_index_]
        self.best_params_ = candidates[self.best_index_]


def check_streamable(families) -> None:
    """With ``train.chunk_rows`` set, every listed family must learn block by block."""
    cannot = [family for family in families if family not in STREAMING_FAMILIES]
    if cannot:
        drop = " ".join(f"-S '~train.families.{family}'" for family in cannot)
        raise ConfigError(f"train.chunk_rows streams the training matrix, which {', '.join(cannot)} cannot learn from "
                          f"in blocks (only {', '.join(sorted(STREAMING_FAMILIES))} can): drop them ({drop}) or set "
                          f"train.chunk_rows: null")


def train_families_streamed(
    grids: dict[str, tuple[dict[str, list], list[ResamplingStrategy] | None]],
    x_file: Path,
    y: np.ndarray,
    config: TrainConfig,
    resampling: ResamplingConfig,
) -> dict[str, SearchResult]:
    """:func:`train_families` for families that learn block by block, with ``X_train.npz`` read in
    blocks and never whole (``train.chunk_rows``; see incremental.py): the same StratifiedKFold
    folds, CV table, summary, out-of-fold probabilities and refitted model as the in-memory search,
    bit for bit (tests/test_train_stream.py). Every candidate of every resampling strategy is
    fitted on every fold in shared passes over the file (epochs passes, then one to calibrate and
    score); the winner is then refitted on all rows (epochs passes, then one to calibrate it and
    collect its folds' out-of-fold probabilities)."""
    from sentiment_pipeline.pipeline import incremental

    assert config.chunk_rows is not None
    check_streamable(grids)
    _check_grids(grids, y, config, resampling)
    if config.backend == "dask":
        log.warning("train.chunk_rows: the streamed fits run in this process; train.backend: dask does not apply")
    n_folds = config.cv_folds
    splits = StratifiedKFold(n_folds, shuffle=True, random_state=config.seed).split(np.zeros((len(y), 0)), y)
    fold_of = incremental.fold_numbers(splits, len(y), n_folds)
    balanced = incremental.balanced_class_weights(y)
    results = {}
    # one BLAS/OpenMP thread per fit, as in memory: the fits run in threads of their own
    with incremental.CsrNpzReader(x_file) as reader, threadpool_limits(limits=1):
        training = incremental.StreamedTraining(reader, y, fold_of, config.chunk_rows, effective_n_jobs(config.n_jobs))
        try:
            for family, (grid, strategies) in grids.items():
                started = time.perf_counter()
                templates, candidates = [], []
                for strategy in strategies or [resampling.strategy]:
                    template = build_pipeline(family, ResamplingConfig(strategy=strategy, k_neighbors=resampling.k_neighbors),
                                              config.seed)
                    weights = balanced if strategy == "class_weight" else None
                    templates.append((strategy, template))
                    candidates += [(clone(template).set_params(**params).named_steps["clf"], weights)
                                   for params in ParameterGrid(grid)]
                    log.info("%s (%s): %d candidates x %d folds, streamed", family, strategy,
                             len(ParameterGrid(grid)), n_folds)
                scores, fold_models = incremental.cross_validate(training, candidates, n_folds)
                seconds = time.perf_counter() - started
                per_strategy = len(ParameterGrid(grid))
                searches = []
                for i, (strategy, template) in enumerate(templates):
                    part = scores[i * per_strategy:(i + 1) * per_strategy]
                    search = StreamedSearch(template, grid, part, seconds * len(part) / len(scores))
                    searches.append(_Search(family, strategy, search, {}, None, seconds * len(part) / len(scores)))
                winner = _winner(searches)
                best = searches.index(winner) * per_strategy + int(winner.search.best_index_)
                best_folds, weights = fold_models[best], candidates[best][1]
                del fold_models, candidates  # the other fold models' coefficients
                started = time.perf_counter()
                estimator = clone(winner.search.estimator).set_params(**clone(winner.search.best_params_, safe=False))
                oof_proba = incremental.refit(training, estimator.named_steps["clf"], weights, best_folds)
                estimator.set_params(memory=None)
                results[family] = _result(family, grid, strategies, searches, estimator, time.perf_counter() - started,
                                          oof_proba, y, config)
                log.info("%s: %d passes over %s so far", family, training.passes, x_file)
        finally:
            training.close()
    return results
