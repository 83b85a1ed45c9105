"""Drift that explains itself (the separating n-grams and example texts), each monitor run kept
in the log (monitor_runs) and charted, and the webhook: fast tier, on the small in-process
model written as a project (no dvc repro) and a SQLite log the test fills."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, insert, inspect
from typer.testing import CliRunner

from sentiment_pipeline.cli import app
from sentiment_pipeline.dashboard import page
from sentiment_pipeline.inference.predictor import Predictor
from sentiment_pipeline.monitoring import charts, command, drift, history, webhook
from sentiment_pipeline.monitoring import monitor as monitoring
from sentiment_pipeline.predlog import schema
from sentiment_pipeline.predlog.prediction_log import connect, predictions

from .small_project import write_project, write_splits
from .test_serving_api import free_port

DRIFTED = " zorblax voucher"  # appended to every production text: the words the classifier must name


# ------------------------------------------------------------------ separating n-grams
def _texts(seed: int, n: int, extra: str) -> list[str]:
    rng = np.random.default_rng(seed)
    common = "the flight was late gate crew seat bag today plane ticket".split()
    return [" ".join(rng.choice(common, 6)) + extra for _ in range(n)]


def test_the_separating_ngrams_are_the_words_that_drifted():
    reference = _texts(0, 200, " airline")
    current = _texts(1, 100, " battery charger") + _texts(2, 100, " refund")
    found = drift.domain_classifier(reference, current, seed=0, top_ngrams=5, examples=2)
    assert found["auc"] > 0.99
    toward_production = [w["ngram"] for w in found["toward_production"]]
    assert {"refund", "battery", "charger"} <= set(toward_production[:4])
    assert found["toward_training"][0]["ngram"] == "airline"
    assert all(w["weight"] > 0 for w in found["toward_production"])
    assert all(w["weight"] < 0 for w in found["toward_training"])
    weights = [abs(w["weight"]) for w in found["toward_production"]]
    assert weights == sorted(weights, reverse=True)
    # examples: the texts of each side the classifier was surest of, each from its own side
    production, training = found["examples"]["production"], found["examples"]["training"]
    assert len(production) == len(training) == 2
    assert all(e["text"] in current and e["probability"] > 0.5 for e in production)
    assert all(e["text"] in reference and e["probability"] > 0.5 for e in training)
    # the AUC is the check's own value, and the whole answer is seeded
    assert found["auc"] == drift.domain_classifier_auc(reference, current, seed=0)
    assert drift.domain_classifier(reference, current, seed=0, top_ngrams=5, examples=2) == found


def test_the_same_text_on_both_sides_separates_nothing_strongly():
    texts = _texts(3, 400, "")
    found = drift.domain_classifier(texts[::2], texts[1::2], seed=0, top_ngrams=3, examples=1)
    assert found["auc"] < 0.65
    strongest = max(abs(w["weight"]) for w in found["toward_production"] + found["toward_training"])
    drifted = drift.domain_classifier(texts[::2], [t + " refund" for t in texts[1::2]], seed=0, top_ngrams=3)
    assert strongest < drifted["toward_production"][0]["weight"] / 2


# ------------------------------------------------------------------ a project and a log
@pytest.fixture(scope="module")
def project(small_predictor, airline_sample, tmp_path_factory) -> Path:
    root = write_project(tmp_path_factory.mktemp("project"), small_predictor)
    return write_splits(root, small_predictor, airline_sample)


def fill_log(url: str, project: Path, texts: list[str], log_text: bool = True) -> None:
    """Predictions of the project's model for ``texts``, one a minute, as the server logs them."""
    predictor = Predictor.load(project)
    answered = predictor.predict(texts)
    start = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
    rows = [{"created_at": start + timedelta(minutes=i), "prediction_id": f"{i:032x}", "request_id": "r",
             "text": text if log_text else None, "text_sha256": hashlib.sha256(text.encode()).hexdigest(),
             "cleaned_length": int(answered.cleaned_length[i]), "label": answered.labels[i],
             "confidence": float(answered.confidence[i]),
             "probabilities": dict(zip(predictor.classes, map(float, answered.probabilities[i]), strict=True)),
             "model_version": predictor.version, "latency_ms": 1.0}
            for i, text in enumerate(texts)]
    engine = connect(url, project)
    with engine.begin() as connection:
        connection.execute(insert(predictions), rows)
    engine.dispose()


@pytest.fixture()
def drifted_log(tmp_path, project, airline_sample) -> str:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    fill_log(url, project, [t + DRIFTED for t in airline_sample["text"][:120]])
    return url


def run_monitor(project: Path, url: str, out: Path, *args: str):
    return CliRunner().invoke(app, ["monitor", "--project", str(project), "--database-url", url,
                                    "--output-dir", str(out), *args])


def stored_runs(url: str) -> list[dict]:
    engine = connect(url, create=False)
    try:
        return history.read_runs(engine, 100)
    finally:
        engine.dispose()


def test_monitor_names_the_drifted_words_and_stores_every_run(project, drifted_log, tmp_path):
    out = tmp_path / "out"
    done = run_monitor(project, drifted_log, out)
    assert done.exit_code == 1, done.output
    result = json.loads((out / "monitor.json").read_text())
    assert result["status"] == "drift"
    words = [w["ngram"] for w in result["text_drift"]["toward_production"]]
    assert {"zorblax", "voucher"} <= set(words[:3]), words
    assert len(result["text_drift"]["toward_training"]) == 10  # monitor.top_ngrams
    assert all("zorblax" in e["text"] for e in result["text_drift"]["examples"]["production"])
    assert all("zorblax" not in e["text"] for e in result["text_drift"]["examples"]["training"])
    by_name = {c["name"]: c for c in result["checks"]}
    assert result["text_drift"]["auc"] == by_name["domain_classifier_auc"]["value"]
    report = (out / "report.html").read_text()
    assert 'id="drift-words-production"' in report and "<td>zorblax</td>" in report
    assert "webhook_url" not in result["thresholds"]  # a secret is never written to the artifact

    assert run_monitor(project, drifted_log, out).exit_code == 1
    runs = stored_runs(drifted_log)
    assert len(runs) == 2 and [r["status"] for r in runs] == ["drift", "drift"]
    # the stored run is monitor.json's: the same checks, values and thresholds, window and model
    latest = json.loads((out / "monitor.json").read_text())
    assert runs[-1]["checks"] == [{k: c[k] for k in history.CHECK_FIELDS} for c in latest["checks"]]
    assert runs[-1]["rows"] == latest["rows"] == 120 and runs[-1]["model_version"] == latest["model_version"]
    assert runs[-1]["window"] == {"last": 1000, "since": None, "until": None}
    assert runs[-1]["window_newest"].replace(tzinfo=UTC) == datetime.fromisoformat(latest["window"]["newest"])


def test_no_history_stores_nothing_and_history_url_stores_elsewhere(project, drifted_log, tmp_path):
    assert run_monitor(project, drifted_log, tmp_path / "out", "--no-history").exit_code == 1
    assert stored_runs(drifted_log) == []
    primary = f"sqlite:///{tmp_path / 'primary.db'}"
    connect(primary).dispose()
    assert run_monitor(project, drifted_log, tmp_path / "out", "--history-url", primary).exit_code == 1
    assert stored_runs(drifted_log) == [] and len(stored_runs(primary)) == 1
    done = run_monitor(project, drifted_log, tmp_path / "out", "--no-history", "--history-url", primary)
    assert done.exit_code == 2 and "not both" in " ".join(done.output.replace("│", " ").split())


def test_a_history_that_cannot_be_stored_is_one_line_and_keeps_the_verdict(project, drifted_log, tmp_path, caplog):
    """Drift is still exit code 1 (the alert, and what starts a retrain): a read-only or missing
    history store must not turn it into an error."""
    missing = f"sqlite:///{tmp_path / 'nowhere.db'}"
    with caplog.at_level("ERROR", logger="sentiment_pipeline.monitor"):
        done = run_monitor(project, drifted_log, tmp_path / "out", "--history-url", missing)
    assert done.exit_code == 1, done.output
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [f"{tmp_path / 'nowhere.db'}: no prediction log there (serve.database_url / --database-url)"]
    assert (tmp_path / "out" / "monitor.json").is_file() and not (tmp_path / "nowhere.db").exists()


def test_without_logged_texts_there_is_no_explanation(project, airline_sample, tmp_path):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    fill_log(url, project, list(airline_sample["text"][:120]), log_text=False)
    out = tmp_path / "out"
    assert run_monitor(project, url, out).exit_code in (0, 1)
    result = json.loads((out / "monitor.json").read_text())
    assert result["text_drift"] is None
    assert "drift-words" not in (out / "report.html").read_text()
    assert len(stored_runs(url)) == 1


# ------------------------------------------------------------------ the table and its migration
def test_the_migrations_make_exactly_the_declared_schema(tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = connect(f"sqlite:///{tmp_path / 'log.db'}")
    with engine.connect() as connection:
        assert schema.current_revision(connection) == schema.head_revision() == "0003"
        assert compare_metadata(MigrationContext.configure(connection), schema.metadata) == []
    engine.dispose()


def test_a_0002_log_gains_monitor_runs_and_keeps_its_rows(tmp_path, project):
    from alembic import command as alembic

    url = f"sqlite:///{tmp_path / 'log.db'}"
    engine = create_engine(url)
    with engine.begin() as connection:
        alembic.upgrade(schema._config(connection), "0002")
    engine.dispose()
    fill_log(url, project, ["one text"])  # connect upgrades to the head
    engine = connect(url, create=False)
    assert inspect(engine).has_table("monitor_runs")
    with engine.connect() as connection:
        assert connection.execute(predictions.select()).all()
    engine.dispose()


# ------------------------------------------------------------------ the webhook
class Hook:
    """A local HTTP server that records what is POSTed to it and answers ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.received: list[dict] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["content-length"]))
                hook.received.append({"path": self.path, "type": self.headers["content-type"],
                                      "json": json.loads(body)})
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://user:pw-secret@127.0.0.1:{self.server.server_port}/hook/token-secret?key=q-secret"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Hook:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


DRIFT = {"status": "drift", "message": "beyond thresholds: a", "rows": 120, "model_version": "v1",
         "generated_at": "2026-12-07T08:00:00+00:00", "window": {"last": 120},
         "checks": [{"name": "a", "value": 0.9, "threshold": 0.75, "drift": True, "applicable": True},
                    {"name": "b", "value": 0.1, "threshold": 0.2, "drift": False, "applicable": True}]}


def test_the_webhook_gets_a_json_summary_on_drift_only():
    with Hook() as hook:
        assert webhook.notify(hook.url, webhook.summary(DRIFT, "out/report.html"), timeout=5)
        assert not webhook.notify(hook.url, webhook.summary({**DRIFT, "status": "ok"}, "r"), timeout=5)
        assert not webhook.notify(hook.url, webhook.summary({**DRIFT, "status": "insufficient_data"}, "r"), 5)
    [posted] = hook.received
    assert posted["path"] == "/hook/token-secret?key=q-secret" and posted["type"] == "application/json"
    assert posted["json"]["status"] == "drift" and posted["json"]["report"] == "out/report.html"
    assert posted["json"]["failing_checks"] == [{"name": "a", "value": 0.9, "threshold": 0.75}]
    assert posted["json"]["window"] == {"last": 120} and posted["json"]["model_version"] == "v1"


@pytest.mark.parametrize("case", ["HTTP 500", "HTTP 404", "unreachable"])
def test_a_failing_webhook_is_one_warning_without_the_secrets(case, caplog):
    caplog.set_level(logging.INFO, "sentiment_pipeline.monitoring.webhook")
    if case == "unreachable":
        url = f"http://user:pw-secret@127.0.0.1:{free_port()}/hook/token-secret?key=q-secret"
        assert not webhook.notify(url, webhook.summary(DRIFT, "r"), timeout=2)
    else:
        with Hook(int(case.split()[1])) as hook:
            url = hook.url
            assert not webhook.notify(url, webhook.summary(DRIFT, "r"), timeout=2)
        assert len(hook.received) == 1
    [record] = caplog.records
    assert record.levelname == "WARNING" and "not delivered" in record.getMessage()
    assert ("HTTP " + case.split()[-1] if case != "unreachable" else "ConnectError") in record.getMessage()
    assert "secret" not in caplog.text and "127.0.0.1" in caplog.text


def test_the_exit_code_keeps_its_meaning_whatever_the_webhook_does(project, drifted_log, tmp_path, monkeypatch):
    with Hook(500) as failing:
        done = run_monitor(project, drifted_log, tmp_path / "out", "--webhook", failing.url)
    assert done.exit_code == 1 and len(failing.received) == 1
    assert failing.received[0]["json"]["report"] == str(tmp_path / "out" / "report.html")
    unreachable = f"http://127.0.0.1:{free_port()}/hook"
    monkeypatch.setenv("SENTIMENT_MONITOR_WEBHOOK_URL", unreachable)  # the environment's hook
    assert run_monitor(project, drifted_log, tmp_path / "out").exit_code == 1
    # an error is reported to the hook too, and still exits with 2
    with Hook() as hook:
        done = run_monitor(tmp_path / "no-project", drifted_log, tmp_path / "out", "--webhook", hook.url)
    assert done.exit_code == 2
    [posted] = hook.received
    assert posted["json"]["status"] == "error" and "models/final/model.joblib" in posted["json"]["message"]
    done = run_monitor(project, drifted_log, tmp_path / "out", "--webhook", "ftp://hooks.example.com/x")
    assert done.exit_code == 2 and "not an http(s) URL with a host" in done.output


def test_a_history_failure_still_alerts_the_hook_with_the_verdict(project, drifted_log, tmp_path):
    with Hook() as hook:
        code = command.execute(project, monitoring.MonitorConfig(), drifted_log, monitoring.WindowSpec(),
                               tmp_path / "out", history_url=f"sqlite:///{tmp_path / 'none.db'}",
                               webhook_url=hook.url)
    assert code == 1  # the drift verdict, not an error
    [posted] = hook.received
    assert posted["json"]["status"] == "drift"
    assert {c["name"] for c in posted["json"]["failing_checks"]} >= {"domain_classifier_auc"}


# ------------------------------------------------------------------ charts and the dashboard panel
def test_a_line_chart_draws_its_threshold_and_leaves_gaps():
    svg = charts.line_chart(["a", "b", "c", "d"], [0.1, None, 0.3, 0.9], title="t", threshold=0.5)
    assert svg.count('class="threshold"') == 1 and "threshold 0.5" in svg
    assert svg.count("<circle") == 3 and svg.count("<polyline") == 1  # a-b gap: only c-d is a line
    assert svg.count('fill="#e45756"') == 1  # the one point beyond the threshold
    assert "no data yet" in charts.line_chart(["a"], [None], title="t", threshold=0.5)


def runs_of(values: list[float | None]) -> list[dict]:
    start = datetime(2026, 12, 7, 0, 0)
    return [{"created_at": start + timedelta(hours=i), "status": "ok",
             "checks": [{"name": "domain_classifier_auc", "value": v, "threshold": 0.75, "drift": bool(v and v > 0.75),
                         "applicable": v is not None},
                        {"name": "class_mix_psi", "value": 0.01 * i, "threshold": 0.2, "drift": False,
                         "applicable": True}]}
            for i, v in enumerate(values)]


def test_the_history_series_are_the_stored_values():
    lines = history.series(runs_of([0.5, None, 0.9]))
    assert list(lines) == ["domain_classifier_auc", "class_mix_psi"]
    assert lines["domain_classifier_auc"]["values"] == [0.5, None, 0.9]
    assert lines["domain_classifier_auc"]["threshold"] == 0.75
    assert lines["class_mix_psi"]["values"] == [0.0, 0.01, 0.02]
    assert lines["class_mix_psi"]["labels"] == ["12-07 00:00", "12-07 01:00", "12-07 02:00"]


def test_the_dashboard_panel_charts_each_check_and_names_the_drifted_words():
    result = {**DRIFT, "text_drift": {"auc": 0.9, "rows_per_side": 100,
                                      "toward_production": [{"ngram": "zorblax", "weight": 2.5}],
                                      "toward_training": [{"ngram": "<airline>", "weight": -1.5}],
                                      "examples": {"production": [{"text": "a zorblax", "probability": 0.97}],
                                                   "training": []}}}
    html = page.monitor_panel(result, "logs/monitor/monitor.json", runs_of([0.5, 0.6, 0.9]))
    assert html.count('id="history-') == 2 and html.count('class="threshold"') == 2
    assert "<td>zorblax</td><td>2.500</td>" in html and "&lt;airline&gt;" in html
    assert "a zorblax" in html and "3 stored run(s)" in html
    assert "no monitor run stored yet" in page.monitor_panel(None, "m.json", [])
    assert "not readable" in page.monitor_panel(None, "m.json", None)
