"""The grid search on a Dask cluster gives what the local search gives, bit for bit."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from sentiment_pipeline.core.config import FeaturizeConfig, Params, PreprocessConfig, ResamplingConfig, TrainConfig
from sentiment_pipeline.core.errors import ConfigError
from sentiment_pipeline.pipeline.features import featurize
from sentiment_pipeline.pipeline.models import FAMILIES
from sentiment_pipeline.pipeline.preprocess import preprocess
from sentiment_pipeline.pipeline.train import grid_search

distributed = pytest.importorskip("distributed")  # a dev dependency: present with `make test`
pytestmark = pytest.mark.e2e  # starts worker processes


@pytest.fixture(scope="module")
def cluster():
    """Two single-threaded worker processes on this machine, started by the test."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as local:
        yield local


@pytest.fixture(scope="module")
def tweets(airline_sample):
    train = preprocess(airline_sample, PreprocessConfig(test_size=0.2)).train
    return featurize(train, train.iloc[:10], FeaturizeConfig(min_df=1))[1]


def _grid(family: str) -> dict:
    grid = getattr(Params().train.families, family).as_param_grid()
    if family in ("random_forest", "xgboost"):
        grid["clf__n_estimators"] = [10]
    return grid


def _fitted_arrays(model) -> list[bytes]:
    """Every fitted array of the model, as bytes (pickles of equal models can still differ in
    how they share objects, e.g. arrays that came back from a worker)."""
    found = []

    def walk(obj, depth=0):
        if depth > 12:
            return
        if isinstance(obj, np.ndarray):
            found.append(obj.tobytes() if obj.dtype != object else pickle.dumps(obj.tolist()))
        elif isinstance(obj, (list, tuple)):
            for item in obj:
                walk(item, depth + 1)
        elif isinstance(obj, dict):
            for key in sorted(obj, key=str):
                walk(obj[key], depth + 1)
        elif hasattr(obj, "__dict__") and not isinstance(obj, type):
            walk(vars(obj), depth + 1)

    walk(model)
    return found


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_dask_search_equals_the_local_search(cluster, tweets, family):
    local = TrainConfig(cv_folds=3, n_jobs=2)
    remote = local.model_copy(update={"backend": "dask", "scheduler_address": cluster.scheduler_address,
                                      "n_jobs": -1})
    strategy = ResamplingConfig(strategy="smote" if family == "naive_bayes" else "class_weight", k_neighbors=3)
    a = grid_search(family, _grid(family), tweets.X_train, tweets.y_train, local, strategy)
    b = grid_search(family, _grid(family), tweets.X_train, tweets.y_train, remote, strategy)
    assert a.cv_table.equals(b.cv_table) and a.summary == b.summary
    assert np.array_equal(a.best_estimator.predict_proba(tweets.X_test), b.best_estimator.predict_proba(tweets.X_test))
    assert _fitted_arrays(a.best_estimator) == _fitted_arrays(b.best_estimator) != []
    # recorded by the local search's scorer, refitted per fold on Dask: the same probabilities
    assert np.array_equal(a.oof_proba, b.oof_proba)


def test_without_an_address_the_search_starts_its_own_local_cluster(tweets, monkeypatch):
    monkeypatch.delenv("SENTIMENT_DASK_SCHEDULER", raising=False)
    config = TrainConfig(cv_folds=3, backend="dask", dask_workers=2)
    result = grid_search("logreg", {"clf__C": [0.5, 1.0]}, tweets.X_train, tweets.y_train, config,
                         ResamplingConfig(strategy="class_weight"))
    local = grid_search("logreg", {"clf__C": [0.5, 1.0]}, tweets.X_train, tweets.y_train,
                        TrainConfig(cv_folds=3), ResamplingConfig(strategy="class_weight"))
    assert result.cv_table.equals(local.cv_table)


def test_an_unreachable_scheduler_is_one_line(tweets, monkeypatch):
    from sentiment_pipeline.pipeline import cluster

    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_SECONDS", 2)
    monkeypatch.setenv("SENTIMENT_DASK_SCHEDULER", "tcp://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(ConfigError, match=r"could not reach a scheduler at tcp://127.0.0.1:9"):
        grid_search("logreg", {"clf__C": [1.0]}, tweets.X_train, tweets.y_train,
                    TrainConfig(cv_folds=3, backend="dask"), ResamplingConfig(strategy="class_weight"))
