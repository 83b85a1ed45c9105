"""The review queue (predlog/review.py) and the Label Studio round trip (predlog/labelstudio.py),
on SQLite logs filled here, and ``GET /v1/review`` through ``create_app`` (fast tier)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import insert, select

from sentiment_pipeline.core.config import CleaningConfig, FeaturizeConfig, ServeConfig
from sentiment_pipeline.core.errors import DataError
from sentiment_pipeline.dashboard.review_panel import read_review, review_panel
from sentiment_pipeline.inference.predictor import Predictor
from sentiment_pipeline.predlog import labelstudio
from sentiment_pipeline.predlog.prediction_log import connect, labelled_rows
from sentiment_pipeline.predlog.review import (
    NotAnEnsemble,
    disagreement_scores,
    margin_of,
    review_queue,
)
from sentiment_pipeline.predlog.schema import feedback, predictions
from sentiment_pipeline.serving.app import create_app

CLASSES = ["negative", "neutral", "positive"]
T0 = datetime(2026, 12, 1, tzinfo=UTC)


def _row(n: int, probabilities: list[float], text: str | None = "some text", version: str = "v1",
         label: str | None = None) -> dict:
    probs = dict(zip(CLASSES, probabilities, strict=True))
    top = label or max(probs, key=lambda c: probs[c])
    return {"created_at": T0 + timedelta(seconds=n), "prediction_id": f"p{n:04d}", "request_id": f"r{n}",
            "text": text if text is None else f"{text} {n}", "text_sha256": "0" * 64, "cleaned_length": 5,
            "label": top, "confidence": probs[top], "probabilities": probs, "model_version": version,
            "latency_ms": 1.0, "key_id": None}


def _log(tmp_path: Path, rows: list[dict], labelled: tuple[str, ...] = ()):
    engine = connect(f"sqlite:///{tmp_path / 'log.db'}")
    with engine.begin() as connection:
        connection.execute(insert(predictions), rows)
        if labelled:
            connection.execute(insert(feedback), [{"created_at": T0, "prediction_id": p, "label": "neutral",
                                                   "feedback_id": f"f{p}", "key_id": "123456789012"}
                                                  for p in labelled])
    return engine


# rows 0..7 in id order (the newest last); (probabilities), chosen so that confidence and margin order differ
PROBS = [[0.50, 0.45, 0.05],   # 0: conf .50 margin .05
         [0.40, 0.30, 0.30],   # 1: conf .40 margin .10
         [0.60, 0.39, 0.01],   # 2: conf .60 margin .21
         [0.34, 0.33, 0.33],   # 3: conf .34 margin .01  (labelled: excluded)
         [0.35, 0.34, 0.31],   # 4: conf .35 margin .01  (no text: excluded)
         [0.90, 0.05, 0.05],   # 5: conf .90 margin .85
         [0.40, 0.30, 0.30],   # 6: same as 1, newer: before it
         [0.55, 0.25, 0.20]]   # 7: conf .55 margin .30


@pytest.fixture()
def filled(tmp_path):
    rows = [_row(i, p, text=None if i == 4 else "some text") for i, p in enumerate(PROBS)]
    engine = _log(tmp_path, rows, labelled=("p0003",))
    yield engine
    engine.dispose()


def test_low_confidence_orders_by_confidence_newest_first_on_ties_and_excludes(filled):
    queue = review_queue(filled, "low_confidence", 10, window_rows=100)
    assert [i.prediction_id for i in queue.items] == ["p0006", "p0001", "p0000", "p0007", "p0002", "p0005"]
    assert queue.candidates == 6 and queue.window_rows == 100
    assert [i.confidence for i in queue.items] == sorted(i.confidence for i in queue.items)


def test_margin_orders_by_top1_minus_top2(filled):
    queue = review_queue(filled, "margin", 3, window_rows=100)
    assert [i.prediction_id for i in queue.items] == ["p0000", "p0006", "p0001"]
    for item in queue.items:  # recomputed from the logged probabilities
        top = sorted(PROBS[int(item.prediction_id[1:])], reverse=True)
        assert item.margin == pytest.approx(top[0] - top[1])
    assert margin_of({"a": 0.2, "b": 0.7, "c": 0.1}) == pytest.approx(0.5)


def test_the_window_bounds_the_rows_read(filled):
    # the newest 3 rows are 5, 6 and 7: older ones are not read even when less confident
    queue = review_queue(filled, "low_confidence", 10, window_rows=3)
    assert [i.prediction_id for i in queue.items] == ["p0006", "p0007", "p0005"]
    # a labelled or text-less row uses up its place in the window
    assert review_queue(filled, "low_confidence", 10, window_rows=5).candidates == 3


def test_an_unknown_policy_and_disagreement_without_an_ensemble_are_refused(filled, small_predictor):
    with pytest.raises(ValueError, match="policy must be one of"):
        review_queue(filled, "random", 10, 100)
    with pytest.raises(NotAnEnsemble, match="needs an ensemble; the served model small0000000 is 'linear_svm'"):
        review_queue(filled, "disagreement", 10, 100, small_predictor)


# ------------------------------------------------------------------ disagreement
@pytest.fixture(scope="module")
def ensemble_predictor(airline_sample) -> Predictor:
    """A three-member soft vote fitted here on the fixture tweets (two seconds, no dvc repro)."""
    from sklearn.feature_selection import SelectKBest, chi2
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    from sentiment_pipeline.pipeline.ensemble import EnsembleClassifier
    from sentiment_pipeline.pipeline.features import build_vectorizer
    from sentiment_pipeline.pipeline.models import CalibratedLinearSVC, NaiveBayes
    from sentiment_pipeline.pipeline.text import TextNormalizer

    normalizer = TextNormalizer(CleaningConfig(), frozenset())
    vectorizer = build_vectorizer(FeaturizeConfig(min_df=1, char_ngrams=False))
    X = vectorizer.fit_transform([normalizer(t) for t in airline_sample["text"]])
    y = np.array([CLASSES.index(label) for label in airline_sample["label"]])
    members = [Pipeline([("select", SelectKBest(chi2, k=150)), ("clf", CalibratedLinearSVC(random_state=0))]),
               Pipeline([("select", SelectKBest(chi2, k="all")), ("clf", NaiveBayes(alpha=0.5))]),
               Pipeline([("select", SelectKBest(chi2, k=60)), ("clf", LogisticRegression(C=0.3, max_iter=500))])]
    ensemble = EnsembleClassifier(members=members, method="soft_vote").fit(X, y)
    model = Pipeline([("tfidf", vectorizer), ("select", "passthrough"), ("clf", ensemble)])
    metadata = {"version": "ens000000000", "family": "ensemble",
                "params": {"method": "soft_vote", "members": ["linear_svm", "naive_bayes", "logreg"]},
                "classes": CLASSES}
    return Predictor(model, normalizer, CLASSES, metadata)


def _predicted_rows(predictor: Predictor, texts: list[str], version: str | None = None) -> list[dict]:
    result = predictor.predict(texts)
    rows = []
    for i, text in enumerate(texts):
        row = _row(i, result.probabilities[i].tolist(), label=result.labels[i], version=version or predictor.version)
        rows.append({**row, "text": text, "confidence": float(result.confidence[i])})
    return rows


def test_disagreement_lists_the_texts_the_members_split_on_most_divided_first(tmp_path, ensemble_predictor,
                                                                              airline_sample):
    texts = [f"{t} (seen again)" for t in airline_sample["text"][:120]] + ["ok", "the flight", "meh thanks"]
    rows = _predicted_rows(ensemble_predictor, texts)
    rows += [{**_row(500 + i, [0.4, 0.3, 0.3], version="older"), "prediction_id": f"old{i}"} for i in range(3)]
    engine = _log(tmp_path, rows)
    queue = review_queue(engine, "disagreement", 1000, 1000, ensemble_predictor)
    engine.dispose()
    assert queue.other_versions == 3 and queue.candidates == len(texts)
    assert queue.items, "the members agree on every text: the test data does not exercise the policy"
    # recomputed member by member, independently of review.py: each member's own pipeline
    model = ensemble_predictor.model
    features = model[:-1].transform(ensemble_predictor.clean(texts))
    # (members, texts): each member's most probable class, as it enters the soft vote
    own = np.array([np.argmax(member.predict_proba(features), axis=1) for member in model[-1].members_])
    split = {texts[j]: own[:, j] for j in range(len(texts)) if len(set(own[:, j])) > 1}
    assert {i.text for i in queue.items} == set(split)
    names = ["linear_svm", "naive_bayes", "logreg"]
    for item in queue.items:
        assert item.member_labels == {n: CLASSES[int(v)] for n, v in zip(names, split[item.text], strict=True)}
        assert item.disagreement == pytest.approx(1 - max(np.bincount(split[item.text])) / 3)
    keys = [(-(i.disagreement or 0), i.confidence) for i in queue.items]
    assert keys == sorted(keys)


def test_disagreement_scores():
    votes = np.array([[0, 0, 1, 2], [0, 1, 1, 1], [0, 2, 1, 0], [0, 2, 1, 1]])
    assert disagreement_scores(votes).tolist() == pytest.approx([0.0, 0.5, 0.0, 0.5])


# ------------------------------------------------------------------ the route
@pytest.fixture()
def served(small_predictor, tmp_path):
    settings = ServeConfig(database_url=f"sqlite:///{tmp_path / 'predictions.db'}", review_window_rows=100)
    app = create_app(settings, lambda: small_predictor, tmp_path)
    with TestClient(app) as client:
        yield app, client


def test_the_route_lists_unlabelled_predictions_in_policy_order(served, small_predictor):
    app, client = served
    texts = ["lost my bag again", "thanks for the great crew", "what time is boarding?", "meh", "ok flight",
             "worst airline ever, delayed", "love it"]
    answer = client.post("/v1/predict", json={"texts": texts}).json()["predictions"]
    asyncio.run(app.state.prediction_log.flush(10))
    labelled = answer[0]["prediction_id"]
    assert client.post("/v1/feedback", json={"prediction_id": labelled, "label": "negative"}).status_code == 201
    asyncio.run(app.state.prediction_log.flush(10))
    for policy, key in (("low_confidence", "confidence"), ("margin", "margin")):
        body = client.get("/v1/review", params={"policy": policy, "limit": 4}).json()
        assert body["policy"] == policy and body["model_version"] == "small0000000"
        assert body["candidates"] == len(texts) - 1 and body["window_rows"] == 100
        expected = sorted((p for p in answer if p["prediction_id"] != labelled),
                          key=lambda p: (p["confidence"] if key == "confidence"
                                         else margin_of(p["probabilities"])))[:4]
        assert [i["prediction_id"] for i in body["items"]] == [p["prediction_id"] for p in expected]
        assert {i["text"] for i in body["items"]} <= set(texts)
    default = client.get("/v1/review").json()
    assert default["policy"] == "low_confidence" and len(default["items"]) == len(texts) - 1


@pytest.mark.parametrize("params, field", [({"limit": 0}, "query.limit"), ({"limit": 1001}, "query.limit"),
                                           ({"policy": "random"}, "query.policy"),
                                           ({"policy": "disagreement"}, "query.policy")])
def test_the_route_names_the_bad_parameter(served, params, field):
    _, client = served
    response = client.get("/v1/review", params=params)
    assert response.status_code == 422, response.text
    assert field in [d["field"] for d in response.json()["details"]]


def test_the_route_needs_the_admin_scope_and_is_in_the_openapi_schema(small_predictor, tmp_path):
    from sentiment_pipeline.serving import auth

    store = tmp_path / "logs/keys/api_keys.json"
    predict_key = auth.create_key(store, "p", ["predict", "feedback"])[1]
    admin_key = auth.create_key(store, "a", ["admin"])[1]
    settings = ServeConfig(database_url=f"sqlite:///{tmp_path / 'predictions.db'}")
    with TestClient(create_app(settings, lambda: small_predictor, tmp_path)) as client:
        assert client.get("/v1/review").status_code == 401
        assert client.get("/v1/review", headers={"X-API-Key": predict_key}).status_code == 403
        ok = client.get("/v1/review", headers={"X-API-Key": admin_key})
        assert ok.status_code == 200 and ok.json()["items"] == []
        operation = client.get("/openapi.json").json()["paths"]["/v1/review"]["get"]
    parameters = {p["name"]: p["schema"] for p in operation["parameters"]}
    assert parameters["limit"]["minimum"] == 1 and parameters["limit"]["maximum"] == 1000
    assert set(parameters["policy"]["enum"]) == {"low_confidence", "margin", "disagreement"}
    assert {"200", "401", "403", "422", "503"} <= set(operation["responses"])


def test_the_route_is_a_503_when_the_log_is_away(served):
    app, client = served
    app.state.prediction_log.engine.dispose()
    Path(app.state.prediction_log.engine.url.database).unlink()
    (Path(app.state.prediction_log.engine.url.database)).mkdir()  # no longer a database file
    response = client.get("/v1/review")
    assert response.status_code == 503 and response.headers["retry-after"] == "5"


# ------------------------------------------------------------------ Label Studio
def test_the_tasks_match_label_studios_format_and_the_labeling_config(filled):
    queue = review_queue(filled, "margin", 3, 100)
    tasks = [labelstudio.task_of(item, "margin") for item in queue.items]
    assert tasks[0] == {
        "data": {"text": "some text 0", "prediction_id": "p0000", "model_label": "negative", "confidence": 0.5,
                 "margin": pytest.approx(0.05), "policy": "margin", "created_at": "2026-12-01T00:00:00+00:00",
                 "model_version": "v1"},
        "predictions": [{"model_version": "v1", "score": 0.5, "result": [
            {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["negative"]}}]}]}
    for task in tasks:
        labelstudio.ImportTask.model_validate(task)
    config = labelstudio.labeling_config(CLASSES)
    import xml.etree.ElementTree as ET

    view = ET.fromstring(config)
    text, choices = view.find("Text"), view.find("Choices")
    assert text is not None and choices is not None
    # the names the tasks' results refer to, and $text the tasks' data key
    assert (text.get("name"), text.get("value")) == ("text", "$text")
    assert (choices.get("name"), choices.get("toName"), choices.get("choice")) == ("sentiment", "text", "single")
    assert [c.get("value") for c in choices.findall("Choice")] == CLASSES
    with pytest.raises(ValidationError):  # the import format is closed: a typo is caught
        labelstudio.ImportTask.model_validate({**tasks[0], "prediction": []})


# Label Studio's JSON export as its docs show it (labelstud.io/guide/task_format: "Label Studio
# JSON format of annotated tasks"), for the text-classification config above.
DOCUMENTED_EXPORT = {
    "id": 1, "created_at": "2021-03-09T21:52:49.513742Z", "updated_at": "2021-03-09T22:16:08.746926Z",
    "project": 83, "data": {"text": "some text 0", "prediction_id": "p0000"},
    "annotations": [{"id": "1001", "result": [{"from_name": "sentiment", "id": "Dx_aB91ISN", "to_name": "text",
                                                "type": "choices", "origin": "manual",
                                                "value": {"choices": ["neutral"]}}],
                     "was_cancelled": False, "ground_truth": False, "created_at": "2021-03-09T22:16:08.728353Z",
                     "updated_at": "2021-03-09T22:16:08.728378Z", "lead_time": 4.288, "result_count": 0,
                     "task": 1, "completed_by": 10}],
    "predictions": [{"created_ago": "3 hours", "model_version": "model 1", "score": 0.5,
                     "result": [{"from_name": "sentiment", "id": "t5sp3TyXPo", "to_name": "text",
                                 "type": "choices", "value": {"choices": ["negative"]}}]}],
}


def _exported(tasks: list[dict], labels: list[str | None], edits: dict[int, int] | None = None) -> list[dict]:
    """What Label Studio exports after annotators chose ``labels`` (None: skipped the task); the
    annotation of task ``i`` edited ``edits[i]`` times since it was made (its updated_at moves on)."""
    out = []
    for i, (task, label) in enumerate(zip(tasks, labels, strict=True)):
        annotation = {"id": 100 + i, "completed_by": {"id": 1, "email": "a@example.com"}, "task": 10 + i,
                      "was_cancelled": label is None, "lead_time": 3.2,
                      "created_at": "2026-12-07T10:00:00.000000Z",
                      "updated_at": f"2026-12-07T10:{(edits or {}).get(i, 0):02d}:00.000000Z",
                      "result": [] if label is None else [{"id": "x1", "from_name": "sentiment", "to_name": "text",
                                                           "type": "choices", "origin": "manual",
                                                           "value": {"choices": [label]}}]}
        out.append({**task, "id": 10 + i, "annotations": [annotation], "predictions": [17 + i], "drafts": [],
                    "inner_id": i + 1, "total_annotations": 1, "cancelled_annotations": int(label is None)})
    return out


def _feedback_rows(engine) -> list[tuple]:
    with engine.connect() as connection:
        return list(connection.execute(select(feedback.c.prediction_id, feedback.c.label, feedback.c.key_id,
                                              feedback.c.feedback_id).order_by(feedback.c.id)))


def test_round_trip_export_then_import_is_idempotent_and_carries_provenance(filled, tmp_path):
    queue = review_queue(filled, "low_confidence", 4, 100)
    tasks_file, config_file = tmp_path / "out/review.json", tmp_path / "out/labeling.xml"
    assert labelstudio.write_tasks(queue, tasks_file, CLASSES, config_file) == 4
    assert config_file.read_text() == labelstudio.labeling_config(CLASSES)
    tasks = json.loads(tasks_file.read_text())
    export = tmp_path / "export.json"
    export.write_text(json.dumps(_exported(tasks, ["positive", None, "neutral", "negative"])))

    before = {r["prediction_id"]: r["label"] for r in labelled_rows(filled)}
    result = labelstudio.import_labels(filled, export, CLASSES)
    assert (result.written, result.already, result.plan.unlabelled, result.plan.tasks) == (3, 0, 1, 4)
    rows = _feedback_rows(filled)
    imported = {(p, label) for p, label, key, _ in rows if key == "label-studio"}
    ids = [t["data"]["prediction_id"] for t in tasks]
    assert imported == {(ids[0], "positive"), (ids[2], "neutral"), (ids[3], "negative")}
    assert all(fid.startswith("ls") and len(fid) == 32 for _, _, key, fid in rows if key == "label-studio")
    # export-feedback's provenance filter tells them from API feedback
    assert {r["prediction_id"] for r in labelled_rows(filled, {"label-studio"})} == {ids[0], ids[2], ids[3]}
    assert {r["prediction_id"] for r in labelled_rows(filled, {"123456789012"})} == set(before)
    # labelled now: out of the queue; the skipped task's prediction stays in it
    after = [i.prediction_id for i in review_queue(filled, "low_confidence", 10, 100).items]
    assert ids[1] in after and not {ids[0], ids[2], ids[3]} & set(after)

    again = labelstudio.import_labels(filled, export, CLASSES)
    assert (again.written, again.already) == (0, 3) and _feedback_rows(filled) == rows
    # an annotation changed in Label Studio: its new label is added and wins (the newest)
    changed = _exported(tasks, ["negative", None, "neutral", "negative"], edits={0: 1})
    export.write_text(json.dumps(changed))
    assert labelstudio.import_labels(filled, export, CLASSES).written == 1  # the others: same edit, already in
    assert {r["prediction_id"]: r["label"] for r in labelled_rows(filled, {"label-studio"})}[ids[0]] == "negative"
    # and changed back: the label it had first is new again, and wins
    export.write_text(json.dumps(_exported(tasks, ["positive", None, "neutral", "negative"], edits={0: 2})))
    assert labelstudio.import_labels(filled, export, CLASSES).written == 1
    assert {r["prediction_id"]: r["label"] for r in labelled_rows(filled, {"label-studio"})}[ids[0]] == "positive"


def test_the_documented_export_format_is_read(filled, tmp_path):
    export = tmp_path / "export.json"
    export.write_text(json.dumps([DOCUMENTED_EXPORT]))
    assert labelstudio.import_labels(filled, export, CLASSES).written == 1
    assert ("p0000", "neutral") in {(p, label) for p, label, _, _ in _feedback_rows(filled)}


def test_several_annotations_agreeing_count_conflicting_ones_are_left_out(filled, tmp_path):
    def annotation(i, label, cancelled=False):
        return {"id": i, "was_cancelled": cancelled, "result": [
            {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]}

    tasks = [{"id": 1, "data": {"text": "a", "prediction_id": "p0000"},
              "annotations": [annotation(1, "neutral"), annotation(2, "neutral"), annotation(3, "positive", True)]},
             {"id": 2, "data": {"text": "b", "prediction_id": "p0001"},
              "annotations": [annotation(4, "neutral"), annotation(5, "positive")]},
             {"id": 3, "data": {"text": "c", "prediction_id": "p0002"}, "annotations": []}]
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    result = labelstudio.import_labels(filled, export, CLASSES)
    assert (result.written, result.plan.conflicting, result.plan.unlabelled) == (2, 1, 1)
    assert {(p, label) for p, label, key, _ in _feedback_rows(filled) if key == "label-studio"} == {("p0000", "neutral")}


GOOD = {"id": 7, "data": {"text": "t", "prediction_id": "p0001"},
        "annotations": [{"id": 70, "was_cancelled": False, "result": [
            {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["neutral"]}}]}]}


def _with(path: str, value) -> dict:
    """GOOD with the value at the dotted ``path`` replaced (or deleted when ``value`` is ...)."""
    task = json.loads(json.dumps(GOOD))
    parts = [int(p) if p.isdigit() else p for p in path.split(".")]
    target = task
    for part in parts[:-1]:
        target = target[part]
    if value is ...:
        del target[parts[-1]]
    else:
        target[parts[-1]] = value
    return task


@pytest.mark.parametrize("content, says", [
    (b"{not json", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (json.dumps({"tasks": []}).encode(), "expected Label Studio's JSON export (a list of tasks), got a JSON dict"),
    (json.dumps([GOOD, 5]).encode(), "task 1: expected a task object, got a JSON int"),
    (json.dumps([GOOD, _with("data.prediction_id", ...)]).encode(), "task 1 (id 7): data.prediction_id: missing"),
    (json.dumps([GOOD, _with("data", ...)]).encode(), "task 1 (id 7): data: missing"),
    (json.dumps([GOOD, _with("data.prediction_id", 12)]).encode(), "task 1 (id 7): data.prediction_id: Input "
                                                                    "should be a valid string"),
    (json.dumps([GOOD, _with("annotations.0.result.0.value.choices", ["happy"])]).encode(),
     "task 1 (id 7): annotations[0].result[0].value.choices: 'happy' is not one of the model's classes"),
    (json.dumps([GOOD, _with("annotations.0.result.0.value.choices", ["neutral", "positive"])]).encode(),
     "task 1 (id 7): annotations[0].result[0].value.choices: expected exactly one class"),
    (json.dumps([GOOD, _with("annotations.0.result.0.value", {"labels": ["neutral"]})]).encode(),
     "task 1 (id 7): annotations[0].result[0].value.choices: expected a list of class names"),
    (json.dumps([GOOD, _with("annotations.0.result.0.from_name", "label")]).encode(),
     "task 1 (id 7): annotations[0].result: no 'sentiment' choices (found label (choices))"),
    (json.dumps([GOOD, _with("annotations.0.id", ...)]).encode(), "task 1 (id 7): annotations[0].id: missing"),
    (json.dumps([GOOD, _with("data.prediction_id", "nope")]).encode(),
     "task 1 (id 7): data.prediction_id: no prediction 'nope' in the log"),
    (json.dumps([GOOD, _with("annotations.0.result.0.value.choices", ["positive"])]).encode(),
     "task 1 (id 7): data.prediction_id: 'p0001' is also task 0 (id 7), labelled 'neutral' there"),
])
def test_a_malformed_or_foreign_file_is_refused_whole_naming_task_and_field(filled, tmp_path, content, says):
    export = tmp_path / "export.json"
    export.write_bytes(content)
    before = _feedback_rows(filled)
    with pytest.raises(DataError) as raised:
        labelstudio.import_labels(filled, export, CLASSES)
    message = str(raised.value)
    assert says in message and message.startswith(str(export)) and "\n" not in message, message
    assert _feedback_rows(filled) == before  # nothing imported, not even the good task 0


# ------------------------------------------------------------------ the dashboard panel
def test_the_panel_lists_the_queue_and_the_two_commands(filled):
    queue = read_review(filled, window_rows=100)
    assert queue is not None
    html = review_panel(queue)
    assert 'id="to-review"' in html and "export-review" in html and "import-labels" in html
    assert html.count("<tr data-prediction-id=") == queue.candidates == 6
    assert html.index('"p0006"') < html.index('"p0005"')  # least confident first
    assert "nothing to review" in review_panel(type(queue)("low_confidence", 100, 0, []))
    assert "not readable" in review_panel(None)
    escaped = review_panel(type(queue)("low_confidence", 1, 1, [type(queue.items[0])(
        **{**vars(queue.items[0]), "text": "<script>x</script>" + "y" * 300})]))
    assert "<script>x" not in escaped and "&lt;script&gt;" in escaped and "…" in escaped



# ------------------------------------------------------------------ the two commands
def test_the_commands_round_trip_on_a_project(tmp_path, ensemble_predictor, small_predictor, airline_sample):
    from typer.testing import CliRunner

    from sentiment_pipeline.cli import app as cli

    from .small_project import write_project

    project = write_project(tmp_path / "project", ensemble_predictor)
    served = Predictor.load(project)  # its version: the model's hash in dvc.lock
    rows = _predicted_rows(served, [f"{t} again" for t in airline_sample["text"][:60]])
    _log(tmp_path, rows).dispose()
    log_url = ["--database-url", f"sqlite:///{tmp_path / 'log.db'}", "--project", str(project)]
    runner = CliRunner()
    out = tmp_path / "review.json"
    done = runner.invoke(cli, ["export-review", str(out), "--policy", "disagreement", "--limit", "3",
                               "--config-output", str(tmp_path / "labeling.xml"), *log_url])
    assert done.exit_code == 0, done.output
    tasks = json.loads(out.read_text())
    expected = review_queue(connect(f"sqlite:///{tmp_path / 'log.db'}"), "disagreement", 3, 5000, served)
    assert len(tasks) == 3 and [t["data"]["prediction_id"] for t in tasks] == [i.prediction_id for i in expected.items]
    assert (tmp_path / "labeling.xml").read_text() == labelstudio.labeling_config(CLASSES)
    (tmp_path / "export.json").write_text(json.dumps(_exported(tasks, ["positive", "neutral", None])))
    for _ in range(2):  # the second import adds nothing
        assert runner.invoke(cli, ["import-labels", str(tmp_path / "export.json"), *log_url]).exit_code == 0
        engine = connect(f"sqlite:///{tmp_path / 'log.db'}", create=False)
        assert {(p, label) for p, label, _, _ in _feedback_rows(engine)} == {
            (tasks[0]["data"]["prediction_id"], "positive"), (tasks[1]["data"]["prediction_id"], "neutral")}
        engine.dispose()

    bad_policy = runner.invoke(cli, ["export-review", str(out), "--policy", "random", *log_url])
    assert bad_policy.exit_code == 2 and "--policy" in bad_policy.output and "'random'" in bad_policy.output
    svm = write_project(tmp_path / "svm", small_predictor)
    refused = runner.invoke(cli, ["export-review", str(tmp_path / "none.json"), "--policy", "disagreement",
                                  "--database-url", f"sqlite:///{tmp_path / 'log.db'}", "--project", str(svm)])
    assert refused.exit_code == 1 and "error: policy 'disagreement' needs an ensemble" in refused.output
    assert not (tmp_path / "none.json").exists()
    typo = runner.invoke(cli, ["import-labels", str(tmp_path / "export.json"), "--project", str(project),
                               "--database-url", f"sqlite:///{tmp_path / 'typo.db'}"])
    assert typo.exit_code == 1 and "no prediction log there" in typo.output and not (tmp_path / "typo.db").exists()
