import logging

import joblib
from sklearn.metrics import confusion_matrix

from sentiment_pipeline.core import paths
from sentiment_pipeline.core.config import load_params
from sentiment_pipeline.core.files import atomic_path, read_csv, read_json, write_csv
from sentiment_pipeline.pipeline.baselines import baseline_rules
from sentiment_pipeline.pipeline.evaluate import (
    PlotFiles,
    encode_labels,
    error_analysis,
    evaluate_model,
    log_with_dvclive,
    require_columns,
)
from sentiment_pipeline.review.model_card import render_model_card

log = logging.getLogger(__name__)

PLOTS = PlotFiles(confusion_normalized=paths.CONFUSION_MATRIX_NORMALIZED, roc_dir=paths.ROC_DIR,
                  precision_recall_dir=paths.PRECISION_RECALL_DIR, calibration=paths.CALIBRATION)


def _read_optional_json(path):
    return read_json(path) if path.is_file() else None


def run(params_file=paths.PARAMS) -> None:
    params = load_params(params_file)
    config = params.evaluate
    model = joblib.load(paths.FINAL_MODEL)
    card = read_json(paths.MODEL_CARD)
    classes = card["classes"]
    test = read_csv(paths.TEST_FILE)
    require_columns(test, paths.TEST_FILE, ["text", "label", "raw"])
    y_true = encode_labels(test["label"], classes, paths.TEST_FILE)

    evaluation = evaluate_model(model, test["text"], y_true, classes, config.calibration_bins)
    log_with_dvclive(evaluation.metrics, evaluation.y_true, evaluation.y_pred, classes,
                     paths.TEST_METRICS, paths.CONFUSION_MATRIX, evaluation=evaluation,
                     plots=PLOTS, calibration_bins=config.calibration_bins)
    errors = config.errors
    write_csv(error_analysis(test, evaluation, errors.most_confident, errors.per_cell, errors.seed),
              paths.ERROR_ANALYSIS)

    markdown = render_model_card(
        card=card, test=evaluation.metrics, data=_read_optional_json(paths.DATA_REPORT),
        baselines=_read_optional_json(paths.BASELINES),
        baseline_rules=baseline_rules(params.baselines, classes),
        cv_comparison=read_json(paths.CV_COMPARISON),
        confusion=confusion_matrix(evaluation.y_true, evaluation.y_pred,
                                   labels=list(range(len(classes)))),
    )
    with atomic_path(paths.MODEL_CARD_MD) as tmp:
        tmp.write_text(markdown, encoding="utf-8")
    log.info("test accuracy %.4f, macro-F1 %.4f, macro ROC-AUC %s, ECE %.4f",
             evaluation.metrics["accuracy"], evaluation.metrics["f1_macro"],
             f"{evaluation.metrics['roc_auc_macro']:.4f}" if "roc_auc_macro" in evaluation.metrics
             else "n/a", evaluation.metrics["ece"])
