import joblib

from sentiment_pipeline import paths
from sentiment_pipeline.evaluate import log_with_dvclive, score_predictions
from sentiment_pipeline.files import read_csv, read_json


def run() -> None:
    model = joblib.load(paths.FINAL_MODEL)
    classes = read_json(paths.MODEL_CARD)["classes"]
    test = read_csv(paths.TEST_FILE)
    index = {label: i for i, label in enumerate(classes)}
    y_true = test["label"].map(index).to_numpy()
    y_pred = model.predict(test["text"])
    metrics = score_predictions(y_true, y_pred, classes)
    log_with_dvclive(metrics, y_true, y_pred, classes, paths.TEST_METRICS, paths.CONFUSION_MATRIX)
