import json
from typing import Literal

import numpy as np
import pandas as pd
import pytest

from sentiment_pipeline.core.config import CleaningConfig, PreprocessConfig
from sentiment_pipeline.core.errors import DataError
from sentiment_pipeline.pipeline.preprocess import deduplicate, preprocess, split_units
from sentiment_pipeline.pipeline.text import without_lexicon_token

from .conftest import PROJECT_ROOT


def config(**overrides) -> PreprocessConfig:
    return PreprocessConfig(stopwords={"enabled": False}, **overrides)


@pytest.mark.parametrize("lexicon", ["none", "vader"])
def test_duplicates_are_removed_before_the_split(airline_sample, lexicon):
    # Every tweet three times: raw copies, and copies that differ only in case and mention
    # (in capitals VADER scores them higher: their lexicon tokens differ, their words do not).
    variants = airline_sample.assign(text="@united " + airline_sample["text"].str.upper())
    raw = pd.concat([airline_sample, airline_sample, variants], ignore_index=True)
    result = preprocess(raw, config(cleaning={"lexicon": lexicon}))
    assert result.report["dropped"]["exact_duplicates"] >= len(airline_sample)
    assert result.report["dropped"]["normalised_duplicates"] >= len(airline_sample) - 5
    words = [without_lexicon_token(t) for t in pd.concat([result.train["text"], result.test["text"]])]
    assert len(set(words)) == len(words)
    has_token = pd.concat([result.train["text"], result.test["text"]]).str.contains(" _vader")
    assert has_token.all() if lexicon == "vader" else not has_token.any()
    assert result.report["rows_out"] == len(result.train) + len(result.test)
    assert result.report["rows_out"] <= len(airline_sample)


def sides(result) -> dict[str, str]:
    """raw text -> the side it is on."""
    return {**dict.fromkeys(result.train["raw"], "train"), **dict.fromkeys(result.test["raw"], "test")}


def test_split_is_seeded_and_each_rows_side_is_its_own(airline_sample):
    first = preprocess(airline_sample, config(seed=1))
    again = preprocess(airline_sample, config(seed=1))
    other = preprocess(airline_sample, config(seed=2))
    pd.testing.assert_frame_equal(first.train, again.train)
    pd.testing.assert_frame_equal(first.test, again.test)
    assert not first.test["text"].equals(other.test["text"])
    # A row's side does not depend on the other rows: the reversed half of the data keeps it.
    half = preprocess(airline_sample.iloc[::-2].reset_index(drop=True), config(seed=1))
    everything = sides(first)
    assert all(everything[raw] == side for raw, side in sides(half).items())
    # each side keeps the input order
    order = {raw: i for i, raw in enumerate(airline_sample["text"])}
    for side in (first.train, first.test):
        assert side["raw"].map(order).is_monotonic_increasing


def _alternatives(field) -> list:
    annotation = field.annotation
    if annotation is bool:
        return [not field.default]
    if getattr(annotation, "__origin__", None) is Literal:
        return [value for value in annotation.__args__ if value != field.default]
    return [field.default + 1]  # lexicon_bins


CLEANING_TOGGLES = [(name, value) for name, field in CleaningConfig.model_fields.items()
                    for value in _alternatives(field)]


@pytest.mark.parametrize(("option", "value"), CLEANING_TOGGLES, ids=[f"{o}={v}" for o, v in CLEANING_TOGGLES])
def test_toggling_a_cleaning_option_moves_no_surviving_row(airline_sample, option, value):
    """The PR diff of a cleaning experiment compares the same test rows: every row that
    survives both runs is on the same side in both (rows may only drop out or come back)."""
    lexicon = {"lexicon": "none"} if option != "lexicon" else {}
    base = sides(preprocess(airline_sample, config(cleaning=lexicon)))
    toggled = sides(preprocess(airline_sample, config(cleaning={**lexicon, option: value})))
    both = base.keys() & toggled.keys()
    assert len(both) > 0.9 * len(base)
    moved = [raw for raw in both if base[raw] != toggled[raw]]
    assert moved == []


def test_stopword_removal_moves_no_surviving_row(airline_sample):
    base = sides(preprocess(airline_sample, config()))
    removed = sides(preprocess(airline_sample, PreprocessConfig(
        stopwords={"enabled": True, "source": "list", "words": ["the", "a", "to", "i", "you", "my"]})))
    assert all(base[raw] == removed[raw] for raw in base.keys() & removed.keys())


def test_texts_equal_but_for_spacing_and_case_share_a_side():
    units = split_units(pd.Series(["Great  flight!", "great flight!", " GREAT flight! ", "late again"]), seed=3)
    assert units[0] == units[1] == units[2] != units[3]


def test_class_shares_of_a_large_split_are_within_a_point_of_the_whole():
    rng = np.random.default_rng(0)
    n = 50_000
    labels = rng.choice(["negative", "neutral", "positive"], size=n, p=[0.64, 0.21, 0.15])
    raw = pd.DataFrame({"text": [f"text number {i} {w}" for i, w in enumerate(rng.integers(0, 10**9, n))],
                        "label": labels})
    result = preprocess(raw, config(cleaning={"numbers": "keep", "lexicon": "none"}))
    whole = raw["label"].value_counts(normalize=True)
    test = result.test["label"].value_counts(normalize=True)
    assert (test - whole).abs().max() < 0.01
    assert abs(len(result.test) / n - 0.2) < 0.01


def test_the_committed_default_split_is_within_a_point_of_stratified():
    data = json.loads((PROJECT_ROOT / "metrics/data.json").read_text())
    counts = data["class_counts"]
    for label, total in counts["deduplicated"].items():
        whole = total / data["rows_out"]
        assert abs(counts["test"][label] / data["test_rows"] - whole) < 0.01, label


@pytest.mark.parametrize("test_size", [0.05, 0.5, 0.95])
def test_every_label_is_on_both_sides_even_when_tiny(test_size):
    raw = pd.DataFrame({"text": list("abcdefghij"), "label": list("aaaabbbccc")})
    result = preprocess(raw, config(test_size=test_size, cleaning={"lexicon": "none"}))
    assert set(result.train["label"]) == set(result.test["label"]) == {"a", "b", "c"}
    units = split_units(raw["text"], seed=42)
    # only what the repair needed moved: any row of a label that had both sides kept its side
    for label in "abc":
        rows = raw["label"] == label
        on_test = units[rows.to_numpy()] < test_size
        if on_test.any() and not on_test.all():
            assert set(result.test["raw"]) & set(raw["text"][rows]) == set(raw["text"][rows][on_test])


def test_outputs_keep_raw_text_and_report_class_counts(airline_sample):
    result = preprocess(airline_sample, config())
    assert list(result.train.columns) == ["text", "label", "raw"]
    counts = result.report["class_counts"]
    assert sum(counts["train"].values()) == len(result.train)
    assert set(counts["test"]) == {"negative", "neutral", "positive"}
    assert counts["raw"] == {"negative": 150, "neutral": 80, "positive": 70}
    assert sum(counts["deduplicated"].values()) == result.report["rows_out"]
    lengths = result.report["text_length"]
    assert 0 < lengths["words"]["p5"] <= lengths["words"]["p50"] <= lengths["words"]["p95"] <= lengths["words"]["max"]
    assert lengths["chars"]["p50"] > lengths["words"]["p50"]
    plotted = {(row["stage"], row["label"]): row["count"] for row in result.class_distribution}
    assert plotted[("raw", "neutral")] == 80
    assert sum(c for (stage, _), c in plotted.items() if stage == "test") == len(result.test)


def test_texts_empty_after_cleaning_are_dropped():
    raw = pd.DataFrame({"text": ["@united", "http://t.co/x good", "bad", "ok", "fine", "great",
                                 "awful", "nice", "poor", "meh"],
                        "label": ["a", "b", "a", "b", "a", "b", "a", "b", "a", "b"]})
    result = preprocess(raw, config(cleaning={"urls": "remove"}, test_size=0.25))
    assert result.report["dropped"]["empty_after_cleaning"] == 1


def test_conflicting_duplicate_labels_are_counted():
    frame = pd.DataFrame({"text": ["a", "a", "b"], "raw": ["A", "a!", "b"], "label": ["x", "y", "x"]})
    kept, counts = deduplicate(frame)
    assert counts == {"exact_duplicates": 0, "normalised_duplicates": 1,
                      "duplicate_groups_with_conflicting_labels": 1}
    assert kept["label"].tolist() == ["x", "x"]


def test_texts_equal_but_for_their_lexicon_token_are_duplicates():
    frame = pd.DataFrame({"text": ["great flight _vader7_", "great flight _vader5_", "bad _vader2_"],
                          "raw": ["GREAT flight!!!", "great flight", "bad"], "label": ["x", "y", "x"]})
    kept, counts = deduplicate(frame, without_lexicon_token)
    assert counts == {"exact_duplicates": 0, "normalised_duplicates": 1,
                      "duplicate_groups_with_conflicting_labels": 1}
    assert kept["text"].tolist() == ["great flight _vader7_", "bad _vader2_"]
    assert deduplicate(frame)[1]["normalised_duplicates"] == 0  # compared whole by default


def test_label_with_a_single_row_is_a_clear_error(airline_sample):
    raw = pd.concat([airline_sample, pd.DataFrame({"text": ["lonely"], "label": ["rare"]})])
    with pytest.raises(DataError, match=r"\['rare'\] have fewer than 2 rows"):
        preprocess(raw, config())


def test_nothing_left_after_cleaning_is_a_clear_error():
    raw = pd.DataFrame({"text": ["@united", "@jetblue http://t.co/x"], "label": ["a", "b"]})
    with pytest.raises(DataError, match="preprocess.cleaning"):
        preprocess(raw, config(cleaning={"urls": "remove"}))


