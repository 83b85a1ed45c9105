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

PLOTS_DIR = Path("plots")
CONFUSION_MATRIX = PLOTS_DIR / "confusion_matrix.json"
CLASS_DISTRIBUTION = PLOTS_DIR / "class_distribution.json"


def candidate_dir(family: str) -> Path:
    return CANDIDATES_DIR / family


def cv_summary(family: str) -> Path:
    return CV_METRICS_DIR / f"{family}.json"
