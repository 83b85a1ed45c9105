"""The streaming path (chunk_rows): same files and reports as the in-memory path, in chunks."""

from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from sentiment_pipeline.core.config import DownloadConfig, FeaturizeConfig, PreprocessConfig, load_params
from sentiment_pipeline.core.errors import ConfigError, DataError
from sentiment_pipeline.core.files import read_csv, write_csv
from sentiment_pipeline.pipeline.data import drop_dirty_rows, load_source, stream_source
from sentiment_pipeline.pipeline.features import FeatureSet, featurize, featurize_stream, n_features_out
from sentiment_pipeline.pipeline.preprocess import preprocess, preprocess_stream
from sentiment_pipeline.pipeline.streaming import (
    CsrNpzWriter,
    OrderedCsvWriter,
    first_occurrence,
    groups_with_several_labels,
    text_keys,
)


@pytest.fixture(scope="module")
def messy_raw(airline_sample) -> pd.DataFrame:
    """Airline tweets with every kind of row deduplication and cleaning must handle: exact
    copies, copies that differ only in case and mention (same cleaned text), such copies under
    another label (conflicting groups), texts that clean to nothing, in shuffled order."""
    base = airline_sample.head(240).reset_index(drop=True)
    rng = np.random.default_rng(7)
    exact = base.sample(40, random_state=1)
    variant = base.sample(40, random_state=2).assign(text=lambda f: "@Someone " + f["text"].str.upper())
    conflicting = base.sample(15, random_state=3).assign(
        text=lambda f: f["text"] + " @x", label=lambda f: f["label"].map(
            {"negative": "positive", "neutral": "negative", "positive": "neutral"}))
    empty = pd.DataFrame({"text": ["@united", "@c @d", "@a @b", "..."], "label": "neutral"})
    frame = pd.concat([base, exact, variant, conflicting, empty], ignore_index=True)
    return frame.iloc[rng.permutation(len(frame))].reset_index(drop=True)


def _to_csv(frame: pd.DataFrame, path) -> None:
    # quoted: some tweets hold a bare carriage return, which an unquoted CSV would split
    frame.to_csv(path, index=False, quoting=csv.QUOTE_NONNUMERIC)


# ------------------------------------------------------------------ keys
def test_first_occurrence_and_conflicts_match_pandas():
    rng = np.random.default_rng(0)
    texts = pd.Series(rng.integers(0, 300, 5000).astype(str))
    labels = pd.Series(rng.integers(0, 3, 5000))
    keys = text_keys(texts)
    np.testing.assert_array_equal(first_occurrence(keys), ~texts.duplicated().to_numpy())
    per_text = pd.DataFrame({"t": texts, "l": labels}).groupby("t")["l"].nunique()
    assert groups_with_several_labels(keys, labels.to_numpy()) == int((per_text > 1).sum())
    pair = text_keys(texts, labels.astype(str))
    np.testing.assert_array_equal(first_occurrence(pair), ~pd.DataFrame({"t": texts, "l": labels}).duplicated().to_numpy())


def test_keys_are_fixed_values():
    # the same text gets the same key in every process and on every machine (fixed SipHash keys)
    assert text_keys(pd.Series(["great flight"])).tolist() == [[17010008823376969062, 8322534247776037011]]
    assert text_keys(pd.Series(["a"]))[0, 0] != text_keys(pd.Series(["b"]))[0, 0]


# ------------------------------------------------------------------ writers
def test_csr_npz_writer_round_trips(tmp_path):
    X = sp.random(103, 40, density=0.1, format="csr", random_state=0)
    writer = CsrNpzWriter(40, tmp_path)
    for start in range(0, 103, 10):
        writer.append(X[start:start + 10])
    writer.write(tmp_path / "x.npz")
    Y = sp.load_npz(tmp_path / "x.npz")
    assert Y.shape == X.shape and (Y != X).nnz == 0
    assert Y.indices.dtype == Y.indptr.dtype == np.int32 and Y.data.dtype == np.float64
    np.testing.assert_array_equal(Y.indptr, X.indptr)
    empty = CsrNpzWriter(5, tmp_path)
    empty.write(tmp_path / "e.npz")
    assert sp.load_npz(tmp_path / "e.npz").shape == (0, 5)


def test_csr_parts_from_files_and_arrays_write_the_same_npz(tmp_path):
    """A worker on this machine hands its rows over as files, a Dask worker as arrays, this process
    appends blocks: the same .npz bytes, with the members save_npz writes (indptr's header as
    write_array writes it)."""
    import zipfile

    from sentiment_pipeline.pipeline.streaming import csr_part

    X = sp.random(257, 50, density=0.2, format="csr", random_state=3)
    blocks = [X[start:start + 40] for start in range(0, 257, 40)]
    written = []
    for way in ("append", "arrays", "files"):
        writer = CsrNpzWriter(50, tmp_path)
        for i, block in enumerate(blocks):
            if way == "append":
                writer.append(block)
            else:
                stem = str(tmp_path / f"part-{i}") if way == "files" else None
                writer.add(csr_part([block[:7], block[7:]], 50, stem))
        writer.write(tmp_path / f"{way}.npz")
        written.append((tmp_path / f"{way}.npz").read_bytes())
    assert written[0] == written[1] == written[2]
    assert not list(tmp_path.glob("part-*")) and not list(tmp_path.glob("csr-*"))  # the writer took them and let go
    with zipfile.ZipFile(tmp_path / "files.npz") as archive:
        assert archive.namelist() == ["indices.npy", "indptr.npy", "format.npy", "shape.npy", "data.npy"]
        expected = __import__("io").BytesIO()
        np.lib.format.write_array(expected, X.indptr.astype(np.int32))
        assert archive.read("indptr.npy") == expected.getvalue()
    Y = sp.load_npz(tmp_path / "files.npz")
    assert _same_csr(Y, X)


def test_texts_are_vectorised_in_pieces_of_bounded_characters():
    from sentiment_pipeline.pipeline.features import text_pieces

    texts = ["a" * 30, "b" * 50, "c" * 25, "d" * 200, "e"]
    pieces = list(text_pieces(texts, limit=100))
    assert pieces == [texts[:2], texts[2:3], texts[3:4], texts[4:]]  # a longer text goes alone
    assert list(text_pieces([], limit=100)) == [] and list(text_pieces(texts, limit=10**6)) == [texts]


def test_a_lost_worker_process_stops_the_map_with_one_line():
    """A worker process killed (as the kernel's OOM killer kills) while it computes a task."""
    import operator
    import signal

    from sentiment_pipeline.pipeline.streaming import WorkerLost, parallel_map

    # standard-library callables only: the worker processes import nothing of ours (~4 s each)
    tasks = [(abs, -i) for i in range(8)]
    tasks[5] = (signal.raise_signal, signal.SIGKILL)
    with pytest.raises(WorkerLost, match=r"^a worker process died \(exit code SIGKILL\(-9\)\), e.g. killed for lack of "
                                         r"memory, with test chunk \d+ not done; nothing was written$"):
        list(parallel_map(operator.call, tasks, 2, what="test chunk"))
    assert list(parallel_map(operator.call, tasks[:5], 2)) == [0, 1, 2, 3, 4]  # the next map gets a new pool


def test_a_map_closed_early_waits_for_its_running_tasks(tmp_path):
    """featurize removes its scratch directory when a map stops early (closing the map): no task
    may still be writing into it then. Tasks not started are dropped, the running ones ended."""
    import operator
    import subprocess
    import time

    from sentiment_pipeline.pipeline.streaming import parallel_map

    tasks = [(subprocess.check_call, ["sh", "-c", f"sleep 0.6; touch {tmp_path}/{i}"]) for i in range(12)]
    mapped = parallel_map(operator.call, tasks, 2)
    assert next(mapped) == 0
    mapped.close()
    done = sorted(int(p.name) for p in tmp_path.iterdir())
    time.sleep(1.5)
    assert sorted(int(p.name) for p in tmp_path.iterdir()) == done  # nothing ran on after close
    assert 1 <= len(done) < len(tasks)  # the first task, those running; not the rest


def test_ctrl_c_in_the_consumer_does_not_wait_for_the_running_tasks():
    """Ctrl-C reaches the map as GeneratorExit (closing() in featurize): out at once, no drain."""
    import operator
    import time
    from contextlib import closing

    from sentiment_pipeline.pipeline.streaming import parallel_map

    tasks = [(time.sleep, 0.0)] + [(time.sleep, 3.0)] * 6
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt), closing(parallel_map(operator.call, tasks, 2)) as mapped:
        next(mapped)
        raise KeyboardInterrupt
    assert time.monotonic() - started < 2.5


def test_ordered_writer_emits_rows_by_position(tmp_path):
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(50)], "label": "x"})
    positions = np.random.default_rng(1).permutation(50)
    writer = OrderedCsvWriter(50, 7, ["text", "label"], tmp_path)
    for start in range(0, 50, 9):
        writer.add(frame.iloc[start:start + 9], positions[start:start + 9])
    writer.write(tmp_path / "out.csv")
    expected = frame.iloc[np.argsort(positions)].reset_index(drop=True)
    pd.testing.assert_frame_equal(read_csv(tmp_path / "out.csv"), expected)


def test_ordered_writer_keeps_no_file_open(tmp_path):
    """Thousands of buckets must not mean thousands of open files (the limit is often 1024)."""
    import os

    frame = pd.DataFrame({"text": [f"t{i}" for i in range(3000)], "label": "x"})
    writer = OrderedCsvWriter(3000, 1, ["text", "label"], tmp_path)  # 3,000 buckets
    before = len(os.listdir("/proc/self/fd"))
    writer.add(frame, np.random.default_rng(2).permutation(3000))
    assert len(os.listdir("/proc/self/fd")) <= before
    assert writer.write(tmp_path / "out.csv") == 3000


# ------------------------------------------------------------------ download
@pytest.mark.parametrize("suffix", ["csv", "csv.gz", "jsonl", "parquet"])
def test_streamed_download_writes_the_same_file_and_report(tmp_path, messy_raw, suffix):
    source = tmp_path / f"source.{suffix}"
    raw = pd.concat([messy_raw, pd.DataFrame({"text": ["   "], "label": ["neutral"]})], ignore_index=True)
    {"jsonl": lambda: raw.to_json(source, orient="records", lines=True),
     "parquet": lambda: raw.to_parquet(source)}.get(suffix, lambda: _to_csv(raw, source))()
    frame, dropped = drop_dirty_rows(load_source(DownloadConfig(source="file", path=source)))
    write_csv(frame, tmp_path / "memory.csv")
    report = stream_source(DownloadConfig(source="file", path=source, chunk_rows=13), 5, tmp_path / "streamed.csv")
    assert (tmp_path / "streamed.csv").read_bytes() == (tmp_path / "memory.csv").read_bytes()
    assert report == {"rows_in": len(raw), "dropped": dropped, "rows_out": len(frame),
                      "class_counts": frame["label"].value_counts().sort_index().to_dict()}
    assert dropped["exact_duplicates"] >= 40 and dropped["blank_text"] == 1


def test_streamed_download_names_the_bad_row_of_the_whole_file(tmp_path, messy_raw):
    source = tmp_path / "bad.csv"
    bad = messy_raw.copy()
    bad.loc[57, "label"] = "angry"
    _to_csv(bad, source)
    config = DownloadConfig(source="file", path=source, chunk_rows=10, labels=["negative", "neutral", "positive"])
    with pytest.raises(DataError, match=r"bad.csv: column 'label' holds label\(s\) \['angry'\] in data row\(s\) 58;"):
        stream_source(config, 5, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_streamed_download_reports_like_the_in_memory_path(tmp_path):
    header_only = tmp_path / "header.csv"
    header_only.write_text("text,label\n")
    with pytest.raises(DataError, match="no rows \\(the file has a header but no data\\)"):
        stream_source(DownloadConfig(source="file", path=header_only, chunk_rows=5), 5, tmp_path / "out.csv")
    tied = tmp_path / "tied.csv"
    _to_csv(pd.DataFrame({"text": list("abcdef"), "label": list("zzaamm")}), tied)
    message = "'z' has 2 rows, 'a' has 2 rows, 'm' has 2 rows"  # value_counts' order: ties by first row
    for chunk_rows in (None, 2):
        with pytest.raises(DataError, match=message):
            config = DownloadConfig(source="file", path=tied, chunk_rows=chunk_rows, min_rows=1)
            if chunk_rows:
                stream_source(config, 5, tmp_path / "out.csv")
            else:
                from sentiment_pipeline.pipeline.data import check_counts

                check_counts(drop_dirty_rows(load_source(config))[0], str(tied), 1, 5)


def test_streamed_download_checks_counts_before_writing(tmp_path, messy_raw):
    source = tmp_path / "few.csv"
    _to_csv(messy_raw.head(30), source)
    with pytest.raises(DataError, match="fewer than download.min_rows=100"):
        stream_source(DownloadConfig(source="file", path=source, chunk_rows=7, min_rows=100), 5, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


# ------------------------------------------------------------------ preprocess
@pytest.mark.parametrize(("chunk_rows", "n_jobs", "lexicon"), [(7, 1, "none"), (50, 2, "vader"), (10_000, 1, "vader")])
def test_streamed_preprocess_gives_the_same_split_files_and_report(tmp_path, messy_raw, chunk_rows, n_jobs, lexicon):
    raw_file = tmp_path / "raw.csv"
    write_csv(messy_raw, raw_file)
    config = PreprocessConfig(stopwords={"enabled": False}, cleaning={"lexicon": lexicon}, test_size=0.25, seed=3)
    memory = preprocess(read_csv(raw_file), config)
    write_csv(memory.train, tmp_path / "train_memory.csv")
    write_csv(memory.test, tmp_path / "test_memory.csv")
    streamed = config.model_copy(update={"chunk_rows": chunk_rows, "n_jobs": n_jobs})
    report, distribution = preprocess_stream(raw_file, streamed, tmp_path / "train.csv", tmp_path / "test.csv")
    assert (tmp_path / "train.csv").read_bytes() == (tmp_path / "train_memory.csv").read_bytes()
    assert (tmp_path / "test.csv").read_bytes() == (tmp_path / "test_memory.csv").read_bytes()
    assert report == memory.report and distribution == memory.class_distribution
    dropped = report["dropped"]
    assert dropped["exact_duplicates"] >= 40 and dropped["normalised_duplicates"] >= 40
    assert dropped["duplicate_groups_with_conflicting_labels"] >= 10 and dropped["empty_after_cleaning"] == 4


def test_streamed_preprocess_refuses_what_the_in_memory_path_refuses(tmp_path):
    raw_file = tmp_path / "raw.csv"
    write_csv(pd.DataFrame({"text": ["good", "bad", "fine", "great"], "label": ["p", "n", "p", "p"]}), raw_file)
    config = PreprocessConfig(stopwords={"enabled": False}, chunk_rows=2, n_jobs=1)
    with pytest.raises(DataError, match=r"label\(s\) \['n'\] have fewer than 2 rows"):
        preprocess_stream(raw_file, config, tmp_path / "train.csv", tmp_path / "test.csv")
    assert not (tmp_path / "train.csv").exists()
    write_csv(pd.DataFrame({"text": ["@a", "@b ..."], "label": ["p", "n"]}), raw_file)
    with pytest.raises(DataError, match="no text is left after cleaning all 2 rows"):
        preprocess_stream(raw_file, config, tmp_path / "train.csv", tmp_path / "test.csv")


# ------------------------------------------------------------------ featurize
@pytest.fixture(scope="module")
def split_files(tmp_path_factory, messy_raw):
    directory = tmp_path_factory.mktemp("split")
    result = preprocess(messy_raw, PreprocessConfig(stopwords={"enabled": False}))
    write_csv(result.train, directory / "train.csv")
    write_csv(result.test, directory / "test.csv")
    return directory / "train.csv", directory / "test.csv"


def _same_csr(a: sp.csr_matrix, b: sp.csr_matrix) -> bool:
    return (a.shape == b.shape and np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
            and np.array_equal(a.data, b.data))


@pytest.mark.parametrize("options", [{"vectorizer": "hashing", "hashing_features": 4096},
                                     {"vectorizer": "hashing", "hashing_features": 4096, "char_ngrams": True}])
def test_streamed_hashing_features_are_bit_identical(tmp_path, split_files, options):
    train_file, test_file = split_files
    config = FeaturizeConfig(min_df=1, **options)
    vectorizer, memory, summary = featurize(read_csv(train_file), read_csv(test_file), config)
    streamed_vectorizer, streamed_summary = featurize_stream(
        train_file, test_file, config.model_copy(update={"chunk_rows": 17, "n_jobs": 1}), tmp_path / "features")
    streamed = FeatureSet.load(tmp_path / "features")
    assert _same_csr(streamed.X_train, memory.X_train) and _same_csr(streamed.X_test, memory.X_test)
    np.testing.assert_array_equal(streamed.y_train, memory.y_train)
    np.testing.assert_array_equal(streamed.y_test, memory.y_test)
    assert streamed.classes == memory.classes and streamed_summary == summary
    texts = ["not a great flight", "thanks _exclaim_"]
    assert _same_csr(streamed_vectorizer.transform(texts), vectorizer.transform(texts))
    assert n_features_out(streamed_vectorizer) == summary["n_features"] == (8192 if options.get("char_ngrams") else 4096)


@pytest.mark.parametrize("options", [{}, {"char_ngrams": True, "max_features": 3000}, {"max_features": None, "min_df": 1}])
def test_streamed_tfidf_fits_the_same_vocabulary_and_idf(tmp_path, split_files, options):
    train_file, test_file = split_files
    config = FeaturizeConfig(**options)
    vectorizer, memory, summary = featurize(read_csv(train_file), read_csv(test_file), config)
    streamed_vectorizer, streamed_summary = featurize_stream(
        train_file, test_file, config.model_copy(update={"chunk_rows": 23, "n_jobs": 2}), tmp_path / "features")
    streamed = FeatureSet.load(tmp_path / "features")
    parts = [("word", vectorizer)] if not options.get("char_ngrams") else vectorizer.transformer_list
    streamed_parts = dict(streamed_vectorizer.transformer_list) if options.get("char_ngrams") else {"word": streamed_vectorizer}
    for name, part in parts:
        assert streamed_parts[name].vocabulary_ == part.vocabulary_
        np.testing.assert_array_equal(streamed_parts[name].idf_, part.idf_)
    assert streamed_summary == summary
    # The test split goes through transform on both paths: identical. The training matrix of
    # fit_transform lists a row's entries in corpus first-seen order, transform in column order,
    # so the L2 norms are summed in another order: same entries, values within a few ulps.
    assert _same_csr(streamed.X_test, memory.X_test)
    train = memory.X_train.copy()
    train.sort_indices()
    assert np.array_equal(streamed.X_train.indices, train.indices)
    np.testing.assert_allclose(streamed.X_train.data, train.data, rtol=1e-14, atol=0)
    np.testing.assert_array_equal(streamed.y_train, memory.y_train)


def test_streamed_tfidf_is_fitted_like_the_in_memory_vectorizer(tmp_path, split_files):
    """A chunk without any n-gram of the range (single words, bigrams only) counts nothing; the
    saved vectorizer has the in-memory one's params, so cloning and refitting relearns."""
    from sklearn.base import clone

    train = pd.concat([pd.DataFrame({"text": ["great", "bad", "ok", "meh"], "label": "neutral"}),
                       read_csv(split_files[0])], ignore_index=True)
    train_file = tmp_path / "train.csv"
    write_csv(train, train_file)
    config = FeaturizeConfig(word_ngram_range=(2, 2), min_df=1)
    vectorizer, memory, _ = featurize(train, read_csv(split_files[1]), config)
    streamed, _ = featurize_stream(train_file, split_files[1], config.model_copy(update={"chunk_rows": 4, "n_jobs": 1}),
                                   tmp_path / "features")
    assert streamed.vocabulary_ == vectorizer.vocabulary_ and streamed.get_params() == vectorizer.get_params()
    assert streamed.fixed_vocabulary_ is False
    refitted = clone(streamed).fit(["good flight", "bad flight"])
    assert sorted(refitted.vocabulary_) == ["bad flight", "good flight"]


def test_a_failure_in_pass_two_leaves_no_features(tmp_path, split_files):
    test = read_csv(split_files[1])
    test.loc[3, "label"] = "sarcastic"
    test_file = tmp_path / "test.csv"
    write_csv(test, test_file)
    config = FeaturizeConfig(vectorizer="hashing", hashing_features=1024, chunk_rows=40, n_jobs=1)
    with pytest.raises(ConfigError, match=r"test split holds label\(s\) \['sarcastic'\]"):
        featurize_stream(split_files[0], test_file, config, tmp_path / "features")
    assert not (tmp_path / "features").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no scratch left behind


def test_streamed_tfidf_reports_an_impossible_min_df(tmp_path, split_files):
    train_file, test_file = split_files
    config = FeaturizeConfig(min_df=100, max_df=0.99, chunk_rows=50, n_jobs=1)
    with pytest.raises(ConfigError, match=r"201 training texts with featurize.min_df=100, max_df=0.99: no terms remain"):
        featurize_stream(train_file, test_file, config, tmp_path / "features")
    with pytest.raises(ConfigError, match="max_df corresponds to fewer documents than min_df"):
        featurize_stream(train_file, test_file, config.model_copy(update={"min_df": 1000}), tmp_path / "features")
    assert not (tmp_path / "features").exists()


# ------------------------------------------------------------------ the stages
@pytest.mark.parametrize("several", [False, True])
def test_stages_stream_when_chunk_rows_is_set(tmp_path, monkeypatch, messy_raw, several):
    """download -> preprocess -> featurize through the stage entry points, once in memory and
    once streamed: the same data/raw, data/processed and metrics files (also with the messy rows
    as one of two download.sources, the other relabelling some of them)."""
    import yaml

    from sentiment_pipeline.stages import download
    from sentiment_pipeline.stages import featurize as featurize_stage
    from sentiment_pipeline.stages import preprocess as preprocess_stage

    _to_csv(messy_raw, tmp_path / "source.csv")
    relabelled = messy_raw.sample(30, random_state=5).assign(label=lambda f: f["label"].map(
        {"negative": "positive", "neutral": "negative", "positive": "neutral"}))
    _to_csv(pd.concat([relabelled, messy_raw.head(10)]), tmp_path / "feedback.csv")
    sources = [{"name": "feedback", "source": "file", "path": str(tmp_path / "feedback.csv")}, {"name": "original"}]
    outputs = {}
    for mode, chunk in (("memory", None), ("streamed", 31)):
        project = tmp_path / mode
        project.mkdir()
        params = {"download": {"source": "file", "path": str(tmp_path / "source.csv"), "chunk_rows": chunk,
                               "sources": sources if several else None},
                  "preprocess": {"chunk_rows": chunk, "n_jobs": 1},
                  "featurize": {"chunk_rows": chunk, "n_jobs": 1, "vectorizer": "hashing", "hashing_features": 2048}}
        (project / "params.yaml").write_text(yaml.safe_dump(params))
        monkeypatch.chdir(project)
        for stage in (download, preprocess_stage, featurize_stage):
            stage.run(load_params("params.yaml") and "params.yaml")
        outputs[mode] = {name: (project / name).read_bytes() for name in
                         ("data/raw/reviews.csv", "data/processed/train.csv", "data/processed/test.csv",
                          "metrics/download.json", "metrics/data.json", "metrics/features.json",
                          "plots/class_distribution.json")}
        outputs[mode]["X_train"] = sp.load_npz(project / "data/features/X_train.npz").toarray().tobytes()
    assert outputs["streamed"] == outputs["memory"]
    assert json.loads(outputs["streamed"]["metrics/features.json"])["n_features"] == 2048
    data = json.loads(outputs["streamed"]["metrics/data.json"])
    assert ("sources" in data) is several
    if several:
        assert data["sources"]["feedback"]["rows_in"] == 40 and data["label_conflicts_resolved_by_precedence"] > 0


def test_zero_workers_is_refused():
    with pytest.raises(ValueError, match="n_jobs\n.*not 0"):
        PreprocessConfig(n_jobs=0)


def test_hashed_features_serve_and_monitor_without_a_vocabulary(split_files):
    """featurize.vectorizer: hashing downstream: select counts its columns, the monitor's
    tokenizer still works and the out-of-vocabulary check is reported as not applicable."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    from sentiment_pipeline.monitoring.monitor import tokenizer_and_vocabulary
    from sentiment_pipeline.pipeline.features import build_vectorizer

    train = read_csv(split_files[0])
    vectorizer = build_vectorizer(FeaturizeConfig(vectorizer="hashing", hashing_features=1024))
    model = Pipeline([("tfidf", vectorizer), ("clf", LogisticRegression())]).fit(train["text"], train["label"])
    tokenize, vocabulary = tokenizer_and_vocabulary(model)
    assert vocabulary is None and tokenize("not good _exclaim_") == ["not", "good", "_exclaim_"]
    assert n_features_out(vectorizer) == 1024
    assert set(model.predict(["thanks so much", "worst airline ever"])) <= {"negative", "neutral", "positive"}


@pytest.mark.e2e
def test_stream_benchmark_runs_and_reports(tmp_path):
    """make bench-stream on a tiny size: every step runs in its own process and is reported."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parents[1] / "benchmarks" / "stream_bench.py"
    output = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, str(script), "--sizes", "3000", "--chunk-rows", "1000",
                             "--n-jobs", "1", "--output", str(output), "--workdir", str(tmp_path),
                             "--results-dir", str(tmp_path / "results")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(output.read_text())
    assert [r["step"] for r in report["rows"]] == ["download", "preprocess", "featurize"]
    assert all(r["seconds"] > 0 and r["peak_rss_mb"] > 50 for r in report["rows"])
    assert report["fits"] and report["fits"][0]["rows"] > 2000
    assert "| 3,000 | preprocess |" in result.stdout
    assert json.loads((tmp_path / "results" / "stream.json").read_text())["benchmark"] == "stream"
