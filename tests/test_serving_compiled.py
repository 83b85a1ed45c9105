"""The compiled inference path gives scikit-learn's bits, and is used only when it does."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from sklearn.feature_selection import SelectKBest, chi2
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from sentiment_pipeline.core.config import CleaningConfig, FeaturizeConfig
from sentiment_pipeline.inference import compiled as compiled_module
from sentiment_pipeline.inference.compiled import compile_model
from sentiment_pipeline.inference.predictor import Predictor, _sklearn_predict
from sentiment_pipeline.pipeline.features import build_vectorizer
from sentiment_pipeline.pipeline.models import CalibratedLinearSVC
from sentiment_pipeline.pipeline.text import TextNormalizer


def _vectorized(texts, labels, char: bool):
    """The cleaner, the fitted vectorizer, X, y and the class names of ``texts``."""
    normalizer = TextNormalizer(CleaningConfig(), frozenset())
    vectorizer = build_vectorizer(FeaturizeConfig(char_ngrams=char, min_df=1))
    X = vectorizer.fit_transform([normalizer(t) for t in texts])
    classes = sorted(set(labels))
    return normalizer, vectorizer, X, np.array([classes.index(label) for label in labels]), classes


def _fitted(texts, labels, *, k="all", char=False, clf=None):
    normalizer, vectorizer, X, y, classes = _vectorized(texts, labels, char)
    select = SelectKBest(chi2, k=k).fit(X, y)
    clf = (clf or CalibratedLinearSVC(random_state=0)).fit(select.transform(X), y)
    model = Pipeline([("tfidf", vectorizer), ("select", select), ("clf", clf)])
    return model, normalizer, classes


@pytest.mark.parametrize("k, char", [("all", False), (40, False), ("all", True)])
def test_compiled_equals_sklearn_bit_for_bit_on_real_tweets(airline_sample, k, char):
    model, normalizer, classes = _fitted(airline_sample["text"][:200], airline_sample["label"][:200].tolist(),
                                         k=k, char=char)
    compiled = compile_model(model)
    assert compiled is not None
    if char:
        assert isinstance(model.named_steps["tfidf"], FeatureUnion)
    held_out = [normalizer(t) for t in airline_sample["text"][200:]] + ["", "zzqx never seen"]
    labels, proba = compiled.predict_with_proba(held_out)
    assert np.array_equal(labels, model.predict(held_out))
    assert np.array_equal(proba, model.predict_proba(held_out))  # exact, not approximately
    for text in held_out[:10] + held_out[-2:]:  # one text per call, as the API mostly serves them
        labels, proba = compiled.predict_with_proba([text])
        assert np.array_equal(labels, model.predict([text])) and np.array_equal(proba, model.predict_proba([text]))


def test_compiled_svm_equals_sklearn_with_string_labels_in_any_order(airline_sample):
    y = airline_sample["label"][:200].to_numpy()
    normalizer, vectorizer, X, _, _ = _vectorized(airline_sample["text"][:200], list(y), char=True)
    held_out = [normalizer(t) for t in airline_sample["text"][200:]] + ["", "zzqx never seen"]
    for labels in (y, np.where(y == "negative", "zz-negative", y)):  # the negative class first, then last
        select = SelectKBest(chi2, k=500).fit(X, labels)
        model = Pipeline([("tfidf", vectorizer), ("select", select),
                          ("clf", CalibratedLinearSVC(random_state=0).fit(select.transform(X), labels))])
        got_labels, proba = compile_model(model).predict_with_proba(held_out)
        assert np.array_equal(got_labels, model.predict(held_out))
        assert np.array_equal(proba, model.predict_proba(held_out))


def test_compiled_equals_sklearn_with_two_classes(airline_sample):
    two = airline_sample[airline_sample["label"] != "neutral"]
    model, normalizer, _ = _fitted(two["text"][:150], two["label"][:150].tolist())
    held_out = [normalizer(t) for t in two["text"][150:]]
    labels, proba = compile_model(model).predict_with_proba(held_out)
    assert np.array_equal(labels, model.predict(held_out))
    assert np.array_equal(proba, model.predict_proba(held_out))


def test_other_families_keep_scikit_learn(airline_sample):
    model, normalizer, classes = _fitted(airline_sample["text"], airline_sample["label"].tolist(),
                                         clf=LogisticRegression())
    assert compile_model(model) is None
    predictor = Predictor(model, normalizer, classes, {})
    assert predictor.compiled is None
    result = predictor.predict(list(airline_sample["text"][:20]))
    assert np.array_equal(result.label_index, model.predict([normalizer(t) for t in airline_sample["text"][:20]]))


def _assert_predictor_compiles_and_matches(model, normalizer, classes, texts):
    """The Predictor takes the compiled path, and its answers are scikit-learn's bit for bit."""
    predictor = Predictor(model, normalizer, classes, {})
    assert predictor.compiled is not None
    result = predictor.predict(texts)
    labels, proba = _sklearn_predict(model, predictor.clean(texts), classes)
    assert np.array_equal(result.label_index, labels) and np.array_equal(result.probabilities, proba)


def test_predictor_uses_the_compiled_path_and_matches(airline_sample):
    model, normalizer, classes = _fitted(airline_sample["text"][:200], airline_sample["label"][:200].tolist())
    _assert_predictor_compiles_and_matches(model, normalizer, classes, list(airline_sample["text"][200:]))


def assert_a_compiled_path_off_by_one_ulp_is_refused(compiled_class, model, normalizer, classes, monkeypatch, caplog):
    """The Predictor's load-time check: ``compiled_class`` answering one ulp off is not served."""
    real = compiled_class.predict_with_proba

    def off_by_one_ulp(self, texts):
        labels, proba = real(self, texts)
        return labels, np.nextafter(proba, 2.0)

    monkeypatch.setattr(compiled_class, "predict_with_proba", off_by_one_ulp)
    with caplog.at_level(logging.WARNING):
        predictor = Predictor(model, normalizer, classes, {})
    assert predictor.compiled is None
    assert "differs from scikit-learn" in caplog.text


def test_a_compiled_path_that_disagrees_is_not_used(airline_sample, monkeypatch, caplog):
    model, normalizer, classes = _fitted(airline_sample["text"][:200], airline_sample["label"][:200].tolist())
    assert_a_compiled_path_off_by_one_ulp_is_refused(compiled_module.CompiledCalibratedSVM, model, normalizer, classes,
                                                     monkeypatch, caplog)


def _fitted_ensemble(texts, labels, method="soft_vote"):
    """tfidf (word + char) -> EnsembleClassifier over a filtered calibrated SVM, NB and XGBoost."""
    from xgboost import XGBClassifier

    from sentiment_pipeline.pipeline.ensemble import EnsembleClassifier
    from sentiment_pipeline.pipeline.models import NaiveBayes

    normalizer, vectorizer, X, y, classes = _vectorized(texts, labels, char=True)
    members = [Pipeline([("select", SelectKBest(chi2, k=300)), ("clf", CalibratedLinearSVC(random_state=0))]),
               Pipeline([("select", SelectKBest(chi2, k="all")), ("clf", NaiveBayes(alpha=0.1))]),
               Pipeline([("select", SelectKBest(chi2, k=200)),
                         ("clf", XGBClassifier(n_estimators=5, n_jobs=1, random_state=0))])]
    ensemble = EnsembleClassifier(members=members, method=method, prior_power=0.5, weights=[2.0, 1.0, 1.0],
                                  class_scale=[1.1, 1.0, 0.9], cv=3, random_state=0).fit(X, y)
    return Pipeline([("tfidf", vectorizer), ("select", "passthrough"), ("clf", ensemble)]), normalizer, classes


@pytest.mark.parametrize("method", ["soft_vote", "stacking"])
def test_the_compiled_ensemble_equals_sklearn_bit_for_bit(airline_sample, method):
    model, normalizer, classes = _fitted_ensemble(airline_sample["text"][:200],
                                                  airline_sample["label"][:200].tolist(), method)
    compiled = compile_model(model)
    assert isinstance(compiled, compiled_module.CompiledEnsemble)
    held_out = [normalizer(t) for t in airline_sample["text"][200:]] + ["", "zzqx never seen"]
    labels, proba = compiled.predict_with_proba(held_out)
    assert np.array_equal(labels, model.predict(held_out))
    assert np.array_equal(proba, model.predict_proba(held_out))
    _assert_predictor_compiles_and_matches(model, normalizer, classes, list(airline_sample["text"][200:]))
