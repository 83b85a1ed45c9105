import io
import pickle

import numpy as np
import pandas as pd
import pytest
from imblearn.over_sampling import SMOTE

from sentiment_pipeline.core.config import FeaturizeConfig, Params, ResamplingConfig, TrainConfig
from sentiment_pipeline.core.errors import ConfigError, DataError
from sentiment_pipeline.pipeline.features import featurize
from sentiment_pipeline.pipeline.models import FAMILIES, build_pipeline
from sentiment_pipeline.pipeline.train import grid_search

TRAIN = TrainConfig(cv_folds=3, n_jobs=1)


@pytest.fixture(scope="module")
def features(separable_texts):
    train, test = separable_texts.iloc[:90], separable_texts.iloc[90:]
    return featurize(train, test, FeaturizeConfig(min_df=1))[1]


class RecordingSMOTE(SMOTE):
    """SMOTE that records the size of every sample it resamples."""

    seen: list[int] = []

    def fit_resample(self, X, y, **params):
        RecordingSMOTE.seen.append(X.shape[0])
        return super().fit_resample(X, y, **params)


def test_smote_runs_on_training_folds_only(features, monkeypatch):
    import imblearn.over_sampling

    RecordingSMOTE.seen = []
    # models.py imports SMOTE when it builds a pipeline, so patch it at its source
    monkeypatch.setattr(imblearn.over_sampling, "SMOTE", RecordingSMOTE)
    result = grid_search("logreg", {"clf__C": [1.0]}, features.X_train, features.y_train,
                         TRAIN, ResamplingConfig(strategy="smote", k_neighbors=3))
    n = features.X_train.shape[0]
    # three training folds of about 2/3 of the rows and the refit on all of them; never a
    # validation fold
    fold_sizes = sorted(RecordingSMOTE.seen)[:-1]
    assert len(RecordingSMOTE.seen) == 4 and sorted(RecordingSMOTE.seen)[-1] == n
    assert all(abs(size - n * 2 / 3) <= 1 for size in fold_sizes)
    assert result.best_estimator.predict(features.X_test).shape == (features.X_test.shape[0],)


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("strategy", ["smote", "class_weight", "none"])
def test_every_family_and_strategy_searches_its_grid(features, family, strategy):
    # two candidates each: two column filters, or (sgd, which has no filter) two alphas
    knob, values = ("alpha", [1e-4, 3e-4]) if family == "sgd" else ("select_k", [None, 20])
    grid = getattr(Params().train.families, family).model_copy(update={knob: values})
    param_grid = grid.as_param_grid()
    if family in ("random_forest", "xgboost"):
        param_grid["clf__n_estimators"] = [5]
    resampling = ResamplingConfig(strategy=strategy, k_neighbors=3)
    if family == "sgd" and strategy == "smote":  # SMOTE needs a fold's rows in memory: refused, naming the key
        with pytest.raises(ConfigError, match="train.families.sgd.resampling"):
            grid_search(family, param_grid, features.X_train, features.y_train, TRAIN, resampling)
        return
    result = grid_search(family, param_grid, features.X_train, features.y_train, TRAIN, resampling)
    assert result.summary["n_candidates"] == 2
    assert len(result.cv_table) == 2
    assert {"split0_f1_macro", "split2_f1_macro", "mean_f1_macro", "rank", knob} <= set(result.cv_table)
    assert result.best_params[knob] in values
    assert result.summary["cv_f1_macro_mean"] == result.cv_table["mean_f1_macro"].max()
    # measured seconds are reported apart from the (deterministic) summary
    assert result.timing["fits"] == 2 * 3 + 1 and result.timing["search_seconds"] > 0
    assert not {"search_seconds", "mean_fit_seconds"} & set(result.summary)
    # the vocabularies separate the classes: any family must beat chance by far
    assert result.summary["cv_f1_macro_mean"] > 0.6


def test_search_is_deterministic(features):
    grid = {"clf__n_estimators": [5, 10], "clf__max_depth": [3]}
    runs = [grid_search("xgboost", grid, features.X_train, features.y_train, TrainConfig(cv_folds=3, n_jobs=2),
                        ResamplingConfig(k_neighbors=3)) for _ in range(2)]
    assert runs[0].cv_table.equals(runs[1].cv_table)
    assert np.array_equal(runs[0].best_estimator.predict_proba(features.X_test),
                          runs[1].best_estimator.predict_proba(features.X_test))


def test_too_few_rows_per_fold_is_a_clear_error(features):
    with pytest.raises(DataError, match="fewer than train.cv_folds=50"):
        grid_search("naive_bayes", {"clf__alpha": [1.0]}, features.X_train, features.y_train,
                    TrainConfig(cv_folds=50), ResamplingConfig())


def test_pipeline_steps():
    pipeline = build_pipeline("logreg", ResamplingConfig(strategy="class_weight"), seed=0)
    assert [name for name, _ in pipeline.steps] == ["select", "resample", "clf"]
    assert pipeline.named_steps["resample"] == "passthrough"
    assert isinstance(build_pipeline("logreg", ResamplingConfig(strategy="smote"), 0).named_steps["resample"], SMOTE)


def test_smote_neighbours_are_checked_per_training_fold(features):
    from sentiment_pipeline.core.errors import ConfigError

    # the smallest class has 24 rows: about 19 per training fold at 5 folds
    with pytest.raises(ConfigError, match=r"k_neighbors=20 .* train.cv_folds=5"):
        grid_search("naive_bayes", {"clf__alpha": [1.0]}, features.X_train, features.y_train,
                    TrainConfig(cv_folds=5, n_jobs=1), ResamplingConfig(strategy="smote", k_neighbors=20))


def test_progress_bar_counts_every_candidate_fold_fit(features, monkeypatch):
    from tqdm import tqdm

    import sentiment_pipeline.pipeline.train as train

    bars = []

    class RecordingBar(tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "disable": False, "file": io.StringIO()})
            bars.append(self)

    monkeypatch.setattr(train, "tqdm", RecordingBar)
    grid_search("naive_bayes", {"clf__alpha": [0.5, 1.0]}, features.X_train, features.y_train,
                TrainConfig(cv_folds=3, n_jobs=2), ResamplingConfig(strategy="none"))
    # every candidate's fold fits, then the winner's refit
    assert len(bars) == 1 and bars[0].total == 2 * 3 + 1 and bars[0].n == 2 * 3 + 1


@pytest.mark.parametrize("family", ["linear_svm", "logreg", "random_forest"])
def test_threaded_search_is_deterministic(features, family):
    """Two fits share a process in the threaded search: nothing may depend on their timing."""
    grid = getattr(Params().train.families, family).as_param_grid()
    if family == "random_forest":
        grid["clf__n_estimators"] = [5]
    runs = [grid_search(family, grid, features.X_train, features.y_train, TrainConfig(cv_folds=3, n_jobs=2),
                        ResamplingConfig(strategy="class_weight")) for _ in range(2)]
    assert runs[0].cv_table.equals(runs[1].cv_table)
    assert pickle.dumps(runs[0].best_estimator) == pickle.dumps(runs[1].best_estimator)


@pytest.mark.parametrize("strategy", ["class_weight", "smote"])
def test_the_winners_refit_is_gridsearchcvs_refit(features, strategy):
    """The searches run with refit=False and the winner is refitted once they are done: the
    model and scores are those of GridSearchCV(refit=True) on the same folds, bit for bit."""
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.utils.class_weight import compute_sample_weight

    X, y, train = features.X_train, features.y_train, TrainConfig(cv_folds=3, n_jobs=2)
    resampling = ResamplingConfig(strategy=strategy, k_neighbors=3)
    grid = {"clf__C": [0.5]}
    ours = grid_search("logreg", grid, X, y, train, resampling)
    folds = list(StratifiedKFold(3, shuffle=True, random_state=train.seed).split(X, y))
    fit_params = {"clf__sample_weight": compute_sample_weight("balanced", y)} if strategy == "class_weight" else {}
    reference = GridSearchCV(build_pipeline("logreg", resampling, train.seed), grid, scoring="f1_macro",
                             cv=folds, refit=True).fit(X, y, **fit_params)
    assert pickle.dumps(ours.best_estimator) == pickle.dumps(reference.best_estimator_)
    assert ours.summary["cv_f1_macro_mean"] == reference.best_score_
    assert ours.timing["refit_seconds"] > 0 and ours.timing["fits"] == 3 + 1


def test_calibration_folds_are_checked_against_the_smallest_class(features):
    from sentiment_pipeline.core.errors import ConfigError

    # 24 rows in the smallest class: 12 per training fold at 2 folds
    with pytest.raises(ConfigError, match=r"calibration_folds=20 .* train.cv_folds=2"):
        grid_search("linear_svm", {"clf__calibration_folds": [3, 20]}, features.X_train,
                    features.y_train, TrainConfig(cv_folds=2, n_jobs=1), ResamplingConfig(strategy="none"))


def test_resampling_as_a_grid_dimension_compares_strategies_on_the_same_folds(features):
    """``resampling: [class_weight, smote]`` in a family's grid: each strategy searched on the
    same folds as a search with that strategy alone, the best CV mean wins and is reported."""
    grid = {"clf__alpha": [0.3, 1.0]}
    resampling = ResamplingConfig(strategy="none", k_neighbors=3)
    alone = {s: grid_search("naive_bayes", grid, features.X_train, features.y_train, TRAIN,
                            ResamplingConfig(strategy=s, k_neighbors=3)) for s in ("class_weight", "smote")}
    both = grid_search("naive_bayes", grid, features.X_train, features.y_train, TRAIN, resampling,
                       strategies=["class_weight", "smote"])
    scores = {s: r.summary["cv_f1_macro_mean"] for s, r in alone.items()}
    assert both.summary["resampling_cv_f1_macro"] == scores
    winner = max(scores, key=lambda s: (scores[s], s == "class_weight"))
    assert both.best_params["resampling"] == winner
    assert both.summary["cv_f1_macro_mean"] == scores[winner]
    assert both.summary["n_candidates"] == 4 and len(both.cv_table) == 4
    assert sorted(both.cv_table["resampling"]) == ["class_weight"] * 2 + ["smote"] * 2
    # ranks over both strategies' candidates, as GridSearchCV ranks (ties share the smaller rank)
    means = pd.concat([alone[s].cv_table["mean_f1_macro"] for s in ("class_weight", "smote")])
    expected_ranks = sorted(means.rank(method="min", ascending=False).astype(int))
    assert both.cv_table["rank"].tolist() == expected_ranks
    assert both.cv_table["mean_f1_macro"].tolist() == sorted(means, reverse=True)
    assert both.timing["fits"] == 2 * 2 * 3 + 1  # the winner alone is refitted
    # the winning strategy's own model: SMOTE in its pipeline exactly when it won
    has_smote = both.best_estimator.named_steps["resample"] != "passthrough"
    assert has_smote == (winner == "smote")
    expected = alone[winner].best_estimator.predict_proba(features.X_test)
    np.testing.assert_array_equal(both.best_estimator.predict_proba(features.X_test), expected)


def test_a_single_listed_strategy_is_reported_too(features):
    result = grid_search("naive_bayes", {"clf__alpha": [1.0]}, features.X_train, features.y_train, TRAIN,
                         ResamplingConfig(strategy="class_weight", k_neighbors=3), strategies=["smote"])
    assert result.best_params["resampling"] == "smote"
    assert list(result.summary["resampling_cv_f1_macro"]) == ["smote"]
    assert result.best_estimator.named_steps["resample"] != "passthrough"


def test_a_resampling_grid_entry_is_not_a_classifier_parameter():
    from sentiment_pipeline.core.config import NaiveBayesGrid

    grid = NaiveBayesGrid(alpha=[1.0], resampling=["class_weight", "smote"])
    assert "clf__resampling" not in grid.as_param_grid() and grid.resampling == ["class_weight", "smote"]
    with pytest.raises(ValueError, match="resampling"):
        NaiveBayesGrid(resampling=["oversample"])
    with pytest.raises(ValueError, match="must be distinct"):
        NaiveBayesGrid(resampling=["smote", "smote"])


def test_families_searched_together_are_each_family_searched_alone(features):
    """train_families runs every search in one pool and shares SMOTE's folds between them:
    neither the schedule nor the cache changes a score, a model or an out-of-fold probability."""
    from sentiment_pipeline.pipeline.train import train_families

    grids = {"logreg": ({"clf__C": [0.5, 1.0]}, ["class_weight", "smote"]),
             "naive_bayes": ({"clf__alpha": [0.3, 1.0]}, ["smote", "class_weight"]),
             "random_forest": ({"select__k": [40], "clf__n_estimators": [5]}, ["class_weight", "smote"]),
             "xgboost": ({"select__k": [40], "clf__n_estimators": [5], "clf__max_depth": [3]}, ["smote"])}
    config, resampling = TrainConfig(cv_folds=3, n_jobs=2), ResamplingConfig(k_neighbors=3)
    together = train_families(grids, features.X_train, features.y_train, config, resampling)
    for family, (grid, strategies) in grids.items():
        alone = grid_search(family, grid, features.X_train, features.y_train, TrainConfig(cv_folds=3, n_jobs=1),
                            resampling, strategies=strategies)
        pd.testing.assert_frame_equal(together[family].cv_table, alone.cv_table)
        assert together[family].summary == alone.summary
        assert np.array_equal(together[family].oof_proba, alone.oof_proba)
        assert pickle.dumps(together[family].best_estimator) == pickle.dumps(alone.best_estimator)


def test_smote_runs_once_per_fold_for_every_family_that_resamples_the_same_rows(features, monkeypatch):
    import imblearn.over_sampling

    from sentiment_pipeline.pipeline.train import train_families

    RecordingSMOTE.seen = []
    monkeypatch.setattr(imblearn.over_sampling, "SMOTE", RecordingSMOTE)
    grids = {family: ({"clf__C": [0.5, 1.0]} if family != "naive_bayes" else {"clf__alpha": [0.5, 1.0]}, ["smote"])
             for family in ("logreg", "naive_bayes", "linear_svm")}
    grids["linear_svm"] = ({"clf__calibration_folds": [2]}, ["smote"])
    results = train_families(grids, features.X_train, features.y_train, TrainConfig(cv_folds=3, n_jobs=2),
                             ResamplingConfig(k_neighbors=3))
    # 3 training folds, and all 90 rows for each family's refit: 4 runs, not 3 x (2 x 3 + 1)
    assert sorted(RecordingSMOTE.seen) == [60, 60, 60, 90]
    assert all(r.best_params["resampling"] == "smote" for r in results.values())


def test_dense_forest_grows_the_trees_of_the_sparse_one(features):
    """DenseRandomForest densifies to float32, which the forest converts to anyway."""
    from sklearn.ensemble import RandomForestClassifier

    from sentiment_pipeline.pipeline.forest import DenseRandomForest

    X, y = features.X_train, features.y_train
    dense = DenseRandomForest(n_estimators=10, max_samples=0.5, random_state=3, n_jobs=1).fit(X, y)
    sparse = RandomForestClassifier(n_estimators=10, max_samples=0.5, random_state=3, n_jobs=1).fit(X, y)
    np.testing.assert_array_equal(dense.predict_proba(features.X_test), sparse.predict_proba(features.X_test))
    for ours, theirs in zip(dense.estimators_, sparse.estimators_, strict=True):
        np.testing.assert_array_equal(ours.tree_.threshold, theirs.tree_.threshold)
        np.testing.assert_array_equal(ours.tree_.feature, theirs.tree_.feature)


@pytest.mark.parametrize("family", ["logreg", "random_forest"])
def test_shared_smote_folds_score_as_a_search_without_any_cache(features, family):
    """Two filter sizes, so a cache key mixing up candidates would show: the shared folds give
    GridSearchCV's own scores (memory=None: every fold resampled afresh) exactly."""
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    X, y = features.X_train, features.y_train
    config, resampling = TrainConfig(cv_folds=3, n_jobs=2), ResamplingConfig(strategy="smote", k_neighbors=3)
    grid = {"select__k": [20, 60], **({"clf__n_estimators": [5]} if family == "random_forest" else {})}
    ours = grid_search(family, grid, X, y, config, resampling)
    folds = list(StratifiedKFold(3, shuffle=True, random_state=config.seed).split(X, y))
    reference = GridSearchCV(build_pipeline(family, resampling, config.seed), grid, scoring="f1_macro",
                             cv=folds).fit(X, y)
    for k in range(3):
        np.testing.assert_array_equal(
            ours.cv_table.sort_values("select_k")[f"split{k}_f1_macro"].to_numpy(),
            reference.cv_results_[f"split{k}_test_score"])
    assert pickle.dumps(ours.best_estimator.named_steps["clf"]) == pickle.dumps(reference.best_estimator_.named_steps["clf"])


def test_a_failing_search_stops_the_others_and_is_raised(features, monkeypatch):
    """The SVM's first fit fails; naive Bayes' search (18 fits of 0.3 s here) stops at its next
    fit instead of running its 5 s out, and the SVM's error is what the stage raises."""
    import time as clock

    from sentiment_pipeline.pipeline.models import CalibratedLinearSVC, NaiveBayes
    from sentiment_pipeline.pipeline.train import train_families

    fits = []
    original = NaiveBayes.fit

    def slow_fit(self, X, y, sample_weight=None):
        fits.append(self.alpha)
        clock.sleep(0.3)
        return original(self, X, y, sample_weight=sample_weight)

    def failing_fit(self, X, y, sample_weight=None):
        raise RuntimeError("solver blew up")

    monkeypatch.setattr(NaiveBayes, "fit", slow_fit)
    monkeypatch.setattr(CalibratedLinearSVC, "fit", failing_fit)
    grids = {"naive_bayes": ({"clf__alpha": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]}, None),
             "linear_svm": ({"clf__C": [0.1]}, None)}
    begun = clock.perf_counter()
    with pytest.raises(RuntimeError, match="solver blew up"):
        train_families(grids, features.X_train, features.y_train, TrainConfig(cv_folds=3, n_jobs=2),
                       ResamplingConfig(strategy="class_weight"))
    assert clock.perf_counter() - begun < 3.0 and len(fits) < 6
