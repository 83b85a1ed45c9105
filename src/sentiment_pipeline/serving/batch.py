"""``sentiment-pipeline predict``: a file of texts in, a file of predictions out, in chunks.

Memory stays flat as the file grows: each chunk is read, predicted and appended before the next
is read. The output is written to a temporary file beside the target and renamed at the end, so
a failed run leaves no half-written predictions.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import pandas as pd

from sentiment_pipeline.core.errors import DataError
from sentiment_pipeline.core.files import atomic_path
from sentiment_pipeline.inference.predictor import Predictions, Predictor

log = logging.getLogger(__name__)

Format = Literal["csv", "tsv", "jsonl", "parquet"]
FORMATS: tuple[str, ...] = ("csv", "tsv", "jsonl", "parquet")
MAX_LISTED_ROWS = 10


def file_format(path: Path, given: str | None = None) -> tuple[str, bool]:
    """(format, gzipped) from ``given`` or the suffixes: ``reviews.jsonl.gz`` -> (jsonl, True)."""
    suffixes = [s.lower().lstrip(".") for s in path.suffixes]
    gzipped = bool(suffixes) and suffixes[-1] == "gz"
    if gzipped:
        suffixes = suffixes[:-1]
    name = given or (suffixes[-1] if suffixes else "")
    if name not in FORMATS:
        raise DataError(f"{path}: cannot tell the format from the name; expected a suffix "
                        f"{', '.join('.' + f for f in FORMATS)} (optionally .gz) or --format")
    if name == "parquet" and gzipped:
        raise DataError(f"{path}: parquet compresses internally; drop the .gz")
    return name, gzipped


def read_chunks(path: Path, fmt: str, gzipped: bool, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The input file, ``chunk_rows`` rows at a time, values as they are (nulls kept as None)."""
    if not path.is_file():
        raise DataError(f"{path}: input file not found")
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
                yield batch.to_pandas()
            return
        compression = "gzip" if gzipped else None
        if fmt == "jsonl":
            reader = pd.read_json(path, lines=True, chunksize=chunk_rows, dtype=False,
                                  compression=compression)
        else:
            reader = pd.read_csv(path, sep="\t" if fmt == "tsv" else ",", chunksize=chunk_rows,
                                 dtype=object, compression=compression, keep_default_na=False,
                                 na_values=[""])
        with reader:
            yield from reader
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot be read as {fmt}{' (gzip)' if gzipped else ''}: {exc}") from None


@dataclass
class BatchSummary:
    rows_in: int = 0
    rows_out: int = 0
    bad_rows: list[int] = field(default_factory=list)  # 1-based data rows (header excluded)
    label_counts: dict[str, int] = field(default_factory=dict)


def _bad_text_rows(texts: pd.Series) -> pd.Series:
    """True where the text is missing or not a string."""
    return texts.map(lambda value: not isinstance(value, str))


def prediction_frame(chunk: pd.DataFrame, predictions: Predictions, id_columns: list[str]) -> pd.DataFrame:
    out = chunk[id_columns].reset_index(drop=True).copy() if id_columns else pd.DataFrame(index=range(len(predictions)))
    out["label"] = predictions.labels
    out["confidence"] = predictions.confidence
    for i, name in enumerate(predictions.classes):
        out[f"p_{name}"] = predictions.probabilities[:, i]
    return out


class _Writer:
    """Appends frames to one output file of the given format."""

    def __init__(self, path: Path, fmt: str, gzipped: bool) -> None:
        self.fmt, self.path, self.rows = fmt, path, 0
        self.parquet: Any = None  # a pyarrow ParquetWriter, opened with the first frame's schema
        self.handle: IO[str] | None = None if fmt == "parquet" else (
            gzip.open(path, "wt", encoding="utf-8", newline="") if gzipped
            else open(path, "w", encoding="utf-8", newline=""))

    def write(self, frame: pd.DataFrame) -> None:
        if self.fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self.parquet is None:
                self.parquet = pq.ParquetWriter(self.path, table.schema)
            self.parquet.write_table(table)
        elif self.handle is None:
            raise AssertionError(f"{self.path}: written after close")
        elif self.fmt == "jsonl":
            if len(frame):
                lines = frame.to_json(orient="records", lines=True, force_ascii=False)
                self.handle.write(lines if lines.endswith("\n") else lines + "\n")
        else:
            frame.to_csv(self.handle, sep="\t" if self.fmt == "tsv" else ",", index=False,
                         header=self.rows == 0, lineterminator="\n")
        self.rows += len(frame)

    def close(self, empty_columns: list[str]) -> None:
        if self.fmt == "parquet":
            if self.parquet is None:  # no rows at all: still a valid, empty file
                pd.DataFrame(columns=empty_columns).to_parquet(self.path, index=False)
            else:
                self.parquet.close()
        elif self.handle is not None:
            if self.rows == 0 and self.fmt != "jsonl":
                self.handle.write(("\t" if self.fmt == "tsv" else ",").join(empty_columns) + "\n")
            self.handle.close()


def predict_file(predictor: Predictor, source: Path, target: Path, text_column: str = "text",
                 id_columns: list[str] | None = None, on_bad_row: Literal["fail", "skip"] = "fail",
                 chunk_rows: int = 10_000, input_format: str | None = None,
                 output_format: str | None = None, progress: bool | None = None) -> BatchSummary:
    """Predict every row of ``source`` into ``target``; see the module docstring."""
    from tqdm import tqdm

    if chunk_rows < 1:
        raise DataError(f"--chunk-rows must be at least 1, got {chunk_rows}")
    id_columns = list(id_columns or [])
    in_fmt, in_gz = file_format(source, input_format)
    out_fmt, out_gz = file_format(target, output_format)
    summary = BatchSummary(label_counts={name: 0 for name in predictor.classes})
    columns = [*id_columns, "label", "confidence", *(f"p_{c}" for c in predictor.classes)]
    shown = None if progress is None else not progress
    with atomic_path(target) as staged, tqdm(desc="predict", unit="row", disable=shown) as bar:
        writer = _Writer(staged, out_fmt, out_gz)
        try:
            for chunk in read_chunks(source, in_fmt, in_gz, chunk_rows):
                missing = [c for c in [text_column, *id_columns] if c not in chunk.columns]
                if missing:
                    raise DataError(f"{source}: no column(s) {missing}; the file has {list(chunk.columns)} "
                                    "(set --text-column / --id-column)")
                first_row, rows_read = summary.rows_in + 1, len(chunk)
                summary.rows_in += rows_read
                bad = _bad_text_rows(chunk[text_column]).to_numpy()
                if bad.any():
                    rows = [first_row + int(i) for i in bad.nonzero()[0]]
                    if on_bad_row == "fail":
                        listed = ", ".join(map(str, rows[:MAX_LISTED_ROWS]))
                        raise DataError(f"{source}: column {text_column!r} is missing or not text in "
                                        f"row(s) {listed}{' ...' if len(rows) > MAX_LISTED_ROWS else ''} "
                                        "(data rows, header excluded); fix them or pass --on-bad-row skip")
                    summary.bad_rows += rows
                    chunk = chunk[~bad]
                predictions = predictor.predict(chunk[text_column].tolist())
                writer.write(prediction_frame(chunk, predictions, id_columns))
                summary.rows_out += len(predictions)
                for label in predictions.labels:
                    summary.label_counts[label] += 1
                bar.update(rows_read)
        finally:
            writer.close(columns)
    if summary.bad_rows:
        listed = ", ".join(map(str, summary.bad_rows[:MAX_LISTED_ROWS]))
        log.warning("%s: skipped %d row(s) whose %r is missing or not text: %s%s", source,
                    len(summary.bad_rows), text_column, listed,
                    " ..." if len(summary.bad_rows) > MAX_LISTED_ROWS else "")
    log.info("%d rows in, %d predicted into %s; labels %s", summary.rows_in, summary.rows_out,
             target, summary.label_counts)
    return summary
