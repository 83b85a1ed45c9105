"""The review queue on the pipeline's real ensemble (the session's ``served_project``): the
``disagreement`` policy against each member's own vote, the two commands of the Label Studio
round trip as a user runs them, and the dashboard's "To review" panel in headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
from sqlalchemy import insert, select

from sentiment_pipeline.inference.predictor import Predictor
from sentiment_pipeline.predlog.prediction_log import connect
from sentiment_pipeline.predlog.review import review_queue
from sentiment_pipeline.predlog.schema import feedback, predictions

from .test_monitoring_e2e import airline_tweets, browser  # noqa: F401 (browser: a fixture)
from .test_serving_overload import serving

pytestmark = pytest.mark.e2e

TEXTS = 200
T0 = datetime(2026, 12, 7, 8, tzinfo=UTC)


@pytest.fixture(scope="module")
def ensemble(served_project) -> Predictor:
    predictor = Predictor.load(served_project)
    if predictor.metadata.get("family") != "ensemble":  # the fixture's selection: ensemble by CV
        pytest.fail(f"the fixture pipeline selected {predictor.metadata.get('family')}, not the ensemble")
    return predictor


@pytest.fixture(scope="module")
def project(served_project, ensemble, tmp_path_factory) -> Path:
    """A copy of the served model's project with a log of ``TEXTS`` unseen tweets it predicted."""
    root = tmp_path_factory.mktemp("review")
    for name in ("dvc.lock", "params.yaml"):
        shutil.copy(served_project / name, root / name)
    shutil.copytree(served_project / "models/final", root / "models/final")
    texts = airline_tweets(TEXTS)["text"].tolist()
    result = ensemble.predict(texts)
    rows = [{"created_at": T0 + timedelta(seconds=i), "prediction_id": f"{i:032x}",
             "request_id": "r", "text": text, "text_sha256": "0" * 64, "cleaned_length": 1,
             "label": result.labels[i], "confidence": float(result.confidence[i]),
             "probabilities": dict(zip(ensemble.classes, result.probabilities[i].tolist(), strict=True)),
             "model_version": ensemble.version, "latency_ms": 1.0, "key_id": None} for i, text in enumerate(texts)]
    engine = connect(f"sqlite:///{root / 'logs/predictions.db'}")
    with engine.begin() as connection:
        connection.execute(insert(predictions), rows)
    engine.dispose()
    return root


def test_disagreement_on_the_real_ensemble_matches_each_members_own_vote(project, ensemble):
    engine = connect(f"sqlite:///{project / 'logs/predictions.db'}", create=False, read_only=True)
    queue = review_queue(engine, "disagreement", TEXTS, TEXTS, ensemble)
    with engine.connect() as connection:
        texts = [row.text for row in connection.execute(select(predictions.c.text).order_by(predictions.c.id))]
    engine.dispose()
    model = ensemble.model
    features = model[:-1].transform(ensemble.clean(texts))
    own = np.array([np.argmax(m.predict_proba(features), axis=1) for m in model[-1].members_])
    split = {texts[j]: own[:, j] for j in range(len(texts)) if len(set(own[:, j])) > 1}
    assert split, "the members agree on every tweet"
    assert {item.text for item in queue.items} == set(split)
    names = ensemble.metadata["params"]["members"]
    for item in queue.items:
        assert item.member_labels == {n: ensemble.classes[v] for n, v in zip(names, split[item.text], strict=True)}


def _cli(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sentiment_pipeline", *args, "--project", str(project)],
                          cwd=project, capture_output=True, text=True, timeout=300)


def test_export_review_then_import_labels_as_a_user_runs_them(project, ensemble, tmp_path):
    done = _cli(project, "export-review", str(tmp_path / "review.json"), "--policy", "disagreement",
                "--limit", "5", "--config-output", str(tmp_path / "labeling.xml"))
    assert done.returncode == 0, done.stderr
    tasks = json.loads((tmp_path / "review.json").read_text())
    assert len(tasks) == 5 and all(len(t["data"]["member_labels"]) == len(ensemble.metadata["params"]["members"])
                                   for t in tasks)
    assert '<Choices name="sentiment" toName="text" choice="single"' in (tmp_path / "labeling.xml").read_text()
    export = [{**task, "id": i + 1, "annotations": [{"id": 50 + i, "was_cancelled": False, "completed_by": 1,
                                                     "result": [{**task["predictions"][0]["result"][0],
                                                                 "value": {"choices": ["neutral"]}}]}]}
              for i, task in enumerate(tasks)]
    (tmp_path / "export.json").write_text(json.dumps(export))
    first = _cli(project, "import-labels", str(tmp_path / "export.json"))
    again = _cli(project, "import-labels", str(tmp_path / "export.json"))
    assert first.returncode == again.returncode == 0, first.stderr + again.stderr
    assert "5 label(s) imported" in first.stderr and "0 label(s) imported" in again.stderr
    assert "5 already imported" in again.stderr
    engine = connect(f"sqlite:///{project / 'logs/predictions.db'}", create=False, read_only=True)
    with engine.connect() as connection:
        stored = list(connection.execute(select(feedback.c.prediction_id, feedback.c.label, feedback.c.key_id)))
    engine.dispose()
    assert sorted(stored) == sorted((t["data"]["prediction_id"], "neutral", "label-studio") for t in tasks)
    # a foreign file: one line, exit 1, nothing imported
    export[3]["annotations"][0]["result"][0]["value"]["choices"] = ["angry"]
    export[4]["data"]["prediction_id"] = "f" * 32
    (tmp_path / "bad.json").write_text(json.dumps(export))
    bad = _cli(project, "import-labels", str(tmp_path / "bad.json"))
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith(f"error: {tmp_path / 'bad.json'}: task 3 (id 4): "
                                                         "annotations[0].result[0].value.choices: 'angry'")


def test_the_to_review_panel_in_a_browser(ensemble, browser, tmp_path):  # noqa: F811 (the fixture)
    from selenium.webdriver.common.by import By

    texts = airline_tweets(30)["text"].tolist()
    with serving(ensemble, tmp_path) as (url, _):
        with httpx.Client(base_url=url, timeout=30) as http:
            answers = http.post("/v1/predict", json={"texts": texts}).json()["predictions"]
            queue = {}
            for _ in range(100):  # until the log writer has shipped them (every 50 ms)
                queue = http.get("/v1/review", params={"limit": 10}).json()
                if queue["candidates"] == len(texts):
                    break
                time.sleep(0.1)
            assert queue["candidates"] == len(texts)
            browser.get(f"{url}/dashboard")
            panel = browser.find_element(By.ID, "to-review")
            assert panel.is_displayed() and "export-review" in panel.text and "import-labels" in panel.text
            rows = panel.find_elements(By.CSS_SELECTOR, "#review-queue tr[data-prediction-id]")
            # the panel's ten are the route's low_confidence ten, in its order
            assert [r.get_attribute("data-prediction-id") for r in rows] == [i["prediction_id"] for i in queue["items"]]
            cells = rows[0].find_elements(By.TAG_NAME, "td")
            assert cells[2].text == f"{queue['items'][0]['confidence']:.4f}"
            assert cells[1].text == queue["items"][0]["label"]
    assert {a["prediction_id"] for a in answers} >= {i["prediction_id"] for i in queue["items"]}


def test_the_queue_and_the_import_on_postgresql(tmp_path):
    """The same queries and the one-transaction import on a real PostgreSQL server."""
    from sentiment_pipeline.predlog import labelstudio

    from .postgres import postgres_server
    from .test_review import CLASSES, PROBS, _exported, _row

    with postgres_server() as url:
        engine = connect(url)
        try:
            with engine.begin() as connection:
                connection.execute(insert(predictions), [_row(i, p, text=None if i == 4 else "t")
                                                         for i, p in enumerate(PROBS)])
                connection.execute(insert(feedback), [{"created_at": T0, "prediction_id": "p0003",
                                                       "label": "neutral", "feedback_id": "f1"}])
            low = review_queue(engine, "low_confidence", 10, 100)
            assert [i.prediction_id for i in low.items] == ["p0006", "p0001", "p0000", "p0007", "p0002", "p0005"]
            assert low.items[0].created_at.tzinfo is not None
            assert [i.prediction_id for i in review_queue(engine, "margin", 3, 100).items] == ["p0000", "p0006", "p0001"]
            tasks = [labelstudio.task_of(item, "margin") for item in low.items[:3]]
            export = tmp_path / "export.json"
            bad = json.loads(json.dumps(_exported(tasks, ["positive", "neutral", "negative"])))  # a deep copy
            bad[2]["data"]["prediction_id"] = "p9999"
            export.write_text(json.dumps(bad))
            with pytest.raises(labelstudio.DataError, match="task 2 .id 12.: data.prediction_id: no prediction"):
                labelstudio.import_labels(engine, export, CLASSES)
            export.write_text(json.dumps(_exported(tasks, ["positive", "neutral", "negative"])))
            assert labelstudio.import_labels(engine, export, CLASSES).written == 3
            assert labelstudio.import_labels(engine, export, CLASSES).written == 0
            with engine.connect() as connection:
                keys = [r.key_id for r in connection.execute(select(feedback.c.key_id).order_by(feedback.c.id))]
            assert keys == [None, "label-studio", "label-studio", "label-studio"]
        finally:
            engine.dispose()
