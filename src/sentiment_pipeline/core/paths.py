"""Where each stage reads and writes, relative to the project root (DVC runs stages there)."""

from pathlib import Path

PARAMS = Path("params.yaml")

RAW_DIR = Path("data/raw")
RAW_FILE = RAW_DIR / "reviews.csv"

PROCESSED_DIR = Path("data/processed")
TRAIN_FILE = PROCESSED_DIR / "train.csv"
TEST_FILE = PROCESSED_DIR / "test.csv"

FEATURES_DIR = Path("data/features")
VECTORIZER_DIR = Path("models/vectorizer")
VECTORIZER_FILE = VECTORIZER_DIR / "tfidf.joblib"

CANDIDATES_DIR = Path("models/candidates")
# Outside CANDIDATES_DIR: the ensemble stage depends on that whole directory (whichever
# families train.families lists), so its own output cannot live in it.
ENSEMBLE_DIR = Path("models/ensemble")
FINAL_DIR = Path("models/final")
FINAL_MODEL = FINAL_DIR / "model.joblib"
MODEL_CARD = FINAL_DIR / "model_card.json"

METRICS_DIR = Path("metrics")
DOWNLOAD_REPORT = METRICS_DIR / "download.json"
DATA_REPORT = METRICS_DIR / "data.json"
FEATURES_REPORT = METRICS_DIR / "features.json"
CV_METRICS_DIR = METRICS_DIR / "cv"  # one summary per trained family (train)
ENSEMBLE_SUMMARY = METRICS_DIR / "ensemble.json"  # outside CV_METRICS_DIR, train's output
SELECTION = METRICS_DIR / "selection.json"
TEST_METRICS = METRICS_DIR / "test.json"
BASELINES = METRICS_DIR / "baselines.json"
ERROR_ANALYSIS = METRICS_DIR / "error_analysis.csv"
MODEL_CARD_MD = METRICS_DIR / "model_card.md"

PLOTS_DIR = Path("plots")
CONFUSION_MATRIX = PLOTS_DIR / "confusion_matrix.json"
CLASS_DISTRIBUTION = PLOTS_DIR / "class_distribution.json"
CONFUSION_MATRIX_NORMALIZED = PLOTS_DIR / "confusion_matrix_normalized.json"
ROC_DIR = PLOTS_DIR / "roc"  # one file per class (one-vs-rest)
PRECISION_RECALL_DIR = PLOTS_DIR / "precision_recall"  # one file per class
CALIBRATION = PLOTS_DIR / "calibration.json"
CV_COMPARISON = PLOTS_DIR / "cv_comparison.json"  # CV macro-F1 per family (select)
# Measured grid-search seconds per family (train, ensemble). Git-ignored and not a DVC output:
# seconds differ on every run, and an unchanged re-run must leave dvc.lock and git clean. The
# PR report and `make bench` read them from the workspace of the run that wrote them.
TIMING_DIR = METRICS_DIR / "timing"


def candidate_dir(family: str) -> Path:
    return ENSEMBLE_DIR if family == "ensemble" else CANDIDATES_DIR / family


def cv_summary(family: str) -> Path:
    return ENSEMBLE_SUMMARY if family == "ensemble" else CV_METRICS_DIR / f"{family}.json"


def train_timing(family: str) -> Path:
    return TIMING_DIR / f"{family}.json"
