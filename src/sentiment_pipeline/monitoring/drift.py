"""Drift statistics: is production text (and what the model says about it) still like training?

SciPy gives the tests (Kolmogorov-Smirnov, chi-square); PSI is one line over the same class
shares; the text-drift score is a domain classifier, as Evidently scores text drift: a model
trained to tell reference text from production text, whose cross-validated ROC-AUC is ~0.5 when
the two cannot be told apart and ~1 when they can.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

PSI_FLOOR = 1e-4  # an empty class would make PSI infinite; this is the usual floor


def population_stability_index(expected: np.ndarray, actual: np.ndarray) -> float:
    """PSI = sum (a - e) * ln(a / e) over categories (shares, each floored at 1e-4)."""
    expected, actual = np.asarray(expected, dtype=float), np.asarray(actual, dtype=float)
    if expected.shape != actual.shape:
        raise ValueError(f"expected {expected.shape} and actual {actual.shape} shares differ in shape")
    e, a = np.maximum(expected, PSI_FLOOR), np.maximum(actual, PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def class_mix_drift(predicted: np.ndarray, prior: np.ndarray) -> dict:
    """Predicted class mix of the window against the training prior: chi-square goodness of fit
    (its p-value shrinks with the window, so it is reported) and PSI (size-free, thresholded)."""
    from scipy.stats import chisquare

    prior = np.asarray(prior, dtype=float)
    counts = np.bincount(np.asarray(predicted, dtype=np.int64), minlength=len(prior)).astype(float)
    n = counts.sum()
    shares = counts / n if n else counts
    expected = prior / prior.sum() * n
    chi2 = chisquare(counts, expected) if n else None
    return {"shares": shares.tolist(), "prior": (prior / prior.sum()).tolist(),
            "psi": population_stability_index(prior / prior.sum(), shares),
            "chi2": float(chi2.statistic) if chi2 is not None else None,
            "chi2_pvalue": float(chi2.pvalue) if chi2 is not None else None}


def distribution_drift(reference: Sequence[float] | np.ndarray, current: Sequence[float] | np.ndarray) -> dict:
    """Two-sample Kolmogorov-Smirnov: the statistic (largest gap between the two CDFs, 0..1,
    thresholded because it does not grow with the sample) and its p-value."""
    from scipy.stats import ks_2samp

    reference, current = np.asarray(reference, dtype=float), np.asarray(current, dtype=float)
    if not len(reference) or not len(current):
        return {"ks": None, "pvalue": None, "reference_median": None, "current_median": None}
    result = ks_2samp(reference, current)
    return {"ks": float(result.statistic), "pvalue": float(result.pvalue),
            "reference_median": float(np.median(reference)), "current_median": float(np.median(current))}


def out_of_vocabulary_share(cleaned: Iterable[str], tokenize: Callable[[str], list[str]],
                            vocabulary: set[str] | frozenset[str]) -> float:
    """Share of the tokens that the model's vectorizer has never seen (0 when there are none)."""
    total = unknown = 0
    for text in cleaned:
        tokens = tokenize(text)
        total += len(tokens)
        unknown += sum(token not in vocabulary for token in tokens)
    return unknown / total if total else 0.0


def domain_classifier_auc(reference: Sequence[str], current: Sequence[str], seed: int,
                          max_rows: int = 2000, folds: int = 3) -> float | None:
    """Cross-validated ROC-AUC of a classifier telling ``current`` texts from ``reference`` ones
    (equal-sized seeded samples, TF-IDF of word uni- and bigrams fitted per fold, logistic
    regression). None when either side has fewer rows than folds."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline

    n = min(len(reference), len(current), max_rows)
    if n < folds:
        return None
    rng = np.random.default_rng(seed)
    ref = [reference[i] for i in rng.choice(len(reference), n, replace=False)]
    cur = [current[i] for i in rng.choice(len(current), n, replace=False)]
    texts, is_current = ref + cur, np.r_[np.zeros(n), np.ones(n)]
    model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                          LogisticRegression(max_iter=1000))
    # min_df=2 over a tiny window can leave no vocabulary; fall back to every token
    try:
        scores = cross_val_predict(model, texts, is_current, method="predict_proba",
                                   cv=StratifiedKFold(folds, shuffle=True, random_state=seed))[:, 1]
    except ValueError:
        model.set_params(tfidfvectorizer__min_df=1)
        scores = cross_val_predict(model, texts, is_current, method="predict_proba",
                                   cv=StratifiedKFold(folds, shuffle=True, random_state=seed))[:, 1]
    return float(roc_auc_score(is_current, scores))
