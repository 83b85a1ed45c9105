import json

import pandas as pd
import pytest

from sentiment_pipeline.core.config import DownloadConfig
from sentiment_pipeline.core.errors import DataError
from sentiment_pipeline.pipeline.data import drop_dirty_rows, load_embedded, load_source


def test_embedded_airline_subset_is_the_us_airline_set():
    frame = load_embedded(airline_only=True)
    assert len(frame) == 14638
    assert list(frame.columns) == ["text", "label"]
    assert frame["label"].value_counts().to_dict() == {"negative": 9176, "neutral": 3099, "positive": 2363}


def test_embedded_full_corpus():
    frame = load_source(DownloadConfig(source="embedded_all"))
    assert len(frame) == 38158
    assert set(frame["label"]) == {"negative", "neutral", "positive"}


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet"])
def test_local_file_formats_with_custom_columns(tmp_path, fmt):
    frame = pd.DataFrame({"review": ["good", "bad, really", "meh"], "stars": ["pos", "neg", "neu"],
                          "extra": [1, 2, 3]})
    path = tmp_path / f"reviews.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in frame.to_dict("records")))
    else:
        frame.to_parquet(path)
    config = DownloadConfig(source="file", path=path, text_column="review", label_column="stars")
    loaded = load_source(config)
    assert loaded.to_dict("list") == {"text": ["good", "bad, really", "meh"], "label": ["pos", "neg", "neu"]}


def test_missing_column_names_file_and_columns(tmp_path):
    path = tmp_path / "r.csv"
    pd.DataFrame({"body": ["x"], "label": ["a"]}).to_csv(path, index=False)
    with pytest.raises(DataError) as info:
        load_source(DownloadConfig(source="file", path=path))
    message = str(info.value)
    assert str(path) in message and "['text']" in message and "['body', 'label']" in message


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(DataError, match="input file not found"):
        load_source(DownloadConfig(source="file", path=tmp_path / "absent.csv"))
    odd = tmp_path / "data.xlsx"
    odd.write_text("x")
    with pytest.raises(DataError, match="download.format"):
        load_source(DownloadConfig(source="file", path=odd))


def test_empty_label_names_the_row_while_blank_text_is_left_to_the_dirty_row_filter(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("text,label\nfine,pos\n,neg\nok,\n")
    with pytest.raises(DataError) as info:
        load_source(DownloadConfig(source="file", path=path))
    assert "'label'" in str(info.value) and "row(s) 3" in str(info.value)
    path.write_text("text,label\nfine,pos\n  ,neg\nok,neg\nfine,pos\n")
    frame, dropped = drop_dirty_rows(load_source(DownloadConfig(source="file", path=path)))
    assert dropped == {"blank_text": 1, "exact_duplicates": 1}
    assert frame["text"].tolist() == ["fine", "ok"]


def test_undecodable_bytes_name_the_encoding(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes("text,label\ncaf\xe9,pos\n".encode("latin-1"))
    with pytest.raises(DataError, match="not valid utf-8"):
        load_source(DownloadConfig(source="file", path=path))
    loaded = load_source(DownloadConfig(source="file", path=path, encoding="latin-1"))
    assert loaded["text"][0] == "café"


def test_empty_file(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("text,label\n")
    with pytest.raises(DataError, match="no rows"):
        load_source(DownloadConfig(source="file", path=path))


def test_allowed_labels_apply_to_the_embedded_corpus_too():
    with pytest.raises(DataError, match=r"\['neutral'\]"):
        load_source(DownloadConfig(source="embedded_airline", labels=["negative", "positive"]))


def test_unknown_encoding_is_named(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("text,label\na,b\n")
    with pytest.raises(DataError, match="unknown encoding 'utf9'"):
        load_source(DownloadConfig(source="file", path=path, encoding="utf9"))
