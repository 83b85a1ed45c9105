"""Monitoring statistics, the label-free accuracy estimate, and the monitor on a real log."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sentiment_pipeline.monitoring import drift, performance


# ------------------------------------------------------------------ drift statistics
def test_psi_is_zero_for_equal_mixes_and_grows_with_the_shift():
    prior = np.array([0.6, 0.25, 0.15])
    assert drift.population_stability_index(prior, prior) == 0
    small = drift.population_stability_index(prior, np.array([0.55, 0.28, 0.17]))
    large = drift.population_stability_index(prior, np.array([0.2, 0.3, 0.5]))
    assert 0 < small < 0.05 < 0.2 < large
    # by hand: sum (a - e) ln(a / e)
    assert large == pytest.approx((0.2 - 0.6) * np.log(0.2 / 0.6) + (0.3 - 0.25) * np.log(0.3 / 0.25)
                                  + (0.5 - 0.15) * np.log(0.5 / 0.15))
    with pytest.raises(ValueError, match="differ in shape"):
        drift.population_stability_index(prior, np.array([0.5, 0.5]))


def test_an_empty_class_does_not_make_psi_infinite():
    assert np.isfinite(drift.population_stability_index(np.array([0.5, 0.5]), np.array([1.0, 0.0])))


def test_class_mix_drift_reports_chi_square_and_psi():
    rng = np.random.default_rng(0)
    prior = np.array([0.6, 0.25, 0.15])
    same = drift.class_mix_drift(rng.choice(3, 5000, p=prior), prior)
    moved = drift.class_mix_drift(rng.choice(3, 5000, p=[0.2, 0.3, 0.5]), prior)
    assert same["chi2_pvalue"] > 0.001 and same["psi"] < 0.01
    assert moved["chi2_pvalue"] < 1e-10 and moved["psi"] > 0.2
    assert sum(moved["shares"]) == pytest.approx(1)


def test_distribution_drift_is_the_two_sample_ks():
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 800), rng.normal(0.5, 1, 600)
    result = drift.distribution_drift(a, b)
    assert result["ks"] == ks_2samp(a, b).statistic and result["pvalue"] < 1e-6
    assert drift.distribution_drift(a, [])["ks"] is None


def test_out_of_vocabulary_share_counts_tokens():
    share = drift.out_of_vocabulary_share(["good flight", "zzz good", ""], str.split, {"good", "flight"})
    assert share == pytest.approx(1 / 4)
    assert drift.out_of_vocabulary_share([""], str.split, {"a"}) == 0.0


def test_domain_classifier_tells_other_text_apart_and_not_the_same_text(airline_sample):
    from benchmarks.pipeline_bench import synthetic_reviews

    tweets = airline_sample["text"].tolist()
    half_a, half_b = tweets[::2], tweets[1::2]
    same = drift.domain_classifier_auc(half_a, half_b, seed=0)
    other = drift.domain_classifier_auc(half_a, synthetic_reviews(150, seed=3)["text"].tolist(), seed=0)
    assert same < 0.65 and other > 0.95
    assert drift.domain_classifier_auc(["a"], ["b"], seed=0) is None


# ------------------------------------------------------------------ performance estimation
def test_cbpe_on_perfectly_calibrated_probabilities_matches_realised_accuracy():
    rng = np.random.default_rng(2)
    n = 20000
    probabilities = rng.dirichlet([2, 1, 1], n)
    true = np.array([rng.choice(3, p=p) for p in probabilities])  # labels drawn from the probabilities
    predicted = probabilities.argmax(axis=1)
    estimate = performance.estimate(probabilities, predicted)
    realised = performance.realized(true, predicted, 3)
    assert estimate["accuracy"] == pytest.approx(realised["accuracy"], abs=0.01)
    assert estimate["f1_macro"] == pytest.approx(realised["f1_macro"], abs=0.015)


def test_cbpe_checks_its_inputs():
    with pytest.raises(ValueError, match="one class index per row"):
        performance.expected_accuracy(np.ones((3, 2)) / 2, np.array([0, 1]))
    with pytest.raises(ValueError, match="outside"):
        performance.expected_accuracy(np.ones((2, 2)) / 2, np.array([0, 2]))
    assert performance.realized(np.array([]), np.array([]), 3)["accuracy"] is None


# Stated margin of the label-free estimate under shifted class balances (measured at most 0.046
# with prior adaptation, 0.064 without; docs/monitoring.md).
CBPE_MARGIN = 0.05
SHIFTED_BALANCES = {"as trained": None, "balanced": (1 / 3, 1 / 3, 1 / 3), "mostly negative": (0.85, 0.1, 0.05),
                    "mostly positive": (0.2, 0.2, 0.6), "mostly neutral": (0.25, 0.6, 0.15)}


@pytest.fixture(scope="module")
def airline_model_and_test():
    """The default family (calibrated linear SVM) fitted on 60% of the deduplicated airline
    tweets; the other 40% held out, as the pipeline does."""
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline

    from sentiment_pipeline.core.config import CleaningConfig, FeaturizeConfig
    from sentiment_pipeline.pipeline.data import load_embedded
    from sentiment_pipeline.pipeline.features import build_vectorizer
    from sentiment_pipeline.pipeline.models import CalibratedLinearSVC
    from sentiment_pipeline.pipeline.text import TextNormalizer

    raw = load_embedded(airline_only=True)
    clean = TextNormalizer(CleaningConfig(), frozenset())
    frame = pd.DataFrame({"text": [clean(t) for t in raw["text"]], "label": raw["label"]})
    frame = frame[frame["text"] != ""].drop_duplicates("text")
    classes = sorted(frame["label"].unique())
    y = frame["label"].map(classes.index).to_numpy()
    train_text, test_text, y_train, y_test = train_test_split(frame["text"].tolist(), y, test_size=0.4,
                                                              stratify=y, random_state=0)
    vectorizer = build_vectorizer(FeaturizeConfig())
    X_train = vectorizer.fit_transform(train_text)
    clf = CalibratedLinearSVC(C=0.4, random_state=0)
    clf.fit(X_train, y_train, sample_weight=_balanced_weights(y_train))
    model = Pipeline([("tfidf", vectorizer), ("clf", clf)])
    # the balance its probabilities are calibrated to, as the monitor measures it (test split)
    return model, test_text, y_test, classes, model.predict_proba(test_text).mean(axis=0)


def _balanced_weights(y):
    counts = np.bincount(y)
    return (len(y) / (len(counts) * counts))[y]


@pytest.mark.parametrize("balance", list(SHIFTED_BALANCES))
def test_cbpe_estimate_lands_near_the_real_accuracy_under_shifted_class_balances(airline_model_and_test, balance):
    model, test_text, y_test, classes, training_prior = airline_model_and_test
    rng = np.random.default_rng(7)
    shares = SHIFTED_BALANCES[balance]
    if shares is None:
        rows = np.arange(len(y_test))
    else:  # resample the test split to the balance, 2,000 rows, with replacement within a class
        rows = np.concatenate([rng.choice(np.flatnonzero(y_test == c), int(round(2000 * s)), replace=True)
                               for c, s in enumerate(shares)])
    texts = [test_text[i] for i in rows]
    probabilities = model.predict_proba(texts)
    predicted = np.asarray(model.predict(texts))
    adapted, window_prior = performance.adapt_to_window_prior(probabilities, training_prior)
    estimate = performance.estimate(adapted, predicted)
    real = performance.realized(y_test[rows], predicted, len(classes))
    assert abs(estimate["accuracy"] - real["accuracy"]) <= CBPE_MARGIN, (balance, estimate, real)
    true_shares = np.bincount(y_test[rows], minlength=len(classes)) / len(rows)
    assert np.abs(window_prior - true_shares).max() <= 0.05  # the class balance is recovered too


def test_prior_adaptation_keeps_probabilities_when_the_balance_is_unchanged():
    rng = np.random.default_rng(4)
    probabilities = rng.dirichlet([3, 2, 1], 400)
    # the probabilities' own mean is EM's fixed point: nothing to adapt
    adapted, window_prior = performance.adapt_to_window_prior(probabilities, probabilities.mean(axis=0))
    assert np.allclose(adapted, probabilities, atol=1e-6)
    assert np.allclose(window_prior, probabilities.mean(axis=0), atol=1e-6)
    # told that training had the opposite balance, EM moves the window's balance away from it
    _, moved = performance.adapt_to_window_prior(probabilities, np.array([0.2, 0.3, 0.5]))
    assert moved[0] > probabilities.mean(axis=0)[0]
    with pytest.raises(ValueError, match="one share per class"):
        performance.adapt_to_window_prior(probabilities, np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="positive"):
        performance.adapt_to_window_prior(probabilities, np.array([0.5, 0.5, 0.0]))
