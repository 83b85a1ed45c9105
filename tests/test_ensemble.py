"""The ensemble family: out-of-fold probabilities, its CV on them, and the fitted ensemble."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.utils.class_weight import compute_sample_weight

from sentiment_pipeline.core.config import EnsembleConfig, FeaturizeConfig, Params, ResamplingConfig, TrainConfig
from sentiment_pipeline.core.errors import ConfigError, DataError
from sentiment_pipeline.pipeline import ensemble
from sentiment_pipeline.pipeline.ensemble import EnsembleClassifier, prediction_pipeline, search_ensemble, soft_vote
from sentiment_pipeline.pipeline.features import featurize
from sentiment_pipeline.pipeline.train import fits_in_parallel, grid_search

TRAIN = TrainConfig(cv_folds=3, n_jobs=2)
MEMBERS = ("linear_svm", "logreg", "naive_bayes")


@pytest.fixture(scope="module")
def features(airline_sample):
    data = airline_sample.assign(text=airline_sample["text"].str.lower())
    return featurize(data.iloc[:240], data.iloc[240:], FeaturizeConfig(min_df=1))[1]


@pytest.fixture(scope="module")
def searches(features):
    grids = {"linear_svm": {"clf__C": [0.2, 0.4], "clf__calibration_folds": [2]},
             "logreg": {"clf__C": [0.5, 1.0], "clf__solver": ["newton-cg"]},
             "naive_bayes": {"clf__alpha": [0.1, 0.3]}}
    return {family: grid_search(family, grids[family], features.X_train, features.y_train, TRAIN,
                                ResamplingConfig(strategy="class_weight"))
            for family in MEMBERS}


def _folds(y):
    return list(StratifiedKFold(TRAIN.cv_folds, shuffle=True, random_state=TRAIN.seed).split(np.zeros(len(y)), y))


@pytest.mark.parametrize("family", MEMBERS)
def test_the_searchs_out_of_fold_probabilities_are_the_best_candidate_refitted_per_fold(features, searches, family):
    X, y = features.X_train, features.y_train
    result = searches[family]
    with fits_in_parallel(TRAIN):  # one BLAS thread per fit, as in the search: the same sums
        refitted = cross_val_predict(clone(result.best_estimator), X, y, cv=_folds(y), method="predict_proba",
                                     params={"clf__sample_weight": compute_sample_weight("balanced", y)})
    assert np.array_equal(result.oof_proba, refitted)
    if family != "linear_svm":  # its predictions come from margins, not from the probabilities
        fold_scores = [f1_score(y[valid], result.oof_proba[valid].argmax(1), average="macro")
                       for _, valid in _folds(y)]
        assert np.mean(fold_scores) == pytest.approx(result.summary["cv_f1_macro_mean"], abs=1e-12)


def _search(searches, y, **config):
    config = EnsembleConfig(**{"members": list(MEMBERS), **config})
    return search_ensemble(config, TRAIN, [searches[m].best_estimator for m in config.members],
                           [searches[m].oof_proba for m in config.members], y)


def test_every_combination_is_scored_per_fold_and_the_best_wins(features, searches):
    y = features.y_train
    result = _search(searches, y, method=["soft_vote", "stacking"], prior_power=[0.0, 1.0], meta_C=[0.5])
    table = result.cv_table
    assert len(table) == result.summary["n_candidates"] == 3
    assert table["mean_f1_macro"].iloc[0] == table["mean_f1_macro"].max() == result.summary["cv_f1_macro_mean"]
    # the soft vote with no prior adjustment, scored by hand from the members' probabilities
    row = table[(table["method"] == "soft_vote") & (table["prior_power"] == 0.0)].iloc[0]
    for k, (_, valid) in enumerate(_folds(y)):
        vote = np.mean([searches[m].oof_proba[valid] for m in MEMBERS], axis=0)
        assert row[f"split{k}_f1_macro"] == pytest.approx(f1_score(y[valid], vote.argmax(1), average="macro"))
    assert result.summary["best_params"]["members"] == list(MEMBERS)


def test_stackings_meta_learner_sees_other_folds_rows_in_cv_and_every_row_once_fitted(features, searches, monkeypatch):
    y = features.y_train
    seen = []
    real = ensemble.fit_meta_learner

    def recording(probas, labels, meta_C, seed):
        seen.append(len(labels))
        return real(probas, labels, meta_C, seed)

    monkeypatch.setattr(ensemble, "fit_meta_learner", recording)
    result = _search(searches, y, method=["stacking"])
    assert seen[:-1] == [len(train) for train, _ in _folds(y)] and seen[-1] == len(y)
    assert result.summary["best_params"] == {"method": "stacking", "meta_C": 1.0, "members": list(MEMBERS)}


def test_the_fitted_ensemble_is_the_members_fitted_on_all_rows(features, searches):
    X, y = features.X_train, features.y_train
    result = _search(searches, y, method=["soft_vote"], prior_power=[0.5])
    model = result.estimator
    # the same as fitting the ensemble from scratch: the members' refits are deterministic
    members = [prediction_pipeline(searches[m].best_estimator) for m in MEMBERS]
    fresh = EnsembleClassifier(members=[clone(m) for m in members], prior_power=0.5, random_state=TRAIN.seed)
    with fits_in_parallel(TRAIN):
        fresh.fit(X, y, sample_weight=compute_sample_weight("balanced", y))
    assert np.array_equal(model.predict_proba(features.X_test), fresh.predict_proba(features.X_test))
    labels, proba = model.predict_with_proba(features.X_test)
    assert np.array_equal(labels, model.predict(features.X_test)) and np.array_equal(labels, proba.argmax(1))
    assert np.allclose(proba.sum(axis=1), 1.0)


def test_prior_power_one_divides_by_the_training_shares():
    probas = [np.array([[0.6, 0.3, 0.1]]), np.array([[0.4, 0.4, 0.2]])]
    shares = np.array([0.6, 0.3, 0.1])
    assert np.allclose(soft_vote(probas, shares, 0.0), [[0.5, 0.35, 0.15]])
    balanced = soft_vote(probas, shares, 1.0)
    assert np.allclose(balanced, np.array([[0.5 / 0.6, 0.35 / 0.3, 0.15 / 0.1]]) / (0.5 / 0.6 + 0.35 / 0.3 + 1.5))
    assert balanced.argmax() == 2


def test_probabilities_of_another_split_are_refused(searches, features):
    with pytest.raises(DataError, match="out-of-fold probabilities do not match"):
        _search(searches, features.y_train[:-1])


@pytest.mark.parametrize("section, message", [
    ({"members": ["logreg"]}, "train.ensemble.members"),
    ({"members": ["logreg", "logreg"]}, "must be distinct"),
    ({"members": ["logreg", "svm"]}, "train.ensemble.members"),
    ({"method": ["voting"]}, "train.ensemble.method"),
    ({"prior_power": [1.5]}, "train.ensemble.prior_power"),
])
def test_bad_ensemble_params_name_the_key(tmp_path, section, message):
    import yaml

    from sentiment_pipeline.core.config import load_params

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"train": {"ensemble": section}}))
    with pytest.raises(ConfigError, match=message):
        load_params(params)


def test_the_committed_params_describe_a_valid_ensemble():
    from sentiment_pipeline.core import paths
    from sentiment_pipeline.core.config import load_params
    from tests.conftest import PROJECT_ROOT

    config = load_params(PROJECT_ROOT / paths.PARAMS).train.ensemble
    assert len(config.members) >= 2 and ensemble.combinations(config, n_classes=3)
    assert Params().train.ensemble.members  # a params file without the section gets an ensemble too


def test_the_model_card_shows_a_selected_ensembles_members_and_combinations(features, searches):
    from sentiment_pipeline.pipeline.select import ensemble_details
    from sentiment_pipeline.review.model_card import render_model_card

    result = _search(searches, features.y_train, method=["soft_vote", "stacking"], prior_power=[0.0, 0.5])
    members = [searches[m].summary for m in MEMBERS]
    card = {"family": "ensemble", "params": result.summary["best_params"], "cv_folds": 3,
            "classes": ["negative", "neutral", "positive"],
            "ensemble": ensemble_details(result.summary, members, result.cv_table),
            "candidates": {"ensemble": {"cv_f1_macro_mean": result.summary["cv_f1_macro_mean"], "cv_f1_macro_std": 0.01}}}
    markdown = render_model_card(card=card, test={"accuracy": 0.8, "f1_macro": 0.7, "per_class": {}})
    assert "**Ensemble members**" in markdown and "**Ensemble combinations**" in markdown
    for family in MEMBERS:
        assert f"| {family} |" in markdown
    assert "| soft_vote | prior_power=0.5, weights=equal, class_scale=none |" in markdown
    assert "| stacking | meta_C=1 |" in markdown and "class scales in the classes' order: negative:neutral:positive" in markdown
    assert "docs/decisions.md" in markdown


def test_member_weights_give_one_candidate_per_distinct_vote():
    assert ensemble.weight_vectors([1.0], 3) == [None]
    vectors = ensemble.weight_vectors([1.0, 2.0], 2)
    assert vectors == [None, (1.0, 2.0), (2.0, 1.0)]  # (2, 2) is the plain mean again
    assert len(ensemble.weight_vectors([1.0, 2.0], 4)) == 15
    assert len(ensemble.weight_vectors([0.5, 1.0, 2.0], 2)) == 5  # 1:1, 1:2, 1:4, 2:1, 4:1
    config = EnsembleConfig(members=["logreg", "naive_bayes"], prior_power=[0.0, 0.5], member_weights=[1.0, 2.0],
                            method=["soft_vote", "stacking"])
    assert len(ensemble.combinations(config, n_classes=3)) == 2 * 3 + 1


def test_a_weighted_soft_vote_is_scored_and_served_as_weighted(features, searches):
    y = features.y_train
    result = _search(searches, y, method=["soft_vote"], member_weights=[1.0, 3.0])
    table = result.cv_table
    assert len(table) == result.summary["n_candidates"] == 2 ** len(MEMBERS) - 1  # 3:3:3 is 1:1:1
    row = table[table["weights"] == "1:3:1"].iloc[0]
    for k, (_, valid) in enumerate(_folds(y)):
        vote = sum(w * searches[m].oof_proba[valid] for w, m in zip((0.2, 0.6, 0.2), MEMBERS, strict=False))
        assert row[f"split{k}_f1_macro"] == pytest.approx(f1_score(y[valid], vote.argmax(1), average="macro"))
    weighted = _search(searches, y, method=["soft_vote"], member_weights=[3.0]).estimator  # one candidate
    assert weighted.weights is None
    best = result.estimator
    assert best.weights == result.summary["best_params"]["weights"]
    members = [m.predict_proba(features.X_test) for m in best.members_]
    expected = soft_vote(members, best.shares_, 0.0, best.weights)
    assert np.array_equal(best.predict_proba(features.X_test), expected)
    with pytest.raises(ValueError, match="one weight per member"):
        EnsembleClassifier(members=best.members_, weights=[1.0]).fit(features.X_train, y)


def test_class_scales_are_scored_per_fold_and_served_as_scaled(features, searches):
    y = features.y_train
    result = _search(searches, y, method=["soft_vote"], class_scale=[1.0, 1.5])
    table = result.cv_table
    assert len(table) == result.summary["n_candidates"] == 2 ** 3 - 1  # 1.5:1.5:1.5 is no scaling
    assert set(table["class_scale"]) >= {"none", "1:1.5:1", "1.5:1.5:1"}
    row = table[table["class_scale"] == "1:1.5:1"].iloc[0]
    for k, (_, valid) in enumerate(_folds(y)):
        vote = np.mean([searches[m].oof_proba[valid] for m in MEMBERS], axis=0) * [1.0, 1.5, 1.0]
        assert row[f"split{k}_f1_macro"] == pytest.approx(f1_score(y[valid], vote.argmax(1), average="macro"))
    best = result.estimator
    scale = result.summary["best_params"]["class_scale"]
    assert best.class_scale == scale and (scale is None or len(scale) == 3)
    members = [m.predict_proba(features.X_test) for m in best.members_]
    assert np.array_equal(best.predict_proba(features.X_test), soft_vote(members, best.shares_, 0.0, None, scale))
    # a scale changes decisions, not only numbers: neutral scaled up is predicted more often
    plain = soft_vote(members, best.shares_, 0.0).argmax(1)
    boosted = soft_vote(members, best.shares_, 0.0, None, (1.0, 3.0, 1.0)).argmax(1)
    assert (boosted == 1).sum() > (plain == 1).sum()
    with pytest.raises(ValueError, match="one factor per class"):
        EnsembleClassifier(members=best.members_, class_scale=[1.0, 2.0]).fit(features.X_train, y)


def test_class_scales_multiply_the_vote_and_renormalise():
    probas = [np.array([[0.5, 0.3, 0.2]])]
    scaled = soft_vote(probas, np.array([0.6, 0.3, 0.1]), 0.0, None, (0.5, 2.0, 1.0))
    assert np.allclose(scaled, np.array([[0.25, 0.6, 0.2]]) / 1.05)
    assert ensemble.weight_vectors([0.9, 1.0, 1.1], 3)[0] is None and len(ensemble.weight_vectors([0.9, 1.0, 1.1], 3)) == 25


def test_the_ensembles_macro_f1_is_scikit_learns_bit_for_bit():
    rng = np.random.default_rng(0)
    for _ in range(500):
        n_rows, n_classes = int(rng.integers(1, 40)), int(rng.integers(2, 5))
        y_true = rng.integers(0, n_classes, n_rows)
        y_pred = rng.integers(0, int(rng.integers(1, n_classes + 1)), n_rows)  # some classes never predicted
        assert ensemble.macro_f1(y_true, y_pred, n_classes) == f1_score(y_true, y_pred, average="macro", zero_division=0)


@pytest.mark.parametrize("value, message", [([0.0, 1.0], "greater than 0"), ([1.0, 1.0], "must be distinct")])
def test_bad_class_scales_name_the_key(value, message):
    with pytest.raises(ValueError, match=message) as error:
        EnsembleConfig(class_scale=value)
    assert "class_scale" in str(error.value)


def test_grouped_soft_vote_scores_are_each_votes_own_bit_for_bit(features, searches):
    """The search scores every class scaling of one weighted mean at once: each fold score is
    the macro-F1 of exactly the vote soft_vote serves."""
    y = features.y_train
    result = _search(searches, y, method=["soft_vote"], prior_power=[0.0, 0.5], member_weights=[0.0, 1.0, 2.0],
                     class_scale=[0.9, 1.0, 1.2])
    table = result.cv_table.set_index(["prior_power", "weights", "class_scale"])
    for found in ensemble.combinations(EnsembleConfig(members=list(MEMBERS), prior_power=[0.0, 0.5],
                                                      member_weights=[0.0, 1.0, 2.0], class_scale=[0.9, 1.0, 1.2]), 3):
        row = table.loc[(found.prior_power, ensemble.weights_label(found.weights),
                         ensemble.weights_label(found.class_scale, none="none"))]
        for k, (train, valid) in enumerate(_folds(y)):
            vote = soft_vote([searches[m].oof_proba[valid] for m in MEMBERS], ensemble.class_shares(y[train], 3),
                             found.prior_power, found.weights, found.class_scale)
            assert row[f"split{k}_f1_macro"] == ensemble.macro_f1(y[valid], vote.argmax(1), 3)


def test_a_member_weighted_zero_is_left_out_of_the_vote(features, searches):
    y = features.y_train
    assert ensemble.weight_vectors([0.0, 1.0], 2) == [(0.0, 1.0), (1.0, 0.0), None]
    assert len(ensemble.weight_vectors([0.0, 1.0, 2.0], 5)) == 3 ** 5 - 1 - (2 ** 5 - 1)  # 211 votes
    result = _search(searches, y, method=["soft_vote"], member_weights=[0.0, 1.0])
    table = result.cv_table
    assert len(table) == 2 ** 3 - 1  # every non-empty subset of the members, as a plain mean
    alone = table[table["weights"] == "0:1:0"].iloc[0]
    for k, (_, valid) in enumerate(_folds(y)):
        assert alone[f"split{k}_f1_macro"] == ensemble.macro_f1(y[valid], searches["logreg"].oof_proba[valid].argmax(1), 3)
    # the best vote, built: only its members predict, and they are the ones the summary names
    combination = ensemble.Combination("soft_vote", prior_power=0.0, weights=(0.0, 2.0, 1.0))
    members = [prediction_pipeline(searches[m].best_estimator) for m in MEMBERS]
    built = EnsembleClassifier.from_fitted(members, combination, y, [searches[m].oof_proba for m in MEMBERS], 42)
    assert built.members_ == members[1:] and built.weights == [2.0, 1.0]
    probas = [m.predict_proba(features.X_test) for m in members]
    assert np.array_equal(built.predict_proba(features.X_test),
                          soft_vote(probas, built.shares_, 0.0, (0.0, 2.0, 1.0)))
    label = result.cv_table["weights"].iloc[0]  # the best vote's weights, over all listed members
    weights = [1.0] * len(MEMBERS) if label == "equal" else [float(w) for w in label.split(":")]
    assert result.summary["best_params"]["members"] == [m for m, w in zip(MEMBERS, weights, strict=True) if w > 0]
    assert len(result.estimator.members_) == len(result.summary["best_params"]["members"])


def test_member_weights_need_a_positive_one():
    with pytest.raises(ValueError, match="member_weights needs a positive weight"):
        EnsembleConfig(member_weights=[0.0])


def test_macro_f1_of_many_rows_at_once_is_each_rows_bit_for_bit():
    rng = np.random.default_rng(1)
    for n_classes in (2, 3, 4):
        y_true = rng.integers(0, n_classes, 50)
        predicted = rng.integers(0, n_classes, (30, 50))
        predicted[:5] = 0  # rows predicting one class only
        y_true[:3] = 0
        assert ensemble._macro_f1_rows(y_true, predicted, n_classes) == [
            ensemble.macro_f1(y_true, row, n_classes) for row in predicted]
    # a class neither true nor predicted in a row
    y_true = np.array([0, 0, 1, 1])
    predicted = np.array([[0, 1, 1, 0], [0, 0, 0, 0]])
    assert ensemble._macro_f1_rows(y_true, predicted, 3) == [ensemble.macro_f1(y_true, row, 3) for row in predicted]
