"""download.sources: several sources merged into one data/raw with a `source` column, precedence
deciding conflicting labels, per-source counts in the reports, streamed = in memory, and the
split rule: adding feedback rows moves no row of the original between train and test."""

from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pytest

from sentiment_pipeline.core.config import DownloadConfig, PreprocessConfig, load_params
from sentiment_pipeline.core.errors import ConfigError, DataError
from sentiment_pipeline.core.files import read_csv, write_csv
from sentiment_pipeline.pipeline.data import merge_sources, stream_source
from sentiment_pipeline.pipeline.preprocess import preprocess, preprocess_stream
from sentiment_pipeline.pipeline.streaming import groups_varying, text_keys

FLIP = {"negative": "positive", "neutral": "negative", "positive": "neutral"}


def _to_csv(frame: pd.DataFrame, path) -> None:
    frame.to_csv(path, index=False, quoting=csv.QUOTE_NONNUMERIC)


@pytest.fixture(scope="module")
def feedback(airline_sample) -> pd.DataFrame:
    """What export-feedback writes: relabelled copies of original texts (exact and with other
    case/spacing), copies with the same label, new texts, and one blank and one repeated row."""
    base = airline_sample
    relabelled = base.iloc[0:30].assign(label=lambda f: f["label"].map(FLIP))
    variants = base.iloc[30:40].assign(text=lambda f: "  " + f["text"].str.upper(),
                                       label=lambda f: f["label"].map(FLIP))
    agreeing = base.iloc[40:50]
    words = ("alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima mike november "
             "oscar papa quebec romeo sierra tango uniform victor whiskey yankee").split()
    new = pd.DataFrame({"text": [f"feedback tweet about {word} and the crew" for word in words],
                        "label": ["negative", "neutral", "positive"] * 8})
    dirty = pd.DataFrame({"text": ["   ", new["text"][0]], "label": ["neutral", new["label"][0]]})
    return pd.concat([relabelled, variants, agreeing, new, dirty], ignore_index=True)


@pytest.fixture()
def sources(tmp_path, airline_sample, feedback) -> DownloadConfig:
    _to_csv(airline_sample, tmp_path / "reviews.csv")
    _to_csv(feedback, tmp_path / "feedback.csv")
    return DownloadConfig(source="file", path=tmp_path / "reviews.csv", min_rows=10,
                          sources=[{"name": "original"},
                                   {"name": "feedback", "source": "file", "path": str(tmp_path / "feedback.csv")}],
                          precedence=["feedback", "original"])


# ------------------------------------------------------------------ params
def _params(tmp_path, download: str):
    path = tmp_path / "params.yaml"
    path.write_text("download:\n  source: file\n  path: data/external/reviews.csv\n" + download)
    return load_params(path)


@pytest.mark.parametrize("download, message", [
    ("  sources: [{name: a}, {name: b, source: file}]\n",
     "download.sources[1].path is required when its source is 'file'"),
    ("  sources: [{name: a}, {name: a, source: embedded_all}]\n", "download.sources[1].name: 'a' names an earlier"),
    ("  sources: [{name: a}, {name: b, source: embedded_all, chunk_rows: 5}]\n",
     "download.sources[1].chunk_rows: not a per-source field"),
    ("  sources: [{name: a}, {name: b, source: embedded_all, retries: -1}]\n",
     "download.sources[1].retries: Input should be greater than or equal to 0"),
    ("  sources: [{name: a}, {name: b, path: data/external/reviews.csv}]\n",
     "download.sources[1]: reads the same file source as entry 'a'"),
    ("  sources: [{name: a}, {name: b, source: embedded_all}]\n  precedence: [b, c]\n",
     "download.precedence: expected each name of download.sources once, ['a', 'b'], got ['b', 'c']"),
    ("  precedence: [a]\n", "download.precedence orders download.sources, which is not set"),
    ("  sources: [{name: a}]\n", "download.sources: List should have at least 2 items"),
    ("  sources: [{name: a}, 3]\n", "download.sources.1: Input should be a valid dictionary"),
])
def test_bad_sources_are_named_by_key(tmp_path, download, message):
    with pytest.raises(ConfigError) as info:
        _params(tmp_path, download)
    assert message in str(info.value)


def test_an_entry_inherits_the_section_and_one_setting_source_states_its_own_location(tmp_path):
    params = _params(tmp_path, "  text_column: [title, body]\n  encoding: latin-1\n  sources:\n"
                               "    - {name: original}\n"
                               "    - {name: feedback, source: file, path: data/external/feedback.csv, text_column: text}\n"
                               "    - {name: all, source: embedded_all}\n"
                               "  precedence: [feedback, all, original]\n")
    named = dict(params.download.source_configs())
    assert list(dict(params.download.source_configs())) == ["feedback", "all", "original"]
    assert str(named["original"].path) == "data/external/reviews.csv"
    assert named["original"].text_columns == ["title", "body"] and named["original"].encoding == "latin-1"
    assert named["feedback"].text_columns == ["text"] and named["feedback"].encoding == "latin-1"
    assert named["all"].path is None and named["all"].source == "embedded_all"
    # no precedence: the order of the list
    plain = _params(tmp_path, "  sources: [{name: original}, {name: all, source: embedded_all}]\n")
    assert [name for name, _ in plain.download.source_configs()] == ["original", "all"]


# ------------------------------------------------------------------ download
def test_download_stacks_sources_in_precedence_order_with_provenance(sources, airline_sample, feedback):
    frame, report = merge_sources(sources, cv_folds=3)
    assert list(frame.columns) == ["text", "label", "source"]
    # feedback first (it comes first in precedence), each source in its own order
    assert frame["source"].tolist() == ["feedback"] * report["sources"]["feedback"]["rows_out"] + \
        ["original"] * report["sources"]["original"]["rows_out"]
    # exact (text, label) copies: the agreeing feedback rows stay, the original's copies go
    assert report["sources"]["original"]["dropped"] == {"blank_text": 0, "exact_duplicates": 10}
    assert report["sources"]["feedback"]["dropped"] == {"blank_text": 1, "exact_duplicates": 1}
    assert report["sources"]["feedback"]["rows_in"] == len(feedback)
    assert report["sources"]["original"]["rows_out"] == len(airline_sample) - 10
    assert report["rows_out"] == len(frame) == sum(s["rows_out"] for s in report["sources"].values())
    assert {name: s["precedence"] for name, s in report["sources"].items()} == {"feedback": 1, "original": 2}
    # per-source class counts recomputed from the frame
    for name, counts in report["sources"].items():
        assert counts["class_counts"] == frame[frame["source"] == name]["label"].value_counts().sort_index().to_dict()


@pytest.mark.parametrize("chunk_rows", [7, 1000])
def test_streamed_download_of_several_sources_writes_the_same_file_and_report(tmp_path, sources, chunk_rows):
    frame, report = merge_sources(sources, cv_folds=3)
    write_csv(frame, tmp_path / "memory.csv")
    streamed = stream_source(sources.model_copy(update={"chunk_rows": chunk_rows}), 3, tmp_path / "streamed.csv")
    assert (tmp_path / "streamed.csv").read_bytes() == (tmp_path / "memory.csv").read_bytes()
    assert json.dumps(streamed) == json.dumps(report)


def test_a_header_only_source_is_named_and_too_few_rows_name_the_merged_sources(tmp_path, sources):
    (tmp_path / "feedback.csv").write_text("text,label\n")
    for config in (sources, sources.model_copy(update={"chunk_rows": 5})):
        with pytest.raises(DataError, match="feedback.csv: no rows"):
            merge_sources(config, 3) if config.chunk_rows is None else stream_source(config, 3, tmp_path / "x.csv")
    with pytest.raises(DataError, match=r"download.sources \(feedback, original\): .* fewer than download.min_rows"):
        (tmp_path / "feedback.csv").write_text("text,label\nok,neutral\n")
        merge_sources(sources.model_copy(update={"min_rows": 10_000}), 3)


# ------------------------------------------------------------------ preprocess
@pytest.fixture()
def merged_raw(tmp_path, sources) -> pd.DataFrame:
    frame, _ = merge_sources(sources, cv_folds=3)
    write_csv(frame, tmp_path / "raw.csv")
    return read_csv(tmp_path / "raw.csv")


def test_precedence_decides_conflicting_labels_and_the_report_counts_every_source(merged_raw, airline_sample):
    result = preprocess(merged_raw, PreprocessConfig())
    kept = pd.concat([result.train, result.test], ignore_index=True)
    assert list(kept.columns) == ["text", "label", "raw", "source"]
    by_raw = kept.set_index("raw")
    # exact copies relabelled by feedback: feedback's label, from feedback
    for text, label in zip(airline_sample["text"][:30], airline_sample["label"][:30], strict=True):
        assert by_raw.loc[text, "label"] == FLIP[label] and by_raw.loc[text, "source"] == "feedback"
    # copies that differ in case and spacing: the same cleaned text, feedback's row kept
    for text in airline_sample["text"][30:40]:
        assert text not in by_raw.index
    report = result.report
    assert report["label_conflicts_resolved_by_precedence"] == 40
    for name, counts in report["sources"].items():
        assert counts["rows_in"] == int((merged_raw["source"] == name).sum())
        assert counts["rows_out"] == int((kept["source"] == name).sum())
        assert counts["train_rows"] == int((result.train["source"] == name).sum())
        assert counts["test_rows"] == int((result.test["source"] == name).sum())
    assert report["sources"]["feedback"]["precedence"] == 1 and report["sources"]["original"]["precedence"] == 2


def test_within_one_source_the_first_row_still_wins(merged_raw):
    """Sources stacked the other way round (original first): the original's labels win."""
    flipped = pd.concat([merged_raw[merged_raw["source"] == "original"],
                         merged_raw[merged_raw["source"] == "feedback"]], ignore_index=True)
    result = preprocess(flipped, PreprocessConfig())
    kept = pd.concat([result.train, result.test])
    assert (kept[kept["raw"].isin(merged_raw[merged_raw["source"] == "original"]["text"])]["source"]
            == "original").all()
    assert result.report["sources"]["original"]["precedence"] == 1
    assert result.report["label_conflicts_resolved_by_precedence"] == 40


@pytest.mark.parametrize("chunk_rows, n_jobs", [(13, 1), (50, 2), (10_000, 1)])
def test_streamed_preprocess_of_several_sources_gives_the_same_files_and_report(tmp_path, merged_raw,
                                                                                  chunk_rows, n_jobs):
    write_csv(merged_raw, tmp_path / "raw.csv")
    result = preprocess(merged_raw, PreprocessConfig())
    write_csv(result.train, tmp_path / "train.csv")
    write_csv(result.test, tmp_path / "test.csv")
    config = PreprocessConfig(chunk_rows=chunk_rows, n_jobs=n_jobs)
    report, distribution = preprocess_stream(tmp_path / "raw.csv", config, tmp_path / "s_train.csv",
                                             tmp_path / "s_test.csv")
    assert (tmp_path / "s_train.csv").read_bytes() == (tmp_path / "train.csv").read_bytes()
    assert (tmp_path / "s_test.csv").read_bytes() == (tmp_path / "test.csv").read_bytes()
    assert json.dumps(report) == json.dumps(result.report)
    assert distribution == result.class_distribution


def test_groups_varying_matches_pandas():
    rng = np.random.default_rng(3)
    texts = pd.Series(rng.integers(0, 1500, 3000).astype(str))
    labels, sources = rng.integers(0, 3, 3000), rng.integers(0, 2, 3000)
    per_text = pd.DataFrame({"l": labels, "s": sources}).groupby(texts.to_numpy()).nunique()
    expected = int(((per_text["l"] > 1) & (per_text["s"] > 1)).sum())
    assert 0 < expected < 1500
    assert groups_varying(text_keys(texts), labels, sources) == expected
    assert groups_varying(text_keys(texts), labels) == int((per_text["l"] > 1).sum())


def test_feedback_moves_no_original_row_between_train_and_test(merged_raw, airline_sample):
    """The split rule: a row's side is a function of its text, so the original's test rows stay
    in test (relabelled by feedback or not) and its train rows in train once feedback is added."""
    config = PreprocessConfig()
    alone = preprocess(airline_sample, config)
    merged = preprocess(merged_raw, config)
    test_before, train_before = set(alone.test["raw"]), set(alone.train["raw"])
    test_after, train_after = set(merged.test["raw"]), set(merged.train["raw"])
    kept = test_after | train_after
    assert test_before & kept <= test_after and train_before & kept <= train_after
    # only the ten texts feedback re-sent in other case/spacing left (under feedback's spelling)
    assert len((test_before | train_before) - kept) == 10
    # feedback relabelled some test rows: the test split holds them with feedback's label
    relabelled = set(airline_sample["text"][:30]) & test_before
    assert relabelled and set(merged.test[merged.test["raw"].isin(relabelled)]["source"]) == {"feedback"}
    # and the new feedback texts landed on both sides, by their own hashes
    new = merged_raw[merged_raw["text"].str.startswith("feedback tweet")]["text"]
    assert new.isin(merged.test["raw"]).any() and new.isin(merged.train["raw"]).any()


def test_single_source_data_has_no_provenance(airline_sample):
    report = preprocess(airline_sample, PreprocessConfig()).report
    assert "sources" not in report and "label_conflicts_resolved_by_precedence" not in report
