"""A lean inference path for the served models, equal to scikit-learn's bit for bit.

On a handful of texts the fitted pipeline spends most of a call in per-call input validation
(scikit-learn's ``check_array``, which asks narwhals whether the input is a dataframe through
``inspect.getattr_static``; FeatureUnion's joblib dispatch; XGBoost's sklearn wrapper), not in
arithmetic. This path does the arithmetic of ``Pipeline.predict`` / ``predict_proba`` on the same
fitted arrays, with the same NumPy/SciPy/XGBoost functions on arrays of the same shapes, element
by element in the same order, and skips the checks:

* TF-IDF (a ``TfidfVectorizer`` or a ``FeatureUnion`` of them): each part's own analyzer (for
  ``char_wb``, the part's own ``_char_wb_ngrams`` of each word, cached per word: the n-grams of
  a text are its words' n-grams in turn), counts per column, then ``log`` + 1, times ``idf_`` and
  scikit-learn's own l2 row normalisation per part, giving the matrix ``FeatureUnion`` stacks,
  entry for entry and in its order.
* Linear members (the calibrated SVM's folds, the sgd family's model, logistic regression,
  multinomial or complement naive Bayes): one ``csr @ W`` whose columns are every member's coefficients (zero rows for the
  columns a member's filter drops: adding ``a * 0.0`` to a sum changes no bit), each block
  sliced and finished as its estimator finishes it (intercept, calibrated sigmoids, softmax,
  log-sum-exp).
* XGBoost: the C function ``Booster.inplace_predict`` calls (``XGBoosterPredictFromCSR``) with
  the arguments ``XGBClassifier.predict_proba`` has it pass, on the filtered columns; if that
  does not give ``inplace_predict``'s bits when compiled, ``inplace_predict`` itself.
* Anything else runs through scikit-learn as before, and the combination is the ensemble's own
  ``combine``.

``compile_model`` returns None for a model it does not know, and ``Predictor`` checks the
compiled path against scikit-learn before using it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.special import expit

try:  # the kernel of scipy's csr_matrix @ ndarray
    from scipy.sparse._sparsetools import csr_matvecs as _csr_matvecs
except ImportError:  # pragma: no cover - another SciPy: build the matrix and use @
    _csr_matvecs = None

# Words whose char_wb columns are cached per vectorizer part; past this the cache starts over
# (a tweet has ~15 words; the airline corpus ~15,000 distinct ones).
WORD_CACHE_SIZE = 1 << 16


class _Rows:
    """Vectorised texts: a CSR matrix's arrays, with the scipy matrix built on demand."""

    __slots__ = ("data", "indices", "indptr", "shape", "_matrix")

    def __init__(self, data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape: tuple[int, int]) -> None:
        self.data, self.indices, self.indptr, self.shape = data, indices, indptr, shape
        self._matrix: sp.csr_matrix | None = None

    @classmethod
    def of(cls, X) -> _Rows:
        rows = cls(X.data, X.indices, X.indptr, X.shape)
        rows._matrix = X
        return rows

    def matrix(self) -> sp.csr_matrix:
        if self._matrix is None:
            self._matrix = sp.csr_matrix((self.data, self.indices, self.indptr), shape=self.shape, copy=False)
        return self._matrix


# ----------------------------------------------------------------------------- features
class _Vocabulary:
    """One TF-IDF part's n-grams -> its columns in the stacked matrix (``offset`` added)."""

    def __init__(self, part, offset: int) -> None:
        vocabulary = part.vocabulary_
        self.columns: dict[str, int] = (vocabulary if offset == 0 else
                                        {term: int(j) + offset for term, j in vocabulary.items()})
        self.analyzer = part.build_analyzer()

    def __call__(self, text: str) -> list[np.ndarray]:
        get = self.columns.get
        found = [j for j in map(get, self.analyzer(text)) if j is not None]
        return [np.array(found, dtype=np.int64)]


class _CharWbVocabulary(_Vocabulary):
    """A ``char_wb`` part: its analyzer is ``_char_wb_ngrams(preprocess(decode(text)))``, which
    lists the n-grams of each word of ``text.split()`` in turn (it first squeezes each run of
    whitespace to one space, which changes no word of ``split``); each word's columns are cached."""

    def __init__(self, part, offset: int) -> None:
        super().__init__(part, offset)
        self.decode, self.preprocess, self.word_ngrams = part.decode, part.build_preprocessor(), part._char_wb_ngrams
        self.cache: dict[str, np.ndarray] = {}

    def __call__(self, text: str) -> list[np.ndarray]:
        words = self.preprocess(self.decode(text)).split()
        get = self.cache.get
        found = []
        for word in words:
            columns = get(word)
            found.append(self._columns_of(word) if columns is None else columns)
        return found

    def _columns_of(self, word: str) -> np.ndarray:
        get = self.columns.get
        columns = np.array([j for j in map(get, self.word_ngrams(word)) if j is not None], dtype=np.int64)
        columns.flags.writeable = False
        if len(self.cache) >= WORD_CACHE_SIZE:
            self.cache.clear()
        self.cache[word] = columns
        return columns


class CompiledTfidf:
    """``vectorizer.transform(texts)`` for a ``TfidfVectorizer`` or a ``FeatureUnion`` of them
    (no weights), as the same entries in the same order, without the per-call checks."""

    def __init__(self, parts: list, n_features: int, idf: np.ndarray | None, sublinear: bool, binary: bool,
                 l2: bool) -> None:
        offsets = np.cumsum([0] + [len(p.vocabulary_) for p in parts])
        self.vocabularies = [(_CharWbVocabulary if p.analyzer == "char_wb" else _Vocabulary)(p, int(offset))
                             for p, offset in zip(parts, offsets[:-1], strict=True)]
        self.part_offsets = offsets[:-1].astype(np.int64)
        self.n_features, self.idf, self.sublinear, self.binary, self.l2 = n_features, idf, sublinear, binary, l2

    @classmethod
    def compile(cls, vectorizer) -> CompiledTfidf | None:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import FeatureUnion

        if isinstance(vectorizer, FeatureUnion):
            if vectorizer.transformer_weights or any(type(p) is not TfidfVectorizer
                                                     for _, p in vectorizer.transformer_list):
                return None
            parts = [p for _, p in vectorizer.transformer_list]
        elif type(vectorizer) is TfidfVectorizer:
            parts = [vectorizer]
        else:
            return None
        if not all(hasattr(p, "_tfidf") and hasattr(p, "vocabulary_") for p in parts):
            return None
        tfidfs = [p._tfidf for p in parts]  # the fitted TfidfTransformer each part's transform calls
        # The parts' settings (as their fitted TfidfTransformers hold them) must agree: each step
        # then acts on every entry alike, and the stacked matrix can go through it at once.
        settings = {(t.sublinear_tf, t.norm, hasattr(t, "idf_"), p.binary, np.dtype(p.dtype))
                    for p, t in zip(parts, tfidfs, strict=True)}
        if len(settings) != 1:
            return None
        sublinear, norm, use_idf, binary, dtype = settings.pop()
        if norm not in ("l2", None) or dtype != np.float64 or any(p.input != "content" for p in parts):
            return None
        idf = None
        if use_idf:
            idfs = [t.idf_ for t in tfidfs]
            if any(i.dtype != np.float64 or len(i) != len(p.vocabulary_) for i, p in zip(idfs, parts, strict=True)):
                return None
            idf = np.concatenate(idfs)
        n_features = sum(len(p.vocabulary_) for p in parts)
        return cls(parts, n_features, idf, bool(sublinear), bool(binary), norm == "l2")

    def __call__(self, texts: Sequence[str]) -> _Rows:
        n, n_features, n_parts = len(texts), self.n_features, len(self.vocabularies)
        pieces: list[np.ndarray] = []  # arrays of columns, text after text
        last_piece = np.zeros(n + 1, dtype=np.int64)  # text i's pieces: last_piece[i]:last_piece[i + 1]
        for i, text in enumerate(texts):
            for vocabulary in self.vocabularies:
                pieces += vocabulary(text)
            last_piece[i + 1] = len(pieces)
        ends = np.zeros(len(pieces) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces)), out=ends[1:])
        lengths = np.diff(ends[last_piece])
        columns = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
        # one key per (row, column): sorted, they are CountVectorizer's sorted rows, FeatureUnion's
        # parts side by side
        keys, counts = np.unique(np.repeat(np.arange(n, dtype=np.int64) * n_features, lengths) + columns,
                                 return_counts=True)
        index_dtype = np.int32 if len(keys) <= np.iinfo(np.int32).max else np.int64  # as _count_vocab chooses
        indices = (keys % n_features).astype(index_dtype)
        starts = (np.arange(n, dtype=np.int64)[:, None] * n_features + self.part_offsets[None, :]).ravel()
        segments = np.append(np.searchsorted(keys, starts), len(keys)).astype(index_dtype)  # (row, part)
        data = counts.astype(np.float64)  # CountVectorizer's int counts as the float64 matrix holds them
        # TfidfVectorizer.transform: CountVectorizer.transform, then TfidfTransformer.transform
        if self.binary:
            data.fill(1)
        if self.sublinear:
            np.log(data, data)
            data += 1.0
        if self.idf is not None:
            data *= self.idf[indices]
        if self.l2:  # normalize(X, "l2") of each part's rows: the same Cython function, in place
            from sklearn.utils.sparsefuncs_fast import inplace_csr_row_normalize_l2

            inplace_csr_row_normalize_l2(SimpleNamespace(data=data, indices=indices, indptr=segments,
                                                         shape=(n * n_parts, n_features)))
        return _Rows(data, indices, segments[::n_parts].copy(), (n, n_features))


class _SklearnFeatures:
    """Any other vectorizer: its own ``transform`` (FeatureUnion's parts called in turn)."""

    def __init__(self, vectorizer) -> None:
        self.vectorizer = vectorizer

    def __call__(self, texts: Sequence[str]) -> _Rows:
        return _Rows.of(vectorize(self.vectorizer, list(texts)))


def vectorize(vectorizer, texts: list[str]):
    """``vectorizer.transform(texts)``; a FeatureUnion's parts are called in turn and stacked as
    FeatureUnion stacks them, without its per-call joblib dispatch (0.3 ms a call)."""
    from sklearn.pipeline import FeatureUnion

    if (not isinstance(vectorizer, FeatureUnion) or vectorizer.transformer_weights
            or any(isinstance(part, str) for _, part in vectorizer.transformer_list)):  # "drop", "passthrough"
        return vectorizer.transform(texts)
    parts = [part.transform(texts) for _, part in vectorizer.transformer_list]
    return sp.hstack(parts).tocsr() if any(sp.issparse(p) for p in parts) else vectorizer.transform(texts)


def compile_features(vectorizer) -> Callable[[Sequence[str]], _Rows] | None:
    """The compiled TF-IDF, else the vectorizer's own transform if it gives CSR matrices (the
    linear members' sums run over a CSR row's entries); None if it does not."""
    compiled = CompiledTfidf.compile(vectorizer)
    if compiled is not None:
        return compiled
    probe = vectorize(vectorizer, ["a"])
    return _SklearnFeatures(vectorizer) if isinstance(probe, sp.csr_matrix) and probe.dtype == np.float64 else None


# ----------------------------------------------------------------------------- linear members
def _overrides(obj, name: str, owner: type) -> bool:
    """Whether ``obj``'s class defines ``name`` otherwise than ``owner`` does."""
    return getattr(type(obj), name, None) is not getattr(owner, name, None)


class _Head:
    """A member computed from its block of the shared ``X @ W``: ``weights`` is its coefficient
    matrix (n_features x block), transposed as the estimator multiplies by it."""

    weights: list[np.ndarray]

    def __call__(self, blocks: list[np.ndarray]) -> np.ndarray:
        raise NotImplementedError


class _CalibratedSVMHead(_Head):
    """``CalibratedClassifierCV(LinearSVC, method="sigmoid")``: each fold's ``decision_function``
    through its sigmoids (``_CalibratedClassifier.predict_proba``), averaged; and the margins."""

    def __init__(self, folds: list[dict], n_classes: int) -> None:
        self.folds, self.n_classes = folds, n_classes
        self.weights = [fold["coef_t"] for fold in folds]

    @classmethod
    def compile(cls, clf) -> _CalibratedSVMHead | None:
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.linear_model._base import LinearClassifierMixin
        from sklearn.preprocessing import LabelEncoder

        from sentiment_pipeline.pipeline.models import CalibratedLinearSVC

        if type(clf) is not CalibratedLinearSVC or clf.calibration != "sigmoid":
            return None
        model = clf.model_
        if type(model) is not CalibratedClassifierCV or model.method != "sigmoid":
            return None
        folds = []
        for calibrated in model.calibrated_classifiers_:
            estimator = calibrated.estimator
            if (not isinstance(estimator, LinearClassifierMixin) or calibrated.method != "sigmoid"
                    or _overrides(estimator, "decision_function", LinearClassifierMixin)
                    or not all(hasattr(c, "a_") and hasattr(c, "b_") for c in calibrated.calibrators)):
                return None
            coef = estimator.coef_
            if not isinstance(coef, np.ndarray) or coef.dtype != np.float64 or coef.ndim != 2:
                return None
            folds.append({"coef_t": coef.T, "intercept": estimator.intercept_,
                          "calibrators": tuple((c.a_, c.b_) for c in calibrated.calibrators),
                          "class_columns": LabelEncoder().fit(calibrated.classes).transform(estimator.classes_)})
        return cls(folds, len(clf.classes_))

    @classmethod
    def compile_sgd(cls, clf) -> _CalibratedSVMHead | None:
        """``IncrementalSGDClassifier`` (sigmoid): one SGD model's margins through its calibrators,
        normalised as ``_CalibratedClassifier`` normalises them (its ``predict_proba`` copies
        those steps): the calibrated SVM's arithmetic with a single fold (adding to zeros and
        dividing by 1 change no bit)."""
        from sklearn.linear_model import SGDClassifier
        from sklearn.linear_model._base import LinearClassifierMixin

        from sentiment_pipeline.pipeline.incremental import IncrementalSGDClassifier

        if type(clf) is not IncrementalSGDClassifier or clf.calibration != "sigmoid":
            return None
        model = clf.model_
        if (type(model) is not SGDClassifier or _overrides(model, "decision_function", LinearClassifierMixin)
                or not all(hasattr(c, "a_") and hasattr(c, "b_") for c in clf.calibrators_)
                or not np.array_equal(model.classes_, clf.classes_)):
            return None
        coef = model.coef_
        if not isinstance(coef, np.ndarray) or coef.dtype != np.float64 or coef.ndim != 2:
            return None
        fold = {"coef_t": coef.T, "intercept": model.intercept_,
                "calibrators": tuple((c.a_, c.b_) for c in clf.calibrators_),
                "class_columns": np.arange(len(clf.calibrators_))}
        return cls([fold], len(clf.classes_))

    def margins_and_proba(self, blocks: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
        n, n_classes = blocks[0].shape[0], self.n_classes
        margins, mean_proba = [], np.zeros((n, n_classes))
        for fold, block in zip(self.folds, blocks, strict=True):
            # LinearClassifierMixin.decision_function
            scores = block + fold["intercept"]
            if scores.shape[1] == 1:
                scores = np.reshape(scores, (-1,))
            margins.append(scores)
            mean_proba += self._fold_proba(fold, scores, n, n_classes)
        mean_proba /= len(self.folds)  # CalibratedClassifierCV.predict_proba
        return margins, mean_proba

    def __call__(self, blocks: list[np.ndarray]) -> np.ndarray:
        return self.margins_and_proba(blocks)[1]

    @staticmethod
    def _fold_proba(fold: dict, scores: np.ndarray, n: int, n_classes: int) -> np.ndarray:
        # sklearn.calibration._CalibratedClassifier.predict_proba (method="sigmoid")
        from sentiment_pipeline.pipeline.models import calibrated_proba

        predictions = scores.reshape(-1, 1) if scores.ndim == 1 else scores
        proba = np.zeros((n, n_classes))
        # with two classes there is one score column and one calibrator for the two class columns
        for class_idx, this_pred, (a, b) in zip(fold["class_columns"], predictions.T, fold["calibrators"], strict=False):
            if n_classes == 2:
                class_idx += 1
            proba[:, class_idx] = expit(-(a * np.ascontiguousarray(this_pred) + b))  # _SigmoidCalibration.predict
        return calibrated_proba(proba)


class _LogisticRegressionHead(_Head):
    """``LogisticRegression.predict_proba``: softmax of the decision function, or with two
    classes ``_predict_proba_lr``'s expit."""

    def __init__(self, clf) -> None:
        self.weights = [clf.coef_.T]
        self.intercept, self.binary = clf.intercept_, len(clf.classes_) <= 2

    @classmethod
    def compile(cls, clf) -> _LogisticRegressionHead | None:
        from sklearn.linear_model import LogisticRegression
        from sklearn.linear_model._base import LinearClassifierMixin

        if type(clf) is not LogisticRegression or _overrides(clf, "decision_function", LinearClassifierMixin):
            return None
        coef = clf.coef_
        if not isinstance(coef, np.ndarray) or coef.dtype != np.float64 or coef.ndim != 2:
            return None
        return cls(clf)

    def __call__(self, blocks: list[np.ndarray]) -> np.ndarray:
        decision = blocks[0] + self.intercept  # LinearClassifierMixin.decision_function
        if decision.shape[1] == 1:
            decision = np.reshape(decision, (-1,))
        if self.binary:  # LinearClassifierMixin._predict_proba_lr
            prob = expit(decision, out=decision)
            if prob.ndim == 1:
                return np.stack([1 - prob, prob], axis=1)
            prob_sum = prob.sum(axis=1)
            all_zero = prob_sum == 0
            if np.any(all_zero):
                prob[all_zero, :] = 1
                prob_sum[all_zero] = prob.shape[1]
            prob /= np.reshape(prob_sum, (prob.shape[0], -1))
            return prob
        # sklearn.utils.extmath.softmax(decision, copy=False)
        max_prob = np.reshape(np.max(decision, axis=1), (-1, 1))
        decision -= max_prob
        np.exp(decision, out=decision)
        sum_prob = np.reshape(np.sum(decision, axis=1), (-1, 1))
        decision /= sum_prob
        return decision


class _NaiveBayesHead(_Head):
    """``MultinomialNB`` / ``ComplementNB`` ``predict_proba``: exp of the joint log-likelihood
    minus its log-sum-exp (``sklearn.utils._array_api._logsumexp``'s steps)."""

    def __init__(self, nb, complement: bool) -> None:
        self.weights = [nb.feature_log_prob_.T]
        self.class_log_prior, self.complement = nb.class_log_prior_, complement
        self.one_class = len(nb.classes_) == 1

    @classmethod
    def compile(cls, clf) -> _NaiveBayesHead | None:
        from sklearn.naive_bayes import ComplementNB, MultinomialNB, _BaseNB

        from sentiment_pipeline.pipeline.models import NaiveBayes

        if type(clf) is NaiveBayes:  # the pipeline's: predict_proba is its model_'s
            clf = clf.model_
        if type(clf) not in (MultinomialNB, ComplementNB):
            return None
        if any(_overrides(clf, name, _BaseNB) for name in ("predict_proba", "predict_log_proba")):
            return None
        flp = clf.feature_log_prob_
        if not isinstance(flp, np.ndarray) or flp.dtype != np.float64 or flp.ndim != 2:
            return None
        return cls(clf, type(clf) is ComplementNB)

    def __call__(self, blocks: list[np.ndarray]) -> np.ndarray:
        jll = np.array(blocks[0], copy=True)  # safe_sparse_dot(X, feature_log_prob_.T): its own array
        if not self.complement or self.one_class:
            jll += self.class_log_prior
        # _BaseNB.predict_log_proba: jll - logsumexp(jll, axis=1), as _logsumexp computes it
        array_max = np.max(jll, axis=1, keepdims=True)
        index_max = jll == array_max
        array = np.array(jll, copy=True)
        array[index_max] = -np.inf
        m = np.sum(index_max.astype(array.dtype), axis=1, keepdims=True, dtype=array.dtype)
        shift = np.where(np.isfinite(array_max), array_max, 0)
        exp = np.exp(array - shift)
        s = np.sum(exp, axis=1, keepdims=True, dtype=exp.dtype)
        s = np.where(s == 0, s, s / m)
        out = np.log1p(s) + np.log(m) + array_max
        log_prob_x = np.squeeze(out, axis=1)
        return np.exp(jll - log_prob_x[None, :].T)


def _fits(head: _Head, columns: np.ndarray | None, n_features: int) -> bool:
    rows = n_features if columns is None else len(columns)
    return all(w.shape[0] == rows for w in head.weights)


def _linear_head(clf) -> _Head | None:
    for compile_head in (_CalibratedSVMHead.compile, _CalibratedSVMHead.compile_sgd, _LogisticRegressionHead.compile,
                         _NaiveBayesHead.compile):
        compiled = compile_head(clf)
        if compiled is not None:
            return compiled
    return None


class _LinearScores:
    """``X @ W`` for every linear member at once. Each output column is its own sum over a
    row's entries in their order (scipy's ``csr_matvecs``), whatever the other columns, and a
    member whose filter drops a column has a zero row there, so each block is the product that
    member computes on its filtered matrix, bit for bit."""

    def __init__(self, heads: list[tuple[np.ndarray | None, _Head]], n_features: int) -> None:
        self.heads = [head for _, head in heads]
        widths = [w.shape[1] for _, head in heads for w in head.weights]
        self.weights = np.zeros((n_features, sum(widths)))
        self.slices: list[list[slice]] = []
        start = 0
        for columns, head in heads:
            blocks = []
            for w in head.weights:
                block = slice(start, start + w.shape[1])
                if columns is None:
                    self.weights[:, block] = w
                else:
                    self.weights[columns, block] = w
                blocks.append(block)
                start += w.shape[1]
            self.slices.append(blocks)

    def __call__(self, X: _Rows) -> list[list[np.ndarray]]:
        if _csr_matvecs is None or X.data.dtype != np.float64 or X.indices.dtype != X.indptr.dtype:
            scores = X.matrix() @ self.weights
        else:  # what csr_matrix @ ndarray runs (_matmul_multivector), without building the matrix
            scores = np.zeros((X.shape[0], self.weights.shape[1]))
            _csr_matvecs(X.shape[0], X.shape[1], self.weights.shape[1], X.indptr, X.indices, X.data,
                         self.weights.ravel(), scores.ravel())
        return [[scores[:, block] for block in blocks] for blocks in self.slices]


# ----------------------------------------------------------------------------- other members
class _CsrPredictor:
    """``Booster.inplace_predict(csr_matrix)`` without its Python: the C function it calls,
    ``XGBoosterPredictFromCSR``, with the arguments it passes (its JSON of the iteration range,
    ``missing`` and prediction type, built by the same ``make_jcargs``; the three arrays' array
    interfaces; no base margin), and the float32 predictions copied out in the shape XGBoost
    reports. ``inplace_predict`` spends ~100 us a call on type checks, JSON and ctypes set-up.
    ``compile`` returns None unless this gives ``inplace_predict``'s bits on probe rows."""

    def __init__(self, booster, n_columns: int, missing: float, iteration_range: tuple[int, int]) -> None:
        import ctypes

        from xgboost import core

        self.booster, self.lib, self.ctypes = booster, core._LIB, ctypes
        self.args = core.make_jcargs(type=0, training=False, iteration_begin=iteration_range[0],
                                     iteration_end=iteration_range[1], missing=missing, strict_shape=False, cache_id=0)
        self.n_columns = ctypes.c_uint64(n_columns)

    @classmethod
    def compile(cls, booster, n_columns: int, missing: float, iteration_range: tuple[int, int]) -> _CsrPredictor | None:
        try:
            direct = cls(booster, n_columns, missing, iteration_range)
            rng = np.random.default_rng(0)
            probe = sp.random(5, n_columns, density=min(1.0, 40 / n_columns), format="csr", random_state=rng)
            probe = sp.vstack([probe, sp.csr_matrix((1, n_columns))], format="csr")  # and an empty row
            expected = booster.inplace_predict(probe, iteration_range=iteration_range, predict_type="value",
                                               missing=missing, validate_features=False)
            got = direct(probe.indptr, probe.indices, probe.data)
        except Exception:  # noqa: BLE001 - another XGBoost: keep inplace_predict
            return None
        same = got.dtype == expected.dtype and got.shape == expected.shape and np.array_equal(got, expected)
        return direct if same else None

    @staticmethod
    def _interface(array: np.ndarray) -> bytes:
        return (f'{{"data": [{array.ctypes.data}, true], "shape": [{len(array)}], "strides": null, '
                f'"typestr": "{array.dtype.str}", "version": 3}}').encode()

    def __call__(self, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray) -> np.ndarray:
        ctypes = self.ctypes
        shape, dims = ctypes.POINTER(ctypes.c_uint64)(), ctypes.c_uint64()
        predictions = ctypes.POINTER(ctypes.c_float)()
        status = self.lib.XGBoosterPredictFromCSR(
            self.booster.handle, self._interface(indptr), self._interface(indices), self._interface(data),
            self.n_columns, self.args, ctypes.c_void_p(), ctypes.byref(shape), ctypes.byref(dims),
            ctypes.byref(predictions))
        if status != 0:
            from xgboost.core import XGBoostError

            raise XGBoostError(self.lib.XGBGetLastError().decode())
        out_shape = tuple(int(shape[i]) for i in range(dims.value))
        if 0 in out_shape:
            return np.empty(out_shape, dtype=np.float32)
        return np.ctypeslib.as_array(predictions, shape=out_shape).copy()  # XGBoost reuses its buffer


class _XGBoostMember:
    """``XGBClassifier.predict_proba`` of the filtered columns: ``XGBModel.predict``'s call of
    the booster's ``inplace_predict`` (with what it decides per call decided once: the iteration
    range, ``missing``, and the feature-count check), then ``_cls_predict_proba``."""

    def __init__(self, clf, columns: np.ndarray | None, n_features: int, iteration_range: tuple[int, int]) -> None:
        self.booster, self.missing, self.n_classes = clf.get_booster(), clf.missing, clf.n_classes_
        self.iteration_range = iteration_range
        self.n_columns = n_features if columns is None else len(columns)
        self.remap: np.ndarray | None = None
        if columns is not None:
            self.remap = np.full(n_features, -1, dtype=np.int64)
            self.remap[columns] = np.arange(len(columns))
        self.direct = _CsrPredictor.compile(self.booster, self.n_columns, self.missing, iteration_range)

    @classmethod
    def compile(cls, clf, columns: np.ndarray | None, n_features: int) -> _XGBoostMember | None:
        try:
            from xgboost import XGBClassifier
        except ImportError:  # pragma: no cover - xgboost is a dependency
            return None
        if type(clf) is not XGBClassifier or clf.objective not in ("multi:softprob", "binary:logistic"):
            return None
        try:  # what XGBModel.predict decides on every call, decided once
            if not clf._can_use_inplace_predict():
                return None
            iteration_range = tuple(clf._get_iteration_range(None))
        except AttributeError:  # pragma: no cover - another XGBoost's sklearn wrapper
            return None
        n_columns = n_features if columns is None else len(columns)
        if clf.get_booster().num_features() != n_columns:
            return None
        return cls(clf, columns, n_features, (int(iteration_range[0]), int(iteration_range[1])))

    def __call__(self, X: _Rows) -> np.ndarray:
        if self.remap is None:
            indptr, indices, data = X.indptr, X.indices, X.data
        else:  # X[:, columns]: the kept entries of each row, in their order, renumbered
            renumbered = self.remap[X.indices]
            kept = renumbered >= 0
            indptr = np.concatenate(([0], np.cumsum(kept)))[X.indptr].astype(X.indptr.dtype)
            indices, data = renumbered[kept].astype(X.indices.dtype), X.data[kept]
        if self.direct is not None:
            prediction = self.direct(indptr, indices, data)
        else:
            selected = sp.csr_matrix((data, indices, indptr), shape=(X.shape[0], self.n_columns), copy=False)
            prediction = self.booster.inplace_predict(selected, iteration_range=self.iteration_range,
                                                      predict_type="value", missing=self.missing,
                                                      validate_features=False)
        # xgboost.sklearn._cls_predict_proba
        if prediction.ndim == 2 and (prediction.shape[1] == self.n_classes
                                     or (self.n_classes == 2 and prediction.shape[1] >= self.n_classes)):
            return prediction
        return np.vstack((1.0 - prediction, prediction)).transpose()


class _MemberOnColumns:
    """An ensemble member: its filter's columns, fixed once (``SelectKBest`` re-sorts all
    40,000 column scores on every call, 4.7 ms a text), then its classifier's own probabilities."""

    def __init__(self, column_indices: np.ndarray | None, classifier) -> None:
        self.column_indices = column_indices
        self.classifier = classifier

    def __call__(self, X: _Rows) -> np.ndarray:
        matrix = X.matrix()
        return self.classifier.predict_proba(matrix if self.column_indices is None else matrix[:, self.column_indices])


# ----------------------------------------------------------------------------- models
class CompiledCalibratedSVM:
    """``transform -> select -> CalibratedLinearSVC`` (or ``IncrementalSGDClassifier``, one
    fold): labels from the folds' mean margin, probabilities from their calibrated sigmoids."""

    def __init__(self, features: Callable[[Sequence[str]], _Rows], scores: _LinearScores, classes: np.ndarray) -> None:
        self.features, self.scores, self.classes_ = features, scores, classes
        head = scores.heads[0]
        assert isinstance(head, _CalibratedSVMHead)
        self.head = head

    def predict_with_proba(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        margins, mean_proba = self.head.margins_and_proba(self.scores(self.features(texts))[0])
        margin = np.mean(margins, axis=0)  # CalibratedLinearSVC.decision_function, then predict
        if margin.ndim == 1:
            labels = self.classes_[(margin > 0).astype(int)]
        else:
            labels = self.classes_[np.argmax(margin, axis=1)]
        return labels, mean_proba


class CompiledEnsemble:
    """``transform -> EnsembleClassifier``: the texts vectorised once, the linear members from
    one product, XGBoost through its booster, any other member's classifier as the ensemble
    calls it, and the ensemble's own combination (soft vote or meta-learner)."""

    def __init__(self, features: Callable[[Sequence[str]], _Rows], scores: _LinearScores | None,
                 members: list[tuple[str, Any]], ensemble) -> None:
        self.features, self.scores, self.members, self.ensemble = features, scores, members, ensemble
        self.classes_ = ensemble.classes_

    def predict_with_proba(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        X = self.features(texts)
        blocks = iter(self.scores(X)) if self.scores is not None else iter(())
        probas = [member(next(blocks)) if kind == "linear" else member(X) for kind, member in self.members]
        proba = self.ensemble.combine(probas)
        return self.classes_[np.argmax(proba, axis=1)], proba


def _column_indices(select, n_features: int | None = None) -> tuple[bool, np.ndarray | None]:
    """(known, indices): the columns a fitted filter keeps (None: all of them); not known if
    it is no filter, or a filter of other than ``n_features`` columns."""
    if select is None or select == "passthrough":
        return True, None
    if not hasattr(select, "get_support"):
        return False, None
    mask = select.get_support()
    if n_features is not None and len(mask) != n_features:
        return False, None
    return True, None if mask.all() else np.arange(len(mask))[mask]


def _compile_ensemble(features, n_features: int, ensemble) -> CompiledEnsemble | None:
    linear: list[tuple[np.ndarray | None, _Head]] = []
    members: list[tuple[str, Any]] = []  # ("linear", head) or ("other", vectorised texts -> probabilities)
    for member in ensemble.members_:
        steps = getattr(member, "named_steps", {})
        known, columns = _column_indices(steps.get("select"), n_features)
        clf = steps.get("clf")
        if not known or clf is None or list(steps) != ["select", "clf"]:
            return None
        head = _linear_head(clf)
        if head is not None and _fits(head, columns, n_features):
            linear.append((columns, head))
            members.append(("linear", head))
            continue
        xgb = _XGBoostMember.compile(clf, columns, n_features)
        members.append(("other", xgb if xgb is not None else _MemberOnColumns(columns, clf)))
    scores = _LinearScores(linear, n_features) if linear else None
    return CompiledEnsemble(features, scores, members, ensemble)


def _n_features(vectorizer) -> int | None:
    from sentiment_pipeline.pipeline.features import n_features_out

    try:
        return int(n_features_out(vectorizer))
    except (AttributeError, TypeError):
        return None


def compile_model(model) -> CompiledCalibratedSVM | CompiledEnsemble | None:
    """The compiled path for ``tfidf -> select -> CalibratedLinearSVC(sigmoid)`` (or the sgd
    family's ``IncrementalSGDClassifier(sigmoid)``) or for ``tfidf -> EnsembleClassifier``; None for
    anything else (the caller keeps scikit-learn)."""
    from sentiment_pipeline.pipeline.ensemble import EnsembleClassifier
    from sentiment_pipeline.pipeline.incremental import IncrementalSGDClassifier
    from sentiment_pipeline.pipeline.models import CalibratedLinearSVC

    steps = getattr(model, "named_steps", {})
    clf, select, vectorizer = steps.get("clf"), steps.get("select"), steps.get("tfidf")
    if list(steps) not in (["tfidf", "select", "clf"], ["tfidf", "clf"]):
        return None
    if clf is None or type(clf) not in (EnsembleClassifier, CalibratedLinearSVC,
                                        IncrementalSGDClassifier):  # exactly these, no subclass
        return None
    n_features = _n_features(vectorizer)
    if n_features is None:
        return None
    if type(clf) is EnsembleClassifier:
        if select not in (None, "passthrough"):
            return None
        features = compile_features(vectorizer)
        return None if features is None else _compile_ensemble(features, n_features, clf)
    if select not in (None, "passthrough") and not hasattr(select, "get_support"):
        return None  # a step this path does not know ("passthrough": every column, the sgd family's)
    known, columns = _column_indices(select, n_features)
    if not known:
        return None
    head = _CalibratedSVMHead.compile(clf) or _CalibratedSVMHead.compile_sgd(clf)
    if head is None or not _fits(head, columns, n_features):
        return None
    features = compile_features(vectorizer)
    if features is None:
        return None
    return CompiledCalibratedSVM(features, _LinearScores([(columns, head)], n_features), np.asarray(clf.classes_))
