"""A markdown model card written by the evaluate stage from the run's own files.

``render_model_card`` is a pure function of the JSON it is given: no clock, no host name, no
paths outside the project, so identical runs write identical bytes and a pull-request diff of
``metrics/model_card.md`` shows only what really changed.
"""

from __future__ import annotations

import numpy as np


def _fmt(value) -> str:
    return "—" if value is None else f"{value:.4f}"


def _signed(value: float) -> str:
    return f"{value:+.4f}"


def cv_rows(card: dict, cv_comparison: list[dict] | None) -> dict[str, tuple[float | None, float | None]]:
    """Mean and std of CV macro-F1 per family: from ``plots/cv_comparison.json`` (rows written
    by select) when given, else from the model card's ``candidates`` map."""
    rows = {family: (scores.get("cv_f1_macro_mean"), scores.get("cv_f1_macro_std"))
            for family, scores in card.get("candidates", {}).items()}
    for row in cv_comparison or []:
        rows[row["family"]] = (row["cv_f1_macro_mean"], row["cv_f1_macro_std"])
    return rows


def _data_section(data: dict | None, classes: list[str]) -> list[str]:
    if not data:
        return ["_No data report (`metrics/data.json`)._"]
    counts = data.get("class_counts", {})
    lines = [f"Rows after cleaning and deduplication: {data.get('rows_out', '—')} "
             f"(train {data.get('train_rows', '—')}, test {data.get('test_rows', '—')}).", "",
             "| class | train | test |", "| --- | --- | --- |"]
    for name in classes:
        lines.append(f"| {name} | {counts.get('train', {}).get(name, '—')} | "
                     f"{counts.get('test', {}).get(name, '—')} |")
    return lines


def _model_section(card: dict) -> list[str]:
    params = ", ".join(f"`{k}={v}`" for k, v in card.get("params", {}).items()) or "—"
    lines = [f"**Family:** `{card.get('family')}` — {card.get('selected_by', '')}.", "",
             f"**Parameters:** {params}", "",
             f"**Features:** {card.get('n_features', '—')} TF-IDF columns; training data md5 "
             f"`{card.get('training_data_md5', '—')}`."]
    libraries = card.get("libraries")
    if libraries:
        lines += ["", "**Libraries:** " + ", ".join(f"{k} {v}" for k, v in libraries.items())]
    return lines


def _ensemble_lines(details: dict | None, classes: list[str]) -> list[str]:
    if not details:
        return []
    lines = ["", "**Ensemble members** (each with the hyperparameters its own search chose, and its CV):", "",
             "| member | parameters | CV macro-F1 | ± std |", "| --- | --- | --- | --- |"]
    for m in details.get("members", []):
        params = ", ".join(f"{k}={v}" for k, v in m.get("params", {}).items())
        lines.append(f"| {m['family']} | {params} | {_fmt(m.get('cv_f1_macro_mean'))} | {_fmt(m.get('cv_f1_macro_std'))} |")
    combinations = details.get("combinations", [])  # best first
    shown = _combinations_shown(combinations)
    lines += ["", "**Ensemble combinations** compared by CV on the members' out-of-fold probabilities"
              " (weights in the order " + ":".join(details.get("weight_order", [m["family"] for m in details.get("members", [])]))
              + ", 0 leaving a member out; class scales in the classes' order: " + ":".join(classes) + ")"
              + (f" (the best {len(shown)} of {len(combinations)}, each method's best among them):"
                 if len(shown) < len(combinations) else ":"), "",
              "| method | setting | CV macro-F1 | ± std |", "| --- | --- | --- | --- |"]
    for c in shown:
        lines.append(f"| {c['method']} | {c['setting']} | {_fmt(c['cv_f1_macro_mean'])} | {_fmt(c['cv_f1_macro_std'])} |")
    if len(shown) < len(combinations):
        lines += ["", f"All {len(combinations)}: `models/ensemble/cv_results.csv`."]
    return lines


MAX_COMBINATIONS_SHOWN = 10


def _combinations_shown(combinations: list[dict]) -> list[dict]:
    """The first MAX_COMBINATIONS_SHOWN, plus each method's best when it ranks below them."""
    shown = combinations[:MAX_COMBINATIONS_SHOWN]
    methods = {c["method"] for c in shown}
    for c in combinations[MAX_COMBINATIONS_SHOWN:]:
        if c["method"] not in methods:
            shown.append(c)
            methods.add(c["method"])
    return shown


def _cv_section(card: dict, cv_comparison) -> list[str]:
    rows = cv_rows(card, cv_comparison)
    if not rows:
        return ["_No cross-validation results._"]
    folds = card.get("cv_folds")
    lines = [f"Macro-F1, {folds}-fold stratified CV on the training split (mean ± std):" if folds
             else "Macro-F1 on the training split (mean ± std):", "",
             "| family | CV macro-F1 | ± std |", "| --- | --- | --- |"]
    ranked = sorted(rows.items(), key=lambda item: (-(item[1][0] or 0.0), item[0]))
    for family, (mean, std) in ranked:
        name = f"**{family}** (selected)" if family == card.get("family") else family
        lines.append(f"| {name} | {_fmt(mean)} | {_fmt(std)} |")
    lines += _ensemble_lines(card.get("ensemble"), card.get("classes", []))
    lines += ["", "What each default gave and what was tried and dropped (char n-grams, negation "
              "marking, NB-SVM, lexicon features, stacking, prior adjustment, class scales, SMOTE): the decision "
              "record, docs/decisions.md."]
    return lines


def _test_section(test: dict, classes: list[str]) -> list[str]:
    lines = ["| metric | value |", "| --- | --- |"]
    for label, key in (("accuracy", "accuracy"), ("macro-F1", "f1_macro"),
                       ("weighted F1", "f1_weighted"), ("macro ROC-AUC (one-vs-rest)", "roc_auc_macro"),
                       ("macro average precision", "average_precision_macro"),
                       ("expected calibration error", "ece"), ("mean confidence", "mean_confidence")):
        if key in test:
            lines.append(f"| {label} | {_fmt(test[key])} |")
    per_class = test.get("per_class", {})
    lines += ["", "| class | precision | recall | F1 | ROC-AUC | avg. precision | support |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for name in classes:
        s = per_class.get(name, {})
        lines.append(f"| {name} | {_fmt(s.get('precision'))} | {_fmt(s.get('recall'))} | "
                     f"{_fmt(s.get('f1'))} | {_fmt(s.get('roc_auc'))} | "
                     f"{_fmt(s.get('average_precision'))} | {s.get('support', '—')} |")
    return lines


def _baselines_section(test: dict, baselines: dict | None, rules: dict[str, str]) -> list[str]:
    if not baselines:
        return ["_No baselines (`metrics/baselines.json`)._"]
    lines = ["Lexicon scorers on the original text of the same test split, with no training:", "",
             "| baseline | accuracy | macro-F1 | model ahead (macro-F1) | model ahead (accuracy) |",
             "| --- | --- | --- | --- | --- |"]
    notes = []
    for name, scores in baselines.items():
        if "f1_macro" not in scores:
            lines.append(f"| {name} | — | — | — | — |")
            notes.append(f"- {name}: not applicable — {scores.get('reason', 'no scores')}")
            continue
        lines.append(f"| {name} | {_fmt(scores.get('accuracy'))} | "
                     f"{_fmt(scores['f1_macro'])} | {_signed(test['f1_macro'] - scores['f1_macro'])} | "
                     f"{_signed(test['accuracy'] - scores['accuracy'])} |")
        if name in rules:
            notes.append(f"- {name}: {rules[name]}")
    return lines + ([""] + notes if notes else [])


def _confusions(test_confusion: np.ndarray | None, classes: list[str]) -> str | None:
    if test_confusion is None or test_confusion.size == 0:
        return None
    off = test_confusion.astype(float).copy()
    np.fill_diagonal(off, -1)
    actual, predicted = np.unravel_index(int(np.argmax(off)), off.shape)
    if off[actual, predicted] <= 0:
        return None
    share = test_confusion[actual, predicted] / max(1, test_confusion[actual].sum())
    return (f"The most frequent mistake is **{classes[actual]}** predicted as "
            f"**{classes[predicted]}** ({int(test_confusion[actual, predicted])} test rows, "
            f"{share:.1%} of {classes[actual]}).")


def _limitations(test: dict, data: dict | None, classes: list[str],
                 confusion: np.ndarray | None) -> list[str]:
    lines = ["- Intended use: ranking or triaging short English texts like the training data "
             "(same source, period and label definitions). It is not meant for decisions about "
             "individuals, and it has not been checked for bias across groups of authors.",
             "- It sees surface n-grams only (TF-IDF): sarcasm, negation across long spans and "
             "domain words absent from training are weak spots."]
    per_class = test.get("per_class", {})
    scored = [(s["f1"], name) for name, s in per_class.items() if "f1" in s]
    if scored:
        f1, weakest = min(scored)
        lines.append(f"- Weakest class: **{weakest}** (test F1 {f1:.4f}).")
    sentence = _confusions(confusion, classes)
    if sentence:
        lines.append(f"- {sentence} See `metrics/error_analysis.csv` for examples.")
    train = (data or {}).get("class_counts", {}).get("train", {})
    if train and min(train.values()) > 0:
        largest, smallest = max(train, key=train.get), min(train, key=train.get)
        lines.append(f"- Class imbalance in training: {largest} outnumbers {smallest} "
                     f"{train[largest] / train[smallest]:.1f} to 1.")
    if "ece" in test and "mean_confidence" in test and "top_label_accuracy" in test:
        direction = ("over-confident" if test["mean_confidence"] > test["top_label_accuracy"]
                     else "under-confident")
        lines.append(f"- Probabilities: expected calibration error {test['ece']:.4f}; on average "
                     f"the model is {direction} (mean confidence in its most probable class "
                     f"{test['mean_confidence']:.4f}, which is right for "
                     f"{test['top_label_accuracy']:.2%} of the test rows).")
    return lines


def render_model_card(*, card: dict, test: dict, data: dict | None = None,
                      baselines: dict | None = None, baseline_rules: dict[str, str] | None = None,
                      cv_comparison=None, confusion: np.ndarray | None = None) -> str:
    """The markdown model card. ``confusion[i, j]`` counts test rows of class i predicted j."""
    classes = list(card.get("classes", []))
    sections = [
        ("Data", _data_section(data, classes)),
        ("Model", _model_section(card)),
        ("Cross-validation (model selection)", _cv_section(card, cv_comparison)),
        ("Held-out test split", _test_section(test, classes)),
        ("Baselines", _baselines_section(test, baselines, baseline_rules or {})),
        ("Intended use and limitations", _limitations(test, data, classes, confusion)),
    ]
    lines = ["# Model card: sentiment classifier", "",
             "_Generated by the `evaluate` stage from `models/final/model_card.json`, "
             "`metrics/data.json`, `metrics/test.json` and `metrics/baselines.json`; do not edit._"]
    for title, body in sections:
        lines += ["", f"## {title}", "", *body]
    return "\n".join(lines) + "\n"
