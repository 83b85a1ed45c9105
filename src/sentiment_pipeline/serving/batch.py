"""``sentiment-pipeline predict``: a file of texts in, a file of predictions out, in chunks.

Memory stays flat as the file grows: each chunk is read, predicted and appended before the next
is read. The output is written to a temporary file beside the target and renamed at the end, so
a failed run leaves no half-written predictions (an earlier output stays as it was, and output
directories the run created are removed again).

Bad input and an unwritable output are a :class:`DataError` of one line naming the file.

With ``explain`` (``--explain k``) each row also gets ``explanation``: its top-k words as JSON
text, what ``POST /v1/predict`` answers with ``"explain": k`` (inference/explain.py).
"""

from __future__ import annotations

import gzip
import json
import logging
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import pandas as pd

from sentiment_pipeline.core.errors import DataError
from sentiment_pipeline.core.files import atomic_path
from sentiment_pipeline.inference.explain import MAX_K as EXPLAIN_MAX_K
from sentiment_pipeline.inference.explain import explain as explain_texts
from sentiment_pipeline.inference.predictor import Predictions, Predictor

log = logging.getLogger(__name__)

Format = Literal["csv", "tsv", "jsonl", "parquet"]
FORMATS: tuple[str, ...] = ("csv", "tsv", "jsonl", "parquet")
MAX_LISTED_ROWS = 10
# Texts explained per model call: each brings up to explain_max_words + 1 variants, so a call
# holds at most 64 * 65 texts whatever --chunk-rows is (memory stays flat).
EXPLAIN_TEXTS_PER_CALL = 64


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


def _reason(exc: BaseException) -> str:
    """The first line of an exception's message (pandas' and pyarrow's run to several)."""
    if isinstance(exc, EOFError):  # gzip: "Compressed file ended before the end-of-stream marker"
        return "the compressed data ends early (a truncated or partly copied file?)"
    if isinstance(exc, zlib.error):
        return f"the compressed data is corrupt ({exc})"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def read_chunks(path: Path, fmt: str, gzipped: bool, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The input file, ``chunk_rows`` rows at a time, values as they are (nulls kept as None)."""
    if path.is_dir():
        raise DataError(f"{path}: is a directory; expected a {fmt} file")
    if not path.is_file():
        raise DataError(f"{path}: input file not found")
    try:
        if fmt == "parquet":
            import pyarrow.lib
            import pyarrow.parquet as pq

            try:
                for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
                    yield batch.to_pandas()
            except pyarrow.lib.ArrowException as exc:  # ArrowInvalid is a ValueError, not every one is
                raise DataError(f"{path}: cannot be read as parquet: {_reason(exc)}") from None
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
    except pd.errors.EmptyDataError:  # not even a header line
        raise DataError(f"{path}: empty; a {fmt} file starts with a header line naming its columns") from None
    except (ValueError, OSError, EOFError, zlib.error) as exc:  # UnicodeDecodeError is a ValueError
        raise DataError(f"{path}: cannot be read as {fmt}{' (gzip)' if gzipped else ''}: {_reason(exc)}") from None


@dataclass
class BatchSummary:
    rows_in: int = 0
    rows_out: int = 0
    bad_rows: list[int] = field(default_factory=list)  # 1-based data rows (header excluded)
    label_counts: dict[str, int] = field(default_factory=dict)


def _bad_text_rows(texts: pd.Series) -> pd.Series:
    """True where the text is missing or not a string."""
    return texts.map(lambda value: not isinstance(value, str))


def prediction_frame(chunk: pd.DataFrame, predictions: Predictions, id_columns: list[str],
                     explanations: list[str] | None = None) -> pd.DataFrame:
    out = chunk[id_columns].reset_index(drop=True).copy() if id_columns else pd.DataFrame(index=range(len(predictions)))
    out["label"] = predictions.labels
    out["confidence"] = predictions.confidence
    for i, name in enumerate(predictions.classes):
        out[f"p_{name}"] = predictions.probabilities[:, i]
    if explanations is not None:
        out["explanation"] = pd.Series(explanations, dtype=object)
    return out


def explained(predictor: Predictor, texts: list[str], k: int, max_words: int) -> tuple[Predictions, list[str]]:
    """The predictions of ``texts`` and each one's top-k words as JSON text (the API's
    ``explanation`` list), ``EXPLAIN_TEXTS_PER_CALL`` texts per model call."""
    parts, explanations = [predictor.predict([])], []  # the empty one: a chunk may have no rows
    for start in range(0, len(texts), EXPLAIN_TEXTS_PER_CALL):
        result, found = explain_texts(predictor, texts[start:start + EXPLAIN_TEXTS_PER_CALL], k, max_words)
        parts.append(result)
        explanations += [json.dumps([c.as_dict() for c in words], ensure_ascii=False) for words in found]
    predictions = Predictions(
        classes=predictor.classes,
        label_index=np.concatenate([p.label_index for p in parts]),
        confidence=np.concatenate([p.confidence for p in parts]),
        probabilities=np.concatenate([p.probabilities for p in parts]),
        cleaned_length=np.concatenate([p.cleaned_length for p in parts]))
    return predictions, explanations


class _Writer:
    """Appends frames to one output file of the given format; ``name`` is what messages call it
    (the target, not the temporary file written)."""

    def __init__(self, path: Path, fmt: str, gzipped: bool, name: Path) -> None:
        self.fmt, self.path, self.name, self.rows = fmt, path, name, 0
        self.header_written = False
        self.parquet: Any = None  # a pyarrow ParquetWriter, opened with the first rows' schema
        self.handle: IO[str] | None = None if fmt == "parquet" else (
            gzip.open(path, "wt", encoding="utf-8", newline="") if gzipped
            else open(path, "w", encoding="utf-8", newline=""))

    def write(self, frame: pd.DataFrame) -> None:
        if self.fmt == "parquet":
            if len(frame):  # an empty chunk (all skipped) would fix null-typed columns
                self._write_parquet(frame)
        elif self.handle is None:
            raise AssertionError(f"{self.path}: written after close")
        elif self.fmt == "jsonl":
            if len(frame):
                lines = frame.to_json(orient="records", lines=True, force_ascii=False)
                self.handle.write(lines if lines.endswith("\n") else lines + "\n")
        else:
            frame.to_csv(self.handle, sep="\t" if self.fmt == "tsv" else ",", index=False,
                         header=not self.header_written, lineterminator="\n")
            self.header_written = True
        self.rows += len(frame)

    def _write_parquet(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.lib
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self.parquet is None:
            # an id column without a value in the first rows has no type yet: text, as csv ids are
            schema = pa.schema([f.with_type(pa.string()) if pa.types.is_null(f.type) else f
                                for f in table.schema], metadata=table.schema.metadata)
            self.parquet = pq.ParquetWriter(self.path, schema)
        schema = self.parquet.schema
        if not table.schema.equals(schema):
            try:
                table = table.cast(schema)
            except (pyarrow.lib.ArrowException, ValueError, TypeError):
                changed = [f"{f.name}: {f.type} then {table.schema.field(f.name).type}" for f in schema
                           if f.type != table.schema.field(f.name).type]
                raise DataError(f"{self.name}: an id column changes type between chunks of the input "
                                f"({'; '.join(changed)}); parquet needs one type per column: make the "
                                "column consistent or pass a larger --chunk-rows") from None
        self.parquet.write_table(table)

    def close(self, columns: list[str], id_columns: list[str]) -> None:
        if self.fmt == "parquet":
            if self.parquet is None:  # no rows at all: still a valid, empty file, typed
                import pyarrow as pa
                import pyarrow.parquet as pq

                text = {"label", "explanation", *id_columns}
                pq.write_table(pa.table({c: pa.array([], type=pa.string() if c in text else pa.float64())
                                         for c in columns}), self.path)
            else:
                self.parquet.close()
        elif self.handle is not None:
            if not self.header_written and self.fmt != "jsonl":
                self.handle.write(("\t" if self.fmt == "tsv" else ",").join(columns) + "\n")
            self.handle.close()
            self.handle = None

    def discard(self) -> None:
        """Close after a failure (the temporary file is removed with its directory)."""
        for closable in (self.parquet, self.handle):
            if closable is not None:
                try:
                    closable.close()
                except Exception:  # noqa: S110 - the failure being raised is the one to report
                    pass
        self.parquet = self.handle = None


def _check_output(source: Path, target: Path) -> list[Path]:
    """Refuse an output that is a directory, the input, or under a file; return the directories
    that writing it will create (deepest first), to be removed again if the run fails."""
    if target.is_dir():
        raise DataError(f"{target}: is a directory; expected a file name for the predictions")
    if source.exists() and target.resolve() == source.resolve():
        raise DataError(f"{target}: is the input file; write the predictions to another file")
    missing, parent = [], target.parent
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    if not parent.is_dir():
        raise DataError(f"{target}: cannot write the predictions: {parent} is not a directory")
    return missing


def predict_file(predictor: Predictor, source: Path, target: Path, text_column: str = "text",
                 id_columns: list[str] | None = None, on_bad_row: Literal["fail", "skip"] = "fail",
                 chunk_rows: int = 10_000, input_format: str | None = None,
                 output_format: str | None = None, progress: bool | None = None, explain: int | None = None,
                 explain_max_words: int = 64) -> BatchSummary:
    """Predict every row of ``source`` into ``target``; see the module docstring."""
    if chunk_rows < 1:
        raise DataError(f"--chunk-rows must be at least 1, got {chunk_rows}")
    if explain is not None and not 1 <= explain <= EXPLAIN_MAX_K:
        raise DataError(f"--explain must be from 1 to {EXPLAIN_MAX_K} words, got {explain}")
    id_columns = list(id_columns or [])
    in_fmt, in_gz = file_format(source, input_format)
    out_fmt, out_gz = file_format(target, output_format)
    created = _check_output(source, target)
    try:
        summary = _predict_into(predictor, source, target, text_column, id_columns, on_bad_row, chunk_rows,
                                (in_fmt, in_gz), (out_fmt, out_gz), progress, (explain, explain_max_words))
    except BaseException as exc:
        for directory in created:  # deepest first; only while empty
            try:
                directory.rmdir()
            except OSError:
                break
        if isinstance(exc, OSError):  # reading errors are DataErrors by now: this is the output
            raise DataError(f"{target}: cannot write the predictions: {exc.strerror or _reason(exc)}") from None
        raise
    if summary.bad_rows:
        listed = ", ".join(map(str, summary.bad_rows[:MAX_LISTED_ROWS]))
        log.warning("%s: skipped %d row(s) whose %r is missing or not text: %s%s", source,
                    len(summary.bad_rows), text_column, listed,
                    " ..." if len(summary.bad_rows) > MAX_LISTED_ROWS else "")
    log.info("%d rows in, %d predicted into %s; labels %s", summary.rows_in, summary.rows_out,
             target, summary.label_counts)
    return summary


def _predict_into(predictor: Predictor, source: Path, target: Path, text_column: str, id_columns: list[str],
                  on_bad_row: Literal["fail", "skip"], chunk_rows: int, input_format: tuple[str, bool],
                  output_format: tuple[str, bool], progress: bool | None,
                  explain: tuple[int | None, int] = (None, 64)) -> BatchSummary:
    from tqdm import tqdm

    summary = BatchSummary(label_counts={name: 0 for name in predictor.classes})
    k, max_words = explain
    columns = [*id_columns, "label", "confidence", *(f"p_{c}" for c in predictor.classes),
               *(["explanation"] if k is not None else [])]
    shown = None if progress is None else not progress
    with atomic_path(target) as staged, tqdm(desc="predict", unit="row", disable=shown) as bar:
        writer = _Writer(staged, *output_format, name=target)
        try:
            for chunk in read_chunks(source, *input_format, chunk_rows):
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
                explanations = None
                if k is None:
                    predictions = predictor.predict(chunk[text_column].tolist())
                else:
                    predictions, explanations = explained(predictor, chunk[text_column].tolist(), k, max_words)
                writer.write(prediction_frame(chunk, predictions, id_columns, explanations))
                summary.rows_out += len(predictions)
                for label in predictions.labels:
                    summary.label_counts[label] += 1
                bar.update(rows_read)
            writer.close(columns, id_columns)
        except BaseException:
            writer.discard()
            raise
    return summary
