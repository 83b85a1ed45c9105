import pandas as pd
import pytest

from sentiment_pipeline.config import PreprocessConfig
from sentiment_pipeline.errors import DataError
from sentiment_pipeline.preprocess import deduplicate, preprocess
from sentiment_pipeline.text import without_lexicon_token


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


def test_split_is_stratified_and_seeded(airline_sample):
    first = preprocess(airline_sample, config(test_size=0.2, seed=1))
    again = preprocess(airline_sample, config(test_size=0.2, seed=1))
    other = preprocess(airline_sample, config(test_size=0.2, seed=2))
    pd.testing.assert_frame_equal(first.train, again.train)
    assert not first.test["text"].equals(other.test["text"])
    train_share = first.train["label"].value_counts(normalize=True)
    test_share = first.test["label"].value_counts(normalize=True)
    assert (train_share - test_share).abs().max() < 0.03


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


def test_split_size_check_matches_scikit_learn():
    raw = pd.DataFrame({"text": list("abcdefghij"), "label": list("aaaabbbccc")})
    result = preprocess(raw, config(test_size=0.25))
    assert (len(result.train), len(result.test)) == (7, 3)
    with pytest.raises(DataError, match="test_size=0.71"):
        preprocess(raw, config(test_size=0.71))
