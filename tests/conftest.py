from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sentiment_pipeline.core.config import CleaningConfig, StopwordsConfig

FIXTURES = Path(__file__).parent / "fixtures"
PROJECT_ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="session")
def airline_sample() -> pd.DataFrame:
    """300 real airline tweets (150 negative, 80 neutral, 70 positive) from the embedded corpus."""
    return pd.read_csv(FIXTURES / "airline_sample.csv", dtype=str, keep_default_na=False)


@pytest.fixture()
def no_stopwords() -> StopwordsConfig:
    return StopwordsConfig(enabled=False)


@pytest.fixture()
def cleaning() -> CleaningConfig:
    return CleaningConfig()


@pytest.fixture(scope="session")
def separable_texts() -> pd.DataFrame:
    """A small three-class corpus where each class has its own vocabulary plus shared noise."""
    rng = np.random.default_rng(0)
    vocab = {
        "negative": ["awful", "delayed", "lost", "rude", "worst", "cancelled"],
        "neutral": ["flight", "gate", "schedule", "question", "ticket", "route"],
        "positive": ["great", "thanks", "love", "amazing", "friendly", "best"],
    }
    shared = ["the", "plane", "today", "crew", "seat", "bag"]
    rows = []
    for label, n in (("negative", 60), ("neutral", 30), ("positive", 24)):
        for i in range(n):
            words = list(rng.choice(vocab[label], 3)) + list(rng.choice(shared, 3)) + [f"w{i}"]
            rows.append({"text": " ".join(words), "label": label})
    return pd.DataFrame(rows).sample(frac=1, random_state=0).reset_index(drop=True)


# A stand-in for NLTK's English list (a subset of it, negations included), for machines
# without ../shared/nltk_data: NLTK's downloader needs a server tests must not depend on.
_ENGLISH_STOPWORDS = """i me my we our you your he him his she her it its they them their what which
who this that these those am is are was were be been being have has had do does did a an the
and but if or because as until while of at by for with about against between into through
during before after above below to from up down in out on off over under again further then
once here there when where why how all any both each few more most other some such no nor not
only own same so than too very s t can will just don don't should now didn didn't doesn
doesn't isn isn't wasn wasn't weren weren't won won't wouldn wouldn't couldn couldn't"""


def _nltk_zip_corpus(root: Path) -> Path:
    """``root/corpora/stopwords.zip`` laid out as NLTK's downloader writes it."""
    archive = root / "corpora" / "stopwords.zip"
    archive.parent.mkdir(parents=True)
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("stopwords/", "")
        zipped.writestr("stopwords/english", "\n".join(_ENGLISH_STOPWORDS.split()) + "\n")
    return root


@pytest.fixture(scope="session")
def nltk_data_dir(tmp_path_factory) -> Path:
    """A directory NLTK reads its stopword corpus from: CI's shared copy when it is beside the
    checkout, else one generated in NLTK's zip layout, so NLTK's real reader runs everywhere."""
    shared = PROJECT_ROOT.parent / "shared" / "nltk_data"
    if (shared / "corpora" / "stopwords.zip").is_file():
        return shared
    return _nltk_zip_corpus(tmp_path_factory.mktemp("nltk_data"))


@pytest.fixture()
def nltk_stopwords(monkeypatch, nltk_data_dir) -> Path:
    """Point NLTK at :func:`nltk_data_dir` only (not at the user's or the system's copies)."""
    import nltk

    monkeypatch.setattr(nltk.data, "path", [str(nltk_data_dir)])
    monkeypatch.setenv("NLTK_DATA", str(nltk_data_dir))
    return nltk_data_dir


@pytest.fixture(scope="session")
def served_project(tmp_path_factory) -> Path:
    """The real pipeline run on the committed fixture: a model to serve (read-only). The run is
    made once for all pytest processes (pipeline_cache.py); this one has its own copy."""
    from .pipeline_cache import pipeline_run

    return pipeline_run(tmp_path_factory.mktemp("served"))[0].root


@pytest.fixture(scope="session")
def small_predictor(airline_sample):
    """A small model fitted in-process (no ``dvc repro``): TF-IDF and the calibrated SVM on the
    300 fixture tweets, served through the compiled path like the pipeline's own model."""
    from sklearn.feature_selection import SelectKBest, chi2
    from sklearn.pipeline import Pipeline

    from sentiment_pipeline.core.config import FeaturizeConfig
    from sentiment_pipeline.inference.predictor import Predictor
    from sentiment_pipeline.pipeline.features import build_vectorizer
    from sentiment_pipeline.pipeline.models import CalibratedLinearSVC
    from sentiment_pipeline.pipeline.text import TextNormalizer

    normalizer = TextNormalizer(CleaningConfig(), frozenset())
    classes = sorted(set(airline_sample["label"]))
    vectorizer = build_vectorizer(FeaturizeConfig(min_df=1))
    X = vectorizer.fit_transform([normalizer(t) for t in airline_sample["text"]])
    y = np.array([classes.index(label) for label in airline_sample["label"]])
    select = SelectKBest(chi2, k="all").fit(X, y)
    model = Pipeline([("tfidf", vectorizer), ("select", select),
                      ("clf", CalibratedLinearSVC(random_state=0).fit(select.transform(X), y))])
    metadata = {"version": "small0000000", "family": "linear_svm", "params": {"C": 1.0}, "resampling": {},
                "classes": classes, "cv": {}, "test": {}, "training_data_md5": None, "git_revision": None}
    predictor = Predictor(model, normalizer, classes, metadata)
    assert predictor.compiled is not None
    return predictor


# e2e modules whose tests time a server, load it or drive a browser: `make test` runs them alone
# on the machine (marker `serial`), the other e2e tests (pipeline runs, DVC, PostgreSQL, files) on
# two xdist workers, a file per worker (its module fixtures, often a pipeline run, built once).
SERIAL_E2E_MODULES = frozenset({
    "test_deployment", "test_explain_e2e", "test_log_durability", "test_monitoring_e2e", "test_prediction_log",
    "test_reload", "test_review_e2e", "test_serving_api", "test_serving_overload",
})


# The order the two workers take the other e2e files in (`make test` keeps it: --dist loadfile
# --no-loadscope-reorder; xdist would otherwise put the files with the most tests first): a worker
# takes the next file as it runs out of tests, so the longest go first and the shortest last,
# and neither worker is left running a long file alone at the end. The first file waits for the
# session's pipeline run (pipeline_cache.py) or builds it: the second needs none, so the other
# worker is not idle meanwhile. Files in neither list go between the two, in file order.
E2E_FIRST = ("test_e2e", "test_report_curves", "test_train_dask", "test_remote", "test_feedback_retrain_e2e",
             "test_e2e_rerun", "test_dvc_cache", "test_report", "test_serving_batch")
E2E_LAST = ("test_workflow_experiment", "test_notebook", "test_errors_predlog", "test_monitoring_log")


def _module(item: pytest.Item) -> str:
    return item.module.__name__.rsplit(".", 1)[-1]


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("e2e") and _module(item) in SERIAL_E2E_MODULES:
            item.add_marker(pytest.mark.serial)
    rank = {name: i - len(E2E_FIRST) for i, name in enumerate(E2E_FIRST)} | {name: i + 1 for i, name in enumerate(E2E_LAST)}

    def order(item: pytest.Item) -> int:
        parallel_e2e = item.get_closest_marker("e2e") and not item.get_closest_marker("serial")
        return rank.get(_module(item), 0) if parallel_e2e else 0

    items.sort(key=order)  # stable: the fast tier's and the serial tier's order is the file order
