"""The preprocess stage: normalise, deduplicate, then split (in that order)."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from tqdm import tqdm

from sentiment_pipeline.core.config import PreprocessConfig
from sentiment_pipeline.core.errors import DataError
from sentiment_pipeline.core.files import scratch_directory
from sentiment_pipeline.pipeline.text import TextNormalizer, build_stopwords

if TYPE_CHECKING:
    from sentiment_pipeline.pipeline.streaming import Cluster

log = logging.getLogger(__name__)

SOURCE_COLUMN = "source"  # data/raw's provenance column (download.sources), carried to train/test


@dataclass
class PreprocessResult:
    train: pd.DataFrame
    test: pd.DataFrame
    report: dict = field(default_factory=dict)
    class_distribution: list[dict] = field(default_factory=list)


def _class_counts(labels: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in labels.value_counts().sort_index().items()}


def length_percentiles(texts: pd.Series) -> dict[str, dict[str, float]]:
    """5th/50th/95th percentile and maximum length of the cleaned texts, in chars and words."""
    return percentiles_of({"chars": texts.str.len(), "words": texts.str.count(" ") + 1})


def percentiles_of(lengths: dict[str, pd.Series]) -> dict[str, dict[str, float]]:
    return {unit: {"p5": float(v.quantile(0.05)), "p50": float(v.quantile(0.5)),
                   "p95": float(v.quantile(0.95)), "max": int(v.max())}
            for unit, v in lengths.items()}


def clean_texts(texts: pd.Series, normalizer: TextNormalizer) -> pd.Series:
    return texts.map(normalizer)


def deduplicate(frame: pd.DataFrame, words_of: Callable[[str], str] | None = None
                ) -> tuple[pd.DataFrame, dict[str, int]]:
    """Drop rows whose raw text, then whose cleaned text, was seen before (first one wins);
    ``words_of`` (e.g. :meth:`TextNormalizer.words_of`) says what of a cleaned text compares.

    Duplicates must go before the split: a copy on each side would leak test data into training.
    """
    counts: dict[str, int] = {}
    exact = frame.duplicated(subset="raw", keep="first")
    counts["exact_duplicates"] = int(exact.sum())
    frame = frame[~exact]
    words = frame["text"] if words_of is None else frame["text"].map(words_of)
    normalised = words.duplicated(keep="first")
    counts["normalised_duplicates"] = int(normalised.sum())
    labels_per_text = frame["label"].groupby(words, sort=False).nunique()
    counts["duplicate_groups_with_conflicting_labels"] = int((labels_per_text > 1).sum())
    return frame[~normalised], counts


def check_splittable(class_counts: pd.Series) -> None:
    """Refuse data that cannot hold every label on both sides (``class_counts``: per label)."""
    if len(class_counts) < 2:
        raise DataError(
            f"only the label {class_counts.index[0]!r} is left after dropping empty texts and "
            "duplicates (the other labels' texts cleaned to nothing or repeated texts seen "
            "first under this label); a classifier needs at least two classes"
        )
    too_small = class_counts[class_counts < 2]
    if len(too_small):
        raise DataError(
            f"label(s) {sorted(too_small.index)} have fewer than 2 rows after deduplication; "
            "the train/test split needs at least 2 per label"
        )


def split_key(raw: pd.Series) -> pd.Series:
    """What decides a row's side: its raw text with white space collapsed and case folded.

    No ``preprocess.cleaning`` option changes it, so toggling one moves no surviving row
    between train and test, and texts that differ only in spacing or case (which cleaning
    may or may not merge) land on the same side."""
    return raw.astype(str).str.split().str.join(" ").str.casefold()


def split_units(raw: pd.Series, seed: int) -> np.ndarray:
    """Each row's seeded hash in [0, 1): SipHash-2-4 of :func:`split_key` under a key derived
    from ``seed``, the same on every machine (as the deduplication keys)."""
    hash_key = hashlib.sha256(f"preprocess.seed={seed}".encode()).hexdigest()[:16]
    hashed = pd.util.hash_pandas_object(split_key(raw).reset_index(drop=True), index=False,
                                        hash_key=hash_key).to_numpy()
    return (hashed >> np.uint64(11)).astype(np.float64) / float(1 << 53)  # exact in a double


def in_test_split(units: np.ndarray, labels: np.ndarray, test_size: float) -> np.ndarray:
    """The test side: every row whose unit is below ``test_size``, a function of the row alone.

    So a row keeps its side whatever else is in the data: other cleaning options, more rows
    (feedback appended to a source) or fewer. Each class's test share is then binomial around
    ``test_size`` (on the airline data with seed 42: within 0.9 points of stratified). Only a
    class so small that the threshold leaves one side without it is repaired: its lowest-unit
    row goes to test, or its highest-unit row to train, so every label is on both sides."""
    test = units < test_size
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        if not test[rows].any():
            test[rows[np.argmin(units[rows])]] = True
        elif test[rows].all():
            test[rows[np.argmax(units[rows])]] = False
    return test


def hash_split(frame: pd.DataFrame, test_size: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and test rows, each side in the input order (see :func:`in_test_split`)."""
    check_splittable(frame["label"].value_counts())
    test = in_test_split(split_units(frame["raw"], seed), frame["label"].to_numpy(), test_size)
    return frame[~test].reset_index(drop=True), frame[test].reset_index(drop=True)


def build_report(rows_in: int, empty: int, dup_counts: dict[str, int], rows_out: int,
                 class_counts: dict[str, dict[str, int]], text_length: dict, stopwords: frozenset[str]) -> dict:
    return {
        "rows_in": rows_in,
        "dropped": {"empty_after_cleaning": empty, **dup_counts},
        "rows_out": rows_out,
        "train_rows": sum(class_counts["train"].values()),
        "test_rows": sum(class_counts["test"].values()),
        "class_counts": class_counts,
        "text_length": text_length,
        "stopwords": {
            "count": len(stopwords),
            "md5": hashlib.md5("\n".join(sorted(stopwords)).encode()).hexdigest(),  # noqa: S324
        },
    }


def label_conflicts_across_sources(words: pd.Series, labels: pd.Series, sources: pd.Series) -> int:
    """Groups of rows with the same compared words (see :func:`deduplicate`) that more than one
    source holds with more than one label among them: the label of the first source in data/raw
    (the first in ``download.precedence``) is the one deduplication keeps."""
    varieties = pd.DataFrame({"label": labels, "source": sources}).groupby(words.to_numpy(), sort=False).nunique()
    return int(((varieties["label"] > 1) & (varieties["source"] > 1)).sum())


def sources_report(names: list[str], rows: dict[str, np.ndarray], conflicts: int) -> dict:
    """metrics/data.json's provenance: per source (in data/raw's order, which is precedence order)
    its rank, rows in, kept after deduplication, train and test; ``rows`` holds those counts, each an
    array indexed like ``names``."""
    return {"sources": {name: {"precedence": i + 1, **{key: int(counts[i]) for key, counts in rows.items()}}
                        for i, name in enumerate(names)},
            "label_conflicts_resolved_by_precedence": conflicts}


def _per_source(sources: pd.Series, names: list[str]) -> np.ndarray:
    return sources.value_counts().reindex(names, fill_value=0).to_numpy()


def distribution_rows(class_counts: dict[str, dict[str, int]]) -> list[dict]:
    """Rows for the class-distribution bar plot: one per (stage, label)."""
    return [{"stage": stage, "label": label, "count": count, "group": f"{stage}: {label}"}
            for stage, counts in class_counts.items() for label, count in counts.items()]


def preprocess(raw: pd.DataFrame, config: PreprocessConfig) -> PreprocessResult:
    """Clean the raw (text, label) table and split it into train and test sets."""
    stopwords = build_stopwords(config.stopwords)
    normalizer = TextNormalizer(config.cleaning, stopwords)
    frame = pd.DataFrame({"text": clean_texts(raw["text"], normalizer), "label": raw["label"],
                          "raw": raw["text"]})
    provenance = SOURCE_COLUMN in raw.columns
    if provenance:
        frame[SOURCE_COLUMN] = raw[SOURCE_COLUMN]
    empty = frame["text"] == ""
    frame = frame[~empty]
    if provenance:
        conflicts = label_conflicts_across_sources(frame["text"].map(normalizer.words_of), frame["label"],
                                                   frame[SOURCE_COLUMN])
    frame, dup_counts = deduplicate(frame, normalizer.words_of)
    if frame.empty:
        raise DataError(
            f"no text is left after cleaning all {len(raw)} rows; check preprocess.cleaning "
            "and preprocess.stopwords"
        )
    train, test = hash_split(frame, config.test_size, config.seed)
    class_counts = {"raw": _class_counts(raw["label"]), "deduplicated": _class_counts(frame["label"]),
                    "train": _class_counts(train["label"]), "test": _class_counts(test["label"])}
    report = build_report(len(raw), int(empty.sum()), dup_counts, len(frame), class_counts,
                          length_percentiles(frame["text"]), stopwords)
    if provenance:
        names = list(pd.unique(raw[SOURCE_COLUMN]))
        report.update(sources_report(names, {"rows_in": _per_source(raw[SOURCE_COLUMN], names),
                                             "rows_out": _per_source(frame[SOURCE_COLUMN], names),
                                             "train_rows": _per_source(train[SOURCE_COLUMN], names),
                                             "test_rows": _per_source(test[SOURCE_COLUMN], names)},
                                     conflicts))
    log.info("%d rows in, %d kept (%s dropped), train %d / test %d", len(raw), len(frame),
             report["dropped"], len(train), len(test))
    return PreprocessResult(train=train, test=test, report=report,
                            class_distribution=distribution_rows(class_counts))


# ------------------------------------------------------------------ streaming (chunk_rows)
def _counts_in_order(values: pd.Series) -> list[tuple[str, int]]:
    """(value, rows) for each distinct value, in order of first appearance."""
    codes, uniques = pd.factorize(values, sort=False)
    return list(zip(map(str, uniques), np.bincount(codes, minlength=len(uniques)).tolist(), strict=True))


def _clean_chunk(raw: pd.DataFrame, normalizer: TextNormalizer, seed: int) -> dict:
    """One chunk's share of pass one (runs in a worker process, or on a Dask worker)."""
    from sentiment_pipeline.pipeline.streaming import text_keys

    cleaned = clean_texts(raw["text"], normalizer)
    empty = (cleaned == "").to_numpy()
    frame = pd.DataFrame({"text": cleaned, "label": raw["label"], "raw": raw["text"],
                          **({SOURCE_COLUMN: raw[SOURCE_COLUMN]} if SOURCE_COLUMN in raw.columns else {})})[~empty]
    return {"frame": frame, "rows": len(raw), "empty": int(empty.sum()),
            # the raw rows are only counted: per label (and source), not a code per row
            "raw_labels": _counts_in_order(raw["label"]),
            "raw_sources": _counts_in_order(raw[SOURCE_COLUMN]) if SOURCE_COLUMN in raw.columns else None,
            "raw_keys": text_keys(frame["raw"]), "text_keys": text_keys(frame["text"].map(normalizer.words_of)),
            "units": split_units(frame["raw"], seed),
            "chars": frame["text"].str.len().to_numpy(np.int32),
            "words": (frame["text"].str.count(" ") + 1).to_numpy(np.int32)}


def preprocess_stream(raw_file: Path, config: PreprocessConfig, train_file: Path, test_file: Path,
                      scratch: Path | None = None, cluster: Cluster | None = None) -> tuple[dict, list[dict]]:
    """:func:`preprocess` for a raw file larger than memory, in chunks of ``preprocess.chunk_rows``:
    the same train/test files (same rows, same order) and the same report.

    Pass one cleans chunks in parallel (``preprocess.n_jobs`` processes, or on ``cluster``: the
    stage opens the one ``preprocess.backend: dask`` names, see cluster.py), spools the cleaned
    rows to disk and keeps per row a 128-bit key of its raw and of its cleaned text, its label
    code, its split unit (see :func:`split_units`) and lengths. Deduplication and the hash split
    then run on those arrays in this process, exactly; pass two routes the spooled rows to their
    place in train or test (see ``streaming.OrderedCsvWriter``). Both files appear together at
    the end, or neither.

    Memory: what grows with the rows is 52 bytes a spooled row (keys 2 x 16, unit 8, label 4,
    lengths 2 x 4; 4 more with a source column), 500 MB at 10M rows, and deduplicating and
    splitting them peaks at 87 bytes a row (measured on 10M rows: 834 MB, 16 s; it was 64 and 117
    before the raw rows' labels were counted instead of coded, the lengths kept as int32 and the
    raw keys let go once the raw duplicates are known). Everything else is per chunk.
    """
    from sentiment_pipeline.pipeline.streaming import (
        ArrowSpool,
        LabelCodes,
        OrderedCsvWriter,
        counts_by_label,
        csv_chunks,
        first_occurrence,
        groups_varying,
        groups_with_several_labels,
        parallel_map,
    )

    stopwords = build_stopwords(config.stopwords)
    normalizer = TextNormalizer(config.cleaning, stopwords)
    chunk_rows = config.chunk_rows
    assert chunk_rows is not None  # the streamed path runs only when preprocess.chunk_rows is set
    provenance = SOURCE_COLUMN in pd.read_csv(raw_file, nrows=0).columns
    columns = ["text", "label", "raw", *([SOURCE_COLUMN] if provenance else [])]
    # scratch next to the outputs by default: /tmp may be a RAM-backed tmpfs
    scratch = Path(scratch or Path(train_file).parent)
    scratch.mkdir(parents=True, exist_ok=True)
    with scratch_directory(".preprocess-", scratch) as tmp:
        spool = ArrowSpool(columns, Path(tmp))
        codes = LabelCodes()
        source_codes = LabelCodes()  # sources in order of appearance: data/raw's, precedence order
        raw_counts: dict[str, int] = {}
        raw_source_counts: dict[str, int] = {}
        parts: dict[str, list[np.ndarray]] = {k: [] for k in ("raw_keys", "text_keys", "units", "chars", "words",
                                                             "labels", *(["sources"] if provenance else []))}
        rows_in = empty = 0
        chunks = parallel_map(_clean_chunk, ((raw,) for raw in csv_chunks(raw_file, chunk_rows)), config.n_jobs,
                              cluster=cluster, constants=(normalizer, config.seed), what="preprocess chunk")
        with tqdm(desc="preprocess: clean", unit="row", leave=False, disable=None) as bar:
            for part in chunks:
                spool.append(part["frame"])
                for label, n in part["raw_labels"]:
                    codes.index.setdefault(label, len(codes.index))  # as encode registers them
                    raw_counts[label] = raw_counts.get(label, 0) + n
                parts["labels"].append(codes.encode(part["frame"]["label"]))
                if provenance:
                    for name, n in part["raw_sources"]:
                        source_codes.index.setdefault(name, len(source_codes.index))
                        raw_source_counts[name] = raw_source_counts.get(name, 0) + n
                    parts["sources"].append(source_codes.encode(part["frame"][SOURCE_COLUMN]))
                for key in ("raw_keys", "text_keys", "units", "chars", "words"):
                    parts[key].append(part[key])
                rows_in, empty = rows_in + part["rows"], empty + part["empty"]
                bar.update(part["rows"])
                del part
        if not parts["labels"] or not sum(map(len, parts["labels"])):
            raise DataError(f"no text is left after cleaning all {rows_in} rows; check "
                            "preprocess.cleaning and preprocess.stopwords")

        def whole(key: str) -> np.ndarray:
            """One per-row array, its chunks let go as it is joined."""
            return np.concatenate(parts.pop(key))

        labels = codes.sorted_labels()
        label_codes = codes.to_sorted(whole("labels"))

        # Deduplicate as ``deduplicate`` does: raw text first, then cleaned text.
        unique_raw = np.flatnonzero(first_occurrence(whole("raw_keys")))
        all_text_keys = whole("text_keys")
        text_keys = all_text_keys[unique_raw]
        if not provenance:
            del all_text_keys  # only the sources' report needs every row's key
        conflicts = groups_with_several_labels(text_keys, label_codes[unique_raw])
        kept = unique_raw[first_occurrence(text_keys)]
        del text_keys
        dup_counts = {"exact_duplicates": len(label_codes) - len(unique_raw),
                      "normalised_duplicates": len(unique_raw) - len(kept),
                      "duplicate_groups_with_conflicting_labels": conflicts}
        del unique_raw
        kept_labels = label_codes[kept]
        deduplicated = counts_by_label(kept_labels, labels)
        check_splittable(pd.Series(deduplicated))
        on_test = in_test_split(whole("units")[kept], kept_labels, config.test_size)
        train_rows, test_rows = np.flatnonzero(~on_test), np.flatnonzero(on_test)

        # Where every spooled row goes: side (-1 dropped, 0 train, 1 test) and position there.
        side = np.full(len(label_codes), -1, dtype=np.int8)
        position = np.zeros(len(label_codes), dtype=np.int64)
        for code, rows in ((0, train_rows), (1, test_rows)):
            side[kept[rows]] = code
            position[kept[rows]] = np.arange(len(rows))
        writers = [OrderedCsvWriter(len(rows), chunk_rows, columns, Path(tmp)) for rows in (train_rows, test_rows)]
        offset = 0
        for frame in tqdm(spool.frames(), desc="preprocess: split", unit="chunk", leave=False, disable=None):
            span = slice(offset, offset + len(frame))
            for code, writer in enumerate(writers):
                on_side = side[span] == code
                writer.add(frame[on_side], position[span][on_side])
            offset += len(frame)
        del side, position
        # both files written in full beside their targets, then renamed one right after the other:
        # a failure leaves the previous pair; only a kill between the two renames (microseconds)
        # leaves a new train.csv beside the old test.csv, which `dvc status` reports as changed
        targets = [Path(train_file), Path(test_file)]
        staged = [target.with_name(f".{target.name}.{os.getpid()}.staged") for target in targets]
        try:
            for writer, path in zip(writers, staged, strict=True):
                writer.write(path)
            for path, target in zip(staged, targets, strict=True):
                os.replace(path, target)
        finally:
            for path in staged:
                path.unlink(missing_ok=True)

    class_counts = {"raw": {label: raw_counts[label] for label in labels if raw_counts.get(label)},
                    "deduplicated": deduplicated,
                    "train": counts_by_label(kept_labels[train_rows], labels),
                    "test": counts_by_label(kept_labels[test_rows], labels)}
    text_length = percentiles_of({"chars": pd.Series(whole("chars")[kept]),
                                  "words": pd.Series(whole("words")[kept])})
    report = build_report(rows_in, empty, dup_counts, len(kept), class_counts, text_length, stopwords)
    if provenance:
        # LabelCodes keeps the order sources were met in: data/raw's, i.e. precedence order
        names, spooled = list(source_codes.index), whole("sources")

        def per_source(codes_: np.ndarray) -> np.ndarray:
            return np.bincount(codes_, minlength=len(names))

        report.update(sources_report(names, {
            "rows_in": np.array([raw_source_counts.get(name, 0) for name in names]),
            "rows_out": per_source(spooled[kept]),
            "train_rows": per_source(spooled[kept][train_rows]), "test_rows": per_source(spooled[kept][test_rows])},
            groups_varying(all_text_keys, label_codes, spooled)))
    log.info("%d rows in, %d kept (%s dropped), train %d / test %d", rows_in, len(kept),
             report["dropped"], len(train_rows), len(test_rows))
    return report, distribution_rows(class_counts)
