"""Bad input: each case names the file, column, rows and what was expected; nothing is written."""

import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sentiment_pipeline.core.config import CleaningConfig, DownloadConfig
from sentiment_pipeline.core.errors import DataError
from sentiment_pipeline.pipeline.data import load_source
from sentiment_pipeline.pipeline.text import TextNormalizer

GOOD_ROWS = "".join(f"nice day {i},positive\nbad day {i},negative\n" for i in range(10))


def write_params(tmp_path, path, **download):
    params = {"download": {"source": "file", "path": str(path), **download},
              "train": {"cv_folds": 3}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))


def run_download(tmp_path):
    return subprocess.run([sys.executable, "-m", "sentiment_pipeline", "download"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


BAD_INPUTS = {
    # name: (file name, bytes, download params, fragments the message must hold)
    "missing file": ("absent.csv", None, {}, ["absent.csv", "not found"]),
    "misnamed column": ("r.csv", b"review,label\nx,positive\n", {},
                        ["r.csv", "['text']", "['review', 'label']"]),
    "empty file": ("r.csv", b"", {}, ["r.csv", "empty"]),
    "header only": ("r.csv", b"text,label\n", {}, ["r.csv", "no rows"]),
    "null text": ("r.jsonl", b'{"text": "ok", "label": "positive"}\n{"text": null, "label": "negative"}\n',
                  {}, ["r.jsonl", "'text'", "row(s) 2", "missing"]),
    "non-string text": ("r.jsonl", b'{"text": "ok", "label": "positive"}\n{"text": 42, "label": "negative"}\n',
                        {}, ["r.jsonl", "'text'", "row(s) 2", "not text"]),
    "label outside the set": ("r.csv", ("text,label\n" + GOOD_ROWS + "meh,neutral\nhm,Positive\n").encode(),
                              {"labels": ["negative", "positive"]},
                              ["r.csv", "'label'", "row(s) 21, 22", "['negative', 'positive']", "'neutral'"]),
    "class smaller than the CV folds": ("r.csv", ("text,label\n" + GOOD_ROWS + "meh,neutral\nso so,neutral\n").encode(),
                                        {}, ["r.csv", "'neutral' has 2 rows", "train.cv_folds=3"]),
    "too few rows": ("r.csv", b"text,label\na,x\nb,y\nc,x\nd,y\n", {"min_rows": 10},
                     ["r.csv", "4 rows", "download.min_rows=10"]),
    "undecodable bytes": ("r.csv", b"text,label\ncaf\xe9 ok,positive\n", {},
                          ["r.csv", "line 2", "utf-8", "download.encoding"]),
    "malformed jsonl": ("r.jsonl", b'{"text": "ok", "label": "positive"}\n{"text": "unterminated\n', {},
                        ["r.jsonl", "jsonl"]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_refused_with_a_precise_message(tmp_path, case):
    name, content, params, fragments = BAD_INPUTS[case]
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    write_params(tmp_path, path, **params)
    result = run_download(tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)
    assert not (tmp_path / "data").exists()


def test_dirty_rows_are_dropped_counted_and_reported(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("text,label\n" + GOOD_ROWS + "   ,positive\n,negative\n" + "nice day 0,positive\n")
    write_params(tmp_path, path)
    result = run_download(tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "metrics/download.json").read_text())
    assert report["rows_in"] == 23 and report["rows_out"] == 20
    assert report["dropped"] == {"blank_text": 2, "exact_duplicates": 1}
    assert "blank_text" in result.stderr
    assert len(pd.read_csv(tmp_path / "data/raw/reviews.csv")) == 20


# ------------------------------------------------------------------ property-based
@settings(max_examples=300, deadline=None)
@given(st.text())
def test_normaliser_never_crashes_and_returns_single_spaced_words(text):
    normalise = TextNormalizer(CleaningConfig())
    once = normalise(text)
    assert isinstance(once, str)
    assert once == " ".join(once.split())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_loader_raises_only_the_documented_error(tmp_path, content):
    path = tmp_path / "r.csv"
    path.write_bytes(b"text,label\n" + content)
    try:
        frame = load_source(DownloadConfig(source="file", path=path))
    except DataError:
        return
    assert list(frame.columns) == ["text", "label"]
    assert frame["text"].map(type).eq(str).all()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.dictionaries(st.sampled_from(["text", "label", "x"]),
                                st.none() | st.integers() | st.text(max_size=20) | st.lists(st.integers())),
                max_size=8))
def test_jsonl_rows_of_any_shape_raise_only_the_documented_error(tmp_path, rows):
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    try:
        load_source(DownloadConfig(source="file", path=path))
    except DataError:
        pass
