"""The train stage: one cross-validated grid search per model family."""

from __future__ import annotations

import hashlib
import logging
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from joblib import parallel_config
from sklearn.metrics import get_scorer
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, ParameterGrid, StratifiedKFold, cross_val_predict
from sklearn.utils.class_weight import compute_sample_weight
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from sentiment_pipeline.config import ResamplingConfig, TrainConfig
from sentiment_pipeline.errors import ConfigError, DataError
from sentiment_pipeline.models import build_pipeline

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


def _fingerprint(X: sp.csr_matrix) -> bytes:
    digest = hashlib.blake2b(digest_size=16)
    for part in (X.indptr, X.indices, X.data):
        digest.update(np.ascontiguousarray(part).tobytes())
    return digest.digest()


class _OutOfFold:
    """Every (candidate, fold) fit's probabilities for its validation fold, as the search scores
    them: the scorer is given the validation rows, and their fingerprint names the fold. Costs
    a prediction per fit instead of refitting the best candidate once per fold."""

    def __init__(self, X: sp.csr_matrix, folds: list, param_names: list[str]) -> None:
        self.folds = folds
        self.fold_of = {_fingerprint(X[valid]): k for k, (_, valid) in enumerate(folds)}
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
        for (_, valid), proba in zip(self.folds, parts):
            oof[valid] = proba
        return oof


class _ScoreAndTick:
    """The search's scorer, ticking a progress bar: GridSearchCV scores every (candidate,
    fold) fit exactly once, on its validation fold, so the count is the fits done."""

    def __init__(self, scoring: str, bar: tqdm, out_of_fold: _OutOfFold) -> None:
        self.scorer = get_scorer(scoring)
        self.bar = bar
        self.out_of_fold = out_of_fold
        self.lock = threading.Lock()  # fits finish in parallel threads

    def __call__(self, estimator, X, y, **kwargs) -> float:
        score = self.scorer(estimator, X, y, **kwargs)
        self.out_of_fold.record(estimator, X)
        with self.lock:
            self.bar.update(1)
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


DASK_SCHEDULER_ENV = "SENTIMENT_DASK_SCHEDULER"
DASK_CONNECT_TIMEOUT = "20s"  # a scheduler that does not answer within it is an error


@contextmanager
def _fits_on_dask(config: TrainConfig):
    """Run the search's fits on a Dask cluster through joblib's Dask backend: the scheduler at
    ``train.scheduler_address`` or $SENTIMENT_DASK_SCHEDULER, else a LocalCluster of
    ``train.dask_workers`` single-threaded processes started for this search. The workers need
    this package importable and, for bit-identical numbers, the same pinned kernels (a
    LocalCluster inherits them; see kernels.py for remote workers)."""
    import os

    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("train.backend: dask needs Dask's distributed scheduler: install the "
                          "'dask' extra (pip install 'sentiment-pipeline[dask]')") from None
    address = config.scheduler_address or os.environ.get(DASK_SCHEDULER_ENV)
    cluster = None
    if address is None:
        # processes (not threads) like a real cluster's workers; BLAS single-threaded in each
        cluster = LocalCluster(n_workers=config.dask_workers, threads_per_worker=1, processes=True,
                               dashboard_address=":0")
        address = cluster.scheduler_address
    try:
        try:
            client = Client(address, timeout=DASK_CONNECT_TIMEOUT)
        except OSError as exc:  # no scheduler at the address: one line, not a traceback
            raise ConfigError(f"train.backend: dask could not reach a scheduler at {address} "
                              f"(train.scheduler_address / ${DASK_SCHEDULER_ENV}): {exc}") from None
        with client:
            log.info("fits run on the Dask cluster at %s (%d workers)", address,
                     len(client.scheduler_info().get("workers", {})))
            with threadpool_limits(limits=1), parallel_config(backend="dask"):
                yield
    finally:
        if cluster is not None:
            cluster.close()


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


def grid_search(
    family: str,
    grid: dict[str, list],
    X: sp.csr_matrix,
    y: np.ndarray,
    config: TrainConfig,
    resampling: ResamplingConfig,
    strategies: list[str] | None = None,
) -> SearchResult:
    """Stratified K-fold grid search of ``family`` over ``grid`` (``step__param`` keys),
    scored by macro-F1, with resampling inside each training fold. Refits the best candidate
    on all of X.

    ``strategies`` (the family's ``resampling`` grid entry) makes the resampling strategy a
    grid dimension: one search per strategy on the same folds, the best mean CV score wins
    (ties: the strategy listed first). Searched apart because class weights are a fit
    parameter of every candidate, while SMOTE changes the rows the classifier sees."""
    searched = strategies is not None  # the grid names its strategies: report which one won
    strategies = list(strategies or [resampling.strategy])
    searches = [_search_one(family, grid, X, y, config,
                            ResamplingConfig(strategy=s, k_neighbors=resampling.k_neighbors))
                for s in strategies]
    winner = max(range(len(searches)), key=lambda i: (searches[i][0].best_score_, -i))
    search, timing, oof_proba = searches[winner]
    best_params = {_config_name(k): _config_value(v) for k, v in search.best_params_.items()}
    tables = [_cv_table(s, list(grid)) for s, _, _ in searches]
    if searched:
        best_params["resampling"] = strategies[winner]
    if len(strategies) > 1:
        table = pd.concat([t.assign(resampling=strategy) for t, strategy in zip(tables, strategies)],
                          ignore_index=True)
        # ranked as GridSearchCV ranks: ties share the smaller rank
        table["rank"] = table["mean_f1_macro"].rank(method="min", ascending=False).astype(int)
        table = table.sort_values(["rank"], kind="stable").reset_index(drop=True)
        timing = {key: round(sum(t[key] for _, t, _ in searches), 3) for key in ("search_seconds", "fits")}
        timing["mean_fit_seconds"] = round(float(np.mean([t["mean_fit_seconds"] for _, t, _ in searches])), 3)
        timing.update(best_fit_seconds=searches[winner][1]["best_fit_seconds"],
                      refit_seconds=searches[winner][1]["refit_seconds"])
    else:
        table = tables[0]
    n_candidates = int(np.prod([len(v) for v in grid.values()])) * len(strategies)
    summary = {
        "family": family,
        "cv_f1_macro_mean": float(search.best_score_),
        "cv_f1_macro_std": float(search.cv_results_["std_test_score"][search.best_index_]),
        "n_candidates": n_candidates,
        "cv_folds": config.cv_folds,
        "best_params": best_params,
    }
    if searched:
        summary["resampling_cv_f1_macro"] = {s: float(found.best_score_) for s, (found, _, _) in zip(strategies, searches)}
    log.info("%s: best CV macro-F1 %.4f +/- %.4f with %s", family, summary["cv_f1_macro_mean"],
             summary["cv_f1_macro_std"], best_params)
    return SearchResult(family, search.best_estimator_, best_params, table, summary, timing, oof_proba)


def _timed_refit(estimator, params: dict, X, y, fit_params: dict):
    started = time.perf_counter()
    refitted = clone(estimator).set_params(**clone(params, safe=False)).fit(X, y, **fit_params)
    return refitted, time.perf_counter() - started


def _search_beside_refit(search: GridSearchCV, params: dict, X, y, fit_params: dict) -> None:
    """``search.fit`` of a one-candidate grid (``refit=False``), with the refit GridSearchCV
    would do afterwards (the same clone, parameters and fit parameters) run in a thread beside
    the folds; ``best_estimator_`` and ``refit_time_`` are then set as refit=True sets them."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="refit") as pool:
        refit = pool.submit(_timed_refit, search.estimator, params, X, y, fit_params)
        search.fit(X, y, **fit_params)
        search.best_estimator_, search.refit_time_ = refit.result()


def _search_one(family: str, grid: dict[str, list], X: sp.csr_matrix, y: np.ndarray, config: TrainConfig,
                resampling: ResamplingConfig) -> tuple[GridSearchCV, dict, np.ndarray]:
    """One GridSearchCV with one resampling strategy; the fitted search, its timing and the
    best candidate's out-of-fold probabilities."""
    _check_folds(y, config.cv_folds, resampling)
    _check_calibration_folds(y, config.cv_folds, grid.get("clf__calibration_folds", []))
    fit_params = {}
    if resampling.strategy == "class_weight":
        # Every family accepts sample weights; GridSearchCV slices them per fold.
        fit_params["clf__sample_weight"] = compute_sample_weight("balanced", y)
    n_candidates = int(np.prod([len(v) for v in grid.values()]))
    log.info("%s (%s): %d candidates x %d folds", family, resampling.strategy, n_candidates, config.cv_folds)
    # With SMOTE, Memory caches each fold's resampled matrix, so SMOTE runs once per fold and
    # filter setting, not per candidate; without it, hashing the matrix would cost more than it saves.
    with tempfile.TemporaryDirectory(prefix="sentiment-cv-cache-") as cache:
        memory = cache if resampling.strategy == "smote" else None
        pipeline = build_pipeline(family, resampling, config.seed, memory=memory)
        # candidates x folds done, elapsed, ETA; shown on a terminal only (tqdm's disable=None)
        on_dask = config.backend == "dask"
        bar = tqdm(total=n_candidates * config.cv_folds, desc=f"{family} CV fits ({resampling.strategy})",
                   unit="fit", disable=True if on_dask else None, leave=False)
        folds = list(StratifiedKFold(config.cv_folds, shuffle=True, random_state=config.seed).split(X, y))
        out_of_fold = _OutOfFold(X, folds, list(grid))
        # A single candidate is the best one before any fold is scored: its refit on all rows
        # then runs beside the folds (5 folds + refit on 2 cores: 3 fit-times, not 3 + 1).
        speculate = n_candidates == 1 and not on_dask
        search = GridSearchCV(
            pipeline,
            param_grid=grid,
            # the ticking scorer holds a lock and a terminal: it cannot travel to Dask workers
            scoring=config.scoring if on_dask else _ScoreAndTick(config.scoring, bar, out_of_fold),
            cv=folds,
            n_jobs=config.n_jobs,
            refit=not speculate,
            error_score="raise",
        )
        started = time.perf_counter()
        with bar, fits_in_parallel(config):
            if speculate:
                _search_beside_refit(search, ParameterGrid(grid)[0], X, y, fit_params)
            else:
                search.fit(X, y, **fit_params)
            search_seconds = round(time.perf_counter() - started, 2)
            search.best_estimator_.set_params(memory=None)
            if on_dask:  # the scorers ran on the workers: fit the best candidate once per fold
                oof_proba = cross_val_predict(clone(search.best_estimator_), X, y, cv=folds,
                                              method="predict_proba", params=fit_params, n_jobs=config.n_jobs)
            else:
                oof_proba = out_of_fold.of(search.best_params_, len(y))
        timing = {
            "search_seconds": search_seconds,
            "mean_fit_seconds": round(float(np.mean(search.cv_results_["mean_fit_time"])), 3),
            "best_fit_seconds": round(float(search.cv_results_["mean_fit_time"][search.best_index_]), 3),
            "refit_seconds": round(float(search.refit_time_), 3),
            "fits": n_candidates * config.cv_folds + 1,
        }
    return search, timing, oof_proba
