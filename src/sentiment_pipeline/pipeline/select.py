"""The select stage: choose the family with the best mean CV macro-F1 (never a test score)."""

from __future__ import annotations

import platform
from importlib.metadata import version

from sklearn.pipeline import Pipeline

from sentiment_pipeline.core.errors import DataError

RECORDED_LIBRARIES = ("scikit-learn", "imbalanced-learn", "xgboost", "numpy", "scipy", "pandas",
                      "nltk", "dvc", "dvclive")


def choose_family(summaries: list[dict]) -> dict:
    """The summary with the highest mean CV macro-F1; ties go to the earlier family."""
    if not summaries:
        raise DataError("no cross-validation summaries to select from")
    best = summaries[0]
    for summary in summaries[1:]:
        if summary["cv_f1_macro_mean"] > best["cv_f1_macro_mean"]:
            best = summary
    return best


def cv_comparison_rows(summaries: list[dict]) -> list[dict]:
    """One row per family, best first: the CV comparison plot and table."""
    rows = [{"family": s["family"], "cv_f1_macro_mean": s["cv_f1_macro_mean"],
             "cv_f1_macro_std": s["cv_f1_macro_std"], "n_candidates": s["n_candidates"]}
            for s in summaries]
    return sorted(rows, key=lambda row: -row["cv_f1_macro_mean"])


def final_model(vectorizer, candidate) -> Pipeline:
    """Text in, class index out: the fitted TF-IDF followed by the winning candidate.

    The candidate's resampling step only acts during fit, so it is dropped here."""
    return Pipeline([
        ("tfidf", vectorizer),
        ("select", candidate.named_steps["select"]),
        ("clf", candidate.named_steps["clf"]),
    ])


def ensemble_details(summary: dict, members: list[dict], cv_table) -> dict:
    """The model card's account of a selected ensemble: each member's own search result, and
    every combination the ensemble's CV compared (what soft voting, the prior adjustment, the
    per-class scales and stacking each gave)."""
    def knob(row) -> str:
        if row["method"] == "soft_vote":
            return (f"prior_power={row['prior_power']:g}, weights={row['weights']}, "
                    f"class_scale={row['class_scale']}")
        return f"meta_C={row['meta_C']:g}"

    return {
        "members": [{"family": m["family"], "params": m["best_params"], "cv_f1_macro_mean": m["cv_f1_macro_mean"],
                     "cv_f1_macro_std": m["cv_f1_macro_std"]} for m in members],
        "combinations": [{"method": row["method"], "setting": knob(row), "cv_f1_macro_mean": float(row["mean_f1_macro"]),
                          "cv_f1_macro_std": float(row["std_f1_macro"])} for _, row in cv_table.iterrows()],
        "method": summary["best_params"]["method"],
        "weight_order": summary.get("listed_members", [m["family"] for m in members]),
    }


def library_versions() -> dict[str, str]:
    # major.minor only: a patch release of Python must not change the output's hash
    python = ".".join(platform.python_version_tuple()[:2])
    return {"python": python, **{lib: version(lib) for lib in RECORDED_LIBRARIES}}


def model_card(best: dict, summaries: list[dict], classes: list[str], train_md5: str,
               n_features: int) -> dict:
    return {
        "family": best["family"],
        "params": best["best_params"],
        "cv_f1_macro_mean": best["cv_f1_macro_mean"],
        "cv_f1_macro_std": best["cv_f1_macro_std"],
        "cv_folds": best["cv_folds"],
        "selected_by": "highest mean cross-validated macro-F1 on the training split",
        "candidates": {
            s["family"]: {"cv_f1_macro_mean": s["cv_f1_macro_mean"], "cv_f1_macro_std": s["cv_f1_macro_std"]}
            for s in summaries
        },
        "classes": classes,
        "n_features": n_features,
        "training_data_md5": train_md5,
        "libraries": library_versions(),
    }
