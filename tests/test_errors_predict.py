"""``predict`` on bad input and unwritable outputs: one line naming the file and what was
expected, no traceback, and no output file (nor a half-written one) from a failed run. Fast
tier: the small in-process model, and a few real CLI calls where the message and exit code
matter."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from sentiment_pipeline.core.errors import DataError
from sentiment_pipeline.serving.batch import predict_file

from .small_project import write_project

TEXTS = ["@united the flight was great, thanks!", "lost my bag AGAIN", "what time is boarding?"]
OUTPUT_COLUMNS = ["label", "confidence", "p_negative", "p_neutral", "p_positive"]
INPUTS = ["csv", "tsv", "jsonl", "csv.gz", "tsv.gz", "jsonl.gz", "parquet"]
OUTPUTS = ["csv", "tsv", "jsonl", "csv.gz", "jsonl.gz", "parquet"]


def as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def unwritable_directory(tmp_path: Path) -> Path:
    """A directory this process cannot create files in: a read-only one, or for root (whom
    permissions do not stop) sysfs, where nobody can."""
    if as_root():
        return Path("/sys")
    directory = tmp_path / "read-only"
    directory.mkdir()
    directory.chmod(0o555)
    return directory


def write_texts(path: Path, texts: list[str], header: bool = True) -> Path:
    """``texts`` in the format ``path``'s suffixes name (a ``text`` column)."""
    frame = pd.DataFrame({"text": pd.Series(texts, dtype=object)})
    name = path.name.removesuffix(".gz")
    if name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
        return path
    if name.endswith(".jsonl"):
        body = frame.to_json(orient="records", lines=True) if texts else ""
    else:
        body = frame.to_csv(sep="\t" if name.endswith(".tsv") else ",", index=False, header=header)
    data = body.encode()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def read_output(path: Path) -> pd.DataFrame:
    name = path.name.removesuffix(".gz")
    if name.endswith(".parquet"):
        return pd.read_parquet(path)
    if name.endswith(".jsonl"):
        data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
        return pd.read_json(path, lines=True) if data else pd.DataFrame()
    return pd.read_csv(path, sep="\t" if name.endswith(".tsv") else ",")


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".out"))


# ------------------------------------------------------------------ inputs
@pytest.mark.parametrize("suffix", INPUTS)
def test_header_only_input_gives_a_valid_empty_output_in_every_format(small_predictor, tmp_path, suffix):
    source = write_texts(tmp_path / f"in.{suffix}", [])
    for out_suffix in OUTPUTS:
        target = tmp_path / f"out.{out_suffix}"
        summary = predict_file(small_predictor, source, target)
        assert summary.rows_in == summary.rows_out == 0
        frame = read_output(target)
        assert len(frame) == 0
        if not out_suffix.startswith("jsonl"):  # JSON Lines have no header: an empty file
            assert list(frame.columns) == OUTPUT_COLUMNS, (suffix, out_suffix)
        if out_suffix in ("csv", "tsv"):
            assert target.read_text().count("\n") == 1  # the header, once


@pytest.mark.parametrize("suffix", ["csv", "tsv", "csv.gz"])
def test_a_header_without_the_text_column_is_named_even_without_rows(small_predictor, tmp_path, suffix):
    source = tmp_path / f"in.{suffix}"
    body = b"body\n"
    source.write_bytes(gzip.compress(body) if suffix.endswith(".gz") else body)
    with pytest.raises(DataError, match=r"in\.(csv|tsv)(\.gz)?: no column\(s\) \['text'\]"):
        predict_file(small_predictor, source, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("suffix, expected", [
    ("csv", "empty; a csv file starts with a header line naming its columns"),
    ("tsv", "empty; a tsv file starts with a header line naming its columns"),
    ("csv.gz", "empty; a csv file starts with a header line naming its columns"),
    ("parquet", "cannot be read as parquet"),
])
def test_an_empty_file_is_named(small_predictor, tmp_path, suffix, expected):
    source = tmp_path / f"in.{suffix}"
    source.write_bytes(gzip.compress(b"") if suffix.endswith(".gz") else b"")
    with pytest.raises(DataError, match=f"in.{suffix}: {expected}"):
        predict_file(small_predictor, source, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists() and not leftovers(tmp_path)


@pytest.mark.parametrize("suffix", ["jsonl", "jsonl.gz"])
def test_an_empty_jsonl_file_is_an_empty_input(small_predictor, tmp_path, suffix):
    source = tmp_path / f"in.{suffix}"
    source.write_bytes(gzip.compress(b"") if suffix.endswith(".gz") else b"")
    assert predict_file(small_predictor, source, tmp_path / "out.csv").rows_in == 0
    assert list(pd.read_csv(tmp_path / "out.csv").columns) == OUTPUT_COLUMNS


@pytest.mark.parametrize("suffix", ["csv.gz", "tsv.gz", "jsonl.gz"])
def test_a_truncated_gzip_is_named_and_leaves_no_output(small_predictor, tmp_path, suffix):
    full = write_texts(tmp_path / f"full.{suffix}", [f"{t} {i}" for i in range(3000) for t in TEXTS])
    data = full.read_bytes()
    source = tmp_path / f"in.{suffix}"
    source.write_bytes(data[: len(data) // 2])
    target = tmp_path / "out.csv"
    target.write_text("an earlier run's predictions\n")
    with pytest.raises(DataError, match=rf"in\.{suffix.split('.')[0]}\.gz: cannot be read as "
                                        rf"{suffix.split('.')[0]} \(gzip\): the compressed data ends early"):
        predict_file(small_predictor, source, target, chunk_rows=1000)
    assert target.read_text() == "an earlier run's predictions\n"  # untouched, not half-replaced
    assert not leftovers(tmp_path)


def test_corrupt_gzip_data_is_named(small_predictor, tmp_path):
    data = bytearray(gzip.compress(("text\n" + "some text here\n" * 2000).encode()))
    data[40:60] = b"\xff" * 20
    source = tmp_path / "in.csv.gz"
    source.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"in\.csv\.gz: cannot be read as csv \(gzip\)"):
        predict_file(small_predictor, source, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("suffix", ["csv", "jsonl", "parquet"])
def test_a_directory_as_input_is_named(small_predictor, tmp_path, suffix):
    (tmp_path / f"in.{suffix}").mkdir()
    with pytest.raises(DataError, match=rf"in\.{suffix}: is a directory; expected a {suffix} file"):
        predict_file(small_predictor, tmp_path / f"in.{suffix}", tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("body, expected", [
    (b'{"text": "fine"}\n{"text": "cut off', "cannot be read as jsonl"),
    (b"[1, 2]\n", r"no column\(s\) \['text'\]"),
    (b"\xff\xfe not text\n", "cannot be read as jsonl"),
])
def test_malformed_json_lines_are_named(small_predictor, tmp_path, body, expected):
    source = tmp_path / "in.jsonl"
    source.write_bytes(body)
    with pytest.raises(DataError, match=rf"in\.jsonl: {expected}") as raised:
        predict_file(small_predictor, source, tmp_path / "out.csv")
    assert "\n" not in str(raised.value)
    assert not (tmp_path / "out.csv").exists()


def test_parquet_output_when_the_first_chunk_is_all_skipped(small_predictor, tmp_path):
    """An empty first chunk must not fix the file's schema (null-typed columns), or the next
    chunk's rows do not fit it."""
    source = tmp_path / "in.csv"
    source.write_text('id,text\n1,""\n2,great crew\n3,lost my bag\n')
    target = tmp_path / "out.parquet"
    summary = predict_file(small_predictor, source, target, id_columns=["id"], on_bad_row="skip", chunk_rows=1)
    assert summary.bad_rows == [1] and summary.rows_out == 2
    assert pd.read_parquet(target)["id"].tolist() == ["2", "3"]


# ------------------------------------------------------------------ outputs
def test_an_unwritable_output_directory_is_named(small_predictor, tmp_path):
    source = write_texts(tmp_path / "in.csv", TEXTS)
    target = unwritable_directory(tmp_path) / "out.csv"
    with pytest.raises(DataError, match=rf"{target}: cannot write the predictions: "):
        predict_file(small_predictor, source, target)
    assert not target.exists()


def test_an_output_under_a_file_is_named(small_predictor, tmp_path):
    source = write_texts(tmp_path / "in.csv", TEXTS)
    with pytest.raises(DataError, match=r"in\.csv/out\.csv: cannot write the predictions: .*in\.csv is not a directory"):
        predict_file(small_predictor, source, source / "out.csv")
    assert pd.read_csv(source)["text"].tolist() == TEXTS


def test_an_output_that_is_a_directory_is_refused_and_kept(small_predictor, tmp_path):
    source = write_texts(tmp_path / "in.csv", TEXTS)
    (tmp_path / "out.csv").mkdir()
    (tmp_path / "out.csv" / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match=r"out\.csv: is a directory; expected a file name for the predictions"):
        predict_file(small_predictor, source, tmp_path / "out.csv")
    assert (tmp_path / "out.csv" / "keep.txt").read_text() == "mine"


def test_the_input_as_output_is_refused(small_predictor, tmp_path):
    source = write_texts(tmp_path / "in.csv", TEXTS)
    with pytest.raises(DataError, match=r"in\.csv: is the input file; write the predictions to another file"):
        predict_file(small_predictor, source, tmp_path / "." / "in.csv")
    assert pd.read_csv(source)["text"].tolist() == TEXTS


def test_missing_output_directories_are_created_and_removed_again_on_failure(small_predictor, tmp_path):
    source = write_texts(tmp_path / "in.csv", TEXTS)
    predict_file(small_predictor, source, tmp_path / "new" / "deeper" / "out.csv")
    assert len(pd.read_csv(tmp_path / "new" / "deeper" / "out.csv")) == 3
    (tmp_path / "bad.csv").write_text("body\nx\n")
    with pytest.raises(DataError, match="no column"):
        predict_file(small_predictor, tmp_path / "bad.csv", tmp_path / "other" / "deeper" / "out.csv")
    assert not (tmp_path / "other").exists()


# ------------------------------------------------------------------ the command line
@pytest.fixture(scope="module")
def project(small_predictor, tmp_path_factory) -> Path:
    return write_project(tmp_path_factory.mktemp("project"), small_predictor)


def run_predict(project: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sentiment_pipeline", "predict", *args, "--project", str(project)],
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one line a failed command printed: the last, after any log lines of what ran before."""
    lines = result.stderr.splitlines()
    assert [line for line in lines if line.startswith("error: ")] == lines[-1:], result.stderr
    assert "Traceback" not in result.stderr
    return lines[-1]


def test_cli_truncated_gzip_is_one_line_not_aborted(project, tmp_path):
    data = gzip.compress(("text\n" + "a lovely flight\n" * 5000).encode())
    (tmp_path / "in.csv.gz").write_bytes(data[: len(data) // 2])
    result = run_predict(project, tmp_path, "in.csv.gz", "out.csv")
    assert result.returncode == 1
    assert error_line(result).startswith("error: in.csv.gz: cannot be read as csv (gzip): the compressed data ends early")
    assert "Aborted" not in result.stderr and not (tmp_path / "out.csv").exists() and not leftovers(tmp_path)


def test_cli_unwritable_output_is_one_line(project, tmp_path):
    write_texts(tmp_path / "in.csv", TEXTS)
    target = unwritable_directory(tmp_path) / "out.csv"
    result = run_predict(project, tmp_path, "in.csv", str(target))
    assert result.returncode == 1
    assert error_line(result).startswith(f"error: {target}: cannot write the predictions: ")
    assert "Traceback" not in result.stderr
