from pathlib import Path

import pytest

from sentiment_pipeline.core.config import FAMILY_GRIDS, Params, load_params, load_yaml
from sentiment_pipeline.core.errors import ConfigError

from .conftest import PROJECT_ROOT


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_project_params_file_is_valid():
    params = load_params(PROJECT_ROOT / "params.yaml")
    assert params.download.source == "embedded_airline"
    assert set(params.train.families.model_dump()) == {"logreg", "naive_bayes", "random_forest", "xgboost",
                                                       "linear_svm", "sgd"}


@pytest.mark.parametrize("literal, expected", [("1e-06", 1e-06), ("1e3", 1000.0), ("-2.5E-1", -0.25),
                                               (".5", 0.5), ("3", 3)])
def test_yaml_12_numbers_load_as_numbers(tmp_path, literal, expected):
    # dvc exp run -S writes 1e-06, which YAML 1.1 (PyYAML) would read as a string.
    data = load_yaml(write(tmp_path, f"value: {literal}\nlist: [{literal}, 1]\n"))
    assert data["value"] == expected and type(data["value"]) is type(expected)
    assert data["list"][0] == expected


def test_strings_that_look_almost_numeric_stay_strings(tmp_path):
    data = load_yaml(write(tmp_path, "a: 1e\nb: e5\nc: 1.2.3\nd: sqrt\n"))
    assert data == {"a": "1e", "b": "e5", "c": "1.2.3", "d": "sqrt"}


def test_the_families_trained_are_those_the_params_file_lists(tmp_path):
    project = load_params(PROJECT_ROOT / "params.yaml").train.families
    assert project.enabled() == ("logreg", "naive_bayes", "random_forest", "xgboost", "linear_svm", "sgd")
    assert Params().train.families.enabled() == tuple(FAMILY_GRIDS)  # no section: every family
    listed = load_params(write(tmp_path, "train:\n  families:\n    random_forest: {}\n    logreg: {}\n"))
    assert listed.train.families.enabled() == ("logreg", "random_forest")
    assert listed.train.families.enabled_grid("random_forest").n_estimators == [200]  # the default grid
    with pytest.raises(ConfigError, match="train.families has no 'xgboost' section"):
        listed.train.families.enabled_grid("xgboost")


def test_ensemble_members_must_be_trained_families(tmp_path):
    path = write(tmp_path, "train:\n  families:\n    logreg: {}\n    naive_bayes: {}\n"
                           "  ensemble:\n    members: [logreg, xgboost]\n")
    params = load_params(path)  # the stages before the ensemble run as listed
    with pytest.raises(ConfigError, match=r"train.ensemble.members names \['xgboost'\], which train.families"):
        params.train.ensemble_members()
    assert load_params(PROJECT_ROOT / "params.yaml").train.ensemble_members() == [
        "linear_svm", "logreg", "naive_bayes", "random_forest", "xgboost"]


def test_exponent_floats_reach_typed_grid(tmp_path):
    path = write(tmp_path, "train:\n  families:\n    logreg:\n      C: [1e-06, 1e2]\n")
    assert load_params(path).train.families.logreg.C == [1e-06, 100.0]


def test_grid_params_are_prefixed_by_pipeline_step():
    grid = Params().train.families.random_forest.model_copy(update={"select_k": [None, 50]})
    param_grid = grid.as_param_grid()
    assert param_grid["select__k"] == ["all", 50]
    assert param_grid["clf__n_estimators"] == [200]


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("train:\n  cv_folds: 1\n", "train.cv_folds"),
        ("train:\n  families:\n    logreg:\n      C: []\n", "train.families.logreg.C"),
        ("train:\n  families:\n    logreg:\n      C: [-1]\n", "train.families.logreg.C.0"),
        ("train:\n  familes: {}\n", "train.familes"),
        ("featurize:\n  word_ngram_range: [3, 1]\n", "featurize.word_ngram_range"),
        ("download:\n  source: file\n", "download.path is required"),
        ("preprocess:\n  stopwords:\n    enabled: true\n    source: list\n", "preprocess.stopwords.words"),
    ],
)
def test_invalid_params_name_the_key(tmp_path, text, fragment):
    with pytest.raises(ConfigError) as info:
        load_params(write(tmp_path, text))
    assert fragment in str(info.value)
    assert str(tmp_path / "params.yaml") in str(info.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(write(tmp_path, "train: [unclosed\n"))
    with pytest.raises(ConfigError, match="mapping"):
        load_params(write(tmp_path, "- a\n- b\n"))


@pytest.mark.parametrize("text, fragment", [
    ("train:\n  n_jobs: 0\n", "train.n_jobs"),
    ("download:\n  text_column: []\n", "download.text_column"),
])
def test_values_that_would_fail_later_are_refused_up_front(tmp_path, text, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_params(write(tmp_path, text))


def test_serve_settings_take_the_environment_over_params_yaml_over_the_defaults(tmp_path, monkeypatch):
    from sentiment_pipeline.core.config import serve_settings

    (tmp_path / "params.yaml").write_text("serve:\n  port: 9100\n  workers: 2\n")
    monkeypatch.setenv("SENTIMENT_SERVE_WORKERS", "3")
    monkeypatch.setenv("SENTIMENT_SERVE_PROJECT", "/elsewhere")  # not a setting: ignored
    params, settings = serve_settings(tmp_path)
    assert (settings.port, settings.workers, settings.host) == (9100, 3, "127.0.0.1")
    assert params.serve.workers == 2  # params.yaml as written
    _, defaults = serve_settings(tmp_path / "no-project")  # no params.yaml: the defaults
    assert defaults.port == 8000 and defaults.workers == 3


def test_a_bad_serve_variable_is_named(tmp_path, monkeypatch):
    from sentiment_pipeline.core.config import serve_settings

    monkeypatch.setenv("SENTIMENT_SERVE_PORT", "eighty")
    with pytest.raises(ConfigError, match=r"SENTIMENT_SERVE_PORT='eighty': .*integer"):
        serve_settings(tmp_path)


def test_serve_variables_match_case_insensitively_as_pydantic_settings_does(tmp_path, monkeypatch):
    from sentiment_pipeline.core.config import serve_settings

    monkeypatch.setenv("sentiment_serve_port", "9001")
    assert serve_settings(tmp_path)[1].port == 9001
