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
CV_METRICS_DIR = METRICS_DIR / "cv"
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
CV_FIT_TIME = PLOTS_DIR / "cv_fit_time.json"  # measured seconds per family (select)
TIMING_DIR = METRICS_DIR / "timing"  # measured grid-search seconds per family (train)


def candidate_dir(family: str) -> Path:
    return ENSEMBLE_DIR if family == "ensemble" else CANDIDATES_DIR / family


def cv_summary(family: str) -> Path:
    return CV_METRICS_DIR / f"{family}.json"


def train_timing(family: str) -> Path:
    return TIMING_DIR / f"{family}.json"
