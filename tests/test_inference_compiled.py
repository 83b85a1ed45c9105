"""Each piece of the compiled inference path gives scikit-learn's (and XGBoost's) bits, on real
tweets: the TF-IDF matrix entry for entry, every compiled member's probabilities, and whole
ensembles for one text, many texts, empty texts and unknown words, in either class order."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.feature_selection import SelectKBest, chi2
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import ComplementNB, MultinomialNB
from sklearn.pipeline import FeatureUnion, Pipeline
from xgboost import XGBClassifier

from sentiment_pipeline.core.config import CleaningConfig, FeaturizeConfig
from sentiment_pipeline.inference import compiled
from sentiment_pipeline.inference.predictor import Predictor, _sklearn_predict
from sentiment_pipeline.pipeline.ensemble import EnsembleClassifier
from sentiment_pipeline.pipeline.features import build_vectorizer
from sentiment_pipeline.pipeline.forest import DenseRandomForest
from sentiment_pipeline.pipeline.models import CalibratedLinearSVC, NaiveBayes
from sentiment_pipeline.pipeline.text import TextNormalizer

from .test_serving_compiled import assert_a_compiled_path_off_by_one_ulp_is_refused

# What a served text may look like once cleaned, beside the held-out tweets: nothing at all,
# only whitespace, words no model saw, one letter, odd whitespace, non-ASCII, a repeated word.
ODD_TEXTS = ["", "   ", "zzqx qqqqv unknownword", "a", "late  again\tand\nagain", "ünïcödé 😐 naïve café",
             "delayed delayed delayed delayed"]


@pytest.fixture(scope="module")
def tweets(airline_sample):
    """(cleaned training texts, their labels, cleaned held-out texts + ODD_TEXTS)."""
    normalizer = TextNormalizer(CleaningConfig(), frozenset())
    cleaned = [normalizer(t) for t in airline_sample["text"]]
    return cleaned[:200], airline_sample["label"][:200].tolist(), cleaned[200:] + ODD_TEXTS


def _same_csr(a, b) -> bool:
    return (a.shape == b.shape and a.data.dtype == b.data.dtype and np.array_equal(a.indptr, b.indptr)
            and np.array_equal(a.indices, b.indices) and np.array_equal(a.data, b.data))


# ----------------------------------------------------------------------------- TF-IDF
def _tfidf(**params) -> TfidfVectorizer:
    word = {"token_pattern": r"\S+"} if params.get("analyzer", "word") == "word" else {}
    return TfidfVectorizer(**{"lowercase": False, **word, **params})


VECTORIZERS = {
    "the pipeline's word+char_wb": lambda: build_vectorizer(FeaturizeConfig(char_ngrams=True, char_ngram_range=(3, 5),
                                                                            min_df=1)),
    "the pipeline's words, min_df=2, max_features": lambda: build_vectorizer(FeaturizeConfig(max_features=500)),
    "char_wb alone": lambda: _tfidf(analyzer="char_wb", ngram_range=(2, 4)),
    "char": lambda: _tfidf(analyzer="char", ngram_range=(1, 3)),
    "linear tf, no idf": lambda: FeatureUnion([("w", _tfidf(sublinear_tf=False, use_idf=False)),
                                               ("c", _tfidf(analyzer="char_wb", sublinear_tf=False, use_idf=False))]),
    "binary, no norm": lambda: FeatureUnion([("w", _tfidf(binary=True, norm=None)),
                                             ("c", _tfidf(analyzer="char_wb", binary=True, norm=None))]),
    "lowercase, accents, stop words": lambda: _tfidf(lowercase=True, strip_accents="unicode", stop_words=["the", "to"],
                                                     ngram_range=(1, 3)),
    "char_wb lowercased, accents stripped": lambda: _tfidf(analyzer="char_wb", lowercase=True, strip_accents="ascii"),
}


@pytest.mark.parametrize("name", VECTORIZERS)
def test_compiled_tfidf_is_the_vectorizers_matrix_entry_for_entry(tweets, name):
    train, _, held_out = tweets
    vectorizer = VECTORIZERS[name]()
    vectorizer.fit(train)
    features = compiled.compile_features(vectorizer)
    assert isinstance(features, compiled.CompiledTfidf)
    expected = compiled.vectorize(vectorizer, held_out)
    assert _same_csr(features(held_out).matrix(), expected)
    for text in held_out[:20] + ODD_TEXTS:  # one text at a time, as served
        assert _same_csr(features([text]).matrix(), compiled.vectorize(vectorizer, [text]))
    assert _same_csr(features(held_out).matrix(), expected)  # again, from the word cache


@pytest.mark.parametrize("vectorizer", [
    FeatureUnion([("w", _tfidf()), ("c", _tfidf(analyzer="char_wb", sublinear_tf=True))]),  # parts disagree
    FeatureUnion([("w", _tfidf()), ("c", _tfidf(analyzer="char_wb"))], transformer_weights={"w": 2.0, "c": 1.0}),
    _tfidf(norm="l1"),
    _tfidf(dtype=np.float32),
], ids=["mixed sublinear_tf", "weighted union", "l1 norm", "float32"])
def test_other_vectorizers_keep_their_own_transform(tweets, vectorizer):
    train, _, held_out = tweets
    vectorizer.fit(train)
    assert compiled.CompiledTfidf.compile(vectorizer) is None
    features = compiled.compile_features(vectorizer)
    if features is None:  # float32 matrices: the linear members would sum otherwise
        assert vectorizer.dtype == np.float32
        return
    assert _same_csr(features(held_out).matrix(), compiled.vectorize(vectorizer, held_out))


def test_hashed_features_keep_their_own_transform(tweets):
    train, _, held_out = tweets
    vectorizer = build_vectorizer(FeaturizeConfig(vectorizer="hashing", hashing_features=1 << 12, char_ngrams=True))
    vectorizer.fit(train)
    features = compiled.compile_features(vectorizer)
    assert isinstance(features, compiled._SklearnFeatures)
    assert _same_csr(features(held_out).matrix(), compiled.vectorize(vectorizer, held_out))


# Every character str.split() splits on (str.isspace): the ones the regex \s matches too
WHITESPACE = "".join(c for c in map(chr, range(0x3000 + 1)) if c.isspace())


def test_char_wb_ngrams_are_those_of_each_word_of_split(tweets):
    """The compiled char_wb part lists each word of ``text.split()``'s n-grams in turn, as
    ``_char_wb_ngrams`` does after squeezing whitespace runs (``_white_spaces``) to one space."""
    vectorizer = _tfidf(analyzer="char_wb", ngram_range=(1, 4)).fit(tweets[0])
    assert all(vectorizer._white_spaces.fullmatch(c + c) for c in WHITESPACE)
    texts = [f"{a}late{b}{b}again{a}{b}ünï{a}" for a in WHITESPACE for b in (" ", "\t", WHITESPACE[-1])]
    for text in texts + ["", WHITESPACE, "  x  ", "x"]:
        words = vectorizer._white_spaces.sub(" ", text).split()
        assert words == text.split()
        assert vectorizer.build_analyzer()(text) == [g for w in words for g in vectorizer._char_wb_ngrams(w)]
    features = compiled.compile_features(vectorizer)
    assert _same_csr(features(texts).matrix(), vectorizer.transform(texts))


def test_the_word_cache_starting_over_changes_nothing(tweets, monkeypatch):
    train, _, held_out = tweets
    vectorizer = VECTORIZERS["the pipeline's word+char_wb"]().fit(train)
    monkeypatch.setattr(compiled, "WORD_CACHE_SIZE", 3)
    features = compiled.compile_features(vectorizer)
    assert _same_csr(features(held_out).matrix(), compiled.vectorize(vectorizer, held_out))
    assert all(len(v.cache) <= 3 for v in features.vocabularies if isinstance(v, compiled._CharWbVocabulary))


# ----------------------------------------------------------------------------- members
@pytest.fixture(scope="module")
def matrices(tweets):
    """Training and held-out TF-IDF (word + char_wb) with integer labels, in both class orders."""
    train, labels, held_out = tweets
    vectorizer = VECTORIZERS["the pipeline's word+char_wb"]().fit(train)
    X, X_held_out = vectorizer.transform(train), vectorizer.transform(held_out)
    classes = sorted(set(labels))
    return X, X_held_out, {"sorted": np.array([classes.index(c) for c in labels]),
                           "reversed": np.array([classes[::-1].index(c) for c in labels]),
                           "two classes": np.array([int(c == "positive") for c in labels]),
                           "two, reversed": np.array([int(c != "positive") for c in labels])}


LINEAR = {
    "calibrated SVM": lambda: CalibratedLinearSVC(random_state=0),
    "calibrated SVM, 2 folds": lambda: CalibratedLinearSVC(C=0.4, calibration_folds=2, random_state=0),
    "logistic regression": lambda: LogisticRegression(max_iter=1000),
    "logistic regression, newton-cg": lambda: LogisticRegression(solver="newton-cg", max_iter=1000),
    "naive Bayes": lambda: NaiveBayes(alpha=0.3),
    "complement naive Bayes": lambda: NaiveBayes(alpha=0.3, complement=True),
    "MultinomialNB": lambda: MultinomialNB(alpha=0.1),
    "ComplementNB": lambda: ComplementNB(),
}


@pytest.mark.parametrize("k", ["all", 300])
@pytest.mark.parametrize("order", ["sorted", "reversed", "two classes", "two, reversed"])
@pytest.mark.parametrize("name", LINEAR)
def test_each_linear_member_gives_its_estimators_probabilities(matrices, name, order, k):
    X, X_held_out, y = matrices[0], matrices[1], matrices[2][order]
    select = SelectKBest(chi2, k=k).fit(X, y)
    clf = LINEAR[name]().fit(select.transform(X), y)
    head = compiled._linear_head(clf)
    assert head is not None
    known, columns = compiled._column_indices(select)
    assert known and (columns is None) == (k == "all")
    scores = compiled._LinearScores([(columns, head)], X.shape[1])
    for rows in (X_held_out, X_held_out[:1], X_held_out[-len(ODD_TEXTS):]):
        got = head(scores(compiled._Rows.of(rows))[0])
        expected = clf.predict_proba(select.transform(rows))
        assert got.dtype == expected.dtype and np.array_equal(got, expected)


def test_linear_members_share_one_product_whatever_their_neighbours(matrices):
    X, X_held_out, y = matrices[0], matrices[1], matrices[2]["sorted"]
    members = []
    for k, name in ((200, "calibrated SVM"), ("all", "logistic regression"), (500, "naive Bayes"), ("all", "ComplementNB")):
        select = SelectKBest(chi2, k=k).fit(X, y)
        members.append((select, LINEAR[name]().fit(select.transform(X), y)))
    heads = [(compiled._column_indices(s)[1], compiled._linear_head(c)) for s, c in members]
    blocks = compiled._LinearScores(heads, X.shape[1])(compiled._Rows.of(X_held_out))
    for (select, clf), (_, head), block in zip(members, heads, blocks, strict=True):
        assert np.array_equal(head(block), clf.predict_proba(select.transform(X_held_out)))


def test_unknown_classifiers_are_not_linear_members(matrices):
    X, y = matrices[0], matrices[2]["sorted"]
    assert compiled._linear_head(DenseRandomForest(n_estimators=3, random_state=0).fit(X, y)) is None
    assert compiled._linear_head(CalibratedLinearSVC(calibration="isotonic", random_state=0).fit(X, y)) is None

    class Tweaked(LogisticRegression):
        def decision_function(self, X):
            return super().decision_function(X) * 2

    assert compiled._linear_head(Tweaked(max_iter=1000).fit(X, y)) is None


XGBOOST = {"multi:softprob": "sorted", "multi:softprob, reversed": "reversed",
           "binary:logistic": "two classes", "binary:logistic, reversed": "two, reversed"}


@pytest.mark.parametrize("direct", [True, False], ids=["C API", "inplace_predict"])
@pytest.mark.parametrize("k", ["all", 300])
@pytest.mark.parametrize("name", XGBOOST)
def test_the_xgboost_member_gives_predict_probas_bits(matrices, name, k, direct, monkeypatch):
    if not direct:
        monkeypatch.setattr(compiled._CsrPredictor, "compile", classmethod(lambda cls, *args: None))
    X, X_held_out, y = matrices[0], matrices[1], matrices[2][XGBOOST[name]]
    select = SelectKBest(chi2, k=k).fit(X, y)
    clf = XGBClassifier(n_estimators=8, max_depth=4, n_jobs=1, random_state=0).fit(select.transform(X), y)
    member = compiled._XGBoostMember.compile(clf, compiled._column_indices(select)[1], X.shape[1])
    assert member is not None and (member.direct is not None) == direct
    for rows in (X_held_out, X_held_out[:1], X_held_out[-len(ODD_TEXTS):]):
        got = member(compiled._Rows.of(rows))
        expected = clf.predict_proba(select.transform(rows))
        assert got.dtype == expected.dtype and got.shape == expected.shape and np.array_equal(got, expected)


def test_a_direct_xgboost_call_that_disagrees_is_not_used(matrices, monkeypatch):
    X, y = matrices[0], matrices[2]["sorted"]
    clf = XGBClassifier(n_estimators=4, n_jobs=1, random_state=0).fit(X, y)
    real = compiled._CsrPredictor.__call__
    monkeypatch.setattr(compiled._CsrPredictor, "__call__", lambda self, *a: np.nextafter(real(self, *a), 2))
    member = compiled._XGBoostMember.compile(clf, None, X.shape[1])
    assert member is not None and member.direct is None  # inplace_predict, then
    assert np.array_equal(member(compiled._Rows.of(matrices[1])), clf.predict_proba(matrices[1]))


def test_xgboost_models_it_does_not_know_keep_predict_proba(matrices):
    X, y = matrices[0], matrices[2]["sorted"]
    softmax = XGBClassifier(n_estimators=2, n_jobs=1, objective="multi:softmax").fit(X, y)
    assert compiled._XGBoostMember.compile(softmax, None, X.shape[1]) is None
    linear = XGBClassifier(n_estimators=2, n_jobs=1, booster="gblinear").fit(X, y)
    assert compiled._XGBoostMember.compile(linear, None, X.shape[1]) is None


# ----------------------------------------------------------------------------- ensembles
def _ensemble(tweets, members, *, order="sorted", method="soft_vote", **params):
    """tfidf (word + char_wb) -> EnsembleClassifier of ``members`` (each select -> clf)."""
    train, labels, _ = tweets
    normalizer = TextNormalizer(CleaningConfig(), frozenset())
    vectorizer = VECTORIZERS["the pipeline's word+char_wb"]()
    X = vectorizer.fit_transform(train)
    classes = sorted(set(labels)) if order == "sorted" else sorted(set(labels))[::-1]
    y = np.array([classes.index(label) for label in labels])
    ensemble = EnsembleClassifier(members=[Pipeline([("select", SelectKBest(chi2, k=k)), ("clf", clf)]) for k, clf in members],
                                  method=method, cv=3, random_state=0, **params).fit(X, y)
    return Pipeline([("tfidf", vectorizer), ("select", "passthrough"), ("clf", ensemble)]), normalizer, classes


def _the_default_members():
    """The served ensemble's families: calibrated SVM, logistic regression, naive Bayes, XGBoost
    on a filtered 200 columns."""
    return [("all", CalibratedLinearSVC(C=0.4, calibration_folds=2, random_state=0)),
            ("all", LogisticRegression(solver="newton-cg", max_iter=1000)), ("all", NaiveBayes(alpha=0.3)),
            (200, XGBClassifier(n_estimators=10, max_depth=4, max_bin=16, colsample_bytree=0.3, n_jobs=1,
                                random_state=0))]


ENSEMBLES = {
    "served: weighted soft vote": dict(weights=[2.0, 2.0, 1.0, 1.0]),
    "soft vote, prior power, class scale": dict(prior_power=0.5, class_scale=[1.1, 1.0, 0.9]),
    "stacking": dict(method="stacking", meta_C=1.0),
    "classes reversed": dict(order="reversed", weights=[2.0, 2.0, 1.0, 1.0]),
}


def _assert_compiled_is_sklearn(model, texts):
    path = compiled.compile_model(model)
    assert isinstance(path, compiled.CompiledEnsemble)
    labels, proba = path.predict_with_proba(texts)
    assert np.array_equal(labels, model.predict(texts))
    assert np.array_equal(proba, model.predict_proba(texts))  # exact, not approximately
    return path


@pytest.mark.parametrize("name", ENSEMBLES)
def test_compiled_ensembles_are_sklearn_bit_for_bit(tweets, name):
    model, _, _ = _ensemble(tweets, _the_default_members(), **ENSEMBLES[name])
    held_out = tweets[2]
    path = _assert_compiled_is_sklearn(model, held_out)
    assert [kind for kind, _ in path.members] == ["linear", "linear", "linear", "other"]
    assert isinstance(path.members[3][1], compiled._XGBoostMember)
    for text in held_out[:25] + ODD_TEXTS:  # one text per call, as the API mostly serves them
        labels, proba = path.predict_with_proba([text])
        assert np.array_equal(labels, model.predict([text])) and np.array_equal(proba, model.predict_proba([text]))
    for size in (2, 8, 64):
        _assert_compiled_is_sklearn(model, held_out[:size])
    _assert_compiled_is_sklearn(model, ODD_TEXTS)


def test_members_it_cannot_compile_run_through_scikit_learn(tweets):
    members = [(300, CalibratedLinearSVC(random_state=0)), ("all", DenseRandomForest(n_estimators=5, random_state=0)),
               (100, ComplementNB()), (150, XGBClassifier(n_estimators=3, n_jobs=1, objective="multi:softmax"))]
    model, _, _ = _ensemble(tweets, members, weights=[1.0, 1.0, 2.0, 1.0])
    path = _assert_compiled_is_sklearn(model, tweets[2])
    assert [type(m).__name__ for _, m in path.members] == ["_CalibratedSVMHead", "_MemberOnColumns",
                                                           "_NaiveBayesHead", "_MemberOnColumns"]


def test_an_ensemble_of_string_labels(tweets):
    train, labels, held_out = tweets
    vectorizer = VECTORIZERS["the pipeline's word+char_wb"]()
    X = vectorizer.fit_transform(train)
    members = [Pipeline([("select", SelectKBest(chi2, k=k)), ("clf", clf)])
               for k, clf in ((300, CalibratedLinearSVC(random_state=0)), ("all", LogisticRegression(max_iter=1000)),
                              ("all", NaiveBayes()))]
    ensemble = EnsembleClassifier(members=members, random_state=0).fit(X, np.array(labels))
    model = Pipeline([("tfidf", vectorizer), ("select", "passthrough"), ("clf", ensemble)])
    _assert_compiled_is_sklearn(model, held_out)


@pytest.mark.parametrize("order", ["sorted", "reversed"])
def test_the_predictor_serves_the_compiled_ensemble_in_either_class_order(tweets, airline_sample, order):
    model, normalizer, classes = _ensemble(tweets, _the_default_members(), order=order, weights=[2.0, 2.0, 1.0, 1.0])
    predictor = Predictor(model, normalizer, classes, {})
    assert isinstance(predictor.compiled, compiled.CompiledEnsemble)
    raw = list(airline_sample["text"][200:]) + ["", "@united", "http://t.co/x 123"]
    for texts in (raw, raw[:1], raw[-3:]):
        result = predictor.predict(texts)
        labels, proba = _sklearn_predict(model, predictor.clean(texts), classes)
        assert np.array_equal(result.label_index, labels) and np.array_equal(result.probabilities, proba)
    reference = Predictor(model, normalizer, classes, {}, compiled=False).predict(raw)
    assert reference.labels == predictor.predict(raw).labels


def test_a_compiled_ensemble_that_disagrees_is_not_served(tweets, monkeypatch, caplog):
    model, normalizer, classes = _ensemble(tweets, _the_default_members())
    assert_a_compiled_path_off_by_one_ulp_is_refused(compiled.CompiledEnsemble, model, normalizer, classes,
                                                     monkeypatch, caplog)


def test_threads_share_one_compiled_path(tweets):
    model, _, _ = _ensemble(tweets, _the_default_members(), weights=[2.0, 2.0, 1.0, 1.0])
    path = compiled.compile_model(model)
    held_out = tweets[2]
    expected = [path.predict_with_proba([text])[1] for text in held_out]
    path.features.vocabularies[1].cache.clear()  # the threads fill the word cache concurrently
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda text: path.predict_with_proba([text])[1], held_out * 3))
    assert all(np.array_equal(g, e) for g, e in zip(got, expected * 3, strict=True))


def test_the_compiled_features_of_csr_input_are_scipys(tweets):
    """``_Rows`` hands the linear product scipy's own kernel: the same as ``csr_matrix @ W``."""
    train, labels, held_out = tweets
    X = VECTORIZERS["the pipeline's word+char_wb"]().fit(train).transform(held_out)
    W = np.random.default_rng(0).normal(size=(X.shape[1], 7))

    class Head(compiled._Head):
        weights = [W]

    product = compiled._LinearScores([(None, Head())], X.shape[1])(compiled._Rows.of(X))[0][0]
    assert np.array_equal(product, X @ W)
    assert sp.issparse(X)
