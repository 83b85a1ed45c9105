"""Tiny and degenerate inputs through the stage entry points: one line naming the problem, no
traceback, nothing written by the stage that refuses."""

import string
import subprocess
import sys

import pytest
import yaml

WORDS = [a + b for a in string.ascii_lowercase for b in string.ascii_lowercase]


def rows(template: str, label: str, n: int) -> str:
    return "".join(f"{template.format(WORDS[i])},{label}\n" for i in range(n))


CASES = {
    # name: (csv body, stage that must refuse, fragments of its message)
    "one class": (rows("good day {}", "positive", 20), "download",
                  ["data/external/r.csv", "every row has the label 'positive'", "two classes"]),
    "one class left after deduplication": (
        rows("good day {}", "positive", 20) + rows("Good day {}!", "negative", 6).replace("!", ""),
        "preprocess", ["only the label 'positive' is left", "duplicates"]),
    "a class cleaned to nothing": (
        rows("good day {}", "positive", 20) + rows("@user_{} @other", "negative", 6),
        "preprocess", ["only the label 'positive' is left", "cleaned to nothing"]),
    "a class reduced to one text": (
        rows("good day {}", "positive", 20) + rows("@user_{} http://t.co/x", "negative", 6),
        "preprocess", ["label(s) ['negative'] have fewer than 2 rows after deduplication"]),
    "two rows": ("good,positive\nbad,negative\n", "download",
                 ["'positive' has 1 rows", "train.cv_folds=2"]),
    "every text cleaned to nothing": (rows("@user_{}", "positive", 10) + rows("@crew_{} ...", "negative", 10),
                                      "preprocess", ["no text is left after cleaning all 20 rows"]),
}
STAGES = ["download", "preprocess", "featurize", "train --family logreg"]
OUTPUTS = {"download": "data/raw", "preprocess": "data/processed", "featurize": "data/features"}


def stage(cwd, name: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sentiment_pipeline", *name.split()], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def project(tmp_path, body: str):
    (tmp_path / "data/external").mkdir(parents=True)
    (tmp_path / "data/external/r.csv").write_text("text,label\n" + body)
    params = {"download": {"source": "file", "path": "data/external/r.csv", "min_rows": 2},
              "train": {"cv_folds": 2, "families": {"logreg": {"C": [1.0]}}},
              "featurize": {"min_df": 1}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


@pytest.mark.parametrize("case", sorted(CASES))
def test_degenerate_input_is_refused_by_the_first_stage_that_can_tell(tmp_path, case):
    body, refusing, fragments = CASES[case]
    root = project(tmp_path, body)
    for name in STAGES:
        result = stage(root, name)
        if name != refusing:
            assert result.returncode == 0, f"{name} failed before {refusing}:\n{result.stderr}"
            continue
        assert result.returncode == 1
        assert "Traceback" not in result.stderr and result.stderr.startswith("error: ")
        for fragment in fragments:
            assert fragment in result.stderr, result.stderr
        assert not (root / OUTPUTS[refusing]).exists()
        return
    pytest.fail(f"no stage refused {case!r}")


def test_tiny_two_class_input_trains(tmp_path):
    root = project(tmp_path, rows("good day {}", "positive", 6) + rows("bad day {}", "negative", 6))
    for name in STAGES:
        result = stage(root, name)
        assert result.returncode == 0, f"{name}:\n{result.stderr}"
    assert (root / "metrics/cv/logreg.json").is_file()


@pytest.mark.parametrize("name, missing, producer", [
    ("preprocess", "data/raw/reviews.csv", "download"),
    ("featurize", "data/processed/train.csv", "preprocess"),
    ("train --family logreg", "data/features/X_train.npz", "featurize"),
    ("select", "metrics/cv/logreg.json", "train"),
    ("evaluate", "models/final/model.joblib", "select"),
])
def test_a_stage_run_before_its_inputs_exist_names_the_stage_to_run(tmp_path, name, missing, producer):
    (tmp_path / "params.yaml").write_text("{}\n")
    result = stage(tmp_path, name)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"error: {missing}: not found; the '{producer}' stage writes it" in result.stderr
