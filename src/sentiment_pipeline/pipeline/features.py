"""The featurize stage: TF-IDF fitted on the training split only, and the resampling plan."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer, HashingVectorizer, TfidfTransformer, TfidfVectorizer
from sklearn.pipeline import FeatureUnion, Pipeline
from tqdm import tqdm

from sentiment_pipeline.core.config import FeaturizeConfig, ResamplingConfig
from sentiment_pipeline.core.errors import ConfigError
from sentiment_pipeline.core.files import atomic_path, read_json, save_npz, scratch_directory, write_json

if TYPE_CHECKING:
    from sentiment_pipeline.pipeline.streaming import Cluster, CsrPart

log = logging.getLogger(__name__)

# Texts arrive normalised and space-separated (see text.py), so a token is any non-space run;
# this keeps "didn't" and "_url_" whole, which the default pattern would split.
TOKEN_PATTERN = r"\S+"


def analyzer_params(config: FeaturizeConfig) -> dict[str, dict]:
    """What each part of the features tokenizes: word n-grams, and char_wb n-grams if enabled."""
    parts = {"word": dict(analyzer="word", token_pattern=TOKEN_PATTERN,
                          ngram_range=tuple(config.word_ngram_range))}
    if config.char_ngrams:
        parts["char"] = dict(analyzer="char_wb", ngram_range=tuple(config.char_ngram_range))
    return parts


def _tfidf_part(config: FeaturizeConfig, analyzer: dict) -> TfidfVectorizer:
    return TfidfVectorizer(lowercase=False, min_df=config.min_df, max_df=config.max_df,
                           max_features=config.max_features, sublinear_tf=config.sublinear_tf,
                           dtype=np.float64, **analyzer)


def _hashing_part(config: FeaturizeConfig, analyzer: dict) -> Pipeline:
    """Hashed n-gram counts, then TF-IDF weighting: no vocabulary is kept."""
    return Pipeline([
        ("hash", HashingVectorizer(lowercase=False, n_features=config.hashing_features, norm=None,
                                   alternate_sign=False, dtype=np.float64, **analyzer)),
        ("idf", TfidfTransformer(sublinear_tf=config.sublinear_tf)),
    ])


def _join(parts: dict) -> TfidfVectorizer | Pipeline | FeatureUnion:
    return next(iter(parts.values())) if len(parts) == 1 else FeatureUnion(list(parts.items()))


def build_vectorizer(config: FeaturizeConfig) -> TfidfVectorizer | Pipeline | FeatureUnion:
    """Word n-gram TF-IDF, joined by char_wb n-grams when ``featurize.char_ngrams`` is on; with
    ``featurize.vectorizer: hashing`` each part hashes its n-grams instead of keeping a vocabulary."""
    make = _hashing_part if config.vectorizer == "hashing" else _tfidf_part
    return _join({name: make(config, analyzer) for name, analyzer in analyzer_params(config).items()})


def vectorizer_parts(vectorizer) -> list:
    """The tokenizing step of each part: a TfidfVectorizer or a HashingVectorizer."""
    parts = [t for _, t in vectorizer.transformer_list] if isinstance(vectorizer, FeatureUnion) else [vectorizer]
    return [p[0] if isinstance(p, Pipeline) else p for p in parts]


def n_features_out(vectorizer) -> int:
    return sum(len(p.vocabulary_) if hasattr(p, "vocabulary_") else p.n_features
               for p in vectorizer_parts(vectorizer))


def make_picklable_deterministic(vectorizer: TfidfVectorizer | FeatureUnion) -> None:
    """Drop ``_stop_words_id`` from fitted vectorizers so equal fits pickle to equal bytes.

    scikit-learn caches ``id(stop_words)`` there (a memory address, new in every process) only
    to skip re-validating the stop word list; without it the check simply runs again.
    """
    for part in vectorizer_parts(vectorizer):
        part.__dict__.pop("_stop_words_id", None)


def resampled_class_counts(counts: dict[str, int], config: ResamplingConfig) -> dict[str, int]:
    """Class counts a training fold will have after resampling.

    SMOTE with imbalanced-learn's default strategy grows every minority class to the size of
    the majority class; the other strategies leave counts unchanged (class_weight reweights).
    """
    if config.strategy != "smote":
        return dict(counts)
    smallest = min(counts.values())
    if smallest <= config.k_neighbors:
        raise ConfigError(
            f"featurize.resampling.k_neighbors={config.k_neighbors} needs more than that many "
            f"rows in every class of a training fold; the smallest class has {smallest} rows"
        )
    target = max(counts.values())
    return {label: target for label in counts}


def save_csr(path: Path, matrix: sp.csr_matrix) -> None:
    """What ``scipy.sparse.save_npz(path, matrix, compressed=False)`` writes (the same members,
    in its order; ``load_npz`` reads it), with bytes that do not depend on the Python patch
    release (``files.save_npz``)."""
    matrix = sp.csr_matrix(matrix)
    save_npz(path, {"indices": matrix.indices, "indptr": matrix.indptr, "format": b"csr",
                    "shape": matrix.shape, "data": matrix.data})


@dataclass
class FeatureSet:
    """Sparse TF-IDF matrices with integer-encoded labels; ``classes[i]`` names label ``i``."""

    X_train: sp.csr_matrix
    y_train: np.ndarray
    X_test: sp.csr_matrix
    y_test: np.ndarray
    classes: list[str]

    FILES = ("X_train.npz", "y_train.npy", "X_test.npz", "y_test.npy", "classes.json")

    def save(self, directory: Path) -> None:
        # Stored, not deflated: compressing took 1.5 s of the stage and every reader paid 0.1 s to
        # inflate, for 35% fewer bytes in the DVC cache.
        with atomic_path(directory) as tmp:
            tmp.mkdir()
            save_csr(tmp / "X_train.npz", self.X_train)
            save_csr(tmp / "X_test.npz", self.X_test)
            np.save(tmp / "y_train.npy", self.y_train)
            np.save(tmp / "y_test.npy", self.y_test)
            write_json(self.classes, tmp / "classes.json")

    @classmethod
    def load(cls, directory: Path) -> FeatureSet:
        return cls(
            X_train=sp.load_npz(directory / "X_train.npz").tocsr(),
            y_train=np.load(directory / "y_train.npy"),
            X_test=sp.load_npz(directory / "X_test.npz").tocsr(),
            y_test=np.load(directory / "y_test.npy"),
            classes=list(read_json(directory / "classes.json")),
        )


def encode_labels(train: pd.Series, test: pd.Series) -> tuple[np.ndarray, np.ndarray, list[str]]:
    classes = sorted(train.unique())
    unknown = sorted(set(test) - set(classes))
    if unknown:
        raise ConfigError(f"test split holds label(s) {unknown} that the training split lacks")
    index = {label: i for i, label in enumerate(classes)}
    return (train.map(index).to_numpy(np.int64), test.map(index).to_numpy(np.int64), classes)


def featurize(train: pd.DataFrame, test: pd.DataFrame, config: FeaturizeConfig):
    """Fit TF-IDF on ``train`` only; return the fitted vectorizer, features and a summary."""
    vectorizer = build_vectorizer(config)
    try:
        X_train = vectorizer.fit_transform(train["text"]).tocsr()
    except ValueError as exc:  # e.g. min_df/max_df leave no terms for this many texts
        raise ConfigError(
            f"TF-IDF cannot be fitted on {len(train)} training texts with featurize.min_df="
            f"{config.min_df}, max_df={config.max_df}: {exc}"
        ) from exc
    X_test = vectorizer.transform(test["text"]).tocsr()
    make_picklable_deterministic(vectorizer)
    y_train, y_test, classes = encode_labels(train["label"], test["label"])
    before = train["label"].value_counts().sort_index().to_dict()
    summary = _summary(X_train.shape[1], X_train.shape[0], X_test.shape[0], before, config)
    log.info("TF-IDF: %d features from %d training texts; resampling: %s",
             X_train.shape[1], X_train.shape[0], config.resampling.strategy)
    features = FeatureSet(X_train, y_train, X_test, y_test, classes)
    return vectorizer, features, summary


# ------------------------------------------------------------------ streaming (chunk_rows)
def idf_from_document_frequency(df: np.ndarray, n_documents: int) -> np.ndarray:
    """The ``idf_`` TfidfTransformer.fit computes (smooth_idf) from the same counts, bit for bit."""
    df = df.astype(np.float64) + 1.0
    idf = np.full_like(df, fill_value=n_documents + 1, dtype=np.float64)
    idf /= df
    np.log(idf, out=idf)
    idf += 1.0
    return idf


class _Vocabulary:
    """Document frequency and total count of every n-gram seen, merged chunk by chunk."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.df = np.zeros(0, dtype=np.int64)
        self.tf = np.zeros(0, dtype=np.int64)

    def add(self, terms: list[str], df: np.ndarray, tf: np.ndarray) -> None:
        index = self.index
        ids = np.fromiter((index.setdefault(t, len(index)) for t in terms), dtype=np.int64, count=len(terms))
        if len(index) > len(self.df):
            grow = max(len(index), 2 * len(self.df)) - len(self.df)
            self.df = np.concatenate([self.df, np.zeros(grow, np.int64)])
            self.tf = np.concatenate([self.tf, np.zeros(grow, np.int64)])
        self.df[ids] += df
        self.tf[ids] += tf

    def limited(self, config: FeaturizeConfig, n_documents: int) -> tuple[dict[str, int], np.ndarray]:
        """The vocabulary and document frequencies TfidfVectorizer.fit keeps: terms sorted, then
        min_df / max_df / max_features applied with its arithmetic (``_limit_features``)."""
        terms = sorted(self.index)
        ids = np.fromiter((self.index[t] for t in terms), dtype=np.int64, count=len(terms))
        dfs, tfs = self.df[ids], self.tf[ids].astype(np.float64)  # fit sums float64 counts
        high, low = config.max_df * n_documents, config.min_df
        cannot = (f"TF-IDF cannot be fitted on {n_documents} training texts with featurize.min_df="
                  f"{config.min_df}, max_df={config.max_df}")
        if high < low:
            raise ConfigError(f"{cannot}: max_df corresponds to fewer documents than min_df")
        mask = (dfs <= high) & (dfs >= low)
        limit = config.max_features
        if limit is not None and mask.sum() > limit:
            mask_inds = (-tfs[mask]).argsort()[:limit]
            new_mask = np.zeros(len(dfs), dtype=bool)
            new_mask[np.where(mask)[0][mask_inds]] = True
            mask = new_mask
        kept = np.flatnonzero(mask)
        if not len(kept):
            raise ConfigError(f"{cannot}: no terms remain after pruning; try a lower min_df or a higher max_df")
        return {terms[i]: n for n, i in enumerate(kept)}, dfs[kept]


def _chunk_term_counts(texts: list[str], analyzer: dict) -> tuple[list[str], np.ndarray, np.ndarray]:
    vectorizer = CountVectorizer(lowercase=False, dtype=np.int64, **analyzer)
    try:
        counts = vectorizer.fit_transform(texts).tocsc()
    except ValueError:  # no n-gram of the configured range in this chunk: nothing to count
        return [], np.zeros(0, np.int64), np.zeros(0, np.int64)
    terms = vectorizer.get_feature_names_out().tolist()
    return terms, np.diff(counts.indptr), np.asarray(counts.sum(axis=0)).ravel()


# A chunk's texts are vectorised a piece of at most this many characters at a time: scikit-learn's
# transform holds about three times its output in temporaries (measured: 100,000 synthetic reviews,
# word 1-2 and char_wb 3-5 n-grams hashed, 279 non-zeros a row: a 335 MB block and 950 MB more
# peak memory in one call; in 13 pieces of 2^20 characters, ~7,700 reviews each, 54 MB more, in
# the same time). A worker's memory then depends on the piece, not on chunk_rows; each row is
# transformed on its own, so the pieces join into the same bytes.
PIECE_CHARS = 1 << 20


def text_pieces(texts: list[str], limit: int = PIECE_CHARS) -> Iterator[list[str]]:
    """``texts`` in consecutive pieces of at most ``limit`` characters (a longer text alone)."""
    start = size = 0
    for i, text in enumerate(texts):
        if size + len(text) > limit and i > start:
            yield texts[start:i]
            start, size = i, 0
        size += len(text)
    if start < len(texts):
        yield texts[start:]


def _chunk_hashed_document_frequency(texts: list[str], hasher: HashingVectorizer) -> np.ndarray:
    counts = np.zeros(hasher.n_features, dtype=np.int64)
    for piece in text_pieces(texts):
        counts += np.bincount(hasher.transform(piece).indices, minlength=hasher.n_features)
    return counts


def _chunk_features(texts: list[str], stem: str | None, vectorizer, n_columns: int) -> CsrPart:
    """A chunk's rows of the matrix; written to ``stem``'s files when given (see ``csr_part``)."""
    import uuid

    from sentiment_pipeline.pipeline.streaming import csr_part  # pyarrow: only the streamed path pays for it

    # each attempt its own files: Dask may re-run a task whose worker it lost while that worker,
    # unreachable rather than dead, still writes
    stem = None if stem is None else f"{stem}-{uuid.uuid4().hex[:12]}"
    return csr_part((vectorizer.transform(piece).tocsr() for piece in text_pieces(texts)), n_columns, stem)


def _fitted_vectorizer(config: FeaturizeConfig, n_documents: int, statistics: dict):
    """The vectorizer ``fit`` on all training texts would have produced, from pass one's counts."""
    parts = {}
    for name, analyzer in analyzer_params(config).items():
        if config.vectorizer == "hashing":
            part = _hashing_part(config, analyzer)
            part.named_steps["idf"].idf_ = idf_from_document_frequency(statistics[name], n_documents)
            part.named_steps["idf"].n_features_in_ = config.hashing_features
        else:
            vocabulary, df = statistics[name].limited(config, n_documents)
            # fitted attributes as fit sets them, params as in memory (so clone().fit relearns)
            part = _tfidf_part(config, analyzer)
            part.vocabulary_ = vocabulary
            part.idf_ = idf_from_document_frequency(df, n_documents)
        parts[name] = part
    return _join(parts)


def featurize_stream(train_file: Path, test_file: Path, config: FeaturizeConfig, features_dir: Path,
                     scratch: Path | None = None, cluster: Cluster | None = None):
    """:func:`featurize` for splits larger than memory, in chunks of ``featurize.chunk_rows``:
    the same vectorizer, matrices and summary; returns (vectorizer, summary) and writes the
    feature set to ``features_dir`` (as ``FeatureSet.save``) without holding a matrix in memory.

    Pass one counts document frequencies (and, for ``tfidf``, every n-gram's counts, like
    ``fit``) over the training texts; pass two transforms both splits chunk by chunk into the
    ``.npz`` files. Chunks are tokenized in parallel by ``featurize.n_jobs`` processes, or on
    ``cluster`` (the stage opens the one ``featurize.backend: dask`` names: cluster.py), with the
    same results.

    What this process holds grows with the rows only by the labels and the matrices' row lengths
    (at most 16 bytes a row: 160 MB for 10M reviews); a chunk's block goes from the worker that
    computed it to a scratch file (workers on this machine write it themselves; a remote Dask
    worker sends it, and it is written at once).
    """
    from sentiment_pipeline.pipeline.streaming import CsrNpzWriter, LabelCodes, csv_chunks, parallel_map

    codes = LabelCodes()
    chunk_rows = config.chunk_rows
    assert chunk_rows is not None  # the streamed path runs only when featurize.chunk_rows is set

    def texts(path: Path, labels: list[np.ndarray] | None = None) -> Iterator[list[str]]:
        """The texts of a split chunk by chunk; each chunk's label codes go to ``labels``."""
        for chunk in csv_chunks(path, chunk_rows):
            if labels is not None:
                labels.append(codes.encode(chunk["label"]))
            yield chunk["text"].tolist()

    def each(function, arguments, constants: tuple, what: str):
        return parallel_map(function, arguments, config.n_jobs, cluster=cluster, constants=constants, what=what)

    # Pass one over the training texts: each part's statistics (and the labels, once).
    train_codes: list[np.ndarray] = []
    statistics: dict = {}
    for number, (name, analyzer) in enumerate(analyzer_params(config).items()):
        chunks = ((t,) for t in texts(train_file, train_codes if number == 0 else None))
        if config.vectorizer == "hashing":
            hasher = _hashing_part(config, analyzer).named_steps["hash"]
            counted = each(_chunk_hashed_document_frequency, chunks, (hasher,), f"featurize ({name} df) chunk")
            statistics[name] = sum(tqdm(counted, desc=f"featurize: {name} df", unit="chunk", leave=False,
                                        disable=None))
        else:
            vocabulary = statistics[name] = _Vocabulary()
            counted = each(_chunk_term_counts, chunks, (analyzer,), f"featurize ({name} vocabulary) chunk")
            for terms, df, tf in tqdm(counted, desc=f"featurize: {name} vocabulary", unit="chunk",
                                      leave=False, disable=None):
                vocabulary.add(terms, df, tf)
    classes = codes.sorted_labels()
    y_train = codes.to_sorted(np.concatenate(train_codes)).astype(np.int64)
    vectorizer = _fitted_vectorizer(config, len(y_train), statistics)
    del statistics, train_codes
    n_features = n_features_out(vectorizer)

    # Pass two: both splits through the fitted vectorizer, straight into the .npz files.
    scratch = Path(scratch or Path(features_dir).parent)  # not /tmp, which may be RAM-backed
    scratch.mkdir(parents=True, exist_ok=True)
    # Workers that see this machine's disk write their blocks into the scratch directory; a remote
    # Dask worker's block comes back through the cluster's network (see csr_part).
    local_disk = cluster is None or cluster.started_here
    with atomic_path(features_dir) as staged, scratch_directory(".featurize-", scratch) as tmp:
        staged.mkdir()
        test_codes: list[np.ndarray] = []
        for split, path, labels in (("train", train_file, None), ("test", test_file, test_codes)):
            writer = CsrNpzWriter(n_features, Path(tmp))
            # absolute: a reused worker process may have started in another directory
            arguments = ((t, str(Path(tmp).resolve() / f"{split}-{i:08d}") if local_disk else None)
                         for i, t in enumerate(texts(path, labels)))
            # closed on an error too, which waits for the running tasks: none writes into tmp
            # after it is removed
            with closing(each(_chunk_features, arguments, (vectorizer, n_features),
                              f"featurize ({split} split) chunk")) as parts:
                for part in tqdm(parts, desc=f"featurize: {split}", unit="chunk", leave=False, disable=None):
                    writer.add(part)
            writer.write(staged / f"X_{split}.npz")
        unknown = sorted(set(codes.sorted_labels()) - set(classes))
        if unknown:
            raise ConfigError(f"test split holds label(s) {unknown} that the training split lacks")
        y_test = codes.to_sorted(np.concatenate(test_codes)).astype(np.int64)  # classes sort first
        np.save(staged / "y_train.npy", y_train)
        np.save(staged / "y_test.npy", y_test)
        write_json(classes, staged / "classes.json")
    make_picklable_deterministic(vectorizer)
    before = {label: int(n) for label, n in zip(classes, np.bincount(y_train, minlength=len(classes)), strict=True)}
    summary = _summary(n_features, len(y_train), len(y_test), before, config)
    log.info("TF-IDF (%s, streamed): %d features from %d training texts; resampling: %s",
             config.vectorizer, n_features, len(y_train), config.resampling.strategy)
    return vectorizer, summary


def _summary(n_features: int, train_rows: int, test_rows: int, before: dict, config: FeaturizeConfig) -> dict:
    return {
        "n_features": int(n_features),
        "train_rows": int(train_rows),
        "test_rows": int(test_rows),
        "resampling": {
            "strategy": config.resampling.strategy,
            "k_neighbors": config.resampling.k_neighbors,
            "class_counts_before": before,
            "class_counts_after": resampled_class_counts(before, config.resampling),
        },
    }
