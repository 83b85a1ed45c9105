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
    (see :func:`domain_classifier`). None when either side has fewer rows than folds."""
    found = domain_classifier(reference, current, seed, max_rows, folds, top_ngrams=0, examples=0)
    return None if found is None else found["auc"]


def domain_classifier(reference: Sequence[str], current: Sequence[str], seed: int, max_rows: int = 2000,
                      folds: int = 3, top_ngrams: int = 10, examples: int = 3) -> dict | None:
    """The text-drift classifier and what it found: its cross-validated ROC-AUC (equal-sized
    seeded samples, TF-IDF of word uni- and bigrams fitted per fold, logistic regression), the
    ``top_ngrams`` n-grams that most separate the sides in each direction (the coefficients of
    the same model fitted on the whole sample: positive toward ``current``), and ``examples``
    texts from each side that it classified most confidently out of fold. None when either side
    has fewer rows than folds."""
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
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    # min_df=2 over a tiny window can leave no vocabulary; fall back to every token
    try:
        scores = cross_val_predict(model, texts, is_current, method="predict_proba", cv=cv)[:, 1]
    except ValueError:
        model.set_params(tfidfvectorizer__min_df=1)
        scores = cross_val_predict(model, texts, is_current, method="predict_proba", cv=cv)[:, 1]
    result: dict = {"auc": float(roc_auc_score(is_current, scores)), "rows_per_side": n}
    if top_ngrams <= 0 and examples <= 0:
        return result
    model.fit(texts, is_current)
    terms = model[0].get_feature_names_out()
    weights = model[-1].coef_[0]
    # ties broken by the n-gram itself, so the lists do not depend on the vocabulary's order
    toward_current = sorted(((-w, t) for t, w in zip(terms, weights, strict=True) if w > 0))[:top_ngrams]
    toward_reference = sorted(((w, t) for t, w in zip(terms, weights, strict=True) if w < 0))[:top_ngrams]
    result["toward_production"] = [{"ngram": str(t), "weight": round(float(-w), 6)} for w, t in toward_current]
    result["toward_training"] = [{"ngram": str(t), "weight": round(float(w), 6)} for w, t in toward_reference]

    def most_confident(side: list[str], side_scores: np.ndarray) -> list[dict]:
        order = sorted(range(len(side)), key=lambda i: (-side_scores[i], side[i]))
        chosen: list[dict] = []
        for i in order:  # a text repeated in the window is shown once
            if len(chosen) == examples:
                break
            if side[i].strip() and all(c["text"] != side[i] for c in chosen):
                chosen.append({"text": side[i], "probability": round(float(side_scores[i]), 6)})
        return chosen

    # probability of the side the text came from, out of fold (the fitted model has seen them all)
    result["examples"] = {"production": most_confident(cur, scores[n:]),
                          "training": most_confident(ref, 1 - scores[:n])}
    return result
